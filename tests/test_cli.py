from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.cli import FLAGS, config_from_args, env_name, known_env, unknown_env
from exporter.config import ConfigError
from exporter.fakenvml import BUILTIN_SCENARIOS
from exporter.fakenvml.build import SCENARIO_SOURCE_DIR
from exporter.fakenvml.control import FaultFile
from tests.tools import ExporterProcess, wait_until


def test_defaults_follow_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):  # every flag's fallback: the defaults, not this shell's settings
        if name.startswith("GPU_NODE_EXPORTER_"):
            monkeypatch.delenv(name)
    config = config_from_args([])
    assert config.listen.port == 9445
    assert config.listen.host == ""
    assert config.interval_seconds == 5.0
    assert config.kmsg_path == "/dev/kmsg"
    assert config.kmsg is True
    assert config.xid_nvml_events is True
    assert config.pod_resources_socket == "/var/lib/kubelet/pod-resources/kubelet.sock"
    assert config.log_format == "json"
    assert config.simulate is None


def test_environment_fallback_and_flag_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPU_NODE_EXPORTER_COLLECTION_INTERVAL", "2s")
    monkeypatch.setenv("GPU_NODE_EXPORTER_LOG_LEVEL", "debug")
    assert config_from_args([]).interval_seconds == 2.0
    assert config_from_args([]).log_level == "debug"
    assert config_from_args(["--collection.interval=3s"]).interval_seconds == 3.0


def test_bad_environment_value_names_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPU_NODE_EXPORTER_COLLECTION_INTERVAL", "soon")
    with pytest.raises(ConfigError, match="GPU_NODE_EXPORTER_COLLECTION_INTERVAL"):
        config_from_args([])


def test_kmsg_collector_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config_from_args(["--collector.kmsg=false"]).kmsg is False
    monkeypatch.setenv("GPU_NODE_EXPORTER_COLLECTOR_KMSG", "false")
    assert config_from_args([]).kmsg is False
    with pytest.raises(ConfigError, match=r"--collector\.kmsg"):
        config_from_args(["--collector.kmsg=maybe"])


def test_simulate_flag_defaults_to_the_mig_node() -> None:
    assert config_from_args(["--simulate"]).simulate == "a100-mig"
    assert config_from_args(["--simulate=t4"]).simulate == "t4"


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--collection.interval=fast"], "--collection.interval"),
        (["--web.listen-address=nowhere"], "--web.listen-address"),
        (["--log.level=loud"], "--log.level"),
        (["--log.format=xml"], "--log.format"),
        (["--simulate=/no/such/scenario.scn"], "--simulate"),
        (["--no-such-flag"], "--no-such-flag"),
    ],
)
def test_invalid_values_exit_2_with_one_line(args: list[str], flag: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "exporter", *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert flag in lines[0]
    assert lines[0].startswith("gpu-node-exporter: error: ")


def test_help_documents_every_flag_and_its_variable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for flag in (
        "--web.listen-address",
        "--web.config.file",
        "--collection.interval",
        "--simulate",
        "--path.kmsg",
        "--path.pod-resources-socket",
        "--log.level",
        "--log.format",
    ):
        assert flag in text
        assert env_name(flag) in text


def _exporter(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GPU_NODE_EXPORTER_")}
    clean.update({k: v for k, v in os.environ.items() if k == "GPU_NODE_EXPORTER_CACHE"})
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
    )


# --- --simulate from the environment -----------------------------------------------------------


@pytest.mark.parametrize("word", ["true", "1", "yes", "on"])
def test_simulate_env_true_means_the_default_scenario(
    monkeypatch: pytest.MonkeyPatch, word: str
) -> None:
    monkeypatch.setenv("GPU_NODE_EXPORTER_SIMULATE", word)
    assert config_from_args([]).simulate == "a100-mig"


@pytest.mark.parametrize("word", ["false", "0", "no", "off", ""])
def test_simulate_env_false_means_a_real_driver(monkeypatch: pytest.MonkeyPatch, word: str) -> None:
    monkeypatch.setenv("GPU_NODE_EXPORTER_SIMULATE", word)
    assert config_from_args([]).simulate is None


def test_simulate_env_names_a_builtin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPU_NODE_EXPORTER_SIMULATE", "t4")
    assert config_from_args([]).simulate == "t4"
    assert config_from_args(["--simulate=false"]).simulate is None  # the flag wins


def test_bad_simulate_env_exits_2_listing_the_builtin_scenarios() -> None:
    result = _exporter(env={"GPU_NODE_EXPORTER_SIMULATE": "maybe"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "GPU_NODE_EXPORTER_SIMULATE" in lines[0]
    assert "'maybe'" in lines[0]
    assert "not a readable file" not in lines[0]
    for name in BUILTIN_SCENARIOS:
        assert name in lines[0]


# --- a broken scenario file: exit 2 before start, naming file, line and field -----------------

BROKEN_SCENARIOS = [
    # (file text, line, field named in the message)
    ("[system]\ngpu_count = 1\n[gpu 0]\nname = X\npower_w = lots\n", 5, "power_w"),
    ("[system]\ngpu_count = 1\n[gpu 0]\nbogus_key = 1\n", 4, "bogus_key"),
    ("[system]\n\n# c\ngpu_count = many\n", 4, "gpu_count"),
    ("[system]\ngpu_count = 1\n[gpu 0]\nmig_profile = name=1g.10gb id=zz\n", 4, "mig_profile"),
]


@pytest.mark.parametrize(("text", "line", "field"), BROKEN_SCENARIOS)
def test_broken_scenario_file_exits_2_naming_file_line_and_field(
    tmp_path: Path, text: str, line: int, field: str
) -> None:
    scenario = tmp_path / "broken.scn"
    scenario.write_text(text)
    result = _exporter(f"--simulate={scenario}")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # no raw driver text, no retry loop
    assert lines[0].startswith(f"gpu-node-exporter: error: --simulate: {scenario}:{line}: ")
    assert field in lines[0]
    assert "UNKNOWN" not in lines[0]


def test_broken_scenario_from_the_environment_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = tmp_path / "broken.scn"
    scenario.write_text(BROKEN_SCENARIOS[0][0])
    monkeypatch.setenv("GPU_NODE_EXPORTER_SIMULATE", str(scenario))
    with pytest.raises(ConfigError, match=r"GPU_NODE_EXPORTER_SIMULATE\).*broken\.scn:5: power_w"):
        config_from_args([])


def test_a_valid_scenario_file_is_accepted(tmp_path: Path) -> None:
    scenario = tmp_path / "t4-copy.scn"
    shutil.copy(SCENARIO_SOURCE_DIR / "t4.scn", scenario)
    assert config_from_args([f"--simulate={scenario}"]).simulate == str(scenario)


def test_driver_messages_at_run_time_are_structured_log_events(tmp_path: Path) -> None:
    """A scenario broken while the exporter runs: the driver's reason arrives as a JSON event,
    never as raw text in the log stream (it used to print on every nvmlInit retry)."""
    scenario = tmp_path / "node.scn"
    shutil.copy(SCENARIO_SOURCE_DIR / "t4.scn", scenario)
    faults = FaultFile(tmp_path / "faults")
    exporter = ExporterProcess(
        f"--simulate={scenario}",
        "--collection.interval=100ms",
        "--collector.nvml-events=false",  # its nvmlInit reference would keep the scenario loaded
        "--collector.kmsg=false",
        "--collector.pod-attribution=off",
        env=faults.env(),
    )
    try:
        exporter.wait_ready()
        scenario.write_text(BROKEN_SCENARIOS[0][0])
        # NVML stops answering: the poller shuts NVML down and re-initialises, which reloads
        # the (now broken) scenario.
        faults.add_fault("nvmlDeviceGetCount", None, "UNKNOWN")
        wait_until(
            lambda: '"fake_nvml_message"' in exporter.log(), 30, "the driver's message in the log"
        )
    finally:
        code, _ = exporter.stop()
    assert code == 0
    events = [json.loads(line) for line in exporter.log().splitlines()]  # every line is JSON
    messages = [e for e in events if e["event"] == "fake_nvml_message"]
    assert messages[0]["level"] == "warning"
    assert f"{scenario}:5: power_w" in messages[0]["message"]


# --- one boolean vocabulary -------------------------------------------------------------------

BOOLEAN_FLAGS = [flag for flag, default, _ in FLAGS if default in ("true", "false")]


def test_boolean_flags_are_found() -> None:
    assert {"--collector.kmsg", "--collector.processes", "--collector.udev"} <= set(BOOLEAN_FLAGS)


@pytest.mark.parametrize("flag", BOOLEAN_FLAGS)
@pytest.mark.parametrize(("word", "expected"), [("on", True), ("off", False), ("yes", True)])
def test_every_boolean_flag_takes_on_and_off(flag: str, word: str, expected: bool) -> None:
    attribute = {
        "--collector.kmsg": "kmsg",
        "--collector.nvml-events": "xid_nvml_events",
        "--collector.udev": "udev",
        "--collector.processes": "processes",
    }[flag]
    assert getattr(config_from_args([f"{flag}={word}"]), attribute) is expected


@pytest.mark.parametrize(
    ("word", "expected"),
    [("auto", "auto"), ("on", "on"), ("true", "on"), ("1", "on"), ("off", "off"), ("no", "off")],
)
def test_pod_attribution_takes_auto_and_the_boolean_words(word: str, expected: str) -> None:
    assert config_from_args([f"--collector.pod-attribution={word}"]).pod_attribution == expected


# --- unknown GPU_NODE_EXPORTER_* variables ----------------------------------------------------


def test_unknown_variables_get_the_closest_known_name() -> None:
    environ = {
        "GPU_NODE_EXPORTER_COLECTOR_PROCESSES": "true",
        "GPU_NODE_EXPORTER_LOG_LEVLE": "debug",
        "GPU_NODE_EXPORTER_ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ": "1",
        "GPU_NODE_EXPORTER_COLLECTION_INTERVAL": "5s",  # known
        "GPU_NODE_EXPORTER_CACHE": "/tmp/x",  # known: the fake driver's build cache
        "PATH": "/usr/bin",  # not ours
    }
    assert unknown_env(environ) == [
        ("GPU_NODE_EXPORTER_COLECTOR_PROCESSES", "GPU_NODE_EXPORTER_COLLECTOR_PROCESSES"),
        ("GPU_NODE_EXPORTER_LOG_LEVLE", "GPU_NODE_EXPORTER_LOG_LEVEL"),
        ("GPU_NODE_EXPORTER_ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ", None),
    ]


def test_every_flag_variable_is_known() -> None:
    for flag, _, _ in FLAGS:
        assert env_name(flag) in known_env()
    assert env_name("--simulate") in known_env()
    assert unknown_env({env_name(flag): "x" for flag, _, _ in FLAGS}) == []


def test_unknown_variable_is_a_warning_at_start() -> None:
    exporter = ExporterProcess(
        "--simulate=t4",
        "--collector.kmsg=false",
        env={"GPU_NODE_EXPORTER_COLECTOR_PROCESSES": "true"},
    )
    try:
        exporter.wait_http()
    finally:
        code, _ = exporter.stop()
    assert code == 0
    events = [json.loads(line) for line in exporter.log().splitlines()]
    warnings = [e for e in events if e["event"] == "unknown_environment_variable"]
    assert warnings == [
        {
            "variable": "GPU_NODE_EXPORTER_COLECTOR_PROCESSES",
            "did_you_mean": "GPU_NODE_EXPORTER_COLLECTOR_PROCESSES",
            "event": "unknown_environment_variable",
            "level": "warning",
            "timestamp": warnings[0]["timestamp"],
        }
    ]


def test_diagnose_subcommand_runs_the_checklist() -> None:
    # `gpu-node-exporter diagnose ...` is the same program as `python -m exporter.diagnose`.
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "diagnose", "--simulate=h100-nvlink", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = json.loads(result.stdout)
    assert result.returncode == report["exit_code"], result.stderr
    assert {check["check"] for check in report["checks"]} >= {"nvml.driver", "gpu.xid"}
