"""The activity families on a real driver: busy-time counters, GPM, against nvidia-smi.

Real hardware only (tests/gpu/conftest.py skips without a driver). Nothing here changes a GPU
setting or starts any load: the GPUs are measured as they are, idle or busy.

One window is measured for every test of this module. NvmlSource collects a baseline, then
`nvidia-smi --loop-ms=500` polls utilization.gpu of every GPU. The first collection of the
window follows nvidia-smi's first poll, and the second follows its tenth poll after that (about
5 s). The test waits on nvidia-smi's lines, not on a clock. So the counters' growth, GPM's
interval and the polls cover the same seconds.

Why nvidia-smi's utilization.gpu, not `nvidia-smi dmon -s u`: dmon's sm/mem/enc/dec columns
come from the same utilization samples as --query-gpu. They show no GPM metric, so they are
no independent check of the profiling families. GPM's graphics_active is therefore compared
loosely with utilization.gpu, which measures a related thing ("a kernel was running").
"""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pynvml
import pytest

from exporter import metrics
from exporter.model import SampleMap
from exporter.sources.nvml import NvmlSource
from tests.tools import wait_until

POLL_MS = 500
WINDOW_POLLS = 10  # about 5 s of polls between the two collections of the window
LINE_TIMEOUT_S = 30.0  # nvidia-smi prints a line every 0.5 s; silence this long is a hang
BUSY = metrics.UTILIZATION_BUSY.name
REQUIRED_ENGINES = ("gpu",)  # encoder/decoder samples are absent on GPUs without NVENC/NVDEC


@dataclass(frozen=True)
class GpuFacts:
    """What the driver says about one GPU, read without the exporter."""

    index: str
    uuid: str
    mig: bool
    compute_capability: float
    gpm_supported: bool


@dataclass(frozen=True)
class Window:
    before: SampleMap
    after: SampleMap
    elapsed_s: float
    polls: list[dict[str, float | None]]  # per poll: GPU index -> utilization.gpu (%)
    gpus: list[GpuFacts]

    def smi_average(self, index: str) -> float | None:
        """Mean utilization.gpu over the window's polls (0-1), None on a MIG-enabled GPU."""
        values = [poll[index] for poll in self.polls]
        numbers = [value for value in values if value is not None]
        return sum(numbers) / len(numbers) / 100.0 if numbers else None


def _smi_identity(nvidia_smi: str) -> dict[str, tuple[str, bool]]:
    """uuid -> (index, MIG enabled) as nvidia-smi reports them."""
    result = subprocess.run(
        [nvidia_smi, "--query-gpu=index,uuid,mig.mode.current", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    identity: dict[str, tuple[str, bool]] = {}
    for line in result.stdout.splitlines():
        if line.strip():
            index, uuid, mig = (cell.strip() for cell in line.split(","))
            identity[uuid] = (index, mig == "Enabled")
    return identity


def _driver_facts(nvidia_smi: str) -> list[GpuFacts]:
    """Compute capability and GPM support straight from NVML (not through the exporter)."""
    identity = _smi_identity(nvidia_smi)
    facts = []
    pynvml.nvmlInit()
    try:
        for uuid, (index, mig) in sorted(identity.items(), key=lambda item: int(item[1][0])):
            handle = pynvml.nvmlDeviceGetHandleByUUID(uuid)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            try:
                gpm = bool(pynvml.nvmlGpmQueryDeviceSupport(handle).isSupportedDevice)
            except (pynvml.NVMLError, AttributeError):  # a driver without the GPM API
                gpm = False
            facts.append(GpuFacts(index, uuid, mig, major + minor / 10.0, gpm))
    finally:
        pynvml.nvmlShutdown()
    return facts


class SmiLoop:
    """nvidia-smi's own polling loop; each round is one line per GPU, read as it arrives."""

    def __init__(self, nvidia_smi: str, gpu_count: int) -> None:
        self._gpu_count = gpu_count
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._process = subprocess.Popen(
            [
                nvidia_smi,
                "--query-gpu=index,utilization.gpu",
                "--format=csv,noheader,nounits",
                f"--loop-ms={POLL_MS}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def next_round(self) -> dict[str, float | None]:
        """The next poll of every GPU: index -> percent (None where nvidia-smi says N/A)."""
        row: dict[str, float | None] = {}
        while len(row) < self._gpu_count:
            try:
                line = self._lines.get(timeout=LINE_TIMEOUT_S)
            except queue.Empty:
                raise AssertionError(f"nvidia-smi printed nothing for {LINE_TIMEOUT_S}s") from None
            if line is None:
                raise AssertionError("nvidia-smi's loop ended early")
            cells = [cell.strip() for cell in line.split(",")]
            if len(cells) != 2:
                continue
            index, value = cells
            try:
                row[index] = float(value)
            except ValueError:  # [N/A] on a MIG-enabled GPU
                row[index] = None
        return row

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)
        self._reader.join(timeout=10)


@pytest.fixture(scope="module")
def window(nvidia_smi: str) -> Iterator[Window]:
    gpus = _driver_facts(nvidia_smi)
    source = NvmlSource()
    source.open()
    try:
        # Baseline: the busy counters start with the first samples NVML has, GPM takes its
        # first sample. A GPU whose buffer was still empty starts at a later collection.
        whole = [gpu.uuid for gpu in gpus if not gpu.mig]

        def counting() -> bool:
            present = {labels[1] for labels, _ in source.collect().get(BUSY, ())}
            return present >= set(whole)

        wait_until(counting, timeout=30, what="busy-seconds counters of every whole GPU")
        loop = SmiLoop(nvidia_smi, len(gpus))
        try:
            loop.next_round()  # nvidia-smi is up and polling
            before = source.collect()
            start = time.monotonic()
            polls = [loop.next_round() for _ in range(WINDOW_POLLS)]
            after = source.collect()
            elapsed = time.monotonic() - start
        finally:
            loop.stop()
        yield Window(before, after, elapsed, polls, gpus)
    finally:
        source.close()


def _series(samples: SampleMap, family: metrics.Family, uuid: str) -> dict[tuple[str, ...], float]:
    """The family's series of one GPU, keyed by the labels after gpu and uuid."""
    return {
        labels[2:]: value for labels, value in samples.get(family.name, ()) if labels[1] == uuid
    }


def _whole_gpus(window: Window) -> list[GpuFacts]:
    return [gpu for gpu in window.gpus if not gpu.mig]


def test_busy_and_sampled_counters_cover_the_window(window: Window) -> None:
    assert window.elapsed_s >= 2.0, "the window is too short to measure"
    for gpu in window.gpus:
        busy = [
            _series(s, metrics.UTILIZATION_BUSY, gpu.uuid) for s in (window.before, window.after)
        ]
        sampled = [
            _series(s, metrics.UTILIZATION_SAMPLED, gpu.uuid) for s in (window.before, window.after)
        ]
        if gpu.mig:
            # NVML keeps no utilization samples on a MIG-enabled GPU: no counter, never a 0.
            assert busy == [{}, {}] and sampled == [{}, {}], gpu
            continue
        for engine in REQUIRED_ENGINES:
            assert (engine,) in busy[0] and (engine,) in busy[1], (gpu, engine, busy)
        assert set(busy[1]) == set(sampled[1]) and set(busy[0]) <= set(busy[1]), gpu
        for key in busy[0]:
            grew_sampled = sampled[1][key] - sampled[0][key]
            grew_busy = busy[1][key] - busy[0][key]
            # Samples cover the elapsed time; the sample period (1/6 s to 1 s by product) and
            # the edges of the window make it inexact: within 50 %.
            assert 0.5 * window.elapsed_s <= grew_sampled <= 1.5 * window.elapsed_s, (
                gpu,
                key,
                grew_sampled,
                window.elapsed_s,
            )
            assert 0.0 <= grew_busy <= grew_sampled + 1e-9, (gpu, key, grew_busy, grew_sampled)
            for moment in (0, 1):
                assert 0.0 <= busy[moment][key] <= sampled[moment][key] + 1e-9, (gpu, key)


def test_busy_rate_agrees_with_nvidia_smi(window: Window) -> None:
    for gpu in _whole_gpus(window):
        busy = [
            _series(s, metrics.UTILIZATION_BUSY, gpu.uuid) for s in (window.before, window.after)
        ]
        sampled = [
            _series(s, metrics.UTILIZATION_SAMPLED, gpu.uuid) for s in (window.before, window.after)
        ]
        key = ("gpu",)
        ours = (busy[1][key] - busy[0][key]) / (sampled[1][key] - sampled[0][key])
        smi = window.smi_average(gpu.index)
        assert smi is not None, gpu
        # 25 percentage points: each nvidia-smi poll shows one sample (1/6 s to 1 s), so ten
        # polls see a fraction of the samples our counters add up. On a bursty load the polls
        # fall on either side of burst edges, and the window's edges are not aligned to the
        # polls. A steady or idle GPU agrees far closer. A counter that lost or
        # double-counted samples does not.
        assert abs(ours - smi) <= 0.25, (gpu, ours, smi)


def _profiling(samples: SampleMap, uuid: str) -> dict[str, list[float]]:
    """Every profiling series of one GPU (whole-GPU and per GPU instance), by family."""
    found: dict[str, list[float]] = {}
    for family in (*metrics.GPM.all(), *metrics.MIG_GPM.all()):
        for labels, value in samples.get(family.name, ()):
            if labels[1] == uuid:
                found.setdefault(family.name, []).append(value)
    return found


def test_gpm_profiling_where_the_gpu_has_it(window: Window) -> None:
    for gpu in window.gpus:
        found = _profiling(window.after, gpu.uuid)
        if gpu.compute_capability < 9.0 or not gpu.gpm_supported:
            # No GPM before Hopper, or a driver that says this GPU has none (vGPU, a driver
            # older than the GPM API): the families are absent, never 0.
            assert found == {}, (gpu, sorted(found))
            continue
        whole = _series(window.after, metrics.GPM.sm_active, gpu.uuid)
        if gpu.mig:
            assert whole == {}, (gpu, whole)  # per GPU instance instead
        else:
            # Two collections about 5 s apart (NVML needs 100 ms): the interval's average.
            assert () in whole, (gpu, sorted(found))
            assert 0.0 <= whole[()] <= 1.0, (gpu, whole)
        for family in (metrics.GPM, metrics.MIG_GPM):
            for ratio in (family.graphics_active, family.sm_active, family.dram_active):
                assert all(0.0 <= v <= 1.0 for v in found.get(ratio.name, ())), (gpu, ratio)


def test_gpm_graphics_activity_agrees_loosely_with_utilization(window: Window) -> None:
    compared = 0
    for gpu in _whole_gpus(window):
        if gpu.compute_capability < 9.0 or not gpu.gpm_supported:
            continue
        graphics = _series(window.after, metrics.GPM.graphics_active, gpu.uuid)
        smi = window.smi_average(gpu.index)
        assert () in graphics and smi is not None, gpu
        # 30 points: a different measurement (GPM's graphics/compute engine activity over the
        # whole interval, against one utilization sample per poll); they track each other on
        # an idle or a steadily loaded GPU.
        assert abs(graphics[()] - smi) <= 0.30, (gpu, graphics[()], smi)
        compared += 1
    if compared == 0:
        pytest.skip("no GPU with GPM that is not in MIG mode")
