"""tests/gpu runs only where a real NVIDIA driver is loaded (not in CI, which has no GPU).

`make test-gpu` runs these; `make test` ignores the folder. Each test compares what our NVML
source reports with what the driver itself reports through nvidia-smi.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest


def _real_driver() -> str | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    result = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    return smi if result.returncode == 0 and "GPU" in result.stdout else None


@pytest.fixture(scope="session")
def nvidia_smi() -> str:
    smi = _real_driver()
    if smi is None:
        pytest.skip("no real NVIDIA driver here (nvidia-smi -L finds no GPU)")
    return smi
