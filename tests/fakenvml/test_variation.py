"""[system] gpu_variation: GPUs of one scenario differ in phase and level, deterministically."""

from __future__ import annotations

import ctypes
import math
from pathlib import Path

import pytest

from exporter.fakenvml.control import FakeNvmlControl

from .conftest import InitFn
from .curves import Square, sample_value, scenario

pynvml = pytest.importorskip("pynvml")

MASK = (1 << 64) - 1


def deviation(i: int) -> float:
    """d_i as documented: the top 53 bits of splitmix64(i) as u in [0, 1), d = 2u - 1."""
    x = (i + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    x ^= x >> 31
    return 2.0 * (x >> 11) / 2.0**53 - 1.0


def _text(variation: float, extra: str = "") -> str:
    return f"""
[system]
gpu_count = 4
gpu_variation = {variation}
[gpu *]
architecture = hopper
power_limit_w = 700
power_w = 300 50 40
temperature = 50 5 80
utilization_gpu = square 90 10 8 2
utilization_memory = 40
{extra}
"""


def _h(i: int) -> object:
    return pynvml.nvmlDeviceGetHandleByIndex(i)


def _power_w(i: int, variation: float, t: float) -> float:
    base = 300 * (1 + variation * deviation(i))
    return base + 50 * math.sin(2 * math.pi * (t + i * 40 / 4) / 40)


def _read(i: int) -> tuple[int, int, int]:
    h = _h(i)
    return (
        pynvml.nvmlDeviceGetPowerUsage(h),
        pynvml.nvmlDeviceGetTemperature(h, 0),
        pynvml.nvmlDeviceGetUtilizationRates(h).memory,
    )


def test_no_variation_gives_identical_gpus(
    nvml: InitFn, ctl: FakeNvmlControl, tmp_path: Path
) -> None:
    nvml(scenario(tmp_path, _text(0)))
    for t in (0.0, 7.3, 31.0):
        ctl.set_time(t)
        assert len({_read(i) for i in range(4)}) == 1


def test_variation_shifts_phase_and_scales_the_base(
    nvml: InitFn, ctl: FakeNvmlControl, tmp_path: Path
) -> None:
    nvml(scenario(tmp_path, _text(0.2)))
    assert all(-1 <= deviation(i) <= 1 for i in range(64))
    for t in (0.0, 7.3, 31.0):
        ctl.set_time(t)
        power = [pynvml.nvmlDeviceGetPowerUsage(_h(i)) for i in range(4)]
        assert len(set(power)) == 4
        for i in range(4):
            assert power[i] == round(_power_w(i, 0.2, t) * 1000)
    # a constant gets only the level: memory utilization 40 * (1 + 0.2 d_i)
    ctl.set_time(5.0)
    memory = [pynvml.nvmlDeviceGetUtilizationRates(_h(i)).memory for i in range(4)]
    assert memory == [round(40 * (1 + 0.2 * deviation(i))) for i in range(4)]
    # energy over one full period: the varied base times the period
    ctl.set_time(40.0)
    for i in range(4):
        energy_j = pynvml.nvmlDeviceGetTotalEnergyConsumption(_h(i)) / 1000
        assert energy_j == pytest.approx(300 * (1 + 0.2 * deviation(i)) * 40, abs=0.01)


def test_square_waves_get_only_the_phase(
    nvml: InitFn, ctl: FakeNvmlControl, tmp_path: Path
) -> None:
    nvml(scenario(tmp_path, _text(0.2)))
    ctl.set_time(30.0)
    kind = pynvml.NVML_GPU_UTILIZATION_SAMPLES
    for i in range(4):
        got = [s.sampleValue.uiVal for s in pynvml.nvmlDeviceGetSamples(_h(i), kind, 0)[1]]
        shifted = Square(90, 10, 8, 2, phase=i * 8 / 4)
        assert got == [sample_value(shifted, k) for k in range(81, 181)], i
        assert set(got) == {10, 90}  # levels unchanged (the shifts fall on sample boundaries)


def test_variation_off_pins_a_gpu(nvml: InitFn, ctl: FakeNvmlControl, tmp_path: Path) -> None:
    text = _text(0.2, "[gpu 2]\nvariation = off\n[gpu 3]\npower_w = 500 20 40")
    nvml(scenario(tmp_path, text))
    for t in (0.0, 12.5):
        ctl.set_time(t)
        expected = 300 + 50 * math.sin(2 * math.pi * t / 40)
        assert pynvml.nvmlDeviceGetPowerUsage(_h(2)) == round(expected * 1000)
        assert pynvml.nvmlDeviceGetTemperature(_h(2), 0) == round(
            50 + 5 * math.sin(2 * math.pi * t / 80)
        )
        # a [gpu N] override is varied too
        varied = 500 * (1 + 0.2 * deviation(3)) + 20 * math.sin(2 * math.pi * (t + 30) / 40)
        assert pynvml.nvmlDeviceGetPowerUsage(_h(3)) == round(varied * 1000)


def test_h100_mig_varies_the_training_gpus_only(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("h100-mig")
    ctl.set_time(42.0)
    power = [pynvml.nvmlDeviceGetPowerUsage(_h(i)) for i in range(8)]
    assert len(set(power[:3])) == 3
    assert power[3] == 190000
    assert power[5] == 380000
    assert pynvml.nvmlDeviceGetUtilizationRates(_h(3)).gpu == 95
    assert pynvml.nvmlDeviceGetUtilizationRates(_h(5)).gpu == 60
    assert all(p <= pynvml.nvmlDeviceGetEnforcedPowerLimit(_h(0)) for p in power)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("[system]\ngpu_variation = 0.6\n", "gpu_variation"),
        ("[gpu *]\nvariation = maybe\n", "variation"),
        ("[gpu *]\nutilization_gpu = square 100 0 1 2\n", "utilization_gpu"),  # on > period
        ("[gpu *]\npower_w = square 100 -5 1 0.5\n", "power_w"),  # negative watts
        ("[gpu *]\nsample_buffer = 0\n", "sample_buffer"),
        ("[gpu *]\nsample_period_ms = fast\n", "sample_period_ms"),
        ("[gpu *]\ngpm = sometimes\n", "gpm"),
        ("[gpu *]\ngpm_sm_active = 1.5\n", "gpm_sm_active"),
        ("[gpu *]\nprocess = pid=1 mem_mib=1 share=-1\n", "share"),
        (
            "[gpu *]\nmig_capable = on\nmig_mode = on\n"
            "mig_device = slot=0 gi=1 ci=0 profile=1g.10gb memory_mib=1 sm=1 util=150\n",
            "util",
        ),
    ],
)
def test_bad_activity_keys_are_rejected(
    ctl: FakeNvmlControl, tmp_path: Path, line: str, problem: str
) -> None:
    path = scenario(tmp_path, line)
    err = ctypes.create_string_buffer(512)
    fn = ctl.lib.fakeNvmlCheckScenario
    fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
    assert fn(path.encode(), err, 512) == -1
    assert problem in err.value.decode()


def test_good_activity_keys_load(ctl: FakeNvmlControl, tmp_path: Path) -> None:
    text = (
        "[system]\ngpu_variation = 0.5\n[gpu *]\nutilization_gpu = square 100 0 1 0.25 0.1\n"
        "sample_buffer = 7\nsample_period_ms = 20\ngpm = off\ngpm_tensor_dmma = 0.2\n"
        "variation = on\nprocess = pid=1 mem_mib=1 share=2.5\n"
    )
    err = ctypes.create_string_buffer(512)
    fn = ctl.lib.fakeNvmlCheckScenario
    fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
    assert fn(scenario(tmp_path, text).encode(), err, 512) == 0, err.value
