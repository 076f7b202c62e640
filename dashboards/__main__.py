"""`python -m dashboards [--check]`: write dashboards/json/*.json, or fail if they are stale.

The JSON is committed (users import it, the deploy ConfigMaps embed it) and generated only
here, so a hand edit shows up as drift in CI instead of being lost at the next regeneration.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dashboards import catalog
from dashboards.panels import build, encode

OUTPUT = Path(__file__).resolve().parent / "json"


def render_all() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {f"{spec.uid}.json": encode(build(spec)) for spec in catalog.specs()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="directory to write")
    args = parser.parse_args(argv)
    wanted = render_all()
    existing = {path.name for path in args.output.glob("*.json")} if args.output.is_dir() else set()
    stale = sorted(
        name
        for name, text in wanted.items()
        if not (args.output / name).is_file() or (args.output / name).read_text() != text
    )
    extra = sorted(existing - set(wanted))
    if args.check:
        for name in stale:
            print(f"{args.output / name}: stale; run `make generate`", file=sys.stderr)
        for name in extra:
            print(f"{args.output / name}: not produced by the generator", file=sys.stderr)
        return 1 if stale or extra else 0
    args.output.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (args.output / name).write_text(wanted[name])
        print(f"wrote {args.output / name}")
    for name in extra:
        (args.output / name).unlink()
        print(f"removed {args.output / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
