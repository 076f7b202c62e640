"""A fake NVIDIA driver library (``libnvidia-ml.so.1``) for tests without a GPU.

The real pynvml loads it like the real driver; scenarios (``*.scn``) describe the node,
and faults can be injected at run time through ctypes (:mod:`.control`) or a faults file.
See docs/fake-driver.md.
"""

from __future__ import annotations

from .build import LIBRARY_NAME, build_fake_driver, library_path

#: Names of the scenarios shipped in ``exporter/fakenvml/scenarios``.
BUILTIN_SCENARIOS: tuple[str, ...] = ("a100-mig", "h100-mig", "h100-nvlink", "large-16", "t4")
#: What the library loads when ``FAKE_NVML_SCENARIO`` is unset.
DEFAULT_SCENARIO = "a100-mig"

__all__ = [
    "BUILTIN_SCENARIOS",
    "DEFAULT_SCENARIO",
    "LIBRARY_NAME",
    "build_fake_driver",
    "library_path",
]
