"""Utilization that tells the truth, through the real pynvml over the fake driver (issue 11).

The scenario clock is stepped by the test (FakeNvmlControl.set_time) and the source measures
GPM intervals with that same clock, so a minute of node time takes milliseconds and every
value is determined by the scenario: nothing here waits on wall time.

h100-mig (exporter/fakenvml/scenarios/h100-mig.scn): GPU 3 busy but starved (utilization 95%,
SM activity 5%), GPU 4 bursty (100% for 2 s every 20/3 s: a 30% duty cycle), GPU 5 time-sliced
by three processes with shares 0.5/0.3/0.2 of a constant 60%, GPUs 6 and 7 in MIG mode.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from exporter import metrics
from exporter.attribution import (
    ContainerAllocation,
    DeviceGroup,
    KubeletView,
    PodAllocation,
)
from exporter.fakenvml.control import FakeNvmlControl
from exporter.model import SampleMap
from exporter.sources.allocation import AllocationSource
from exporter.sources.nvml import NvmlSource
from exporter.sources.procfs import ProcReader
from tests.tools import require_tool

Factory = Callable[..., NvmlSource]
SCENARIO = "h100-mig"
STARVED, BURSTY, SLICED = "3", "4", "5"
BURST_PERIOD = 20.0 / 3.0  # seconds; 2 s on, 30% duty
COLLECTION_INTERVAL = 5.0
SCRAPE_INTERVAL = 15.0
BUSY = metrics.UTILIZATION_BUSY.name
SAMPLED = metrics.UTILIZATION_SAMPLED.name
GPM = metrics.GPM
MIG_GPM = metrics.MIG_GPM


def _value(samples: SampleMap, family: str, gpu: str, *extra: str) -> float:
    for labels, value in samples.get(family, ()):
        if labels[0] == gpu and labels[2:] == extra:
            return value
    raise AssertionError(f"{family}{{gpu={gpu}, {extra}}} missing")


def _run(
    source: NvmlSource, control: FakeNvmlControl, start: float, seconds: float
) -> dict[float, SampleMap]:
    """Collect every COLLECTION_INTERVAL from `start` for `seconds`: {time: samples}."""
    collected: dict[float, SampleMap] = {}
    steps = round(seconds / COLLECTION_INTERVAL)
    for step in range(steps + 1):
        at = start + step * COLLECTION_INTERVAL
        control.set_time(at)
        collected[at] = source.collect()
    return collected


@pytest.fixture
def h100(open_source: Factory, control: FakeNvmlControl) -> NvmlSource:
    return open_source(SCENARIO, at=1000.0, clock=control.get_time)


# -- 1. no aliasing ------------------------------------------------------------------------------


def test_busy_counter_gives_the_true_duty_cycle_where_the_gauge_aliases(
    h100: NvmlSource, control: FakeNvmlControl
) -> None:
    """Over a minute (nine burst periods) the counter's growth is 0.30 of the time, whatever
    the phase. The gauge, scraped every 15 s, is one 1/6 s sample per scrape: almost every
    reading is 0 or 1, never near 0.3, and the minute's mean of four scrapes is 0.25 or 0.5
    depending on where the scrapes fall in the burst cycle."""
    busy_rates: list[float] = []
    gauge_means: list[float] = []
    readings: list[float] = []
    phases = 40
    for offset in range(phases):  # scrape phases spread evenly over one burst period
        # 30 whole periods apart (200 s, longer than a run), shifted by 1/40 of a period
        begin = 1000.0 + offset * 30 * BURST_PERIOD + offset * BURST_PERIOD / phases
        run = _run(h100, control, begin, 60.0 + COLLECTION_INTERVAL)
        first, last = begin + COLLECTION_INTERVAL, begin + COLLECTION_INTERVAL + 60.0
        grown = _value(run[last], BUSY, BURSTY, "gpu") - _value(run[first], BUSY, BURSTY, "gpu")
        covered = _value(run[last], SAMPLED, BURSTY, "gpu") - _value(
            run[first], SAMPLED, BURSTY, "gpu"
        )
        busy_rates.append(grown / 60.0)
        assert covered == pytest.approx(60.0, abs=0.2)  # every sample of the minute was read
        scrapes = [first + k * SCRAPE_INTERVAL for k in range(1, 5)]  # (first, last], 15 s apart
        gauge = [_value(run[t], metrics.UTILIZATION.name, BURSTY) for t in scrapes]
        readings.extend(gauge)
        gauge_means.append(sum(gauge) / len(gauge))
    assert all(abs(rate - 0.30) <= 0.02 for rate in busy_rates), busy_rates
    worst = max(abs(mean - 0.30) for mean in gauge_means)
    assert worst >= 0.15, f"the gauge should alias visibly: means {gauge_means}"
    assert max(gauge_means) - min(gauge_means) >= 0.2, gauge_means
    near_truth = [value for value in readings if 0.1 < value < 0.9]
    assert len(near_truth) <= len(readings) // 4, sorted(readings)


def test_prometheus_rate_of_the_scraped_counter_is_the_true_average(
    h100: NvmlSource, control: FakeNvmlControl, tmp_path: Path
) -> None:
    """The same claim through Prometheus' own rate(), evaluated by promtool on the values a
    15 s scrape of this exporter would have stored. rate(...[2m]) is used because at a 15 s
    scrape a [1m] window holds 45 s of counter growth (6.75 burst periods), whose own spread
    is a window artefact of +-0.03, not aliasing; [2m] holds 105 s (15.75 periods)."""
    promtool = require_tool("promtool")
    series: dict[str, list[float]] = {}
    for offset in range(7):
        begin = 5000.0 + offset * 1000.0 + offset * 0.9
        run = _run(h100, control, begin, 180.0)
        scrapes = [begin + k * SCRAPE_INTERVAL for k in range(13)]
        key = (
            "nvidia_gpu_utilization_busy_seconds_total"
            f'{{gpu="{BURSTY}",engine="gpu",phase="{offset}"}}'
        )
        series[key] = [_value(run[t], BUSY, BURSTY, "gpu") for t in scrapes]
        gauge = f'nvidia_gpu_utilization_ratio{{gpu="{BURSTY}",phase="{offset}"}}'
        series[gauge] = [_value(run[t], metrics.UTILIZATION.name, BURSTY) for t in scrapes]
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "aliasing",
                        "rules": [
                            {
                                "alert": "BusyRateIsTheDutyCycle",
                                "expr": "abs(rate(nvidia_gpu_utilization_busy_seconds_total"
                                '{engine="gpu"}[2m]) - 0.30) <= 0.02',
                            },
                            {
                                "alert": "GaugeAverageIsOff",
                                "expr": "abs(avg_over_time(nvidia_gpu_utilization_ratio[2m])"
                                " - 0.30) > 0.05",
                            },
                        ],
                    }
                ]
            }
        )
    )
    phases = range(7)
    test = {
        "rule_files": [str(rules)],
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                "input_series": [
                    {"series": name, "values": " ".join(repr(v) for v in values)}
                    for name, values in series.items()
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "3m",
                        "alertname": "BusyRateIsTheDutyCycle",
                        "exp_alerts": [
                            {"exp_labels": {"gpu": BURSTY, "engine": "gpu", "phase": str(p)}}
                            for p in phases
                        ],
                    }
                ],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test))
    result = subprocess.run(
        [promtool, "test", "rules", str(tmp_path / "test.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # and the gauge's average over the same windows misses the duty cycle for some phases
    off = 0
    for phase in phases:
        values = series[f'nvidia_gpu_utilization_ratio{{gpu="{BURSTY}",phase="{phase}"}}'][5:]
        off += abs(sum(values) / len(values) - 0.30) > 0.05
    assert off >= 1


def test_samples_continue_across_an_nvml_reinitialisation(
    h100: NvmlSource, control: FakeNvmlControl
) -> None:
    run = _run(h100, control, 2000.0, 20.0)
    before = _value(run[2020.0], SAMPLED, SLICED, "gpu")
    h100.close()
    h100.open()
    after = _run(h100, control, 2030.0, 10.0)
    # no sample counted twice, none lost: 10 s (the gap) + 10 s more, at 60% busy
    assert _value(after[2040.0], SAMPLED, SLICED, "gpu") == pytest.approx(before + 20.0, abs=0.2)
    assert _value(after[2040.0], BUSY, SLICED, "gpu") - _value(
        run[2020.0], BUSY, SLICED, "gpu"
    ) == pytest.approx(12.0, abs=0.3)


def test_a_wrapped_buffer_counts_only_the_samples_it_kept(
    h100: NvmlSource, control: FakeNvmlControl
) -> None:
    """Collections 30 s apart on a 100-sample buffer (16.7 s at 1/6 s): the samples in between
    were overwritten. The counters cover only what was read, so busy/sampled stays the truth
    (60 % on the time-sliced GPU) while sampled seconds fall short of wall time."""
    control.set_time(14000.0)
    first = h100.collect()
    control.set_time(14030.0)
    second = h100.collect()
    sampled = _value(second, SAMPLED, SLICED, "gpu") - _value(first, SAMPLED, SLICED, "gpu")
    busy = _value(second, BUSY, SLICED, "gpu") - _value(first, BUSY, SLICED, "gpu")
    assert sampled == pytest.approx(100 / 6, abs=0.2)  # the buffer's span, not 30 s
    assert busy / sampled == pytest.approx(0.60, abs=0.005)


def test_a_collection_with_no_new_sample_keeps_the_counters(
    h100: NvmlSource, control: FakeNvmlControl
) -> None:
    control.set_time(3000.0)
    first = h100.collect()
    second = h100.collect()  # same scenario time: NVML has nothing newer (NOT_FOUND)
    assert _value(second, BUSY, BURSTY, "gpu") == _value(first, BUSY, BURSTY, "gpu")
    errors = metrics.NVML_ERRORS.name
    assert dict(second.get(errors, ())) == dict(first.get(errors, ())) == {}


def test_no_busy_counters_on_mig_gpus(h100: NvmlSource, control: FakeNvmlControl) -> None:
    run = _run(h100, control, 4000.0, 5.0)
    gpus = {labels[0] for labels, _ in run[4005.0][BUSY]}
    assert gpus == {"0", "1", "2", "3", "4", "5"}


# -- 2. GPM ------------------------------------------------------------------------------------


def test_gpm_ratios_equal_the_scenario_on_h100(h100: NvmlSource, control: FakeNvmlControl) -> None:
    run = _run(h100, control, 6000.0, 10.0)
    now = run[6010.0]
    # GPU 3: utilization 95 (constant), memory utilization 6, SM factor 0.05, tensor 0.01 ...
    expect = {
        GPM.graphics_active.name: 0.95,
        GPM.sm_active.name: 0.95 * 0.05,
        GPM.sm_occupancy.name: 0.95 * 0.02,
        GPM.tensor_active.name: 0.95 * 0.01,
        GPM.dram_active.name: 0.06 * 0.5,
    }
    for family, value in expect.items():
        assert _value(now, family, STARVED) == pytest.approx(value, abs=1e-6), family
    fp32 = _value(now, GPM.pipe_active_seconds.name, STARVED, "fp32") - _value(
        run[6005.0], GPM.pipe_active_seconds.name, STARVED, "fp32"
    )
    assert fp32 == pytest.approx(5.0 * 0.95 * 0.02, abs=1e-6)
    # the counters grow by ratio x interval: 5 s per collection after the baseline
    grown = _value(now, GPM.sm_active_seconds.name, STARVED) - _value(
        run[6005.0], GPM.sm_active_seconds.name, STARVED
    )
    assert grown == pytest.approx(5.0 * 0.95 * 0.05, abs=1e-6)


def test_gpm_is_the_interval_average_not_a_snapshot(
    h100: NvmlSource, control: FakeNvmlControl
) -> None:
    # GPU 4 bursts 2 s in every 20/3 s: over 20 s (three whole periods) graphics is 0.30 busy
    control.set_time(7000.0)
    h100.collect()
    control.set_time(7020.0)
    now = h100.collect()
    assert _value(now, GPM.graphics_active.name, BURSTY) == pytest.approx(0.30, abs=1e-3)
    assert _value(now, GPM.sm_active.name, BURSTY) == pytest.approx(0.30 * 0.7, abs=1e-3)


def test_starved_gpu_shows_high_utilization_and_idle_sms(
    h100: NvmlSource, control: FakeNvmlControl
) -> None:
    run = _run(h100, control, 8000.0, 10.0)
    now, before = run[8010.0], run[8005.0]
    busy = (_value(now, BUSY, STARVED, "gpu") - _value(before, BUSY, STARVED, "gpu")) / 5.0
    assert busy == pytest.approx(0.95, abs=0.01)
    assert _value(now, GPM.sm_active.name, STARVED) < 0.1


@pytest.mark.parametrize("scenario", ["a100-mig", "t4"])
def test_no_profiling_series_without_gpm(
    open_source: Factory, control: FakeNvmlControl, scenario: str
) -> None:
    source = open_source(scenario, at=1000.0, clock=control.get_time)
    run = _run(source, control, 1000.0, 10.0)
    prefixes = ("nvidia_gpu_profiling_", "nvidia_gpu_mig_profiling_")
    assert not [family for family in run[1010.0] if family.startswith(prefixes)]
    errors = run[1010.0].get(metrics.NVML_ERRORS.name, ())
    assert not [labels for labels, _ in errors if labels[0].startswith("nvmlGpm")]


def test_mig_gpm_per_gpu_instance(h100: NvmlSource, control: FakeNvmlControl) -> None:
    run = _run(h100, control, 9000.0, 10.0)
    now = run[9010.0]
    instances = {
        (labels[0], labels[2]): value for labels, value in now[MIG_GPM.graphics_active.name]
    }
    directory = {gpu.index: gpu for gpu in h100.directory()}
    expected = {(str(gpu), str(mig.gpu_instance)) for gpu in (6, 7) for mig in directory[gpu].migs}
    assert set(instances) == expected
    assert len({round(v, 6) for k, v in instances.items() if k[0] == "6"}) == 7  # all differ
    # whole-GPU GPM is not asked on a MIG-enabled GPU: no double counting
    assert {labels[0] for labels, _ in now[GPM.graphics_active.name]} == {
        "0",
        "1",
        "2",
        "3",
        "4",
        "5",
    }


# -- 3. per-pod utilization on a time-sliced GPU ----------------------------------------------

UIDS = {
    30501: "aaaaaaaa-0000-0000-0000-000000000001",
    30502: "aaaaaaaa-0000-0000-0000-000000000002",
    30503: "aaaaaaaa-0000-0000-0000-000000000003",
}


def _procfs(root: Path) -> Path:
    for pid, uid in UIDS.items():
        folder = root / str(pid)
        folder.mkdir(parents=True)
        (folder / "comm").write_text("python3\n")
        slug = uid.replace("-", "_")
        (folder / "cgroup").write_text(
            "0::/kubepods.slice/kubepods-burstable.slice/"
            f"kubepods-burstable-pod{slug}.slice/cri-containerd-{pid:064d}.scope\n"
        )
    return root


def test_pod_busy_seconds_add_up_to_the_gpu_on_a_time_sliced_gpu(
    open_source: Factory, control: FakeNvmlControl, tmp_path: Path
) -> None:
    source = open_source(SCENARIO, at=1000.0, clock=control.get_time, capture_processes=True)
    control.set_time(1000.0)
    source.collect()
    uuid = next(gpu.uuid for gpu in source.directory() if gpu.index == 5)
    view = KubeletView(
        pods=tuple(
            PodAllocation(
                "serving",
                name,
                (
                    ContainerAllocation(
                        "model", (DeviceGroup("nvidia.com/gpu", (f"{uuid}::{n}",)),)
                    ),
                ),
            )
            for n, name in enumerate(("alpha", "beta", "gamma"))
        )
    )
    attribution = AllocationSource(
        source.directory,
        lambda: view,
        source.processes,
        procfs=ProcReader(str(_procfs(tmp_path / "proc"))),
        activity=source.process_activity,
    )
    pod_family = metrics.POD_UTILIZATION_BUSY.name
    readings: dict[float, tuple[SampleMap, SampleMap]] = {}
    for at in (1005.0, 1010.0, 1015.0, 1020.0, 1025.0, 1030.0):
        control.set_time(at)
        readings[at] = (source.collect(), attribution.collect())

    def pods(at: float) -> dict[str, float]:
        return {
            labels[6]: value
            for labels, value in readings[at][1][pod_family]
            if labels[1] == uuid and labels[7] == "gpu"
        }

    first, last = pods(1005.0), pods(1030.0)
    grown = {uid: last[uid] - first.get(uid, 0.0) for uid in last}
    assert set(grown) == set(UIDS.values())
    gpu_grown = _value(readings[1030.0][0], BUSY, SLICED, "gpu") - _value(
        readings[1005.0][0], BUSY, SLICED, "gpu"
    )
    assert gpu_grown == pytest.approx(0.60 * 25.0, abs=0.2)
    assert sum(grown.values()) == pytest.approx(gpu_grown, abs=0.3)
    shares = {pid: grown[uid] / gpu_grown for pid, uid in UIDS.items()}
    assert shares == pytest.approx({30501: 0.5, 30502: 0.3, 30503: 0.2}, abs=0.02)


# -- GPM sample buffers: allocated once per GPU or GPU instance, freed at close ----------------


def _profiling(samples: SampleMap) -> set[str]:
    prefixes = ("nvidia_gpu_profiling_", "nvidia_gpu_mig_profiling_")
    return {family for family in samples if family.startswith(prefixes)}


def test_gpm_buffer_allocation_fault(h100: NvmlSource, control: FakeNvmlControl) -> None:
    control.set_fault("nvmlGpmSampleAlloc", -1, "UNKNOWN")
    run = _run(h100, control, 11000.0, 10.0)
    assert not _profiling(run[11010.0])  # no buffer: no GPM, and nothing else is lost
    assert _value(run[11010.0], BUSY, BURSTY, "gpu") > 0
    errors = dict(run[11010.0][metrics.NVML_ERRORS.name])
    assert errors[("nvmlGpmSampleAlloc", "UNKNOWN")] >= 6  # asked again every collection
    control.clear_faults()
    run = _run(h100, control, 11020.0, 10.0)
    assert GPM.sm_active.name in _profiling(run[11030.0])
    assert MIG_GPM.sm_active.name in _profiling(run[11030.0])


def test_gpm_buffer_free_fault_at_close(h100: NvmlSource, control: FakeNvmlControl) -> None:
    _run(h100, control, 12000.0, 5.0)
    control.set_fault("nvmlGpmSampleFree", -1, "UNKNOWN")
    h100.close()  # logged, never raised
    control.clear_faults()
    h100.open()
    run = _run(h100, control, 12010.0, 10.0)
    assert GPM.sm_active.name in _profiling(run[12020.0])


def test_a_whole_h100_stays_within_the_series_budget(
    h100: NvmlSource, control: FakeNvmlControl
) -> None:
    """docs/performance.md budgets under 120 series per GPU with default settings; GPM and the
    busy counters are on by default, so the busiest whole GPU (18 NVLinks) must still fit."""
    run = _run(h100, control, 13000.0, 10.0)
    per_gpu: dict[str, int] = {}
    for family, entries in run[13010.0].items():
        if metrics.BY_NAME[family].labels[:2] != ("gpu", "uuid"):
            continue
        for labels, _ in entries:
            per_gpu[labels[0]] = per_gpu.get(labels[0], 0) + 1
    whole = {gpu: count for gpu, count in per_gpu.items() if gpu not in ("6", "7")}
    assert whole and max(whole.values()) < 120, whole
    assert _profiling(run[13010.0])  # GPM is part of the count
