"""Command line: ``python -m exporter.fakenvml {build,path,scenarios}``.

Shell scripts and CI need the library directory for ``LD_LIBRARY_PATH`` without writing
Python; this prints it (building first when needed).
"""

from __future__ import annotations

import argparse
import sys

from . import BUILTIN_SCENARIOS
from .build import build_fake_driver


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m exporter.fakenvml", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="compile the fake driver and print its directory")
    b.add_argument("--force", action="store_true", help="rebuild even if a cached build exists")
    sub.add_parser("path", help="print the directory holding libnvidia-ml.so.1 (builds if needed)")
    sub.add_parser("scenarios", help="list the built-in scenario names")
    args = parser.parse_args(argv)
    if args.command == "scenarios":
        for name in BUILTIN_SCENARIOS:
            print(name)
        return 0
    try:
        print(build_fake_driver(force=getattr(args, "force", False)))
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
