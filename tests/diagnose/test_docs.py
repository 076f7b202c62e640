"""docs/diagnose.md stays true: its excerpts are lines diagnose prints, every check is listed."""

from __future__ import annotations

import re
from pathlib import Path

from exporter.diagnose.health import HEALTH_CHECKS

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "diagnose.md").read_text()
BROKEN = (REPO / "tests" / "golden" / "diagnose-broken.txt").read_text().splitlines()
LINE = re.compile(r"^(passed|warning|failed|skipped) +[a-z0-9]+\.[a-z0-9_]+ ")


def test_broken_node_excerpt_is_the_golden_output():
    excerpt = DOC.split("Excerpt:", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    lines = [line for line in excerpt.splitlines() if LINE.match(line)]
    assert len(lines) >= 3
    for line in lines:
        assert line in BROKEN, line


def test_every_check_is_documented():
    checks = {
        "nvml.driver",
        "node.pci_bus",
        "gpu.answering",
        "gpu.fallen_off_bus",
        "k8s.device_plugin",
        "k8s.allocatable",
        "k8s.pod",
        "container.devices",
        "cuda.runtime",
        "model.fits",
        "gpu.recovery_action",
        *HEALTH_CHECKS,
    }
    printed = {LINE.match(line).group(0).split()[1] for line in BROKEN if LINE.match(line)}
    assert printed <= checks
    for check in checks:
        assert f"| `{check}`" in DOC, check
