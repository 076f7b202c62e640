"""Typed Python control of the fake NVML driver: ctypes symbols and the faults file.

Two ways to inject faults, because tests drive the fake in two situations:

* in-process (:class:`FakeNvmlControl`): the test loads the library by absolute path with
  ``ctypes.CDLL``; glibc then reuses that already-loaded ``libnvidia-ml.so.1`` soname when
  pynvml later calls ``CDLL("libnvidia-ml.so.1")``, so the control calls act on the very
  library pynvml talks to;
* cross-process (:class:`FaultFile`): an exporter running as a subprocess cannot be reached
  with ctypes, so the library re-reads the file named by ``FAKE_NVML_FAULTS`` whenever it
  changes (checked at most every 100 ms).

pynvml is deliberately not imported here (another module owns it): return codes are plain
ints, with :class:`NvmlReturn` naming the common ones.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import tempfile
from enum import IntEnum
from pathlib import Path

from .build import LIBRARY_NAME, build_fake_driver

#: gi/ci value meaning "not attributed to a MIG instance".
NOT_ATTRIBUTED = 0xFFFFFFFF
#: Seconds the library may take to notice a rewritten faults file.
FAULT_FILE_POLL_S = 0.1


class NvmlReturn(IntEnum):
    """``nvmlReturn_t`` codes (nvml.h), for injecting faults without pynvml."""

    SUCCESS = 0
    UNINITIALIZED = 1
    INVALID_ARGUMENT = 2
    NOT_SUPPORTED = 3
    NO_PERMISSION = 4
    ALREADY_INITIALIZED = 5
    NOT_FOUND = 6
    INSUFFICIENT_SIZE = 7
    INSUFFICIENT_POWER = 8
    DRIVER_NOT_LOADED = 9
    TIMEOUT = 10
    IRQ_ISSUE = 11
    LIBRARY_NOT_FOUND = 12
    FUNCTION_NOT_FOUND = 13
    CORRUPTED_INFOROM = 14
    GPU_IS_LOST = 15
    RESET_REQUIRED = 16
    OPERATING_SYSTEM = 17
    LIB_RM_VERSION_MISMATCH = 18
    IN_USE = 19
    MEMORY = 20
    NO_DATA = 21
    VGPU_ECC_NOT_SUPPORTED = 22
    INSUFFICIENT_RESOURCES = 23
    FREQ_NOT_SUPPORTED = 24
    ARGUMENT_VERSION_MISMATCH = 25
    DEPRECATED = 26
    NOT_READY = 27
    GPU_NOT_FOUND = 28
    INVALID_STATE = 29
    RESET_TYPE_NOT_SUPPORTED = 30
    UNKNOWN = 999


def return_code(value: int | str) -> int:
    """Normalise ``3``, ``"NOT_SUPPORTED"`` or ``"NVML_ERROR_NOT_SUPPORTED"`` to an int."""
    if isinstance(value, int):
        return int(value)
    name = value.strip().upper()
    for prefix in ("NVML_ERROR_", "NVML_", "ERROR_"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    try:
        return int(NvmlReturn[name])
    except KeyError:
        try:
            return int(name, 0)
        except ValueError:
            raise ValueError(f"unknown NVML return code {value!r}") from None


class FakeNvmlControl:
    """ctypes wrapper around the ``fakeNvml*`` control symbols of the fake library.

    Constructing it loads the library by absolute path, which also makes a later
    ``pynvml.nvmlInit()`` in this process use the same library.
    """

    def __init__(self, library: str | os.PathLike[str] | None = None) -> None:
        path = Path(library) if library is not None else build_fake_driver() / LIBRARY_NAME
        self.path: Path = path.resolve()
        self.lib = ctypes.CDLL(str(self.path), mode=ctypes.RTLD_GLOBAL)
        lib = self.lib
        lib.fakeNvmlSetFault.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_uint]
        lib.fakeNvmlSetFault.restype = ctypes.c_int
        lib.fakeNvmlClearFaults.argtypes = []
        lib.fakeNvmlClearFaults.restype = None
        lib.fakeNvmlSetGpuLost.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.fakeNvmlSetGpuLost.restype = ctypes.c_int
        lib.fakeNvmlInjectXid.argtypes = [
            ctypes.c_int,
            ctypes.c_ulonglong,
            ctypes.c_uint,
            ctypes.c_uint,
        ]
        lib.fakeNvmlInjectXid.restype = ctypes.c_int
        lib.fakeNvmlSetTime.argtypes = [ctypes.c_double]
        lib.fakeNvmlSetTime.restype = None
        lib.fakeNvmlGetTime.argtypes = []
        lib.fakeNvmlGetTime.restype = ctypes.c_double
        lib.fakeNvmlSetValue.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_double]
        lib.fakeNvmlSetValue.restype = ctypes.c_int
        lib.fakeNvmlSetKey.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p]
        lib.fakeNvmlSetKey.restype = ctypes.c_int
        lib.fakeNvmlGetCallCount.argtypes = []
        lib.fakeNvmlGetCallCount.restype = ctypes.c_ulonglong
        lib.fakeNvmlResetCallCount.argtypes = []
        lib.fakeNvmlResetCallCount.restype = None
        lib.fakeNvmlSetCallLatency.argtypes = [ctypes.c_int]
        lib.fakeNvmlSetCallLatency.restype = None

    @property
    def directory(self) -> Path:
        """Directory of the loaded library (what ``LD_LIBRARY_PATH`` would name)."""
        return self.path.parent

    def set_fault(
        self, function: str, gpu: int = -1, ret: int | str = NvmlReturn.UNKNOWN, delay_ms: int = 0
    ) -> None:
        """Make ``function`` (``"*"`` = every device call) on ``gpu`` (-1 = all) fail.

        ``ret`` 0 with ``delay_ms`` > 0 means "succeeds, but slowly". A name without a
        version suffix also covers its ``_vN``/``V`` variants.
        """
        if self.lib.fakeNvmlSetFault(function.encode(), gpu, return_code(ret), delay_ms) != 0:
            raise ValueError(f"fakeNvmlSetFault rejected ({function!r}, gpu={gpu})")

    def set_field_fault(
        self, field_id: int, gpu: int = -1, ret: int | str = NvmlReturn.NOT_SUPPORTED
    ) -> None:
        """Make one field id's per-entry ``nvmlReturn`` in nvmlDeviceGetFieldValues fail."""
        self.set_fault(f"field:{field_id}", gpu, ret)

    def clear_faults(self) -> None:
        """Drop every ctypes-set fault and GPU-lost flag (faults-file entries stay)."""
        self.lib.fakeNvmlClearFaults()

    def set_gpu_lost(self, gpu: int, lost: bool = True) -> None:
        """Mark a GPU (and its MIG devices) as fallen off the bus, or bring it back."""
        if self.lib.fakeNvmlSetGpuLost(gpu, int(lost)) != 0:
            raise ValueError(f"bad gpu index {gpu}")

    def inject_xid(
        self, gpu: int, xid: int, gi: int = NOT_ATTRIBUTED, ci: int = NOT_ATTRIBUTED
    ) -> int:
        """Queue an Xid event; returns how many registered event sets received it."""
        n = int(self.lib.fakeNvmlInjectXid(gpu, xid, gi, ci))
        if n < 0:
            raise ValueError(f"bad gpu index {gpu}")
        return n

    def set_time(self, seconds: float | None) -> None:
        """Freeze the scenario clock at ``seconds``; ``None`` returns to the real clock."""
        self.lib.fakeNvmlSetTime(-1.0 if seconds is None else float(seconds))

    def get_time(self) -> float:
        """Current scenario time t in seconds."""
        return float(self.lib.fakeNvmlGetTime())

    def set_value(self, gpu: int, key: str, value: float) -> None:
        """Override one numeric scenario key (e.g. ``"power_w"``) until the next nvmlInit."""
        if self.lib.fakeNvmlSetValue(gpu, key.encode(), float(value)) != 0:
            raise ValueError(f"cannot set {key!r} on gpu {gpu} (see stderr)")

    def set_key(self, gpu: int, key: str, value: str) -> None:
        """Override one scenario key with its textual form, e.g. ``("power_w", "300 50 10")``."""
        if self.lib.fakeNvmlSetKey(gpu, key.encode(), value.encode()) != 0:
            raise ValueError(f"cannot set {key!r}={value!r} on gpu {gpu} (see stderr)")

    def call_count(self) -> int:
        """NVML entry-point calls made in this process since load (or the last reset)."""
        return int(self.lib.fakeNvmlGetCallCount())

    def reset_call_count(self) -> None:
        """Zero the in-process call counter (the ``FAKE_NVML_CALL_COUNTER`` file is untouched)."""
        self.lib.fakeNvmlResetCallCount()

    def set_call_latency(self, microseconds: int | None) -> None:
        """Spend this long in every NVML call; ``None`` returns to ``FAKE_NVML_CALL_LATENCY_US``."""
        self.lib.fakeNvmlSetCallLatency(-1 if microseconds is None else int(microseconds))


def read_call_counter(path: str | os.PathLike[str]) -> int:
    """The value in a ``FAKE_NVML_CALL_COUNTER`` file (0 while the library has not created it).

    The library maps the 8-byte file shared and increments it on every NVML call, so another
    process (a benchmark watching an exporter) reads it at any moment without asking.
    """
    try:
        data = Path(path).read_bytes()[:8]
    except FileNotFoundError:
        return 0
    return int.from_bytes(data.ljust(8, b"\0"), "little")


class FaultFile:
    """Writer for the ``FAKE_NVML_FAULTS`` file, rewritten atomically on every change.

    Each method updates the in-memory line list and rewrites the file (temp file +
    rename), so a library polling it never reads half a file. Allow
    :data:`FAULT_FILE_POLL_S` for the library to notice a change.
    """

    _ids = itertools.count(1)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.lines: list[str] = []
        self.write()

    def env(self) -> dict[str, str]:
        """Environment entry that points the fake library at this file."""
        return {"FAKE_NVML_FAULTS": str(self.path)}

    @staticmethod
    def _gpu(gpu: int | None) -> str:
        return "*" if gpu is None or gpu < 0 else str(gpu)

    def add_fault(
        self,
        function: str,
        gpu: int | None = None,
        ret: int | str = NvmlReturn.UNKNOWN,
        delay_ms: int = 0,
    ) -> FaultFile:
        """``fault <function|*|field:ID> <gpu|*> <RETURN> [delay_ms=N]``."""
        line = f"fault {function} {self._gpu(gpu)} {return_code(ret)}"
        if delay_ms:
            line += f" delay_ms={int(delay_ms)}"
        return self._add(line)

    def add_field_fault(
        self, field_id: int, gpu: int | None = None, ret: int | str = NvmlReturn.NOT_SUPPORTED
    ) -> FaultFile:
        """Per-field fault in nvmlDeviceGetFieldValues."""
        return self.add_fault(f"field:{field_id}", gpu, ret)

    def lost(self, gpu: int | None) -> FaultFile:
        """``lost <gpu|*>``: the GPU returns GPU_IS_LOST until the line is removed."""
        return self._add(f"lost {self._gpu(gpu)}")

    def found(self, gpu: int | None) -> FaultFile:
        """Remove a ``lost`` line: the GPU "comes back"."""
        self.lines = [x for x in self.lines if x != f"lost {self._gpu(gpu)}"]
        self.write()
        return self

    def xid(
        self,
        gpu: int | None,
        code: int,
        gi: int | None = None,
        ci: int | None = None,
        event_id: str | None = None,
    ) -> str:
        """``xid <gpu> <code> [gi=N] [ci=N] id=<token>``; returns the token.

        Each token is delivered once per process lifetime, so leaving the line in the
        file does not redeliver it.
        """
        token = event_id or f"x{os.getpid()}-{next(self._ids)}"
        line = f"xid {self._gpu(gpu)} {int(code)}"
        if gi is not None:
            line += f" gi={int(gi)}"
        if ci is not None:
            line += f" ci={int(ci)}"
        self._add(f"{line} id={token}")
        return token

    def reset(self, gpu: int | None, event_id: str | None = None) -> str:
        """``reset <gpu|*> id=<token>``: a GPU reset; a GPU that fell off the bus answers again.

        Like ``xid``, each token acts once per process lifetime; returns the token.
        """
        token = event_id or f"r{os.getpid()}-{next(self._ids)}"
        self._add(f"reset {self._gpu(gpu)} id={token}")
        return token

    def time(self, seconds: float | None) -> FaultFile:
        """``time <seconds>`` freezes the scenario clock; ``None`` removes the line."""
        self.lines = [x for x in self.lines if not x.startswith("time ")]
        if seconds is not None:
            self.lines.append(f"time {float(seconds)!r}")
        self.write()
        return self

    def raw(self, line: str) -> FaultFile:
        """Append a line verbatim (e.g. to test that bad lines are ignored)."""
        return self._add(line)

    def clear(self) -> FaultFile:
        """Remove every line: all file-sourced faults end."""
        self.lines = []
        self.write()
        return self

    def _add(self, line: str) -> FaultFile:
        self.lines.append(line)
        self.write()
        return self

    def write(self) -> None:
        """Atomically replace the file with the current lines."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write("".join(f"{line}\n" for line in self.lines))
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
