"""--simulate: point the production NVML code path at the bundled fake driver.

The fake libnvidia-ml.so.1 is compiled on first use (it needs a C compiler and NVIDIA's nvml.h,
which the nvidia-nvml-dev dependency installs). Nothing else changes: the same NvmlSource, the
same pynvml, only a different library loaded first.
"""

from __future__ import annotations

import os
from pathlib import Path

from exporter.fakenvml import BUILTIN_SCENARIOS, library_path


def prepare_simulation(scenario: str) -> str:
    """Build (or reuse) the fake driver, select the scenario, return the library's path."""
    library = library_path()
    if scenario not in BUILTIN_SCENARIOS:
        scenario = str(Path(scenario).resolve())
    # The fake reads FAKE_NVML_SCENARIO in nvmlInit; os.environ writes through to the C environ.
    os.environ["FAKE_NVML_SCENARIO"] = scenario
    return str(library)
