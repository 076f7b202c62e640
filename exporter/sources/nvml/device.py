"""What the package knows about one GPU between collections, and the driver it talks to.

A Gpu is built by enumeration (describe.py) and read every collection (readings.py and the
activity readers); nothing here calls NVML except building the field-value array.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pynvml

from exporter.model import LabelValues, MigIdentity
from exporter.sources import nvml_fields as fields


class ReusedArray:
    """A ctypes array reused by an NVML "fill this buffer" call, grown when NVML says it is short.

    Why: pynvml's wrappers for such calls make two C calls and build a Python structure per
    entry; the activity readers call them for every GPU every collection, so they make one call
    into this array and decode the bytes with `struct`.
    """

    __slots__ = ("_array", "_element", "_limit", "capacity")

    def __init__(self, element: Any, capacity: int, limit: int) -> None:
        self._element = element
        self._limit = limit
        self.capacity = capacity
        self._array: Any = (element * capacity)()

    def fill(self, call: Callable[[Any, Any], int]) -> tuple[int, bytes]:
        """`call(array, byref(count))` -> NVML return; (return, the entries written as bytes)."""
        while True:
            count = ctypes.c_uint(self.capacity)
            ret = call(self._array, ctypes.byref(count))
            if ret == pynvml.NVML_ERROR_INSUFFICIENT_SIZE and self.capacity < self._limit:
                self.capacity = min(max(self.capacity * 4, count.value), self._limit)
                self._array = (self._element * self.capacity)()
                continue
            break
        if ret != pynvml.NVML_SUCCESS:
            return ret, b""
        written = min(count.value, self.capacity)
        size = written * ctypes.sizeof(self._element)
        return ret, ctypes.string_at(ctypes.addressof(self._array), size)


@dataclass(slots=True)
class Driver:
    """The driver as open() found it: versions for nvidia_gpu_info, the raw field-values call."""

    driver_version: str = ""
    cuda_version: str = ""
    field_values: Callable[..., int] | None = None  # the C function, resolved once


@dataclass(slots=True)
class FieldBatch:
    """A prebuilt ctypes array for one GPU's nvmlDeviceGetFieldValues call, reused every time.

    Why decode with struct: pynvml's structures override __getattribute__, which made reading
    ~40 entries per GPU the most expensive part of a collection. The layout is nvml.h's
    nvmlFieldValue_t (40 bytes): fieldId, scopeId, timestamp, latencyUsec, valueType,
    nvmlReturn, then the 8-byte value union.
    """

    specs: list[fields.FieldSpec]
    array: Any
    labels: list[LabelValues]

    @classmethod
    def build(cls, specs: list[fields.FieldSpec], gpu_labels: LabelValues = ()) -> FieldBatch:
        array = (pynvml.c_nvmlFieldValue_t * len(specs))()
        for slot, spec in zip(array, specs, strict=True):
            slot.fieldId = spec.field_id
            slot.scopeId = spec.scope
        labels = [(*gpu_labels, *spec.extra_labels) for spec in specs]
        return cls(specs, array, labels)

    def entries(self) -> Iterator[tuple[int, int, bytes]]:
        """(nvmlReturn, valueType, raw value bytes) per entry, after a call filled the array."""
        for _, _, _, _, value_type, code, raw in _FIELD_VALUE.iter_unpack(memoryview(self.array)):
            yield code, value_type, raw


_FIELD_VALUE = struct.Struct("=IIqqII8s")
_DOUBLE = struct.Struct("=d")
# nvmlValueType_t -> how many bytes of the union and whether signed (0 is a double).
_INT_VALUE_TYPES: dict[int, tuple[int, bool]] = {
    1: (4, False),  # unsigned int
    2: (8, False),  # unsigned long (LP64)
    3: (8, False),  # unsigned long long
    4: (8, True),  # signed long long
    5: (4, True),  # signed int
    6: (2, False),  # unsigned short
}


def decode_field_value(value_type: int, raw: bytes) -> float | None:
    """The number in an nvmlValue_t union, or None for a value type we do not know."""
    if value_type == 0:
        return float(_DOUBLE.unpack(raw)[0])
    layout = _INT_VALUE_TYPES.get(value_type)
    if layout is None:
        return None
    size, signed = layout
    return float(int.from_bytes(raw[:size], "little", signed=signed))


@dataclass(slots=True)
class Mig:
    """A MIG device: its handle, its series labels and what other sources need of it."""

    handle: Any
    labels: LabelValues  # gpu, uuid, gpu_instance, compute_instance, profile, mig_uuid
    multiprocessors: int | None
    identity: MigIdentity


@dataclass(slots=True)
class Gpu:
    """A physical GPU: handle, labels, what it does not support, its prebuilt field batch."""

    index: int
    handle: Any
    labels: LabelValues  # gpu, uuid
    info_labels: LabelValues
    mig_enabled: bool = False
    migs: list[Mig] = field(default_factory=list)
    static: list[tuple[str, LabelValues, float]] = field(default_factory=list)
    skip: set[str] = field(default_factory=set)
    batch: FieldBatch | None = None
    supported_reasons: tuple[tuple[int, str], ...] = ()
    nvlink_links: tuple[int, ...] = ()
    lost: bool = False
    pci_bus_id: str = ""
    minor_number: int | None = None
    gpm_supported: bool | None = None  # asked once per enumeration (gpm.py)


def text(value: object) -> str:
    """NVML strings arrive as bytes from some pynvml versions and str from others."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def cuda_version_text(version: int) -> str:
    """12040 -> "12.4" (nvmlSystemGetCudaDriverVersion_v2 encodes major*1000 + minor*10)."""
    return f"{version // 1000}.{(version % 1000) // 10}"
