"""``framefarm manager blender add|list``: the Blender builds runners download."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from manager.blender_versions import BlenderVersions
from manager.settings import ManagerSettings


def add_blender_parser(actions: Any) -> None:
    blender = actions.add_parser(
        "blender", help="store Blender builds that runners download when they lack a version"
    ).add_subparsers(dest="blender_action", required=True)
    add = blender.add_parser(
        "add",
        help="store a Blender build (an archive such as blender-4.2.3-linux-x64.tar.xz, "
        "or a folder)",
    )
    add.add_argument("source", type=Path, help="the archive or folder")
    add.add_argument("--version", help="e.g. 4.2.3 (default: read from the archive's name)")
    add.add_argument(
        "--platform", help="platform of the build, e.g. linux-x86_64 (default: this machine's)"
    )
    add.add_argument(
        "--entry",
        help="path of the Blender executable inside (default: the 'blender' nearest the top)",
    )
    blender.add_parser("list", help="the stored builds")


def run_blender(args: argparse.Namespace, settings: ManagerSettings) -> int:
    versions = BlenderVersions(Path(settings.storage).expanduser().resolve())
    if args.blender_action == "add":
        build = versions.add(
            args.source, version=args.version, platform_name=args.platform, entry=args.entry
        )
        print(
            f"stored Blender {build.version} for {build.platform}: {build.filename}, "
            f"{build.size} bytes, sha256 {build.sha256}, runs {build.entry}"
        )
        return 0
    builds = versions.list()
    if not builds:
        print("no Blender builds stored; add one with `framefarm manager blender add ARCHIVE`")
    for build in builds:
        print(
            f"{build.version:<10} {build.platform:<16} {build.size:>12}  {build.sha256[:12]}  "
            f"{build.filename}"
        )
    return 0
