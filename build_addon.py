"""Build the installable add-on zip into dist/ (legacy add-on layout: framefarm/__init__.py).

Usage: python build_addon.py [--output DIR]
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ADDON = ROOT / "addon"
SHARED = ROOT / "shared"
PACKAGE = "framefarm"


def addon_files() -> list[tuple[Path, str]]:
    """(source, name in the zip) for the add-on and the stdlib-only shared code it bundles."""
    files = []
    for source_root, prefix in ((ADDON, PACKAGE), (SHARED, f"{PACKAGE}/shared")):
        for path in sorted(source_root.rglob("*.py")):
            if "__pycache__" not in path.parts:
                files.append((path, f"{prefix}/{path.relative_to(source_root).as_posix()}"))
    return files


def build(output: Path) -> Path:
    output.mkdir(parents=True, exist_ok=True)
    target = output / f"{PACKAGE}-addon.zip"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for source, name in addon_files():
            archive.write(source, name)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "dist")
    print(build(parser.parse_args().output))


if __name__ == "__main__":
    main()
