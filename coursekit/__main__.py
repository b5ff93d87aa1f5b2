"""Instructor command line: ``python -m coursekit <command> --help``.

Each command lives in its own module of this package, which exposes
``register(subparsers)``; modules are imported only when present.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = ["grading", "lms", "analytics", "safety"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursekit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"coursekit.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"coursekit.{name}":
                continue
            raise
        module.register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
