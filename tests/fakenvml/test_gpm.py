"""GPM: support, samples of whole GPUs and MIG GPU instances, metrics from two samples.

Metric values are scenario factors times the exact mean of the activity curves over the
interval between the two samples, or their instantaneous values for two samples taken at the
same scenario time (h100-mig: GPU 3 busy but starved, GPU 4 bursty, GPU 6/7 MIG).
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator

import pytest

from exporter.fakenvml.control import FakeNvmlControl, NvmlReturn

from .conftest import InitFn
from .curves import PERIOD, Sine, Square, mean, sample_value

pynvml = pytest.importorskip("pynvml")

M = pynvml  # metric ids
UTIL_IDS = {
    M.NVML_GPM_METRIC_GRAPHICS_UTIL: None,
    M.NVML_GPM_METRIC_SM_UTIL: "gpm_sm_active",
    M.NVML_GPM_METRIC_SM_OCCUPANCY: "gpm_sm_occupancy",
    M.NVML_GPM_METRIC_INTEGER_UTIL: "gpm_integer",
    M.NVML_GPM_METRIC_ANY_TENSOR_UTIL: "gpm_tensor_active",
    M.NVML_GPM_METRIC_DFMA_TENSOR_UTIL: "gpm_tensor_dfma",
    M.NVML_GPM_METRIC_HMMA_TENSOR_UTIL: "gpm_tensor_hmma",
    M.NVML_GPM_METRIC_DMMA_TENSOR_UTIL: "gpm_tensor_dmma",
    M.NVML_GPM_METRIC_IMMA_TENSOR_UTIL: "gpm_tensor_imma",
    M.NVML_GPM_METRIC_FP64_UTIL: "gpm_fp64",
    M.NVML_GPM_METRIC_FP32_UTIL: "gpm_fp32",
    M.NVML_GPM_METRIC_FP16_UTIL: "gpm_fp16",
}
DEFAULTS = {
    "gpm_sm_active": 0.85,
    "gpm_sm_occupancy": 0.45,
    "gpm_tensor_active": 0.50,
    "gpm_tensor_hmma": 0.45,
    "gpm_tensor_imma": 0.03,
    "gpm_tensor_dmma": 0.0,
    "gpm_tensor_dfma": 0.0,
    "gpm_fp64": 0.01,
    "gpm_fp32": 0.25,
    "gpm_fp16": 0.10,
    "gpm_integer": 0.15,
    "gpm_dram_active": 0.9,
}
# h100-mig GPU 3 (variation = off): utilization 95 / memory 6, SMs starved.
GPU3 = DEFAULTS | {
    "gpm_sm_active": 0.05,
    "gpm_sm_occupancy": 0.02,
    "gpm_tensor_active": 0.01,
    "gpm_tensor_hmma": 0.01,
    "gpm_fp16": 0.01,
    "gpm_fp32": 0.02,
    "gpm_integer": 0.03,
    "gpm_dram_active": 0.5,
}
PCIE_TX, PCIE_RX = Sine(800000, 600000, 30), Sine(2400000, 1600000, 30)
NVLINK = Sine(9000000, 7000000, 45)  # KiB/s per link, rx and tx, 18 links


# What the bursty GPU's tests read: activity, memory, PCIe and NVLink metrics.
BURST_IDS = [
    M.NVML_GPM_METRIC_GRAPHICS_UTIL,
    M.NVML_GPM_METRIC_SM_UTIL,
    M.NVML_GPM_METRIC_IMMA_TENSOR_UTIL,
    M.NVML_GPM_METRIC_DRAM_BW_UTIL,
    M.NVML_GPM_METRIC_PCIE_TX_PER_SEC,
    M.NVML_GPM_METRIC_PCIE_RX_PER_SEC,
    M.NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC,
    M.NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC,
]


def _h(i: int) -> object:
    return pynvml.nvmlDeviceGetHandleByIndex(i)


@pytest.fixture
def samples() -> Iterator[list[object]]:
    """Allocated GPM samples, freed after the test."""
    allocated: list[object] = []
    yield allocated
    for s in allocated:
        pynvml.nvmlGpmSampleFree(s)


def _alloc(samples: list[object]) -> object:
    s = pynvml.nvmlGpmSampleAlloc()
    samples.append(s)
    return s


def _request(s1: object, s2: object, ids: list[int]) -> object:
    mg = pynvml.c_nvmlGpmMetricsGet_t()
    mg.version = pynvml.NVML_GPM_METRICS_GET_VERSION
    mg.numMetrics = len(ids)
    mg.sample1 = s1
    mg.sample2 = s2
    for i, metric in enumerate(ids):
        mg.metrics[i].metricId = metric
    return mg


def _metrics(s1: object, s2: object, ids: list[int]) -> dict[int, float]:
    mg = pynvml.nvmlGpmMetricsGet(_request(s1, s2, ids))
    out = {}
    for i in range(len(ids)):
        m = mg.metrics[i]
        assert m.nvmlReturn == 0, (m.metricId, m.nvmlReturn)
        assert m.metricInfo.shortName and m.metricInfo.unit
        out[m.metricId] = m.value
    return out


def _interval(
    ctl: FakeNvmlControl, samples: list[object], take: object, t1: float, t2: float
) -> tuple[object, object]:
    """Two samples taken by take(sample) at scenario times t1 and t2."""
    s1, s2 = _alloc(samples), _alloc(samples)
    ctl.set_time(t1)
    take(s1)  # type: ignore[operator]
    ctl.set_time(t2)
    take(s2)  # type: ignore[operator]
    return s1, s2


@pytest.mark.parametrize(
    ("name", "supported"), [("h100-mig", 1), ("h100-nvlink", 1), ("a100-mig", 0), ("t4", 0)]
)
def test_supported_on_hopper_not_on_ampere_or_turing(
    nvml: InitFn, samples: list[object], name: str, supported: int
) -> None:
    nvml(name)
    for i in range(pynvml.nvmlDeviceGetCount()):
        assert pynvml.nvmlGpmQueryDeviceSupport(_h(i)).isSupportedDevice == supported
    if supported:
        pynvml.nvmlGpmSampleGet(_h(0), _alloc(samples))
    else:
        with pytest.raises(pynvml.NVMLError_NotSupported):
            pynvml.nvmlGpmSampleGet(_h(0), _alloc(samples))


def test_gpm_key_wins_over_the_architecture(
    nvml: InitFn, ctl: FakeNvmlControl, samples: list[object]
) -> None:
    nvml("a100-mig")
    ctl.set_key(0, "gpm", "on")
    assert pynvml.nvmlGpmQueryDeviceSupport(_h(0)).isSupportedDevice == 1
    pynvml.nvmlGpmSampleGet(_h(0), _alloc(samples))
    assert pynvml.nvmlGpmQueryDeviceSupport(_h(1)).isSupportedDevice == 0


def test_support_query_checks_version_faults_and_not_supported(
    nvml: InitFn, ctl: FakeNvmlControl
) -> None:
    nvml("h100-mig")
    support = pynvml.c_nvmlGpmSupport_t()
    support.version = 2
    assert ctl.lib.nvmlGpmQueryDeviceSupport(_h(0), ctypes.byref(support)) == 25
    ctl.set_fault("nvmlGpmQueryDeviceSupport", 1, "UNKNOWN")
    with pytest.raises(pynvml.NVMLError_Unknown):
        pynvml.nvmlGpmQueryDeviceSupport(_h(1))
    ctl.set_key(2, "not_supported", "nvmlGpmQueryDeviceSupport")
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlGpmQueryDeviceSupport(_h(2))
    assert pynvml.nvmlGpmQueryDeviceSupport(_h(0)).isSupportedDevice == 1


def test_busy_but_starved_gpu(nvml: InitFn, ctl: FakeNvmlControl, samples: list[object]) -> None:
    nvml("h100-mig")
    s1, s2 = _interval(ctl, samples, lambda s: pynvml.nvmlGpmSampleGet(_h(3), s), 10.0, 12.5)
    ids = [*UTIL_IDS, M.NVML_GPM_METRIC_DRAM_BW_UTIL]
    got = _metrics(s1, s2, ids)
    for metric, factor in UTIL_IDS.items():
        assert got[metric] == pytest.approx(95 * (GPU3[factor] if factor else 1.0)), metric
    assert got[M.NVML_GPM_METRIC_DRAM_BW_UTIL] == pytest.approx(6 * 0.5)
    assert got[M.NVML_GPM_METRIC_SM_UTIL] == pytest.approx(4.75)  # while the gauge says 95
    assert pynvml.nvmlDeviceGetUtilizationRates(_h(3)).gpu == 95


def test_metrics_are_exact_means_over_the_interval(
    nvml: InitFn, ctl: FakeNvmlControl, samples: list[object]
) -> None:
    nvml("h100-mig")
    t1, t2 = 1.3, 14.9
    burst = Square(100, 0, 6.6666667, 2)  # GPU 4
    s1, s2 = _interval(ctl, samples, lambda s: pynvml.nvmlGpmSampleGet(_h(4), s), t1, t2)
    ids = BURST_IDS
    got = _metrics(s1, s2, ids)
    u = mean(burst, t1, t2)
    assert got[M.NVML_GPM_METRIC_GRAPHICS_UTIL] == pytest.approx(u)
    assert got[M.NVML_GPM_METRIC_SM_UTIL] == pytest.approx(u * 0.7)
    assert got[M.NVML_GPM_METRIC_IMMA_TENSOR_UTIL] == pytest.approx(u * 0.5)
    assert got[M.NVML_GPM_METRIC_DRAM_BW_UTIL] == pytest.approx(
        mean(Square(55, 0, 6.6666667, 2), t1, t2) * 0.9
    )
    # PCIe kB/s (1000 bytes) -> MiB/s
    assert got[M.NVML_GPM_METRIC_PCIE_TX_PER_SEC] == pytest.approx(
        mean(PCIE_TX, t1, t2) * 1000 / 2**20
    )
    assert got[M.NVML_GPM_METRIC_PCIE_RX_PER_SEC] == pytest.approx(
        mean(PCIE_RX, t1, t2) * 1000 / 2**20
    )
    # NVLink: sum over the 18 links of the per-link rate (link l scaled by 1 + 0.01 l), MiB/s
    links = sum(1 + 0.01 * link for link in range(18))
    nvlink = mean(NVLINK, t1, t2) * links / 1024
    assert got[M.NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC] == pytest.approx(nvlink)
    assert got[M.NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC] == pytest.approx(nvlink)


@pytest.mark.parametrize(("t", "busy"), [(1.3, 100), (3.0, 0), (14.9, 100)])
def test_samples_at_the_same_time(
    nvml: InitFn, ctl: FakeNvmlControl, samples: list[object], t: float, busy: int
) -> None:
    """Frozen scenario time (dt = 0): the curves' values at that time, the limit of the means."""
    nvml("h100-mig")
    burst, memory = Square(100, 0, 6.6666667, 2), Square(55, 0, 6.6666667, 2)  # GPU 4
    s1, s2 = _interval(ctl, samples, lambda s: pynvml.nvmlGpmSampleGet(_h(4), s), t, t)
    ids = BURST_IDS[:-1]
    got = _metrics(s1, s2, ids)
    assert _metrics(s1, s1, ids) == got  # one sample twice: the same
    u = burst.value(t)
    assert u == busy  # in a burst (t mod 6.67 < 2) or between two
    assert got[M.NVML_GPM_METRIC_GRAPHICS_UTIL] == pytest.approx(u)
    assert got[M.NVML_GPM_METRIC_SM_UTIL] == pytest.approx(u * 0.7)
    assert got[M.NVML_GPM_METRIC_IMMA_TENSOR_UTIL] == pytest.approx(u * 0.5)
    assert got[M.NVML_GPM_METRIC_DRAM_BW_UTIL] == pytest.approx(memory.value(t) * 0.9)
    pcie_tx = PCIE_TX.value(t) * 1000 / 2**20
    assert got[M.NVML_GPM_METRIC_PCIE_TX_PER_SEC] == pytest.approx(pcie_tx)
    assert got[M.NVML_GPM_METRIC_PCIE_RX_PER_SEC] == pytest.approx(PCIE_RX.value(t) * 1000 / 2**20)
    links = sum(1 + 0.01 * link for link in range(18))
    nvlink = NVLINK.value(t) * links / 1024
    assert got[M.NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC] == pytest.approx(nvlink)
    # the limit of the mean over (t, t + dt) as dt -> 0
    s3 = _alloc(samples)
    ctl.set_time(t + 1e-3)
    pynvml.nvmlGpmSampleGet(_h(4), s3)
    near = _metrics(s1, s3, ids)
    assert near[M.NVML_GPM_METRIC_GRAPHICS_UTIL] == pytest.approx(u)
    assert near[M.NVML_GPM_METRIC_PCIE_TX_PER_SEC] == pytest.approx(pcie_tx, rel=1e-3)
    # steady while time stays frozen: a later pair at the same time answers the same
    s4, s5 = _interval(ctl, samples, lambda s: pynvml.nvmlGpmSampleGet(_h(4), s), t, t)
    assert _metrics(s4, s5, ids) == got
    # a MIG GPU instance: its constant util=, the GPU's traffic split by slices
    g1, g2 = _interval(ctl, samples, lambda s: pynvml.nvmlGpmMigSampleGet(_h(6), 7, s), t, t)
    assert _metrics(g1, g2, [M.NVML_GPM_METRIC_GRAPHICS_UTIL]) == {
        M.NVML_GPM_METRIC_GRAPHICS_UTIL: pytest.approx(10)
    }


def test_metrics_agree_with_the_counters_and_the_sample_buffer(
    nvml: InitFn, ctl: FakeNvmlControl, samples: list[object]
) -> None:
    """GPU 0 is varied (gpu_variation): compare with the driver's other views, not formulas."""
    nvml("h100-mig")
    h = _h(0)
    k1, k2 = 30, 90
    t1, t2 = k1 * PERIOD, k2 * PERIOD
    fields = [(pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, 0xFFFFFFFF), 197]

    s1, s2 = _alloc(samples), _alloc(samples)
    ctl.set_time(t1)
    pynvml.nvmlGpmSampleGet(h, s1)
    before = [v.value.ullVal for v in pynvml.nvmlDeviceGetFieldValues(h, fields)]
    ctl.set_time(t2)
    pynvml.nvmlGpmSampleGet(h, s2)
    after = [v.value.ullVal for v in pynvml.nvmlDeviceGetFieldValues(h, fields)]
    ids = [
        M.NVML_GPM_METRIC_GRAPHICS_UTIL,
        M.NVML_GPM_METRIC_SM_UTIL,
        M.NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC,
        M.NVML_GPM_METRIC_PCIE_TX_PER_SEC,
    ]
    got = _metrics(s1, s2, ids)
    buffer = pynvml.nvmlDeviceGetSamples(h, 1, 0)[1]  # samples k2 - 99 .. k2
    values = [s.sampleValue.uiVal for s in buffer][-(k2 - k1) :]  # k1 + 1 .. k2: (t1, t2]
    assert len(values) == k2 - k1
    assert buffer[-(k2 - k1) - 1].timeStamp - buffer[0].timeStamp == pytest.approx(
        (k1 - (k2 - 99)) * PERIOD * 1e6, abs=1
    )
    assert got[M.NVML_GPM_METRIC_GRAPHICS_UTIL] == pytest.approx(sum(values) / len(values), abs=0.5)
    assert got[M.NVML_GPM_METRIC_SM_UTIL] / got[M.NVML_GPM_METRIC_GRAPHICS_UTIL] == pytest.approx(
        0.92
    )
    dt = t2 - t1
    nvlink_kib = (after[0] - before[0]) / dt
    assert got[M.NVML_GPM_METRIC_NVLINK_TOTAL_RX_PER_SEC] == pytest.approx(
        nvlink_kib / 1024, rel=1e-6
    )
    pcie_bytes = (after[1] - before[1]) / dt
    assert got[M.NVML_GPM_METRIC_PCIE_TX_PER_SEC] == pytest.approx(pcie_bytes / 2**20, rel=1e-6)


def test_mig_gpu_instances(nvml: InitFn, ctl: FakeNvmlControl, samples: list[object]) -> None:
    nvml("h100-mig")
    ids = [
        M.NVML_GPM_METRIC_GRAPHICS_UTIL,
        M.NVML_GPM_METRIC_SM_UTIL,
        M.NVML_GPM_METRIC_PCIE_RX_PER_SEC,
        M.NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC,
    ]
    per_gi = {}
    for gi, util in zip((7, 8, 9, 11, 12, 13, 14), range(10, 80, 10), strict=True):
        s1, s2 = _interval(
            ctl, samples, lambda s, gi=gi: pynvml.nvmlGpmMigSampleGet(_h(6), gi, s), 3.0, 8.0
        )
        per_gi[gi] = got = _metrics(s1, s2, ids)
        assert got[M.NVML_GPM_METRIC_GRAPHICS_UTIL] == pytest.approx(util)
        factor = 0.3 if gi == 13 else DEFAULTS["gpm_sm_active"]  # gi 13 sets its own
        assert got[M.NVML_GPM_METRIC_SM_UTIL] == pytest.approx(util * factor)
    # PCIe / NVLink: the GPU's traffic split by slices (all 1g here: equal shares)
    assert len({round(g[M.NVML_GPM_METRIC_PCIE_RX_PER_SEC], 6) for g in per_gi.values()}) == 1
    assert per_gi[7][M.NVML_GPM_METRIC_NVLINK_TOTAL_TX_PER_SEC] > 0
    # GPU 7: 3g.40gb (gi 2) + 2x 2g.20gb (gi 3, 5)
    seven = {}
    for gi, util in ((2, 85), (3, 40), (5, 15)):
        s1, s2 = _interval(
            ctl, samples, lambda s, gi=gi: pynvml.nvmlGpmMigSampleGet(_h(7), gi, s), 3.0, 8.0
        )
        seven[gi] = got = _metrics(s1, s2, ids)
        assert got[M.NVML_GPM_METRIC_GRAPHICS_UTIL] == pytest.approx(util)
    pcie = M.NVML_GPM_METRIC_PCIE_RX_PER_SEC
    assert seven[2][pcie] / seven[3][pcie] == pytest.approx(1.5)  # 3 slices / 2 slices
    assert seven[3][pcie] == pytest.approx(seven[5][pcie])


def test_mig_sample_errors(nvml: InitFn, samples: list[object]) -> None:
    nvml("h100-mig")
    s = _alloc(samples)
    with pytest.raises(pynvml.NVMLError_NotSupported):  # MIG-enabled: sample per GPU instance
        pynvml.nvmlGpmSampleGet(_h(6), s)
    mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(_h(6), 0)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlGpmSampleGet(mig, s)
    with pytest.raises(pynvml.NVMLError_NotFound):
        pynvml.nvmlGpmMigSampleGet(_h(6), 1, s)  # no GPU instance 1
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlGpmMigSampleGet(_h(0), 0, s)  # GPU 0 is not in MIG mode
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        pynvml.nvmlGpmMigSampleGet(mig, 7, s)  # the parent's handle is wanted


def test_metrics_get_errors(nvml: InitFn, ctl: FakeNvmlControl, samples: list[object]) -> None:
    nvml("h100-mig")
    graphics = [M.NVML_GPM_METRIC_GRAPHICS_UTIL]
    a, b = _interval(ctl, samples, lambda s: pynvml.nvmlGpmSampleGet(_h(0), s), 5.0, 6.0)

    def code(mg: object) -> int:
        return int(ctl.lib.nvmlGpmMetricsGet(ctypes.byref(mg)))  # type: ignore[arg-type]

    assert code(_request(a, b, graphics)) == 0
    bad_version = _request(a, b, graphics)
    bad_version.version = 2  # type: ignore[attr-defined]
    assert code(bad_version) == NvmlReturn.ARGUMENT_VERSION_MISMATCH
    assert code(_request(b, a, graphics)) == NvmlReturn.INVALID_ARGUMENT  # sample2 older
    # dt = 0 is valid (the instantaneous values: test_samples_at_the_same_time)
    assert code(_request(a, a, graphics)) == 0
    same_time = _alloc(samples)
    pynvml.nvmlGpmSampleGet(_h(0), same_time)  # at t = 6, like b
    assert code(_request(b, same_time, graphics)) == 0
    assert code(_request(same_time, b, graphics)) == 0
    assert code(_request(same_time, a, graphics)) == NvmlReturn.INVALID_ARGUMENT
    other_gpu = _alloc(samples)
    ctl.set_time(9.0)
    pynvml.nvmlGpmSampleGet(_h(1), other_gpu)
    assert code(_request(a, other_gpu, graphics)) == NvmlReturn.INVALID_ARGUMENT
    gi7, gi8 = _alloc(samples), _alloc(samples)
    pynvml.nvmlGpmMigSampleGet(_h(6), 7, gi7)
    ctl.set_time(10.0)
    pynvml.nvmlGpmMigSampleGet(_h(6), 8, gi8)
    assert code(_request(gi7, gi8, graphics)) == NvmlReturn.INVALID_ARGUMENT  # other instance
    assert code(_request(a, _alloc(samples), graphics)) == NvmlReturn.INVALID_ARGUMENT  # empty
    too_many = _request(a, b, graphics)
    too_many.numMetrics = pynvml.NVML_GPM_METRIC_MAX + 1  # type: ignore[attr-defined]
    assert code(too_many) == NvmlReturn.INVALID_ARGUMENT
    # an id the model has no value for: that entry NOT_SUPPORTED, the others answer
    mg = pynvml.nvmlGpmMetricsGet(
        _request(a, b, [M.NVML_GPM_METRIC_NVDEC_0_UTIL, M.NVML_GPM_METRIC_GRAPHICS_UTIL])
    )
    assert mg.metrics[0].nvmlReturn == NvmlReturn.NOT_SUPPORTED
    assert mg.metrics[1].nvmlReturn == 0
    # free: NULL, twice
    assert ctl.lib.nvmlGpmSampleFree(None) == NvmlReturn.INVALID_ARGUMENT
    lone = pynvml.nvmlGpmSampleAlloc()
    pynvml.nvmlGpmSampleFree(lone)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        pynvml.nvmlGpmSampleFree(lone)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        pynvml.nvmlGpmSampleGet(_h(0), lone)  # a freed sample


def test_lost_gpu_and_faults(nvml: InitFn, ctl: FakeNvmlControl, samples: list[object]) -> None:
    nvml("h100-mig")
    a, b = _interval(ctl, samples, lambda s: pynvml.nvmlGpmSampleGet(_h(2), s), 5.0, 6.0)
    ctl.set_gpu_lost(2)
    try:
        with pytest.raises(pynvml.NVMLError_GpuIsLost):
            pynvml.nvmlGpmMetricsGet(_request(a, b, [M.NVML_GPM_METRIC_SM_UTIL]))
        with pytest.raises(pynvml.NVMLError_GpuIsLost):
            pynvml.nvmlGpmSampleGet(_h(2), a)
    finally:
        ctl.set_gpu_lost(2, False)
    ctl.set_fault("nvmlGpmSampleGet", 2, "TIMEOUT")
    with pytest.raises(pynvml.NVMLError_Timeout):
        pynvml.nvmlGpmSampleGet(_h(2), a)
    assert _metrics(a, b, [M.NVML_GPM_METRIC_SM_UTIL])[M.NVML_GPM_METRIC_SM_UTIL] > 0


def test_graphics_util_matches_sample_values_for_a_burst(
    nvml: InitFn, ctl: FakeNvmlControl, samples: list[object]
) -> None:
    nvml("h100-mig")
    burst = Square(100, 0, 6.6666667, 2)
    k1, k2 = 12, 132  # 20 s on sample boundaries: 3 bursts
    a, b = _interval(
        ctl, samples, lambda s: pynvml.nvmlGpmSampleGet(_h(4), s), k1 * PERIOD, k2 * PERIOD
    )
    got = _metrics(a, b, [M.NVML_GPM_METRIC_GRAPHICS_UTIL])[M.NVML_GPM_METRIC_GRAPHICS_UTIL]
    expected = sum(sample_value(burst, k) for k in range(k1 + 1, k2 + 1)) / (k2 - k1)
    assert got == pytest.approx(expected, abs=0.5)
    assert got == pytest.approx(30.0, abs=0.1)  # the duty cycle
