"""Every NVML call the exporter makes, derived from the code, with the C symbol it resolves to.

Why derived and not written down: the fault matrix must grow by itself when someone adds an NVML
call to the exporter/sources/nvml/ package. The list is read from its modules' syntax trees (every
`pynvml.nvml<Name>` function it touches, plus the `_nvmlGetFunctionPointer("...")` literals it
resolves by hand), each Python name is mapped to the C symbols pynvml looks up for it by reading
pynvml's own source (the way docs/fake-driver.md and the NVML reference's Appendix B do it:
`nvmlInit` -> `nvmlInitWithFlags`, `nvmlDeviceGetCount` -> `nvmlDeviceGetCount_v2`, ...), and each
call is tagged with its owner and the function that makes it, so the matrix knows whether a failure
belongs to open, collect, close or the Xid event waiter. The owner is the Xid event waiter for
events.py (its own thread) and NvmlSource for every other module: the describer, the readers and
the activity readers all run inside NvmlSource's open/collect.
"""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pynvml

NVML_PACKAGE = Path(__file__).resolve().parents[2] / "exporter" / "sources" / "nvml"
_EVENTS_MODULE = "events.py"
_LOOKUP = re.compile(r'_nvmlGetFunctionPointer\("(\w+)"\)')
_CALLS = re.compile(r"\b(nvml\w+)\(")
# Calls that take no device: the fake matches them only with gpu -1 (docs/fake-driver.md).
# GPM sample buffers belong to no GPU until a sample is taken into them.
_SYSTEM_PREFIXES = (
    "nvmlInit",
    "nvmlShutdown",
    "nvmlSystem",
    "nvmlDeviceGetCount",
    "nvmlEventSet",
    "nvmlGpmSampleAlloc",
    "nvmlGpmSampleFree",
)


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


def _functions(tree: ast.Module) -> list[ast.FunctionDef]:
    """Module-level functions and the methods of module-level classes."""
    found: list[ast.FunctionDef] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            found.append(node)
        elif isinstance(node, ast.ClassDef):
            found.extend(n for n in node.body if isinstance(n, ast.FunctionDef))
    return found


def _uses(tree: ast.Module, owner: str) -> list[tuple[str, str, str]]:
    """(owner, function, python name) for every pynvml function touched in a function."""
    found: list[tuple[str, str, str]] = []
    for function in _functions(tree):
        for node in ast.walk(function):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "pynvml"
                and node.attr.startswith("nvml")
                and inspect.isfunction(getattr(pynvml, node.attr, None))
            ):
                found.append((owner, function.name, node.attr))
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "_nvmlGetFunctionPointer"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.append((owner, function.name, f"raw:{node.args[0].value}"))
    return found


def _package_uses() -> list[tuple[str, str, str]]:
    found: list[tuple[str, str, str]] = []
    for module in sorted(NVML_PACKAGE.glob("*.py")):
        owner = "NvmlXidEventWaiter" if module.name == _EVENTS_MODULE else "NvmlSource"
        found.extend(_uses(ast.parse(module.read_text()), owner))
    return found


@cache
def exporter_calls() -> tuple[NvmlCall, ...]:
    """Every (C symbol, owner class) the exporter's NVML module reaches, sorted."""
    grouped: dict[tuple[str, str], tuple[str, set[str]]] = {}
    for owner, method, python_name in _package_uses():
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
    """Every pynvml function name the package touches (the coverage test's reference)."""
    return {name for _, _, name in _package_uses()}
