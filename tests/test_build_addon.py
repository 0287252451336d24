"""build_addon.py writes an extension zip and a legacy zip with what each Blender needs.

Installing them in real Blender is tests/addon/test_addon_in_blender.py.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    output = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, str(ROOT / "build_addon.py"), "--output", str(output)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    extension, legacy = (Path(line) for line in done.stdout.split())
    return extension, legacy


def test_extension_has_a_manifest_and_the_wheels_it_names(built: tuple[Path, Path]):
    extension, _ = built
    assert extension.name.startswith("framefarm-addon-") and extension.suffix == ".zip"
    with zipfile.ZipFile(extension) as archive:
        names = set(archive.namelist())
        manifest = tomllib.loads(archive.read("blender_manifest.toml").decode())
    assert manifest["id"] == "framefarm" and manifest["type"] == "add-on"
    assert manifest["version"] in extension.name
    assert manifest["blender_version_min"] == "4.2.0"
    assert set(manifest["permissions"]) == {"network", "files"}
    wheels = [w.removeprefix("./") for w in manifest["wheels"]]
    assert set(wheels) <= names
    assert any(w.startswith("wheels/blender_asset_tracer-") for w in wheels)
    assert sum("zstandard-" in w for w in wheels) == len(manifest["platforms"]) == 3
    assert {"__init__.py", "submit_flow.py", "shared/setting_eval.py"} <= names
    assert not any("__pycache__" in n or n.startswith("tests/") for n in names)


def test_legacy_zip_carries_blender_asset_tracer_and_zstandard_inside_the_addon(
    built: tuple[Path, Path],
):
    _, legacy = built
    assert legacy.name.endswith("-legacy.zip")
    with zipfile.ZipFile(legacy) as archive:
        listed = archive.namelist()
    names = set(listed)
    assert len(names) == len(listed), "a file is in the zip twice"
    assert {"framefarm/__init__.py", "framefarm/shared/frames.py"} <= names
    assert "framefarm/vendor/blender_asset_tracer/pack/__init__.py" in names
    # zstandard reads compressed .blend files; one compiled module per Python and platform
    assert "framefarm/vendor/zstandard/__init__.py" in names
    for python in ("310", "311"):  # official Blender 3.1-3.6 builds; Debian's Blender 3.4
        assert {
            f"framefarm/vendor/zstandard/backend_c.cpython-{python}-x86_64-linux-gnu.so",
            f"framefarm/vendor/zstandard/backend_c.cpython-{python}-darwin.so",
            f"framefarm/vendor/zstandard/backend_c.cp{python}-win_amd64.pyd",
        } <= names
    assert {
        "framefarm/vendor/blender_asset_tracer-LICENSE",
        "framefarm/vendor/zstandard-LICENSE",
    } <= names
    assert all(n.startswith("framefarm/") for n in names)
    assert not any(n.endswith(".whl") or ".dist-info/" in n for n in names)
