from __future__ import annotations

import os
import subprocess
import sys

import pytest

from exporter.cli import config_from_args, env_name
from exporter.config import ConfigError


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
