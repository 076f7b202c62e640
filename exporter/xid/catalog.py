"""NVIDIA's Xid catalog as data: name, category, severity and recommended action per code.

Why package data and not a Python table: the CSV is NVIDIA's catalog restated row by row
(see docs/xid.md); keeping it as the file it came from makes a refresh a file copy and a diff,
and alert rules can join on the info series instead of hard-coding code lists.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import cache
from importlib import resources

SEVERITIES = ("critical", "warning", "info")


@dataclass(frozen=True, slots=True)
class XidInfo:
    """One catalog row (the `source` column stays in the file: it is provenance, not data)."""

    code: int
    name: str
    category: str
    severity: str
    action: str


def unknown(code: int) -> XidInfo:
    """What we say about a code the catalog lacks: drivers add codes faster than catalogs."""
    return XidInfo(code, "UNKNOWN: not in the bundled Xid catalog", "unknown", "warning", "none")


class XidCatalog:
    """Lookup by code; unknown codes get a `warning` entry rather than an error."""

    __slots__ = ("_rows",)

    def __init__(self, rows: dict[int, XidInfo]) -> None:
        self._rows = rows

    @classmethod
    def from_csv(cls, text: str) -> XidCatalog:
        """Parse the catalog CSV (header `code,name,category,severity,action,source`)."""
        rows: dict[int, XidInfo] = {}
        for row in csv.DictReader(io.StringIO(text)):
            code = int(row["code"])
            severity = row["severity"].strip()
            if severity not in SEVERITIES:
                raise ValueError(f"xid catalog: code {code} has unknown severity {severity!r}")
            rows[code] = XidInfo(
                code, row["name"].strip(), row["category"].strip(), severity, row["action"].strip()
            )
        return cls(rows)

    def get(self, code: int) -> XidInfo:
        """The catalog row, or the `unknown` entry."""
        return self._rows.get(code) or unknown(code)

    def __contains__(self, code: object) -> bool:
        return code in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def entries(self) -> tuple[XidInfo, ...]:
        """Every row in code order."""
        return tuple(self._rows[code] for code in sorted(self._rows))

    def critical_codes(self) -> tuple[int, ...]:
        """Codes whose counters start at 0 for every GPU, so `increase()` sees the first one."""
        return tuple(info.code for info in self.entries() if info.severity == "critical")


@cache
def default_catalog() -> XidCatalog:
    """The bundled catalog (exporter/xid/data/xid-catalog.csv), parsed once."""
    text = resources.files("exporter.xid").joinpath("data/xid-catalog.csv").read_text("utf-8")
    return XidCatalog.from_csv(text)
