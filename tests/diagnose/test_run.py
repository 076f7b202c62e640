"""diagnose end to end: golden text output, the --json schema, exit codes, speed, hangs.

Golden files (tests/golden/diagnose-*.txt) hold the text output at a frozen scenario time and
an injected host (now, uptime, node name); the test directory's path is written as $TMP.
Regenerate after an intended change with:
    UPDATE_GOLDEN=1 python -m pytest tests/diagnose/test_run.py -k golden
and review the diff like code: it is what an engineer reads at 3 a.m.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from exporter.fakenvml.control import FaultFile
from tests.diagnose.conftest import BUSES, kmsg_record, xid_line
from tests.fakekubelet import Behaviour, FakeKubelet, allocatable_reply, pods_reply

GOLDEN = Path(__file__).parent.parent / "golden"
REPO = Path(__file__).resolve().parents[2]
UUIDS = [f"GPU-{index:08x}-1111-2222-3333-444444444444" for index in range(8)]

# The --json document, as a JSON-Schema-shaped dict checked by `conforms` below (no new deps).
FINDING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["check", "level", "gpu", "evidence", "next_step"],
    "additionalProperties": False,
    "properties": {
        "check": {"type": "string", "pattern": r"^[a-z0-9]+\.[a-z0-9_]+$"},
        "level": {"enum": ["passed", "warning", "failed", "skipped"]},
        "gpu": {"type": ["string", "null"], "pattern": r"^\d+$"},
        "evidence": {"type": "string", "minLength": 1},
        "next_step": {"type": "string"},
    },
}
COUNT = {"type": "integer", "minimum": 0}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["version", "node", "checks", "summary", "exit_code"],
    "additionalProperties": False,
    "properties": {
        "version": {"type": "string", "minLength": 1},
        "node": {"type": "string"},
        "checks": {"type": "array", "items": FINDING_SCHEMA, "minItems": 1},
        "summary": {
            "type": "object",
            "required": ["passed", "warning", "failed", "skipped"],
            "additionalProperties": False,
            "properties": dict.fromkeys(("passed", "warning", "failed", "skipped"), COUNT),
        },
        "exit_code": {"enum": [0, 1, 2]},
    },
}
_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "null": type(None),
}


def conforms(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """Problems of `value` against the subset of JSON Schema used above (empty: conforms)."""
    import re

    problems: list[str] = []
    types = schema.get("type")
    if types is not None:
        allowed = tuple(_TYPES[name] for name in ([types] if isinstance(types, str) else types))
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            return [f"{where}: {type(value).__name__} is not {types}"]
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: {value!r} not in {schema['enum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            problems.append(f"{where}: too short")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(f"{where}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, int) and value < schema.get("minimum", value):
        problems.append(f"{where}: below minimum")
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            if key not in value:
                problems.append(f"{where}: missing {key}")
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key in properties:
                problems += conforms(item, properties[key], f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                problems.append(f"{where}: unexpected {key}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            problems.append(f"{where}: fewer than {schema['minItems']} items")
        for position, item in enumerate(value):
            problems += conforms(item, schema.get("items", {}), f"{where}[{position}]")
    return problems


def test_schema_checker_catches_what_it_should():
    good = {"check": "gpu.xid", "level": "passed", "gpu": "0", "evidence": "x", "next_step": ""}
    assert conforms(good, FINDING_SCHEMA) == []
    assert conforms({**good, "level": "ok"}, FINDING_SCHEMA)
    assert conforms({**good, "gpu": 0}, FINDING_SCHEMA)
    assert conforms({**good, "extra": 1}, FINDING_SCHEMA)
    assert conforms({k: v for k, v in good.items() if k != "evidence"}, FINDING_SCHEMA)


def _compare_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed: see the module docstring"


def _broken_node(node) -> tuple[list[str], FakeKubelet]:
    """A node with a problem for most checks: the golden file shows each one's wording."""
    faults = FaultFile(node.root / "faults")
    faults.lost(6)
    os.environ["FAKE_NVML_FAULTS"] = str(faults.path)  # restored by the suite's conftest
    extra = "".join(f"[gpu {index}]\nuuid = {uuid}\n" for index, uuid in enumerate(UUIDS))
    extra += (
        "[gpu 0]\npci_bus_id = 00000000:4E:00.0\n[gpu 3]\npci_bus_id = 00000000:07:00.0\n"
        "[gpu 1]\necc_uncorrected_volatile = 2\necc_uncorrected_aggregate = 2\n"
        "remapped_rows = 0 2 1 0\n"
        "[gpu 2]\nclocks_event_reasons = 0x20\npcie_current = 4 16\nutilization_gpu = 95\n"
        "[gpu 5]\nnvlink_inactive = 7\npersistence_mode = off\n"
    )
    node.write_kmsg(
        kmsg_record(xid_line("07", 79, "GPU has fallen off the bus."), 12 * 60, seq=7),
        kmsg_record(xid_line(BUSES[2], 13, "Graphics SM Warp Exception"), 2 * 3600, seq=8),
    )
    node.pci()
    node.devices(("nvidiactl", *(f"nvidia{i}" for i in range(8))))
    kubelet = FakeKubelet(
        node.socket,
        Behaviour(
            allocatable_reply=allocatable_reply([("nvidia.com/gpu", UUIDS[:6])]),
            list_reply=pods_reply(("ml", "notebook", [("jupyter", [])])),
        ),
    ).start()
    args = node.args(
        "--simulate",
        node.scenario(extra, name="broken"),
        "--path.sysfs",
        str(node.sysfs),
        "--path.dev",
        str(node.dev),
        "--pod",
        "ml/notebook",
        "--cuda-runtime",
        "12.8",
        "--need-memory",
        "90GiB",
    )
    return args, kubelet


def test_golden_healthy_node(node, diagnose):
    node.pci()
    node.devices()
    run = diagnose(
        *node.args(
            "--simulate",
            "h100-nvlink",
            "--path.sysfs",
            str(node.sysfs),
            "--path.dev",
            str(node.dev),
            "--cuda-runtime",
            "12.4",
            "--need-memory",
            "16GiB",
        )
    )
    assert run.rc == 0
    _compare_golden("diagnose-healthy.txt", run.out.replace(str(node.root), "$TMP"))


def test_golden_broken_node(node, diagnose):
    args, kubelet = _broken_node(node)
    try:
        run = diagnose(*args)
        as_json = diagnose(*args, "--json")
    finally:
        kubelet.stop()
    assert run.rc == 2
    _compare_golden("diagnose-broken.txt", run.out.replace(str(node.root), "$TMP"))
    doc = as_json.doc
    assert conforms(doc, SCHEMA) == []
    assert {entry["level"] for entry in doc["checks"]} == {"passed", "warning", "failed"}
    assert doc["exit_code"] == as_json.rc == 2
    assert sum(doc["summary"].values()) == len(doc["checks"])
    assert run.out.splitlines()[-1] == (
        f"{doc['summary']['passed']} passed, {doc['summary']['warning']} warning, "
        f"{doc['summary']['failed']} failed, {doc['summary']['skipped']} skipped: exit code 2"
    )


@pytest.mark.parametrize(
    ("extra", "code"),
    [("", 0), ("[gpu 0]\npersistence_mode = off\n", 1), ("[gpu 0]\nnvlink_inactive = 1\n", 2)],
)
def test_exit_code_and_json_schema(node, diagnose, extra, code):
    run = diagnose(*node.args("--simulate", node.scenario(extra), "--json"))
    assert conforms(run.doc, SCHEMA) == []
    assert run.rc == run.doc["exit_code"] == code
    assert run.doc["node"] == "gpu-node-1"


def _subprocess(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> tuple[int, str, str, float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "exporter.diagnose", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return result.returncode, result.stdout, result.stderr, time.monotonic() - started


def test_python_m_exporter_diagnose_on_a_healthy_node_is_fast(node):
    args = node.args("--simulate=h100-nvlink")
    _subprocess(args, {})  # warm the fake driver's build cache
    rc, out, err, wall = _subprocess(args, {})
    print(f"\ndiagnose --simulate=h100-nvlink: {wall:.2f} s wall, interpreter start included")
    assert rc == 0, err
    assert out.startswith("gpu-node-exporter diagnose ")
    assert "passed   gpu.nvlink            GPUs 0-7       18 of 18 links up" in out
    assert wall < 2.0


def test_hung_nvml_fails_within_the_timeout(node):
    faults = FaultFile(node.root / "faults")
    faults.add_fault("nvmlDeviceGetCount", None, "SUCCESS", delay_ms=30_000)
    rc, out, err, wall = _subprocess(
        node.args("--simulate=h100-nvlink", "--timeout", "1s", "--json"), faults.env(), timeout=30
    )
    assert rc == 2, err
    doc = json.loads(out)
    driver = next(entry for entry in doc["checks"] if entry["check"] == "nvml.driver")
    assert (driver["level"], driver["evidence"]) == ("failed", "NVML: no answer in 1 s")
    assert wall < 5.0  # 1 s bound plus interpreter start and imports
