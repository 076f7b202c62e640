"""Every runtime dependency in pyproject.toml is used by the exporter, and nothing the exporter
imports is missing from it.

Why: a dependency nobody imports still costs every node its install size and its CVEs (psutil
was one until the benchmarks, its only users, took it into the dev extra); a missing one breaks
the first `pip install` on a clean machine.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPORTER = ROOT / "exporter"
# Distribution name -> how the exporter uses it: an import name, or a file it reads.
USED_AS = {
    "nvidia-ml-py": "pynvml",
    "pyudev": "pyudev",
    "structlog": "structlog",
    "grpcio": "grpc",
    "protobuf": "google",
    "pyyaml": "yaml",
    "bcrypt": "bcrypt",
    # Not imported: its nvml.h is what the fake driver is compiled against.
    "nvidia-nvml-dev": "file:exporter/fakenvml/build.py:nvidia-nvml-dev",
}


def runtime_dependencies() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {
        re.split(r"[<>=!~ ;\[]", spec, maxsplit=1)[0].lower() for spec in project["dependencies"]
    }


def imported_top_level_names() -> set[str]:
    names: set[str] = set()
    for path in EXPORTER.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def test_every_runtime_dependency_is_used() -> None:
    imported = imported_top_level_names()
    unused = []
    for dist in sorted(runtime_dependencies()):
        assert dist in USED_AS, f"{dist}: say in USED_AS how the exporter uses it"
        use = USED_AS[dist]
        if use.startswith("file:"):
            _, path, needle = use.split(":", 2)
            if needle not in (ROOT / path).read_text():
                unused.append(dist)
        elif use not in imported:
            unused.append(dist)
    assert not unused, f"runtime dependencies the exporter never uses: {unused}"


def test_everything_imported_is_stdlib_ours_or_a_dependency() -> None:
    declared = {USED_AS[dist] for dist in runtime_dependencies() if dist in USED_AS}
    foreign = imported_top_level_names() - set(sys.stdlib_module_names) - {"exporter"}
    assert foreign <= declared, f"imported but not a runtime dependency: {foreign - declared}"


def test_psutil_is_not_a_runtime_dependency() -> None:
    assert "psutil" not in runtime_dependencies()
    assert "psutil" not in imported_top_level_names()
