"""The ``framefarm`` command: manager, runner, submit and demo."""

from __future__ import annotations

import argparse
import sys

from framefarm import demo, submit
from manager import __version__
from manager import cli as manager_cli
from runner import cli as runner_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="framefarm", description="A render farm for Blender.")
    parser.add_argument("--version", action="version", version=f"framefarm {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    manager_cli.add_parser(subparsers)
    runner_cli.add_parser(subparsers)
    submit.add_parser(subparsers)
    demo.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
