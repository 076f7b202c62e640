"""The process_* families: checked against client_python's ProcessCollector as the reference."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.selfmetrics import ProcessMetrics

STAT_FIELDS_AFTER_COMM = (
    # state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    "S 1 1 1 0 -1 4194560 100 0 0 0 250 50 "
    # cutime cstime priority nice threads itrealvalue starttime vsize rss
    "0 0 20 0 4 0 1000 123456789 2048 18446744073709551615"
)


def fake_proc(root: Path, comm: str = "python3", btime: int = 1_700_000_000) -> Path:
    (root / "self" / "fd").mkdir(parents=True)
    for fd in range(3):
        (root / "self" / "fd" / str(fd)).touch()
    (root / "self" / "stat").write_text(f"4242 ({comm}) {STAT_FIELDS_AFTER_COMM}\n")
    (root / "stat").write_text(f"cpu  1 2 3 4\nbtime {btime}\nprocesses 9\n")
    return root


def samples(text: str, openmetrics: bool = False) -> dict[str, float]:
    parse = parse_om if openmetrics else parse_text
    return {s.name: s.value for family in parse(text) for s in family.samples}


def test_same_families_and_values_as_client_python() -> None:
    registry = CollectorRegistry(auto_describe=False)
    collector = ProcessCollector(registry=registry)
    reference = {s.name: s.value for family in collector.collect() for s in family.samples}
    ours = samples(ProcessMetrics().render(openmetrics=False))
    assert set(ours) == set(reference)
    assert abs(ours["process_start_time_seconds"] - reference["process_start_time_seconds"]) < 1
    assert ours["process_max_fds"] == reference["process_max_fds"]
    assert abs(ours["process_open_fds"] - reference["process_open_fds"]) <= 4  # other threads
    # memory and CPU move between the two reads: of the same size, not necessarily equal
    for name in ("process_virtual_memory_bytes", "process_resident_memory_bytes"):
        assert 0.8 < ours[name] / reference[name] < 1.25, name
    assert ours["process_cpu_seconds_total"] >= reference["process_cpu_seconds_total"] - 0.02


def test_help_and_type_lines_match_client_python() -> None:
    registry = CollectorRegistry(auto_describe=False)
    collector = ProcessCollector(registry=registry)
    reference = {family.name: (family.type, family.documentation) for family in collector.collect()}
    ours = {
        family.name: (family.type, family.documentation)
        for family in parse_text(ProcessMetrics().render(openmetrics=False))
    }
    assert ours == reference


def test_values_decoded_from_proc(tmp_path: Path) -> None:
    metrics = ProcessMetrics(fake_proc(tmp_path), max_fds=lambda: 1024)
    ticks = metrics._ticks
    values = samples(metrics.render(openmetrics=False))
    assert values["process_virtual_memory_bytes"] == 123456789
    assert values["process_resident_memory_bytes"] == 2048 * metrics._page_size
    assert values["process_cpu_seconds_total"] == (250 + 50) / ticks
    assert values["process_start_time_seconds"] == 1_700_000_000 + 1000 / ticks
    assert values["process_open_fds"] == 3
    assert values["process_max_fds"] == 1024


def test_command_name_with_parentheses_and_spaces(tmp_path: Path) -> None:
    # comm is user-controlled; the fields start after the *last* ")".
    metrics = ProcessMetrics(fake_proc(tmp_path, comm="a) S 9 (b"), max_fds=lambda: 1024)
    assert samples(metrics.render(False))["process_virtual_memory_bytes"] == 123456789


def test_openmetrics_counter_family_name(tmp_path: Path) -> None:
    text = ProcessMetrics(fake_proc(tmp_path), max_fds=lambda: 1024).render(openmetrics=True)
    assert "# TYPE process_cpu_seconds counter\n" in text
    assert "process_cpu_seconds_total " in text
    assert "# EOF" not in text  # the publisher appends the one closing EOF
    assert "process_cpu_seconds_total" in samples(text + "# EOF\n", openmetrics=True)


def test_unreadable_proc_omits_families_instead_of_exporting_zero(tmp_path: Path) -> None:
    metrics = ProcessMetrics(tmp_path / "absent", max_fds=lambda: 1024)
    assert metrics.render(openmetrics=False) == (
        "# HELP process_max_fds Maximum number of open file descriptors.\n"
        "# TYPE process_max_fds gauge\nprocess_max_fds 1024.0\n"
    )


def test_garbage_stat_omits_its_families(tmp_path: Path) -> None:
    root = fake_proc(tmp_path)
    (root / "self" / "stat").write_text("4242 (x) S 1 2\n")  # truncated
    values = samples(ProcessMetrics(root, max_fds=lambda: 1024).render(False))
    assert set(values) == {"process_open_fds", "process_max_fds"}


def test_unlimited_fds_are_not_exported_as_a_number(tmp_path: Path) -> None:
    import resource

    metrics = ProcessMetrics(fake_proc(tmp_path), max_fds=lambda: resource.RLIM_INFINITY)
    assert "process_max_fds" not in metrics.render(openmetrics=False)


def test_the_exporter_does_not_import_prometheus_client() -> None:
    code = "import sys, exporter.app, exporter.cli; sys.exit('prometheus_client' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
