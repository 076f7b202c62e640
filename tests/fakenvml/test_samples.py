"""The utilization sample buffer: nvmlDeviceGetSamples and the gauges that show its last sample.

The buffer is full from the first call, like a driver loaded before the program started:
samples k <= 0 are the sample periods before scenario time 0. Scenario time is stepped with
ctl.set_time; nothing here waits for the real clock.
"""

from __future__ import annotations

import ctypes
import itertools
import time
from pathlib import Path

import pytest

from exporter.fakenvml.control import FakeNvmlControl, NvmlReturn

from .conftest import InitFn
from .curves import PERIOD, Sine, Square, buffer_ks, sample_value, scenario

pynvml = pytest.importorskip("pynvml")

GPU = pynvml.NVML_GPU_UTILIZATION_SAMPLES
MEM = pynvml.NVML_MEMORY_UTILIZATION_SAMPLES
ENC = pynvml.NVML_ENC_UTILIZATION_SAMPLES
DEC = pynvml.NVML_DEC_UTILIZATION_SAMPLES

# 30% duty cycle; the 0.3 s burst ends inside sample 2 of each second (80% of it high).
UTIL = Square(100, 0, 1.0, 0.3)
# 0.5 s = exactly three samples high in every 2 s.
MEMORY = Square(80, 20, 2.0, 0.5)
ENCODER = Sine(10, 5, 30)

SQUARES = """
[system]
gpu_count = 2
[gpu *]
architecture = hopper
utilization_gpu = square 100 0 1 0.3
utilization_memory = square 80 20 2 0.5
utilization_encoder = 10 5 30
utilization_decoder = 0
[gpu 1]
sample_buffer = 20
sample_period_ms = 100
"""


def _h(i: int = 0) -> object:
    return pynvml.nvmlDeviceGetHandleByIndex(i)


def _samples(h: object, kind: int = GPU, last_seen: int = 0) -> list[tuple[int, int]]:
    value_type, samples = pynvml.nvmlDeviceGetSamples(h, kind, last_seen)
    assert value_type == pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
    return [(s.timeStamp, s.sampleValue.uiVal) for s in samples]


@pytest.fixture
def squares(nvml: InitFn, tmp_path: Path) -> None:
    nvml(scenario(tmp_path, SQUARES))


@pytest.mark.usefixtures("squares")
def test_each_sample_is_the_exact_mean_of_its_period(ctl: FakeNvmlControl) -> None:
    ctl.set_time(5.0)  # 30 complete samples since time 0, 70 from before it
    assert buffer_ks(5.0) == range(-69, 31)
    for kind, curve in ((GPU, UTIL), (MEM, MEMORY), (ENC, ENCODER)):
        got = _samples(_h(), kind)
        assert [v for _, v in got] == [sample_value(curve, k) for k in range(-69, 31)], kind
    values = [v for _, v in _samples(_h())]
    assert values[-30:-24] == [100, 80, 0, 0, 0, 0]  # samples 1-6: the burst, then idle
    assert sum(values[-30:]) / 30 == 30.0  # the duty cycle over (0, 5]
    assert sum(values[4:]) / 96 == 30.0  # and over (-11, 5]: the curve runs back in time
    assert {v for _, v in _samples(_h(), DEC)} == {0}


@pytest.mark.usefixtures("squares")
def test_the_buffer_is_full_from_the_first_call(ctl: FakeNvmlControl) -> None:
    """At scenario time 0: sample_buffer samples, the exact means of the periods before it."""
    ctl.set_time(0.0)
    for kind, curve in ((GPU, UTIL), (MEM, MEMORY), (ENC, ENCODER)):
        got = _samples(_h(), kind)
        assert len(got) == 100, kind
        assert [v for _, v in got] == [sample_value(curve, k) for k in range(-99, 1)], kind
    values = [v for _, v in _samples(_h())]
    assert values[-6:] == [100, 80, 0, 0, 0, 0]  # (-1, 0]: the same burst as in (0, 1]
    assert sum(values[-96:]) / 96 == 30.0
    memory = [v for _, v in _samples(_h(), MEM)]
    assert memory[-12:] == [80, 80, 80, 20, 20, 20, 20, 20, 20, 20, 20, 20]  # (-2, 0]
    encoder = [v for _, v in _samples(_h(), ENC)]
    assert encoder[54] == 5  # sample -45, (-7.67, -7.5]: the sine's trough at t = -7.5
    assert max(encoder[-88:]) == 10  # (-14.67, 0]: the negative half of the sine
    assert {v for _, v in _samples(_h(), DEC)} == {0}
    # timestamps: the last is the wall clock at scenario time 0, one period apart back in time
    stamps = [ts for ts, _ in _samples(_h())]
    base = stamps[-1]
    for k, ts in zip(range(-99, 1), stamps, strict=True):
        assert abs(ts - (base + k * PERIOD * 1e6)) <= 1, k
    # GPU 1: its own buffer (20) and period (100 ms), the same clock
    gpu1 = _samples(_h(1))
    assert [ts for ts, _ in gpu1] == [base + k * 100_000 for k in range(-19, 1)]
    assert [v for _, v in gpu1] == [sample_value(UTIL, k, 0.1) for k in range(-19, 1)]
    assert [v for _, v in gpu1][-10:] == [100, 100, 100, 0, 0, 0, 0, 0, 0, 0]  # (-1, 0]
    # the gauges show sample 0
    rates = pynvml.nvmlDeviceGetUtilizationRates(_h())
    assert (rates.gpu, rates.memory) == (values[-1], memory[-1]) == (0, 20)
    assert pynvml.nvmlDeviceGetEncoderUtilization(_h())[0] == encoder[-1]


@pytest.mark.usefixtures("squares")
def test_timestamps_are_one_sample_period_apart_and_follow_scenario_time(
    ctl: FakeNvmlControl,
) -> None:
    ctl.set_time(2.0)
    at2 = _samples(_h())
    stamps = [ts for ts, _ in at2]
    assert len(stamps) == 100  # samples -87 .. 12
    base = stamps[-1] - 2_000_000  # the wall clock at scenario time 0
    for k, ts in zip(buffer_ks(2.0), stamps, strict=True):
        assert abs(ts - (base + k * PERIOD * 1e6)) <= 1, k
    now_us = time.time() * 1e6
    assert now_us - 86400e6 < base <= now_us
    assert _samples(_h()) == at2  # same scenario time, same answer, whenever it is asked
    ctl.set_time(7.0)
    at7 = _samples(_h())  # samples -57 .. 42
    assert at7[:70] == at2[30:]  # old samples keep their timestamps and values
    assert abs(at7[-1][0] - (base + 7_000_000)) <= 1
    pynvml.nvmlShutdown()  # the clock that goes with scenario time survives a re-init
    pynvml.nvmlInit()
    ctl.set_time(2.0)
    assert _samples(_h()) == at2
    # GPU 1: 100 ms samples
    ctl.set_time(1.0)
    stamps = [ts for ts, _ in _samples(_h(1))]
    assert len(stamps) == 20  # samples -9 .. 10
    assert all(b - a == 100_000 for a, b in itertools.pairwise(stamps))
    assert stamps[-1] == base + 1_000_000


@pytest.mark.usefixtures("squares")
def test_last_seen_returns_each_sample_once_and_misses_none(ctl: FakeNvmlControl) -> None:
    seen: list[tuple[int, int]] = []
    last = 0
    t = 0.0
    not_found = 0
    for step in (0.05, 0.1, 0.4, 0.01, 1.23, 0.1667, 0.1666, 0.5, 2.0, 0.001, 3.3):
        t += step
        ctl.set_time(t)
        try:
            new = _samples(_h(), GPU, last)
        except pynvml.NVMLError_NotFound:
            not_found += 1
            continue
        assert all(ts > last for ts, _ in new)
        seen += new
        last = new[-1][0]
    assert not_found == 3  # t = 0.15, 0.56, 4.6243: nothing complete since the last call
    ctl.set_time(t)
    ks = range(-99, buffer_ks(t)[-1] + 1)  # the first call's full buffer, then every new one
    assert len(seen) == len(ks) == 147
    assert seen[-100:] == _samples(_h())  # the newest of them: exactly the buffer, in order
    assert [v for _, v in seen] == [sample_value(UTIL, k) for k in ks]
    for a, b in itertools.pairwise(seen):  # none twice, none missed
        assert abs((b[0] - a[0]) - PERIOD * 1e6) <= 1


@pytest.mark.usefixtures("squares")
def test_not_found_when_nothing_is_newer(ctl: FakeNvmlControl) -> None:
    ctl.set_time(0.0)
    first = _samples(_h())  # not NOT_FOUND: the buffer is full from the start
    assert len(first) == 100
    zero = first[-1][0]  # sample 0, ending at scenario time 0
    with pytest.raises(pynvml.NVMLError_NotFound):
        pynvml.nvmlDeviceGetSamples(_h(), GPU, zero)
    ctl.set_time(PERIOD / 2)
    assert _samples(_h()) == first
    with pytest.raises(pynvml.NVMLError_NotFound):
        pynvml.nvmlDeviceGetSamples(_h(), GPU, zero)
    ctl.set_time(PERIOD)
    assert _samples(_h(), GPU, zero) == [(first[-1][0] + 166_667, sample_value(UTIL, 1))]
    assert _samples(_h(), GPU, first[-3][0]) == [*first[-2:], _samples(_h())[-1]]
    ctl.set_time(1.0)
    last = _samples(_h())[-1][0]
    with pytest.raises(pynvml.NVMLError_NotFound):
        pynvml.nvmlDeviceGetSamples(_h(), GPU, last)
    ctl.set_time(1.0 + PERIOD * 0.99)
    with pytest.raises(pynvml.NVMLError_NotFound):
        pynvml.nvmlDeviceGetSamples(_h(), GPU, last)
    ctl.set_time(1.0 + PERIOD)
    assert len(_samples(_h(), GPU, last)) == 1
    with pytest.raises(pynvml.NVMLError_NotFound):  # a timestamp from the future
        pynvml.nvmlDeviceGetSamples(_h(), GPU, last + 10**12)


@pytest.mark.usefixtures("squares")
def test_the_buffer_wraps(ctl: FakeNvmlControl) -> None:
    ctl.set_time(3.0)
    early = _samples(_h())
    ctl.set_time(1000.0)
    full = _samples(_h())
    assert len(full) == 100  # sample_buffer default
    newest = int(1000 / PERIOD + 1e-9)
    assert [v for _, v in full] == [sample_value(UTIL, k) for k in range(newest - 99, newest + 1)]
    assert _samples(_h(), GPU, early[3][0]) == full  # last seen long overwritten: all there is
    assert len(_samples(_h(), GPU, full[-11][0])) == 10
    assert len(_samples(_h(1))) == 20  # sample_buffer = 20


@pytest.mark.usefixtures("squares")
def test_utilization_gauges_show_the_last_sample(ctl: FakeNvmlControl) -> None:
    for t in (0.0, 0.1, 1.0, 1.2, 1.25, 1.34, 2.0 + PERIOD, 7.77, 100.0):
        ctl.set_time(t)
        rates = pynvml.nvmlDeviceGetUtilizationRates(_h())
        assert rates.gpu == _samples(_h(), GPU)[-1][1], t
        assert rates.memory == _samples(_h(), MEM)[-1][1], t
        enc, period_us = pynvml.nvmlDeviceGetEncoderUtilization(_h())
        assert (enc, period_us) == (_samples(_h(), ENC)[-1][1], 166667)
        assert pynvml.nvmlDeviceGetDecoderUtilization(_h()) == [0, 166667]
    assert pynvml.nvmlDeviceGetEncoderUtilization(_h(1))[1] == 100000
    # inside the first period: sample 0, (-P, 0], not the mean over the period ending now
    ctl.set_time(0.1)  # (-0.067, 0] idle, (0, 0.1] busy: that mean would be 60
    rates = pynvml.nvmlDeviceGetUtilizationRates(_h())
    assert (rates.gpu, rates.memory) == (sample_value(UTIL, 0), sample_value(MEMORY, 0)) == (0, 20)
    assert pynvml.nvmlDeviceGetEncoderUtilization(_h())[0] == sample_value(ENCODER, 0)
    ctl.set_time(0.3)  # sample 1, (0, P]: busy
    assert pynvml.nvmlDeviceGetUtilizationRates(_h()).gpu == 100


def test_not_supported_on_mig_and_other_sample_types(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("a100-mig")
    ctl.set_time(10.0)
    assert len(_samples(_h(0))) == 100
    mig_parent = _h(6)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetSamples(mig_parent, GPU, 0)
    mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(mig_parent, 0)
    for kind in (GPU, MEM, ENC, DEC):
        with pytest.raises(pynvml.NVMLError_NotSupported):
            pynvml.nvmlDeviceGetSamples(mig, kind, 0)
    for kind in (pynvml.NVML_TOTAL_POWER_SAMPLES, pynvml.NVML_PROCESSOR_CLK_SAMPLES):
        with pytest.raises(pynvml.NVMLError_NotSupported):
            pynvml.nvmlDeviceGetSamples(_h(0), kind, 0)


def test_faults_and_not_supported_list_apply(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("h100-mig")
    ctl.set_time(10.0)
    ctl.set_fault("nvmlDeviceGetSamples", 1, "GPU_IS_LOST")
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        pynvml.nvmlDeviceGetSamples(_h(1), GPU, 0)
    assert len(_samples(_h(0))) == 100
    ctl.set_key(0, "not_supported", "nvmlDeviceGetSamples")
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetSamples(_h(0), GPU, 0)


@pytest.mark.usefixtures("squares")
def test_two_call_protocol(ctl: FakeNvmlControl) -> None:
    ctl.set_time(2.0)
    value_type, count = ctypes.c_int(), ctypes.c_uint(0)

    def call(buf: object) -> int:
        return int(
            ctl.lib.nvmlDeviceGetSamples(
                _h(), GPU, ctypes.c_ulonglong(0), ctypes.byref(value_type), ctypes.byref(count), buf
            )
        )

    assert call(None) == 0
    assert count.value == 100
    buf = (pynvml.c_nvmlSample_t * 100)()
    count.value = 5  # room for five: the oldest five
    assert call(buf) == 0
    assert count.value == 5
    assert [buf[i].timeStamp for i in range(5)] == [ts for ts, _ in _samples(_h())[:5]]
    count.value = 0  # a buffer with no room
    assert call(buf) == NvmlReturn.INVALID_ARGUMENT
