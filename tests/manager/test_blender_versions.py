"""Blender builds on the manager: stored from an archive or a folder, listed, downloaded."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from framefarm.cli import main
from manager.blender_versions import BlenderVersions, this_platform
from manager.errors import InvalidInput
from tests.manager.conftest import Farm

LAUNCHER = '#!/bin/sh\nexec /usr/bin/blender "$@"\n'


def launcher_folder(root: Path) -> Path:
    """A Blender build in miniature: a launcher script for the Debian blender."""
    folder = root / "blender-3.4-launcher"
    folder.mkdir(parents=True)
    (folder / "blender").write_text(LAUNCHER)
    (folder / "blender").chmod(0o755)
    (folder / "readme.txt").write_text("launches /usr/bin/blender\n")
    return folder


def tar_xz(path: Path, members: dict[str, str]) -> Path:
    with tarfile.open(path, "w:xz") as tar:
        for name, text in members.items():
            info = tarfile.TarInfo(name)
            data = text.encode()
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return path


def test_a_folder_is_stored_as_an_archive_with_its_launcher(tmp_path: Path) -> None:
    versions = BlenderVersions(tmp_path / "storage")
    build = versions.add(launcher_folder(tmp_path), version="3.4.1")
    assert (build.version, build.platform, build.entry) == ("3.4.1", this_platform(), "blender")
    archive = versions.archive_path(build)
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == build.sha256 == archive.stem[:64]
    with tarfile.open(archive) as tar:
        launcher = tar.getmember("blender")
        assert launcher.mode & 0o111
        assert sorted(tar.getnames()) == ["blender", "readme.txt"]
    assert versions.list() == [build]
    assert versions.get(build.sha256) == build


def test_an_archive_names_its_version_and_the_executable_is_found_inside(tmp_path: Path) -> None:
    archive = tar_xz(
        tmp_path / "blender-4.2.3-linux-x64.tar.xz",
        {"blender-4.2.3-linux-x64/blender": LAUNCHER, "blender-4.2.3-linux-x64/4.2/x.py": ""},
    )
    build = BlenderVersions(tmp_path / "s").add(archive, platform_name="linux-x86_64")
    assert (build.version, build.entry) == ("4.2.3", "blender-4.2.3-linux-x64/blender")
    assert build.filename == archive.name


@pytest.mark.parametrize(
    ("make", "kwargs", "code"),
    [
        (lambda p: tar_xz(p / "build.tar.xz", {"blender": LAUNCHER}), {}, "version_required"),
        (lambda p: tar_xz(p / "b.tar.xz", {"blender": ""}), {"version": "4.x"}, "invalid_version"),
        (lambda p: tar_xz(p / "blender-4.2.tar.xz", {"readme": ""}), {}, "no_blender_entry"),
        (lambda p: p / "blender-4.2.dmg", {}, "not_found"),
        (lambda p: (p / "blender-4.2.rar").write_text("x") and p / "blender-4.2.rar", {},
         "not_an_archive"),
        (lambda p: (p / "blender-4.2.tar.gz").write_text("x") and p / "blender-4.2.tar.gz", {},
         "bad_archive"),
    ],
)  # fmt: skip
def test_bad_builds_are_refused_and_nothing_is_kept(
    tmp_path: Path, make: object, kwargs: dict[str, str], code: str
) -> None:
    source = make(tmp_path)  # type: ignore[operator]
    versions = BlenderVersions(tmp_path / "storage")
    with pytest.raises(InvalidInput) as caught:
        versions.add(source, **kwargs)
    assert caught.value.code == code
    assert versions.list() == []
    assert not versions.folder.exists() or list(versions.folder.iterdir()) == []


def test_the_cli_adds_and_lists_builds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("manager.cli.configure_logging", lambda *args: None)

    def manager(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        base = ["manager", "--storage", str(tmp_path / "s"), "--db", str(tmp_path / "f.db")]
        code = main([*base, "blender", *args])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, err = manager("add", str(launcher_folder(tmp_path)), "--version", "3.4.1")
    assert code == 0, err
    assert out.startswith(f"stored Blender 3.4.1 for {this_platform()}: ")
    assert manager("list")[1].split()[:2] == ["3.4.1", this_platform()]
    code, _, err = manager("add", str(tmp_path / "nothing-here"))
    assert code == 1
    assert err.startswith("error: ") and "does not exist" in err


def test_users_list_builds_and_runners_download_them(farm: Farm, tmp_path: Path) -> None:
    build = BlenderVersions(farm.settings.storage).add(launcher_folder(tmp_path), version="3.4")
    listed = farm.client.get("/api/blender/versions", headers=farm.auth(farm.user_key))
    assert listed.status_code == 200
    assert [(v["version"], v["sha256"]) for v in listed.json()["versions"]] == [
        ("3.4", build.sha256)
    ]
    runner = farm.auth(farm.runner_key)
    assert farm.client.get("/api/runner/blender/versions", headers=runner).json() == listed.json()
    url = f"/api/runner/blender/versions/{build.sha256}/archive"
    archive = farm.client.get(url, headers=runner)
    assert archive.status_code == 200
    assert hashlib.sha256(archive.content).hexdigest() == build.sha256
    missing = farm.client.get(f"/api/runner/blender/versions/{'0' * 64}/archive", headers=runner)
    assert missing.status_code == 404
    assert missing.json()["code"] == "blender_build_not_found"
