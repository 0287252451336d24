"""Blender builds the manager stores for runners to download, under ``<storage>/blender-versions``.

Each build is two files named by the archive's SHA-256: ``<sha256>.<ext>`` (the archive as
given, or a ``.tar.gz`` made from a folder) and ``<sha256>.json`` (version, platform, entry
point, size). The JSON is written last, by rename, so a listing never shows a half-stored
build. Runners check the SHA-256 after downloading.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from manager.errors import InvalidInput, NotFound
from shared.archives import UnsafeArchive, archive_members
from shared.hashing import is_sha256, sha256_file

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.xz", ".tar.bz2", ".tar", ".zip")
ENTRY_NAMES = ("blender", "blender.exe", "blender-launcher", "python")
_VERSION_IN_NAME = re.compile(r"blender[-_]?(\d+\.\d+(?:\.\d+)?)", re.IGNORECASE)
_VERSION = re.compile(r"^\d+\.\d+(?:\.\d+)?$")


def this_platform() -> str:
    """The platform a build is for unless told otherwise, as runners name theirs."""
    return f"{sys.platform}-{platform.machine().lower()}"


@dataclass(frozen=True)
class BlenderBuild:
    sha256: str
    version: str
    platform: str
    filename: str
    size: int
    entry: str
    added_at: str


def _suffix(name: str) -> str | None:
    return next((s for s in ARCHIVE_SUFFIXES if name.lower().endswith(s)), None)


def _find_entry(members: list[str]) -> str | None:
    """The Blender executable (or launcher) nearest the top of the archive."""
    candidates = [
        m
        for m in members
        if PurePosixPath(m).name in ENTRY_NAMES and len(PurePosixPath(m).parts) <= 3
    ]
    candidates.sort(
        key=lambda m: (len(PurePosixPath(m).parts), ENTRY_NAMES.index(PurePosixPath(m).name))
    )
    return candidates[0].removeprefix("./") if candidates else None


class BlenderVersions:
    def __init__(self, storage_root: Path) -> None:
        self.folder = storage_root / "blender-versions"

    def list(self) -> list[BlenderBuild]:
        if not self.folder.is_dir():
            return []
        builds = []
        for path in sorted(self.folder.glob("*.json")):
            try:
                builds.append(BlenderBuild(**json.loads(path.read_text(encoding="utf-8"))))
            except (ValueError, TypeError):
                continue  # a damaged record hides its build rather than the whole list
        return sorted(builds, key=lambda b: (b.version, b.platform))

    def get(self, sha256: str) -> BlenderBuild:
        record = self.folder / f"{sha256}.json" if is_sha256(sha256) else None
        if record is None or not record.is_file():
            raise NotFound(f"no Blender build {sha256}", code="blender_build_not_found")
        return BlenderBuild(**json.loads(record.read_text(encoding="utf-8")))

    def archive_path(self, build: BlenderBuild) -> Path:
        return self.folder / f"{build.sha256}{_suffix(build.filename) or ''}"

    def add(
        self,
        source: Path,
        *,
        version: str | None = None,
        platform_name: str | None = None,
        entry: str | None = None,
    ) -> BlenderBuild:
        """Store an archive, or a folder packed as .tar.gz; nothing is kept on error."""
        source = source.expanduser()
        if not source.exists():
            raise InvalidInput(f"{source} does not exist", code="not_found")
        version = version or _version_from_name(source.name)
        if not _VERSION.match(version):
            raise InvalidInput(
                f"{version!r} is not a Blender version; give one like --version 4.2.3",
                code="invalid_version",
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.folder, prefix=".adding-") as temp:
            if source.is_dir():
                archive = Path(temp) / f"blender-{version}.tar.gz"
                with tarfile.open(archive, "w:gz") as tar:
                    for child in sorted(source.iterdir()):
                        tar.add(child, arcname=child.name)
            elif _suffix(source.name) is None:
                raise InvalidInput(
                    f"{source.name} is not an archive Blender builds come in "
                    f"({', '.join(ARCHIVE_SUFFIXES)}) nor a folder",
                    code="not_an_archive",
                )
            else:
                archive = source
            try:
                members = archive_members(archive)
            except UnsafeArchive as exc:
                raise InvalidInput(
                    f"{source.name} is not safe to unpack: {exc}", code="unsafe_archive"
                ) from exc
            except (tarfile.TarError, zipfile.BadZipFile, OSError, ValueError) as exc:
                raise InvalidInput(f"cannot read {source.name}: {exc}", code="bad_archive") from exc
            entry = entry or _find_entry(members)
            if entry is None or entry not in {m.removeprefix("./") for m in members}:
                raise InvalidInput(
                    f"no Blender executable found in {source.name} (looked for "
                    f"{', '.join(ENTRY_NAMES)}); name it with --entry PATH/IN/ARCHIVE",
                    code="no_blender_entry",
                )
            sha256 = sha256_file(archive)
            build = BlenderBuild(
                sha256=sha256,
                version=version,
                platform=platform_name or this_platform(),
                filename=archive.name,
                size=archive.stat().st_size,
                entry=entry,
                added_at=datetime.now(UTC).isoformat(timespec="seconds"),
            )
            target = self.archive_path(build)
            staged = Path(temp) / "archive"
            shutil.copyfile(archive, staged)
            os.replace(staged, target)
            record = Path(temp) / "record.json"
            record.write_text(json.dumps(asdict(build), indent=1), encoding="utf-8")
            os.replace(record, self.folder / f"{sha256}.json")
        return build


def _version_from_name(name: str) -> str:
    match = _VERSION_IN_NAME.search(name)
    if match is None:
        raise InvalidInput(
            f"cannot tell the Blender version from the name {name!r}; give it with --version",
            code="version_required",
        )
    return match.group(1)
