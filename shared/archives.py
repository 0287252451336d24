"""Archives of Blender builds: members that stay inside their folder, unpacked with their modes.

A member named ``../x``, ``/etc/x``, ``C:\\x`` or through a link that points outside would
write where it should not ("zip slip", "tar slip"). The manager refuses such an archive when
an admin stores it, and the runner checks again before unpacking what it downloaded.
"""

from __future__ import annotations

import posixpath
import re
import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

_DRIVE = re.compile(r"^[A-Za-z]:")


class UnsafeArchive(ValueError):
    """An archive with a member that would land outside the folder it is unpacked into."""


def unsafe_member(name: str) -> bool:
    """True when ``name`` is absolute, climbs with ``..``, or names a drive or a NUL."""
    if not name or "\x00" in name or "\\" in name or _DRIVE.match(name):
        return True
    path = PurePosixPath(name)
    return path.is_absolute() or ".." in path.parts


def _escapes(folder: PurePosixPath, link: str) -> bool:
    if not link or link.startswith("/") or "\\" in link or _DRIVE.match(link):
        return True
    resolved = posixpath.normpath(posixpath.join(str(folder), link))
    return resolved == ".." or resolved.startswith("../")


def archive_members(path: Path) -> list[str]:
    """The files of a .zip or tar archive; raises UnsafeArchive on a member that escapes."""
    if path.name.lower().endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    else:
        with tarfile.open(path) as archive:
            members = archive.getmembers()
            for member in members:
                folder = PurePosixPath(member.name).parent
                if (member.issym() and _escapes(folder, member.linkname)) or (
                    member.islnk() and unsafe_member(member.linkname)
                ):
                    raise UnsafeArchive(f"{member.name} links outside the archive")
            names = [m.name for m in members if m.isfile() or m.issym()]
    bad = [name for name in names if unsafe_member(name)]
    if bad:
        raise UnsafeArchive(f"{bad[0]!r} would be unpacked outside the archive's folder")
    return names


def unpack(path: Path, target: Path) -> None:
    """Unpack a checked archive into ``target``, keeping executable bits (zip ones too)."""
    archive_members(path)
    if not path.name.lower().endswith(".zip"):
        shutil.unpack_archive(path, target, filter="data")
        return
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            written = Path(archive.extract(info, target))
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                written.chmod(mode & 0o755)
