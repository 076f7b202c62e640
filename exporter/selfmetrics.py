"""The standard `process_*` families (CPU, memory, file descriptors, start time), read from /proc.

Why our own reader and not prometheus_client's ProcessCollector: importing prometheus_client pulls
in its HTTP, WSGI and exposition modules, which this exporter, with its own renderer and server,
never uses; dropping it saved 1.6 MiB of resident memory (`benchmarks/memory.py --peer`, README
"Measured"). The families, names and help texts are the ones client_python writes, so existing
process dashboards keep working.

Each value comes from one read of /proc/self/stat, /proc/self/fd and getrlimit per render; a
failing read leaves that family out rather than exporting a wrong value.
"""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Fields of /proc/<pid>/stat after the ")" that ends the command name (proc(5), 1-based field
# numbers minus 3: the list starts at field 3, "state").
_UTIME, _STIME, _STARTTIME, _VSIZE, _RSS = 11, 12, 19, 20, 21


@dataclass(frozen=True, slots=True)
class _Family:
    name: str
    kind: str  # "gauge" or "counter"
    help: str

    def lines(self, value: float, openmetrics: bool) -> str:
        """HELP, TYPE and the sample; OpenMetrics names a counter family without `_total`."""
        family = self.name
        if self.kind == "counter" and openmetrics:
            family = self.name.removesuffix("_total")
        return (
            f"# HELP {family} {self.help}\n# TYPE {family} {self.kind}\n"
            f"{self.name} {float(value)!r}\n"
        )


VIRTUAL_MEMORY = _Family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.")
RESIDENT_MEMORY = _Family(
    "process_resident_memory_bytes", "gauge", "Resident memory size in bytes."
)
START_TIME = _Family(
    "process_start_time_seconds",
    "gauge",
    "Start time of the process since unix epoch in seconds.",
)
CPU_SECONDS = _Family(
    "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds."
)
OPEN_FDS = _Family("process_open_fds", "gauge", "Number of open file descriptors.")
MAX_FDS = _Family("process_max_fds", "gauge", "Maximum number of open file descriptors.")


def _boot_time(proc: Path) -> float | None:
    """Seconds since the epoch at boot (`btime` in /proc/stat); None if unreadable."""
    try:
        for line in (proc / "stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class ProcessMetrics:
    """Renders the `process_*` families of this process in either exposition format."""

    def __init__(
        self, proc: Path = Path("/proc"), max_fds: Callable[[], int] | None = None
    ) -> None:
        self._self = proc / "self"
        self._ticks = float(os.sysconf("SC_CLK_TCK"))
        self._page_size = float(os.sysconf("SC_PAGE_SIZE"))
        self._boot = _boot_time(proc)
        self._max_fds = max_fds or (lambda: resource.getrlimit(resource.RLIMIT_NOFILE)[0])

    def values(self) -> dict[_Family, float]:
        """The current value of each family that could be read."""
        out: dict[_Family, float] = {}
        try:
            stat = (self._self / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            out[VIRTUAL_MEMORY] = float(fields[_VSIZE])
            out[RESIDENT_MEMORY] = float(fields[_RSS]) * self._page_size
            if self._boot is not None:
                out[START_TIME] = self._boot + float(fields[_STARTTIME]) / self._ticks
            out[CPU_SECONDS] = (float(fields[_UTIME]) + float(fields[_STIME])) / self._ticks
        except (OSError, ValueError, IndexError):
            pass
        with contextlib.suppress(OSError):
            out[OPEN_FDS] = float(len(os.listdir(self._self / "fd")))
        limit = self._max_fds()
        if limit != resource.RLIM_INFINITY:
            out[MAX_FDS] = float(limit)
        return out

    def render(self, openmetrics: bool) -> str:
        """Return the process families, in client_python's order, without a closing `# EOF`."""
        values = self.values()
        order = (VIRTUAL_MEMORY, RESIDENT_MEMORY, START_TIME, CPU_SECONDS, OPEN_FDS, MAX_FDS)
        return "".join(
            family.lines(values[family], openmetrics) for family in order if family in values
        )
