"""Zip and tar slip: a Blender build archive that would write outside its folder is refused."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from manager.blender_versions import BlenderVersions
from manager.errors import InvalidInput
from shared.archives import UnsafeArchive, unpack

LAUNCHER = b'#!/bin/sh\nexec blender "$@"\n'


def tar_with(path: Path, *members: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for member in members:
            data = LAUNCHER if member.isfile() else None
            if data is not None:
                member.size = len(data)
            archive.addfile(member, io.BytesIO(data) if data is not None else None)
    return path


def file_member(name: str) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.mode = 0o755
    return member


def link_member(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.linkname = kind, target
    return member


def zip_with(path: Path, *names: str) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name in names:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFREG | 0o755) << 16
            archive.writestr(info, LAUNCHER)
    return path


ESCAPES = {
    "tar-dotdot": lambda p: tar_with(p / "b.tar.gz", file_member("blender-4.2/blender"),
                                     file_member("../escape")),
    "tar-absolute": lambda p: tar_with(p / "b.tar.gz", file_member("blender-4.2/blender"),
                                       file_member("/tmp/escape")),
    "tar-symlink-out": lambda p: tar_with(p / "b.tar.gz", file_member("blender-4.2/blender"),
                                          link_member("blender-4.2/lib", "../../etc")),
    "tar-hardlink-out": lambda p: tar_with(p / "b.tar.gz", file_member("blender-4.2/blender"),
                                           link_member("blender-4.2/x", "/etc/passwd",
                                                       tarfile.LNKTYPE)),
    "zip-dotdot": lambda p: zip_with(p / "b.zip", "blender-4.2/blender", "blender-4.2/../../x"),
    "zip-drive": lambda p: zip_with(p / "b.zip", "blender-4.2/blender", "C:/x"),
    "zip-backslash": lambda p: zip_with(p / "b.zip", "blender-4.2/blender", "..\\x"),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(ESCAPES))
def test_an_escaping_build_is_refused_by_the_manager_and_the_runner(tmp_path: Path, kind: str):
    archive = ESCAPES[kind](tmp_path)
    versions = BlenderVersions(tmp_path / "storage")
    with pytest.raises(InvalidInput) as refused:
        versions.add(archive, version="4.2.0")
    assert refused.value.code == "unsafe_archive"
    assert versions.list() == []
    assert not list((tmp_path / "storage" / "blender-versions").glob("*"))

    target = tmp_path / "deep" / "unpacked"
    with pytest.raises(UnsafeArchive):
        unpack(archive, target)
    assert not (tmp_path / "escape").exists() and not (tmp_path / "deep" / "x").exists()
    assert not target.exists()


def test_a_link_that_stays_inside_is_fine(tmp_path: Path):
    archive = tar_with(
        tmp_path / "b.tar.gz",
        file_member("blender-4.2/lib/libfoo.so.1"),
        link_member("blender-4.2/lib/libfoo.so", "libfoo.so.1"),
        link_member("blender-4.2/blender", "lib/../lib/libfoo.so.1"),
    )
    unpack(archive, tmp_path / "out")
    assert (tmp_path / "out" / "blender-4.2" / "lib" / "libfoo.so").read_bytes() == LAUNCHER


def test_a_zip_build_keeps_its_executable_bits(tmp_path: Path):
    archive = zip_with(tmp_path / "blender-4.2.zip", "blender-4.2/blender")
    unpack(archive, tmp_path / "out")
    assert (tmp_path / "out" / "blender-4.2" / "blender").stat().st_mode & 0o111
