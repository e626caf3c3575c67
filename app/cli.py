"""`cfr-studio …`: sub-commands of the engine; with no sub-command (or only a path) starts the GUI.

Each sub-command lives in its own module under ``app/commands`` and exposes
``add_parser(subparsers)`` (which registers it and sets ``func``) and the function it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from app import __version__

# module name under app.commands, in the order `--help` lists them
COMMAND_MODULES = ["restore", "batch", "upscale", "device_report"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cfr-studio",
        description="Restore faces in old photographs. With no command (or just a photo's path) "
        "the desktop application starts.",
    )
    parser.add_argument("--version", action="version", version=f"cfr-studio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"app.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"app.commands.{name}":
                continue  # that command is not built yet
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--selftest":  # headless end-to-end check of an installation (app/selftest.py)
        from app.selftest import main as selftest_main
        return selftest_main(argv[1:])
    parser = build_parser()
    known = set(parser._subparsers._group_actions[0].choices) if parser._subparsers else set()
    if not argv or (argv[0] not in known and not argv[0].startswith("-")):
        return _start_gui(argv[0] if argv else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


def _start_gui(path: str | None) -> int:
    try:
        from app.gui import run_app
    except ImportError as exc:
        print(f"cfr-studio: the desktop application could not start ({exc}).", file=sys.stderr)
        build_parser().print_help()
        return 2
    return run_app(path)


if __name__ == "__main__":
    sys.exit(main())
