"""The NVML error policy: what a failed call means, counted and logged once.

Per value:
- NOT_SUPPORTED or FUNCTION_NOT_FOUND (old driver): the value is omitted, never exported as 0,
  logged once, and the call is not made again for that GPU until the next enumeration.
- GPU_IS_LOST (or RESET_REQUIRED): GpuLostError; the source keeps the GPU's identity series with
  nvidia_gpu_up 0, drops its other series and describes it again every collection.
- Anything else: the value is omitted for this collection, counted in
  nvidia_gpu_exporter_nvml_errors_total{call,code} and logged once per (gpu, call, code).

Every reader of the package (enumeration, per-GPU values, samples, GPM, per-process
utilization) goes through one Ledger, so the policy and the error counter are the same for all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pynvml
import structlog

if TYPE_CHECKING:
    from exporter.sources.nvml.device import Gpu

log = structlog.get_logger("exporter.sources.nvml")

NOT_SUPPORTED = pynvml.NVML_ERROR_NOT_SUPPORTED
NOT_FOUND = pynvml.NVML_ERROR_NOT_FOUND
FUNCTION_NOT_FOUND = pynvml.NVML_ERROR_FUNCTION_NOT_FOUND
LOST_CODES = frozenset({pynvml.NVML_ERROR_GPU_IS_LOST, pynvml.NVML_ERROR_RESET_REQUIRED})
SKIP_CODES = frozenset({NOT_SUPPORTED, FUNCTION_NOT_FOUND})
NOT_AVAILABLE = 0xFFFFFFFF  # gpuInstanceId/computeInstanceId when a process is not on MIG
# NOT_SUPPORTED that only says what the GPU model is: a passively cooled datacenter GPU (A100,
# H100, T4...) has no fan, a pre-Ampere GPU no MIG, a pre-Hopper GPU no GPM. Logged at debug: at
# info every start printed one line per GPU with nothing to act on, and the missing series
# already tell the story.
HARDWARE_ABSENT_CALLS = frozenset(
    {"nvmlDeviceGetFanSpeed", "nvmlDeviceGetMigMode", "nvmlGpmQueryDeviceSupport"}
)

_ERROR_NAMES: dict[int, str] = {
    value: name.removeprefix("NVML_ERROR_")
    for name, value in vars(pynvml).items()
    if name.startswith("NVML_ERROR_") and isinstance(value, int)
}


def error_name(code: int) -> str:
    """NVML return code as its short name, for labels and logs (e.g. GPU_IS_LOST)."""
    return _ERROR_NAMES.get(code, str(code))


class GpuLostError(Exception):
    """Raised inside a GPU's read when NVML says the GPU is lost or needs a reset."""


class Ledger:
    """Applies the error policy to one call and keeps the error counts and the log-once set."""

    def __init__(self) -> None:
        self.errors: dict[tuple[str, str], int] = {}
        self.logged: set[tuple[int, str, int]] = set()

    def count(self, call: str, code: int) -> None:
        """Count one failure of `call` in nvidia_gpu_exporter_nvml_errors_total."""
        key = (call, error_name(code))
        self.errors[key] = self.errors.get(key, 0) + 1

    def failed(self, gpu: Gpu, call: str, err: pynvml.NVMLError) -> None:
        """Apply the policy to a failed call; raises GpuLostError for a lost GPU."""
        code: int = err.value
        if code in LOST_CODES:
            raise GpuLostError(error_name(code))
        once = (gpu.index, call, code)
        if code in SKIP_CODES:
            gpu.skip.add(call)
            if once not in self.logged:
                self.logged.add(once)
                level = log.debug if call in HARDWARE_ABSENT_CALLS else log.info
                level("nvml_not_supported", gpu=gpu.index, call=call, code=error_name(code))
            return
        self.count(call, code)
        if once not in self.logged:
            self.logged.add(once)
            log.warning("nvml_call_failed", gpu=gpu.index, call=call, code=error_name(code))

    def call(self, gpu: Gpu, call: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Call NVML for one value; None when it is unsupported or failed (see module doc)."""
        if call in gpu.skip:
            return None
        try:
            return fn(*args)
        except pynvml.NVMLError as err:
            self.failed(gpu, call, err)
            return None
        except pynvml.NVMLLibraryMismatchError:
            gpu.skip.add(call)
            return None

    def field_failed(self, gpu: Gpu, field_id: int, code: int) -> None:
        """One entry of a field-value batch failed (not NOT_SUPPORTED, not lost)."""
        call = f"nvmlDeviceGetFieldValues:{field_id}"
        self.count(call, code)
        once = (gpu.index, call, code)
        if once not in self.logged:
            self.logged.add(once)
            log.warning("nvml_field_failed", gpu=gpu.index, field=field_id, code=error_name(code))
