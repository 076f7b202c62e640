"""Every NVML call the exporter makes, derived from the code, with the C symbol it resolves to.

Why derived and not written down: the fault matrix must grow by itself when someone adds an NVML
call to exporter/sources/nvml.py. The list is read from that module's syntax tree (every
`pynvml.nvml<Name>` function it touches, plus the `_nvmlGetFunctionPointer("...")` literals it
resolves by hand), each Python name is mapped to the C symbols pynvml looks up for it by reading
pynvml's own source (the way docs/fake-driver.md and the NVML reference's Appendix B do it:
`nvmlInit` -> `nvmlInitWithFlags`, `nvmlDeviceGetCount` -> `nvmlDeviceGetCount_v2`, ...), and each
call is tagged with the class and method that makes it, so the matrix knows whether a failure
belongs to open, collect, close or the Xid event waiter.
"""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pynvml

NVML_MODULE = Path(__file__).resolve().parents[2] / "exporter" / "sources" / "nvml.py"
_LOOKUP = re.compile(r'_nvmlGetFunctionPointer\("(\w+)"\)')
_CALLS = re.compile(r"\b(nvml\w+)\(")
# Calls that take no device: the fake matches them only with gpu -1 (docs/fake-driver.md).
_SYSTEM_PREFIXES = ("nvmlInit", "nvmlShutdown", "nvmlSystem", "nvmlDeviceGetCount", "nvmlEventSet")


@dataclass(frozen=True, slots=True)
class NvmlCall:
    """One C symbol the exporter reaches, and where in the exporter it is reached from."""

    symbol: str  # the C symbol the fake driver sees (a fault on it hits exactly this call)
    python_name: str  # the pynvml function (or the raw lookup) the exporter calls
    owner: str  # "NvmlSource" or "NvmlXidEventWaiter"
    methods: frozenset[str]  # the owner's methods that make the call

    @property
    def system(self) -> bool:
        """True when the call takes no GPU handle (a fault on it needs gpu -1)."""
        return self.symbol.startswith(_SYSTEM_PREFIXES)


@cache
def c_symbols(python_name: str) -> tuple[str, ...]:
    """C symbols pynvml resolves for `python_name`, following pynvml's internal wrappers."""
    seen: set[str] = set()
    symbols: set[str] = set()
    pending = [python_name]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        function = getattr(pynvml, name, None)
        if not inspect.isfunction(function):
            continue
        source = inspect.getsource(function)
        found = _LOOKUP.findall(source)
        if found:
            symbols.update(found)
            continue
        pending.extend(set(_CALLS.findall(source)) - {name})
    return tuple(sorted(symbols))


def _uses(tree: ast.AST) -> list[tuple[str, str, str]]:
    """(class, method, python name) for every pynvml function touched in a method."""
    found: list[tuple[str, str, str]] = []
    for cls in (node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)):
        for method in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
            for node in ast.walk(method):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "pynvml"
                    and node.attr.startswith("nvml")
                    and inspect.isfunction(getattr(pynvml, node.attr, None))
                ):
                    found.append((cls.name, method.name, node.attr))
                elif (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "_nvmlGetFunctionPointer"
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                ):
                    found.append((cls.name, method.name, f"raw:{node.args[0].value}"))
    return found


@cache
def exporter_calls() -> tuple[NvmlCall, ...]:
    """Every (C symbol, owner class) the exporter's NVML module reaches, sorted."""
    tree = ast.parse(NVML_MODULE.read_text())
    grouped: dict[tuple[str, str], tuple[str, set[str]]] = {}
    for owner, method, python_name in _uses(tree):
        if python_name.startswith("raw:"):
            symbols: tuple[str, ...] = (python_name[4:],)
        else:
            symbols = c_symbols(python_name)
        for symbol in symbols:
            entry = grouped.setdefault((symbol, owner), (python_name, set()))
            entry[1].add(method)
    return tuple(
        NvmlCall(symbol, python_name, owner, frozenset(methods))
        for (symbol, owner), (python_name, methods) in sorted(grouped.items())
    )


def pynvml_names_used() -> set[str]:
    """Every pynvml function name nvml.py touches (the coverage test's reference)."""
    return {name for _, _, name in _uses(ast.parse(NVML_MODULE.read_text()))}
