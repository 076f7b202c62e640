"""Run a Python module with its threads' names copied to the kernel (what /proc shows).

Why: Python 3.11 does not name OS threads, so /proc/<pid>/task/<tid>/comm reads "python"
for every thread and the benchmark could not tell the poll thread from the HTTP threads.
This launcher gives each `threading.Thread` its Python name (first 15 bytes, the kernel's
limit) before it runs, then runs the module as `python -m` would. Only stdlib: it also
runs under the peer's virtual environment.

    python benchmarks/compare_launch.py exporter --simulate=a100-mig
"""

from __future__ import annotations

import ctypes
import ctypes.util
import runpy
import sys
import threading
from collections.abc import Callable
from typing import Any

PR_SET_NAME = 15


def _name_threads() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    original: Callable[[threading.Thread], Any] = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]

    def named(self: threading.Thread) -> Any:
        libc.prctl(PR_SET_NAME, self.name.encode()[:15], 0, 0, 0)
        return original(self)

    threading.Thread._bootstrap_inner = named  # type: ignore[attr-defined]


def main() -> None:
    """Run sys.argv[1] as __main__ with the rest of the arguments."""
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    _name_threads()
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
