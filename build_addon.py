"""Build the add-on into dist/: a Blender 4.2+ extension and a legacy add-on for Blender 3.x.

    dist/framefarm-addon-<version>.zip         extension: blender_manifest.toml, the add-on,
                                               shared/, wheels/ (blender-asset-tracer and
                                               zstandard for Linux, macOS and Windows)
    dist/framefarm-addon-<version>-legacy.zip  framefarm/ with shared/, and in framefarm/vendor/
                                               blender-asset-tracer and zstandard for Python
                                               3.10 and 3.11 on the same three platforms

The wheels come from PyPI (``pip download``) into a cache folder on the first build.
Usage: python build_addon.py [--output DIR] [--wheels DIR]
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ADDON = ROOT / "addon"
SHARED = ROOT / "shared"
PACKAGE = "framefarm"
BAT = "blender-asset-tracer==1.23"
ZSTANDARD = "zstandard==0.25.0"
# One zstandard wheel per platform Blender ships for, per Python: Blender 4.2 to 5.0 run
# Python 3.11; official Blender 3.1 to 3.6 builds run 3.10, Debian's Blender 3.4 the system's
# 3.11. zstandard reads the .blend files Blender 3.0+ saves with compression.
PLATFORMS = {
    "linux-x64": "manylinux2014_x86_64",
    "macos-arm64": "macosx_11_0_arm64",
    "windows-x64": "win_amd64",
}
EXTENSION_PYTHON = "3.11"
LEGACY_PYTHONS = ("3.10", "3.11")


def addon_version() -> str:
    """The version in the add-on's bl_info, read without importing it."""
    tree = ast.parse((ADDON / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "bl_info":
            info = ast.literal_eval(node.value)
            return ".".join(str(part) for part in info["version"])
    raise SystemExit("addon/__init__.py has no bl_info")


def source_files(prefix: str) -> list[tuple[Path, str]]:
    """(source, name in the zip) for the add-on and the stdlib-only shared code it bundles."""
    files = []
    for source_root, folder in ((ADDON, prefix), (SHARED, f"{prefix}/shared")):
        for path in sorted(source_root.rglob("*.py")):
            if "__pycache__" not in path.parts:
                name = f"{folder}/{path.relative_to(source_root).as_posix()}"
                files.append((path, name.lstrip("/")))
    return files


def fetch_wheel(cache: Path, pattern: str, args: list[str]) -> Path:
    """The cached wheel matching ``pattern``, downloaded from PyPI with ``args`` if none is."""
    found = sorted(cache.glob(pattern))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        # Downloaded aside and moved in whole, so a build running at the same time never
        # sees half a wheel.
        with tempfile.TemporaryDirectory(dir=cache) as download:
            subprocess.run([*pip, "--quiet", "-d", download, *args], check=True)
            for wheel in Path(download).glob(pattern):
                os.replace(wheel, cache / wheel.name)
        found = sorted(cache.glob(pattern))
    if not found:
        raise SystemExit(f"pip did not download {args[-1]} ({pattern}) into {cache}")
    return found[-1]


def bat_wheel(cache: Path) -> Path:
    """blender-asset-tracer: pure Python, one wheel for every Blender."""
    return fetch_wheel(cache, "blender_asset_tracer-*.whl", [BAT])


def zstandard_wheels(cache: Path, python: str) -> list[Path]:
    """zstandard for ``python`` (``3.11``), one wheel per platform in PLATFORMS."""
    tag = "cp" + python.replace(".", "")
    return [
        fetch_wheel(
            cache,
            f"zstandard-*-{tag}-{tag}-{platform}*.whl",
            ["--python-version", python, "--platform", platform, ZSTANDARD],
        )
        for platform in PLATFORMS.values()
    ]


def manifest(version: str, wheels: list[Path]) -> str:
    listed = ", ".join(f'"./wheels/{w.name}"' for w in wheels)
    platforms = ", ".join(f'"{p}"' for p in PLATFORMS)
    return f"""schema_version = "1.0.0"
id = "{PACKAGE}"
version = "{version}"
name = "framefarm"
tagline = "Submit renders to a framefarm render farm"
maintainer = "framefarm developers"
type = "add-on"
tags = ["Render"]
blender_version_min = "4.2.0"
license = ["SPDX:GPL-3.0-or-later"]
platforms = [{platforms}]
wheels = [{listed}]

[permissions]
network = "Upload the scene's files to the framefarm manager and follow its jobs"
files = "Read the .blend file, its textures and libraries to pack them"
"""


def build_extension(output: Path, wheels: list[Path], version: str) -> Path:
    target = output / f"{PACKAGE}-addon-{version}.zip"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("blender_manifest.toml", manifest(version, wheels))
        for source, name in source_files(""):
            archive.write(source, name)
        for wheel in wheels:
            archive.write(wheel, f"wheels/{wheel.name}")
    return target


def build_legacy(output: Path, bat: Path, zstandard: list[Path], version: str) -> Path:
    """The add-on as a folder, with blender-asset-tracer and zstandard in ``vendor/``.

    The zstandard wheels merge into one package: their compiled modules are named per
    Python and platform (``backend_c.cpython-311-x86_64-linux-gnu.so``, ``….cp310-win_amd64
    .pyd``), so each Python imports its own; the pure-Python files are the same in all.
    """
    target = output / f"{PACKAGE}-addon-{version}-legacy.zip"
    written: set[str] = set()
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for source, name in source_files(PACKAGE):
            archive.write(source, name)
        for wheel_path, package in [
            (bat, "blender_asset_tracer"),
            *[(w, "zstandard") for w in zstandard],
        ]:
            with zipfile.ZipFile(wheel_path) as wheel:
                for name in wheel.namelist():
                    if name.endswith("/"):
                        continue
                    if name.startswith(f"{package}/"):
                        vendored = f"{PACKAGE}/vendor/{name}"
                    elif ".dist-info/licenses/" in name:
                        vendored = f"{PACKAGE}/vendor/{package}-LICENSE"
                    else:
                        continue
                    if vendored not in written:
                        archive.writestr(vendored, wheel.read(name))
                        written.add(vendored)
    return target


def build(output: Path, wheel_cache: Path) -> list[Path]:
    output.mkdir(parents=True, exist_ok=True)
    version = addon_version()
    bat = bat_wheel(wheel_cache)
    extension = build_extension(
        output, [bat, *zstandard_wheels(wheel_cache, EXTENSION_PYTHON)], version
    )
    legacy_zstandard = [w for py in LEGACY_PYTHONS for w in zstandard_wheels(wheel_cache, py)]
    return [extension, build_legacy(output, bat, legacy_zstandard, version)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "dist")
    parser.add_argument("--wheels", type=Path, default=ROOT / "build" / "addon-wheels")
    args = parser.parse_args()
    for path in build(args.output, args.wheels):
        print(path)


if __name__ == "__main__":
    main()
