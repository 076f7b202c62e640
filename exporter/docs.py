"""Generate the README's metric reference and flag table from the code, so they cannot drift.

`python -m exporter.docs README.md` rewrites the parts between the marker comments;
`python -m exporter.docs --check README.md` exits 1 when they are stale (CI runs it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from exporter import metrics
from exporter.cli import build_parser, env_name

GROUP_TITLES = {
    "identity": "Identity",
    "utilization": "Utilization",
    "memory": "Memory",
    "power": "Power and energy",
    "thermal": "Temperature and cooling",
    "clocks": "Clocks and clock-event (throttle) reasons",
    "ecc": "ECC, retired pages, row remapping",
    "pcie": "PCIe",
    "nvlink": "NVLink",
    "profiling": "Profiling (GPM: SM, tensor, DRAM activity; Hopper and newer)",
    "processes": "Processes",
    "mig": "MIG devices",
    "exporter": "The exporter's own health",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def metric_reference() -> str:
    """Markdown tables of every catalog family, grouped as in the catalog."""
    lines: list[str] = []
    groups: dict[str, list[metrics.Family]] = {}
    for family in metrics.CATALOG:
        groups.setdefault(family.group, []).append(family)
    for group, families in groups.items():
        lines.append(f"#### {GROUP_TITLES.get(group, group.capitalize())}\n")
        lines.append("| metric | type | labels | meaning |")
        lines.append("| --- | --- | --- | --- |")
        for family in families:
            labels = ", ".join(f"`{label}`" for label in family.labels) or "-"
            lines.append(f"| `{family.name}` | {family.kind} | {labels} | {_cell(family.help)} |")
        lines.append("")
    return "\n".join(lines)


def flag_table() -> str:
    """Markdown table of every command-line flag with its environment variable."""
    lines = ["| flag | environment variable | default | meaning |", "| --- | --- | --- | --- |"]
    for action in build_parser()._actions:  # argparse has no public iterator over actions
        flag = next((opt for opt in action.option_strings if opt.startswith("--")), None)
        if flag is None or flag in ("--help", "--version"):
            continue
        help_text = (action.help or "").split(" Default:")[0].split(" Env:")[0]
        default = "(off)" if flag == "--simulate" else _default_of(flag, action.default)
        lines.append(f"| `{flag}` | `{env_name(flag)}` | {default} | {_cell(help_text)} |")
    return "\n".join(lines) + "\n"


def _default_of(flag: str, current: object) -> str:
    """The documented default, not the value this process happens to see in its environment."""
    for name, default, _ in _declared_flags():
        if name == flag:
            return f"`{default}`" if default else "(unset)"
    return f"`{current}`" if current else "(unset)"


def _declared_flags() -> tuple[tuple[str, str | None, str], ...]:
    from exporter.cli import FLAGS

    return FLAGS


SECTIONS = {"metrics": metric_reference, "flags": flag_table}


def replace_section(text: str, name: str, content: str) -> str:
    """Replace the `<!-- NAME:start -->...<!-- NAME:end -->` block with `content`."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise ValueError(f"markers for section {name!r} are missing")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{content}{end}{tail}"


def render_into(text: str) -> str:
    """Replace every generated block of the exporter's own sections with fresh content."""
    for name, produce in SECTIONS.items():
        text = replace_section(text, name, produce())
    return text


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or with --check, verify) the generated sections of a Markdown file."""
    parser = argparse.ArgumentParser(prog="python -m exporter.docs")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    return sync_file(args.path, render_into, check=args.check)


def sync_file(path: Path, render: Callable[[str], str], check: bool) -> int:
    """Write `render(current text)` to `path`, or with `check` return 1 if it differs."""
    current = path.read_text()
    fresh = render(current)
    if check:
        if fresh != current:
            sys.stderr.write(f"{path} is stale: run 'make generate' and commit it\n")
            return 1
        return 0
    path.write_text(fresh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
