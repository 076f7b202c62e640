"""Our values against the driver's own report (nvidia-smi), on real hardware only."""

from __future__ import annotations

import csv
import io
import subprocess
import time
from collections.abc import Iterator

import pytest

from exporter import metrics
from exporter.model import SampleMap
from exporter.sources.nvml import NvmlSource
from tests.tools import ExporterProcess

QUERY = (
    "index,uuid,name,pci.bus_id,memory.total,driver_version,power.limit,temperature.gpu,"
    "clocks.max.sm,mig.mode.current"
)


def _smi(nvidia_smi: str) -> list[dict[str, str]]:
    result = subprocess.run(
        [nvidia_smi, f"--query-gpu={QUERY}", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    names = QUERY.split(",")
    rows = csv.reader(io.StringIO(result.stdout), skipinitialspace=True)
    return [dict(zip(names, row, strict=True)) for row in rows if row]


@pytest.fixture(scope="module")
def collected(nvidia_smi: str) -> Iterator[SampleMap]:
    source = NvmlSource()
    source.open()
    try:
        yield source.collect()
    finally:
        source.close()


def _by_gpu(samples: SampleMap, family: metrics.Family) -> dict[str, float]:
    return {labels[0]: value for labels, value in samples.get(family.name, ()) if len(labels) == 2}


def test_identity_matches(nvidia_smi: str, collected: SampleMap) -> None:
    rows = _smi(nvidia_smi)
    info = {labels[0]: labels for labels, _ in collected[metrics.INFO.name]}
    assert len(info) == len(rows)
    field = metrics.INFO_LABELS.index
    for row in rows:
        labels = info[row["index"]]
        assert labels[1] == row["uuid"]
        assert labels[field("model")] == row["name"]
        assert labels[field("driver_version")] == row["driver_version"]
        assert labels[field("pci_bus_id")].lower() == row["pci.bus_id"].lower()


def test_values_match_within_tolerance(nvidia_smi: str, collected: SampleMap) -> None:
    rows = _smi(nvidia_smi)
    total = _by_gpu(collected, metrics.MEMORY_TOTAL)
    temperature = _by_gpu(collected, metrics.TEMPERATURE)
    max_sm = {labels[0]: v for labels, v in collected[metrics.MAX_CLOCK.name] if labels[2] == "sm"}
    limits = {
        labels[0]: v for labels, v in collected[metrics.POWER_LIMIT.name] if labels[2] == "current"
    }
    for row in rows:
        gpu = row["index"]
        assert total[gpu] == pytest.approx(float(row["memory.total"]) * 2**20, rel=0.01)
        assert temperature[gpu] == pytest.approx(float(row["temperature.gpu"]), abs=5)
        assert max_sm[gpu] == pytest.approx(float(row["clocks.max.sm"]) * 1e6, rel=0.01)
        if row["power.limit"] not in ("[N/A]", "N/A") and gpu in limits:
            assert limits[gpu] == pytest.approx(float(row["power.limit"]), rel=0.01)
    assert set(_by_gpu(collected, metrics.UP).values()) == {1.0}


def test_exporter_runs_30_seconds_on_the_real_driver(nvidia_smi: str) -> None:
    process = ExporterProcess("--collection.interval=1s")
    try:
        process.wait_ready(timeout=30)
        first = process.metrics()
        time.sleep(30)
        last = process.metrics()
    finally:
        code, seconds = process.stop()
    assert code == 0 and seconds < 2.0
    assert 'nvidia_gpu_exporter_source_up{source="nvml"} 1' in last
    assert last.count("nvidia_gpu_up{") == len(_smi(nvidia_smi))
    # Counters move between the two scrapes: the exporter kept collecting for 30 s.
    assert first != last
