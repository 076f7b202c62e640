"""Generate the README's alert table from alerts/rules/*.yaml, so it cannot drift.

`python scripts/gen_alert_docs.py README.md` rewrites the block between
`<!-- alerts:start -->` and `<!-- alerts:end -->`; `--check` exits 1 when it is stale (CI).
Why a script and not exporter.docs: the rules are not part of the installed package.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from exporter.docs import replace_section, sync_file

ROOT = Path(__file__).resolve().parent.parent
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def alert_table(rules_dir: Path = ROOT / "alerts" / "rules") -> str:
    """One row per alert: name, severity, for, summary and its runbook section."""
    rows: list[tuple[int, str, str]] = []
    for path in sorted(rules_dir.glob("*.yaml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" not in rule:
                    continue
                severity = rule["labels"]["severity"]
                url = rule["annotations"]["runbook_url"]
                runbook = "docs/runbooks/" + url.split("/docs/runbooks/", 1)[1]
                row = (
                    f"| `{rule['alert']}` | {severity} | {rule.get('for', '0s')} | "
                    f"{rule['annotations']['summary']} | [runbook]({runbook}) |"
                )
                rows.append((SEVERITY_ORDER[severity], rule["alert"], row))
    lines = ["| alert | severity | for | summary | runbook |", "| --- | --- | --- | --- | --- |"]
    lines += [row for _, _, row in sorted(rows)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/gen_alert_docs.py")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    table = alert_table()
    return sync_file(args.path, lambda text: replace_section(text, "alerts", table), args.check)


if __name__ == "__main__":
    raise SystemExit(main())
