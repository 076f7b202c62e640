"""nvmlDeviceGetProcessUtilization: shares of the GPU's activity, consistent with the samples."""

from __future__ import annotations

import pytest

from exporter.fakenvml.control import FakeNvmlControl

from .conftest import InitFn
from .curves import PERIOD, Sine, mean

pynvml = pytest.importorskip("pynvml")


def _h(i: int) -> object:
    return pynvml.nvmlDeviceGetHandleByIndex(i)


def _last_sample_ts(h: object) -> int:
    return int(
        pynvml.nvmlDeviceGetSamples(h, pynvml.NVML_GPU_UTILIZATION_SAMPLES, 0)[1][-1].timeStamp
    )


def test_time_sliced_processes_get_their_shares(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("h100-mig")
    ctl.set_time(20.0)
    h = _h(5)  # constant 60% / memory 35%, shares 0.5 0.3 0.2
    got = pynvml.nvmlDeviceGetProcessUtilization(h, 0)
    assert [(p.pid, p.smUtil) for p in got] == [(30501, 30), (30502, 18), (30503, 12)]
    for p, share in zip(got, (0.5, 0.3, 0.2), strict=True):
        assert abs(p.memUtil - 35 * share) <= 0.5 + 1e-9
        assert (p.encUtil, p.decUtil) == (0, 0)
        assert p.timeStamp == _last_sample_ts(h)  # the clock of the sample buffer
    one = pynvml.nvmlDeviceGetProcessUtilization(_h(4), 0)  # a single process has it all
    assert [p.pid for p in one] == [30401]


def test_process_busy_time_adds_up_to_the_sample_buffer(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("h100-mig")
    for gpu in (4, 5, 0):  # bursty, time-sliced, varied sine
        h = _h(gpu)
        ctl.set_time(1.0)
        start = last = pynvml.nvmlDeviceGetProcessUtilization(h, 0)[0].timeStamp
        busy = 0.0
        t = 1.0
        for step in (0.4, 0.9, 0.17, 2.5, 0.33, 1.0, 3.7, 0.2, 0.6, 4.1):
            t += step
            ctl.set_time(t)
            procs = pynvml.nvmlDeviceGetProcessUtilization(h, last)
            stamp = procs[0].timeStamp
            assert {p.timeStamp for p in procs} == {stamp}
            busy += sum(p.smUtil for p in procs) / 100 * (stamp - last) / 1e6
            last = stamp
        samples = pynvml.nvmlDeviceGetSamples(h, pynvml.NVML_GPU_UTILIZATION_SAMPLES, start)[1]
        assert samples[-1].timeStamp == last
        expected = sum(s.sampleValue.uiVal / 100 * PERIOD for s in samples)
        # each answer is rounded to 1% per process: at most 0.5% * processes of its interval
        span = (last - start) / 1e6
        assert abs(busy - expected) <= 0.005 * 3 * span + 0.005 * PERIOD * len(samples), gpu
        assert busy > 0.1 * span


def test_last_seen_semantics(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("h100-mig")
    h = _h(5)
    ctl.set_time(0.0)  # the buffer is full from the start: samples -99 .. 0
    zero = pynvml.nvmlDeviceGetProcessUtilization(h, 0)
    assert [(p.pid, p.smUtil) for p in zero] == [(30501, 30), (30502, 18), (30503, 12)]
    for p, share in zip(zero, (0.5, 0.3, 0.2), strict=True):
        assert abs(p.memUtil - 35 * share) <= 0.5 + 1e-9
    assert {p.timeStamp for p in zero} == {_last_sample_ts(h)}  # sample 0: scenario time 0
    with pytest.raises(pynvml.NVMLError_NotFound):  # nothing newer
        pynvml.nvmlDeviceGetProcessUtilization(h, zero[0].timeStamp)
    ctl.set_time(PERIOD * 0.99)
    with pytest.raises(pynvml.NVMLError_NotFound):
        pynvml.nvmlDeviceGetProcessUtilization(h, zero[0].timeStamp)
    ctl.set_time(3.0)
    first = pynvml.nvmlDeviceGetProcessUtilization(h, 0)[0].timeStamp
    with pytest.raises(pynvml.NVMLError_NotFound):  # nothing newer
        pynvml.nvmlDeviceGetProcessUtilization(h, first)
    ctl.set_time(3.0 + PERIOD * 0.5)
    with pytest.raises(pynvml.NVMLError_NotFound):
        pynvml.nvmlDeviceGetProcessUtilization(h, first)
    ctl.set_time(3.0 + PERIOD)
    nxt = pynvml.nvmlDeviceGetProcessUtilization(h, first)[0].timeStamp
    assert abs((nxt - first) - PERIOD * 1e6) <= 1
    ctl.set_time(500.0)  # lastSeen older than the buffer: the whole buffer (100 samples)
    old = pynvml.nvmlDeviceGetProcessUtilization(h, first)
    assert [p.smUtil for p in old] == [30, 18, 12]


def test_window_is_the_unseen_part_of_the_buffer(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    """A sine GPU: the answer is the mean over exactly the samples after lastSeen."""
    nvml("a100-mig")  # GPU 1: utilization 70 25 60, one process
    h = _h(1)
    curve = Sine(70, 25, 60)
    ctl.set_time(0.0)  # the first call: the whole buffer, (-100P, 0], before scenario time 0
    zero = pynvml.nvmlDeviceGetProcessUtilization(h, 0)
    assert zero[0].smUtil == round(mean(curve, -100 * PERIOD, 0.0)) == 53
    assert zero[0].memUtil == round(mean(Sine(40, 20, 60), -100 * PERIOD, 0.0)) == 27
    ctl.set_time(10.0)
    start = pynvml.nvmlDeviceGetProcessUtilization(h, 0)
    assert start[0].smUtil == round(mean(curve, 10.0 - 100 * PERIOD, 10.0))  # the whole buffer
    since_zero = pynvml.nvmlDeviceGetProcessUtilization(h, zero[0].timeStamp)
    assert since_zero[0].smUtil == round(mean(curve, 0.0, 10.0)) == 82  # (0, 10]
    ctl.set_time(14.0)
    later = pynvml.nvmlDeviceGetProcessUtilization(h, start[0].timeStamp)
    assert later[0].smUtil == round(mean(curve, 10.0, 14.0))
    assert later[0].memUtil == round(mean(Sine(40, 20, 60), 10.0, 14.0))
    ctl.set_time(1000.0)  # the buffer holds the last 100 samples only
    assert pynvml.nvmlDeviceGetProcessUtilization(h, 0)[0].smUtil == round(
        mean(curve, 1000.0 - 100 * PERIOD, 1000.0)
    )


def test_sm_attribute_keeps_its_meaning(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("a100-mig")  # GPU 0: pid 10001 sm=80, pid 10002 without
    ctl.set_time(30.0)
    got = {p.pid: p for p in pynvml.nvmlDeviceGetProcessUtilization(_h(0), 0)}
    assert got[10001].smUtil == 80
    gpu_mean = mean(Sine(70, 25, 60), 30.0 - 100 * PERIOD, 30.0)
    assert got[10002].smUtil == round(gpu_mean / 2)  # two equal shares


def test_not_supported_on_mig(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("h100-mig")
    ctl.set_time(10.0)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetProcessUtilization(_h(6), 0)
    mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(_h(7), 0)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetProcessUtilization(mig, 0)


def test_synthetic_processes_share_equally(nvml: InitFn, ctl: FakeNvmlControl) -> None:
    nvml("h100-mig", FAKE_NVML_PROCESSES="16")  # two per GPU
    ctl.set_time(10.0)
    got = pynvml.nvmlDeviceGetProcessUtilization(_h(5), 0)
    assert [p.pid for p in got] == [200005, 200013]
    assert [p.smUtil for p in got] == [30, 30]
