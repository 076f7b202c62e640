"""nvmlDeviceGetFieldValues: ids, value types, scopes, per-entry returns."""

from __future__ import annotations

import time

import pytest

from .conftest import InitFn

pynvml = pytest.importorskip("pynvml")
UINT_MAX = 0xFFFFFFFF
DOUBLE, UINT, ULL = 0, 1, 3

SUPPORTED_A100 = [1, 3, 4, 5, 6, 38, 45, 52, 59, 160, 74, 75, 76, 77, 78, 79, 81, 269, 270, 271,
                  82, 83, 191, 91, 94, 95, 142, 143, 144, 145, 185, 186, 187, 188, 189, 190,
                  197, 198, 308]  # fmt: skip


def test_all_supported_ids_on_a100(nvml: InitFn) -> None:
    nvml("a100-mig", FAKE_NVML_TIME="100")
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    before = time.time() * 1e6
    fv = pynvml.nvmlDeviceGetFieldValues(h, SUPPORTED_A100)
    after = time.time() * 1e6
    by_id = {v.fieldId: v for v in fv}
    assert all(v.nvmlReturn == 0 for v in fv), [(v.fieldId, v.nvmlReturn) for v in fv]
    assert all(before - 1 <= v.timestamp <= after + 1 for v in fv)
    assert all(v.latencyUsec >= 0 for v in fv)
    assert by_id[1].valueType == UINT
    assert by_id[1].value.uiVal == 1
    assert by_id[91].value.uiVal == 12
    assert by_id[187].value.uiVal == 100000
    assert by_id[188].value.uiVal == 400000
    assert by_id[189].value.uiVal == 400000
    assert by_id[190].value.uiVal == 400000
    assert by_id[186].value.uiVal == pynvml.nvmlDeviceGetPowerUsage(h)
    assert by_id[83].valueType == ULL
    assert by_id[83].value.ullVal == by_id[191].value.ullVal
    assert by_id[83].value.ullVal == pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
    assert by_id[308].valueType == DOUBLE
    assert abs(by_id[308].value.dVal - pynvml.nvmlDeviceGetTemperature(h, 0)) <= 0.5
    assert by_id[3].value.ullVal == pynvml.nvmlDeviceGetTotalEccErrors(h, 0, 0)
    assert by_id[74].value.ullVal == 50_000_000 * 100  # throttle_power_ns = 0 + 5e7/s * 100 s
    assert by_id[197].value.ullVal > 0
    assert by_id[198].value.ullVal > by_id[197].value.ullVal


def test_nvlink_scopes(nvml: InitFn) -> None:
    nvml("a100-mig", FAKE_NVML_TIME="50")
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    per_link = pynvml.nvmlDeviceGetFieldValues(h, [(138, link) for link in range(12)])
    total = pynvml.nvmlDeviceGetFieldValues(h, [(138, UINT_MAX)])[0]
    assert total.nvmlReturn == 0
    vals = [v.value.ullVal for v in per_link]
    assert all(v > 0 for v in vals)
    assert len(set(vals)) == 12
    assert total.value.ullVal == sum(vals)
    errs = pynvml.nvmlDeviceGetFieldValues(h, [(161, 3), (162, 3), (163, 3), (161, 12)])
    assert [v.nvmlReturn for v in errs[:3]] == [0, 0, 0]
    assert errs[0].value.ullVal == pynvml.nvmlDeviceGetNvLinkErrorCounter(h, 3, 0)
    assert errs[3].nvmlReturn == pynvml.NVML_ERROR_INVALID_ARGUMENT
    # link 11 of GPU 5 is down: its counters stay 0, the sum skips it
    g5 = pynvml.nvmlDeviceGetHandleByIndex(5)
    assert pynvml.nvmlDeviceGetFieldValues(g5, [(138, 11)])[0].value.ullVal == 0


def test_unknown_and_unsupported_ids(nvml: InitFn) -> None:
    nvml("t4")
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    fv = pynvml.nvmlDeviceGetFieldValues(h, [9999, 250, 82, 142, 138, 91, 29, 30, 31, 83, 186])
    rets = {v.fieldId: v.nvmlReturn for v in fv}
    assert rets[9999] == rets[250] == 3  # unknown
    assert rets[82] == 3  # T4: no memory temperature sensor
    assert rets[142] == 3  # no row remapping before Ampere
    assert rets[138] == 3  # no NVLink
    assert rets[91] == 0
    assert fv[5].value.uiVal == 0
    assert rets[29] == rets[30] == rets[31] == 0  # retired pages exist on Turing
    assert fv[6].value.uiVal == 2
    assert rets[83] == rets[186] == 0


def test_retired_page_fields_absent_on_ampere(nvml: InitFn) -> None:
    nvml("a100-mig")
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    assert [v.nvmlReturn for v in pynvml.nvmlDeviceGetFieldValues(h, [29, 30, 31])] == [3, 3, 3]
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetRetiredPages(h, 0)


def test_row_remap_fields_off_when_mig_enabled(nvml: InitFn) -> None:
    nvml("a100-mig")
    g2 = pynvml.nvmlDeviceGetHandleByIndex(2)
    fv = pynvml.nvmlDeviceGetFieldValues(g2, [142, 143, 144, 145])
    assert [(v.nvmlReturn, v.value.uiVal) for v in fv] == [(0, 2), (0, 0), (0, 0), (0, 0)]
    g6 = pynvml.nvmlDeviceGetHandleByIndex(6)
    assert [v.nvmlReturn for v in pynvml.nvmlDeviceGetFieldValues(g6, [142])] == [3]
