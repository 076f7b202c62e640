"""diagnose's output: merged text lines, exit codes, summary counts."""

from __future__ import annotations

import json

from exporter.diagnose.base import gpu_list
from exporter.diagnose.report import exit_code, lines, summary, to_json, to_text
from exporter.verdict import Finding


def _f(level, gpu="0", check="gpu.thermal", evidence="fine", step=""):
    return Finding(check, level, gpu, evidence, step)


def test_exit_codes():
    assert exit_code([]) == 0
    assert exit_code([_f("passed"), _f("skipped")]) == 0
    assert exit_code([_f("passed"), _f("warning")]) == 1
    assert exit_code([_f("warning"), _f("failed"), _f("skipped")]) == 2


def test_gpus_with_identical_results_share_a_line():
    findings = [
        *(_f("passed", str(gpu)) for gpu in (0, 1, 2, 4, 5, 7)),
        _f("warning", "3", evidence="hot", step="cool it"),
        _f("passed", None, check="node.mixed_models", evidence="one model"),
    ]
    assert lines(findings) == [
        ("passed", "gpu.thermal", "GPUs 0-2,4-5,7", "fine"),
        ("warning", "gpu.thermal", "GPU 3", "hot. cool it"),
        ("passed", "node.mixed_models", "node", "one model"),
    ]


def test_gpu_list():
    assert gpu_list(["0", "1", "2", "3"]) == "GPUs 0-3"
    assert gpu_list(["5"]) == "GPU 5"
    assert gpu_list(["10", "9", "0"]) == "GPUs 0,9-10"
    assert gpu_list([]) == "no GPU"


def test_text_and_json_count_the_same_entries():
    findings = [_f("passed", str(gpu)) for gpu in range(8)] + [_f("failed", None, "k8s.pod")]
    text = to_text(findings, "n1", "t4")
    assert text.splitlines()[0].endswith(" on node n1 (simulated: t4)")
    assert text.splitlines()[-1] == "8 passed, 0 warning, 1 failed, 0 skipped: exit code 2"
    doc = json.loads(to_json(findings, "n1"))
    assert (
        doc["summary"]
        == summary(findings)
        == {
            "passed": 8,
            "warning": 0,
            "failed": 1,
            "skipped": 0,
        }
    )
    assert len(doc["checks"]) == 9
    assert doc["exit_code"] == 2
