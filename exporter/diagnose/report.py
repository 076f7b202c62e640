"""How a diagnose run is told: a text checklist for people, one JSON document for automation.

Why the text form merges GPUs: a healthy 8-GPU node would otherwise print every health check
eight times. GPUs whose result, evidence and next step are identical share one line
("GPUs 0-7"); anything that differs (a failing GPU, a different count) gets its own line. The
JSON form keeps one entry per GPU and check, and both count the same entries in the summary.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from exporter import __version__
from exporter.diagnose.base import gpu_list
from exporter.verdict import LEVELS, Finding, Level

EXIT_CODES: dict[Level, int] = {"passed": 0, "skipped": 0, "warning": 1, "failed": 2}


def exit_code(findings: Sequence[Finding]) -> int:
    """0 all passed, 1 warnings, 2 failures; skipped checks do not count."""
    return max((EXIT_CODES[finding.level] for finding in findings), default=0)


def summary(findings: Sequence[Finding]) -> dict[str, int]:
    """Entries per level, every level present."""
    counts: dict[str, int] = dict.fromkeys(LEVELS, 0)
    for finding in findings:
        counts[finding.level] += 1
    return counts


def to_json(findings: Sequence[Finding], node: str) -> str:
    """The --json document: version, node, checks, summary, exit_code."""
    document = {
        "version": __version__,
        "node": node,
        "checks": [
            {
                "check": f.check,
                "level": f.level,
                "gpu": f.gpu,
                "evidence": f.evidence,
                "next_step": f.next_step,
            }
            for f in findings
        ],
        "summary": summary(findings),
        "exit_code": exit_code(findings),
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def lines(findings: Sequence[Finding]) -> list[tuple[Level, str, str, str]]:
    """(level, check, where, text) per printed line, GPUs with identical results merged."""
    groups: dict[tuple[str, Level, str, str, bool], list[str]] = {}
    for f in findings:
        key = (f.check, f.level, f.evidence, f.next_step, f.gpu is None)
        groups.setdefault(key, []).append(f.gpu or "")
    out: list[tuple[Level, str, str, str]] = []
    for (check, level, evidence, step, node_wide), gpus in groups.items():
        text = f"{evidence}. {step}" if step else evidence
        if node_wide:
            out.extend((level, check, "node", text) for _ in gpus)
        else:
            out.append((level, check, gpu_list(gpus), text))
    return out


def to_text(findings: Sequence[Finding], node: str, simulate: str | None) -> str:
    """The checklist, one line per check, then the summary and the exit code."""
    source = f" (simulated: {simulate})" if simulate else ""
    rows = [f"gpu-node-exporter diagnose {__version__} on node {node}{source}", ""]
    for level, check, where, text in lines(findings):
        rows.append(f"{level:<8} {check:<21} {where:<14} {text}")
    counts = summary(findings)
    total = ", ".join(f"{counts[level]} {level}" for level in LEVELS)
    rows += ["", f"{total}: exit code {exit_code(findings)}"]
    return "\n".join(rows) + "\n"
