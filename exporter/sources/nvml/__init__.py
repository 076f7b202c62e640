"""The NVML package: the only code that talks to pynvml (ruff's banned-api enforces it).

One module per NVML concern, the way node_exporter gives each collector its file:

- errors.py: the error policy every call goes through (omit, count, log once, GPU lost);
- device.py: what is kept per GPU between collections, and the field-value batch;
- describe.py: enumeration (identity, limits, field plan, MIG layout), once per enumeration;
- readings.py: the per-GPU values of a collection (memory, power, clocks, PCIe, NVLink, MIG);
- utilization.py: busy-seconds counters from NVML's utilization sample buffer;
- gpm.py: GPU Performance Monitoring (SM, tensor, DRAM activity) per GPU and GPU instance;
- process_utilization.py: per-process SM/memory/codec busy seconds on shared GPUs;
- source.py: NvmlSource, which enumerates and runs the single pass per GPU;
- events.py: the Xid event waiter, in its own thread.
"""

from exporter.sources.nvml.errors import GpuLostError, error_name
from exporter.sources.nvml.events import (
    XID_EVENT_RETRY_SECONDS,
    XID_EVENT_WAIT_MS,
    NvmlXidEventWaiter,
)
from exporter.sources.nvml.source import ENUMERATION_REFRESH_SECONDS, NVML_LOCK, NvmlSource

__all__ = [
    "ENUMERATION_REFRESH_SECONDS",
    "NVML_LOCK",
    "XID_EVENT_RETRY_SECONDS",
    "XID_EVENT_WAIT_MS",
    "GpuLostError",
    "NvmlSource",
    "NvmlXidEventWaiter",
    "error_name",
]
