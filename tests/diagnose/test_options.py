"""The diagnose command line: sizes, versions, pods, the exporter's environment variables."""

from __future__ import annotations

import pytest

from exporter.config import DEFAULT_KMSG_PATH, ConfigError
from exporter.diagnose.options import (
    parse_cuda_version,
    parse_options,
    parse_pod,
    parse_simulate,
    parse_size,
)
from exporter.fakenvml import DEFAULT_SCENARIO

GIB = 1024**3


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("40GiB", 40 * GIB),
        ("24G", 24 * GIB),
        ("24Gi", 24 * GIB),
        ("8000MiB", 8000 * 1024**2),
        ("80GB", 80 * 10**9),
        ("1.5T", int(1.5 * 1024**4)),
        ("512", 512),
        (" 2 gib ", 2 * GIB),
    ],
)
def test_sizes(text, size):
    assert parse_size("--need-memory", text) == size


@pytest.mark.parametrize("text", ["", "GiB", "40 parsecs", "-1G", "0", "5i", "1e9"])
def test_bad_sizes_name_the_flag(text):
    with pytest.raises(ConfigError, match=r"^--need-memory: "):
        parse_size("--need-memory", text)


def test_cuda_versions():
    assert parse_cuda_version("--cuda-runtime", "12.4") == (12, 4)
    assert parse_cuda_version("--cuda-runtime", "12.10") > (12, 9)
    for bad in ("12", "12.4.1", "v12.4", "twelve"):
        with pytest.raises(ConfigError, match=r"MAJOR\.MINOR"):
            parse_cuda_version("--cuda-runtime", bad)


def test_pods():
    assert parse_pod("--pod", "ml/train-0") == ("ml", "train-0")
    assert parse_pod("--pod", "kube-system/nvidia-device-plugin-abc.1") == (
        "kube-system",
        "nvidia-device-plugin-abc.1",
    )
    for bad in ("train-0", "ml/", "/x", "ML/Train", "a/b/c"):
        with pytest.raises(ConfigError, match="NAMESPACE/NAME"):
            parse_pod("--pod", bad)


def test_simulate_values(tmp_path):
    scenario = tmp_path / "x.scn"
    scenario.write_text("")
    assert parse_simulate("--simulate", None) is None
    assert parse_simulate("--simulate", "t4") == "t4"
    assert parse_simulate("--simulate", str(scenario)) == str(scenario)
    assert parse_simulate("--simulate", "on") == DEFAULT_SCENARIO
    assert parse_simulate("--simulate", "false") is None
    with pytest.raises(ConfigError, match=r"a100-mig, h100-mig, h100-nvlink, large-16, t4"):
        parse_simulate("--simulate", "nope")


def test_defaults_and_the_exporters_environment(monkeypatch, tmp_path):
    for name in ("GPU_NODE_EXPORTER_PATH_KMSG", "GPU_NODE_EXPORTER_SIMULATE"):
        monkeypatch.delenv(name, raising=False)
    options = parse_options([])
    assert options.kmsg_path == DEFAULT_KMSG_PATH
    assert options.simulate is None
    assert options.timeout_seconds == 5.0
    monkeypatch.setenv("GPU_NODE_EXPORTER_PATH_KMSG", str(tmp_path / "log"))
    monkeypatch.setenv("GPU_NODE_EXPORTER_SIMULATE", "true")
    options = parse_options([])
    assert options.kmsg_path == str(tmp_path / "log")
    assert options.simulate == DEFAULT_SCENARIO
    assert parse_options(["--path.kmsg", "/other"]).kmsg_path == "/other"  # the flag wins


def test_bad_values_exit_2_with_one_line(node, diagnose):
    run = diagnose("--need-memory", "lots")
    assert (run.rc, run.out) == (2, "")
    assert run.err == (
        "gpu-node-exporter diagnose: error: --need-memory: invalid size 'lots' "
        "(use e.g. 40GiB, 24G, 8000MiB)\n"
    )
    with pytest.raises(SystemExit) as exited:
        diagnose("--no-such-flag")
    assert exited.value.code == 2
    run = diagnose("--timeout", "0s")
    assert run.rc == 2
    assert run.err.startswith("gpu-node-exporter diagnose: error: --timeout: ")
