"""--simulate: point the production NVML code path at the bundled fake driver.

The fake libnvidia-ml.so.1 is compiled on first use (it needs a C compiler and NVIDIA's nvml.h,
which the nvidia-nvml-dev dependency installs). Nothing else changes: the same NvmlSource, the
same pynvml, only a different library loaded first.

Two seams make a broken scenario file an ordinary configuration error rather than an exporter
that retries `nvmlInit failed: UNKNOWN` forever:

* `scenario_problem` runs the driver's own scenario parser (`fakeNvmlCheckScenario`) before
  start. The C parser is the only one: a second parser in Python would drift from it, and the
  error (file, line, field) is exactly what nvmlInit would have hit.
* `prepare_simulation` hands the driver a log handler, so what the fake would have printed raw
  to stderr (a scenario edited into a broken state while running, a bad faults-file line) becomes
  a structured `fake_nvml_message` log event instead of text mixed into the JSON stream.
"""

from __future__ import annotations

import atexit
import ctypes
import os
from pathlib import Path

import structlog

from exporter.fakenvml import BUILTIN_SCENARIOS, library_path

log = structlog.get_logger(__name__)

_ERROR_BUFFER = 1024
_LogHandler = ctypes.CFUNCTYPE(None, ctypes.c_char_p)


class ScenarioError(ValueError):
    """The scenario file is invalid; the message is `file:line: field: what is wrong`."""


def _load(library: Path) -> ctypes.CDLL:
    """The fake driver, loaded by absolute path (pynvml's later load resolves to this copy)."""
    lib = ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
    lib.fakeNvmlCheckScenario.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
    lib.fakeNvmlCheckScenario.restype = ctypes.c_int
    lib.fakeNvmlSetLogHandler.argtypes = [_LogHandler]
    lib.fakeNvmlSetLogHandler.restype = None
    return lib


def scenario_problem(path: str) -> str | None:
    """What is wrong with a scenario file (`file:line: message`), or None when it loads.

    None too when the fake driver cannot be built here: the start then reports that
    (`simulation_unavailable`), which is the more useful error.
    """
    try:
        lib = _load(library_path())
    except (RuntimeError, OSError):
        return None
    err = ctypes.create_string_buffer(_ERROR_BUFFER)
    if lib.fakeNvmlCheckScenario(os.fsencode(path), err, _ERROR_BUFFER) == 0:
        return None
    return err.value.decode(errors="replace")


def _log_message(message: bytes | None) -> None:
    """Called by the fake driver (any thread, maybe holding its lock): log, never call NVML."""
    text = (message or b"").decode(errors="replace").removeprefix("fake NVML: ")
    log.warning("fake_nvml_message", message=text)


_forward = _LogHandler(_log_message)  # module-level: C keeps the pointer, Python must keep it alive


_attached: list[ctypes.CDLL] = []  # the library whose log handler is ours


def detach_log_handler() -> None:
    """Give the fake driver's messages back to stderr (Application.stop, and at exit).

    At exit the interpreter may be gone before a daemon thread's last NVML call returns; in a
    test process the next test may expect the driver's own stderr lines.
    """
    while _attached:
        _attached.pop().fakeNvmlSetLogHandler(_LogHandler())


atexit.register(detach_log_handler)


def prepare_simulation(scenario: str) -> str:
    """Build (or reuse) the fake driver, select the scenario, return the library's path.

    Raises ScenarioError for a scenario file the driver's parser rejects (checked again here,
    not only by the CLI: Application is also built directly by tests and benchmarks).
    """
    library = library_path()
    if scenario not in BUILTIN_SCENARIOS:
        problem = scenario_problem(scenario)
        if problem:
            raise ScenarioError(problem)
        scenario = str(Path(scenario).resolve())
    lib = _load(library)
    lib.fakeNvmlSetLogHandler(_forward)
    _attached.append(lib)
    # The fake reads FAKE_NVML_SCENARIO in nvmlInit; os.environ writes through to the C environ.
    os.environ["FAKE_NVML_SCENARIO"] = scenario
    return str(library)
