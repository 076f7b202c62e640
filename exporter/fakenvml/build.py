"""Build the fake ``libnvidia-ml.so.1`` from its C sources.

The fake driver is C (not a Python mock) so that the real, unmodified pynvml loads it
through ``ctypes.CDLL("libnvidia-ml.so.1")`` exactly as it loads NVIDIA's driver: every
struct layout, return code and two-call protocol is exercised for real.

The library is compiled against NVIDIA's ``nvml.h`` from the installed ``nvidia-nvml-dev``
wheel (never committed: NVIDIA licence) into a content-addressed cache directory, so
every checkout and test session reuses one build and a changed source gets a new one.

Any NVML program must load and run against the fake without a missing symbol (nvitop looks up
functions we do not model), so every ``nvmlReturn_t`` function the header declares gets a stub
answering ``NVML_ERROR_NOT_SUPPORTED``, as a real driver does for a feature the GPU lacks. The
stubs are generated at build time from the preprocessed header (``nvml_stubs.c`` in the build
directory; deterministic: one stub per declaration, sorted by name) rather than committed,
because they copy NVIDIA's prototypes and the header moves with every CUDA release. They are
weak symbols: a function the C sources model overrides its stub at link time, so nothing has to
keep a list of what is modelled.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SCENARIO_SOURCE_DIR = PACKAGE_DIR / "scenarios"
LIBRARY_NAME = "libnvidia-ml.so.1"
STUBS_NAME = "nvml_stubs.c"
#: Defined for the header as for the C sources: the legacy unversioned names are declared too.
HEADER_DEFINES = ("-DNVML_NO_UNVERSIONED_FUNC_DEFS",)
# A function declaration in the preprocessed header; function-pointer typedefs do not match.
_DECLARATION = re.compile(r"\bnvmlReturn_t\s+(nvml\w+)\s*\(([^;{}]*)\)\s*;")


def _site_dirs() -> list[Path]:
    """Every directory an installed wheel's files may live in (venv, user, system)."""
    dirs: list[str] = []
    for key in ("purelib", "platlib"):
        dirs.append(sysconfig.get_paths()[key])
    with contextlib.suppress(AttributeError):  # very old virtualenv lacks it
        dirs.extend(site.getsitepackages())
    user = site.getusersitepackages()
    if isinstance(user, str):
        dirs.append(user)
    dirs.extend(p for p in sys.path if p)
    seen: list[Path] = []
    for d in dirs:
        p = Path(d)
        if p not in seen and p.is_dir():
            seen.append(p)
    return seen


def find_nvml_include_dir() -> Path:
    """Locate the directory holding ``nvml.h``.

    ``$NVML_INCLUDE_DIR`` wins; otherwise the ``nvidia/cu*/include`` folder of the installed
    ``nvidia-nvml-dev`` wheel (newest CUDA major first), whose path changes with the CUDA
    major, hence the glob.
    """
    override = os.environ.get("NVML_INCLUDE_DIR")
    if override:
        if (Path(override) / "nvml.h").is_file():
            return Path(override)
        raise RuntimeError(f"NVML_INCLUDE_DIR={override} does not contain nvml.h")
    candidates: list[Path] = []
    for d in _site_dirs():
        candidates.extend(d.glob("nvidia/cu*/include/nvml.h"))
        candidates.extend(d.glob("nvidia/nvml/include/nvml.h"))
    if not candidates:
        raise RuntimeError(
            "nvml.h not found: install the NVIDIA header wheel (pip install nvidia-nvml-dev) "
            "or set NVML_INCLUDE_DIR to the directory that contains nvml.h"
        )
    candidates.sort(key=str, reverse=True)
    return candidates[0].parent


def find_compiler() -> list[str]:
    """The C compiler command: ``$CC`` (may carry flags) or ``cc``."""
    cmd = shlex.split(os.environ.get("CC", "") or "cc")
    if not cmd or shutil.which(cmd[0]) is None:
        raise RuntimeError(
            f"no C compiler found (looked for {cmd[0] if cmd else 'cc'!r}); install gcc or set CC"
        )
    return cmd


def cache_root() -> Path:
    """Where builds live: ``$GPU_NODE_EXPORTER_CACHE``, else the XDG cache directory."""
    explicit = os.environ.get("GPU_NODE_EXPORTER_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "gpu-node-exporter"


def source_files() -> list[Path]:
    """C sources and headers of the fake driver, in a stable order."""
    return sorted([*PACKAGE_DIR.glob("*.c"), *PACKAGE_DIR.glob("*.h")])


def scenario_files() -> list[Path]:
    """Built-in scenario files, in a stable order."""
    return sorted(SCENARIO_SOURCE_DIR.glob("*.scn"))


def build_id() -> str:
    """First 12 hex digits of a sha256 over every input, so changed inputs get a new dir.

    The inputs are the C sources, the scenarios, this file (it generates the stubs) and the
    nvml.h they are compiled against (a new header can declare new functions to stub).
    """
    h = hashlib.sha256()
    header = find_nvml_include_dir() / "nvml.h"
    for path in [*source_files(), *scenario_files(), Path(__file__).resolve(), header]:
        h.update(path.name.encode())
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:12]


def preprocess_header(compiler: list[str], include: Path) -> str:
    """nvml.h after the C preprocessor, with the defines the sources use (no comments, no #if)."""
    cmd = [*compiler, "-E", "-P", *HEADER_DEFINES, "-I", str(include), "-x", "c", "-"]
    proc = subprocess.run(
        cmd, input="#include <nvml.h>\n", capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"preprocessing nvml.h failed ({shlex.join(cmd)}):\n{proc.stderr}")
    return proc.stdout


def declared_functions(preprocessed: str) -> dict[str, str]:
    """Name -> parameter list of every ``nvmlReturn_t`` function the header declares."""
    return {
        match.group(1): " ".join(match.group(2).split())
        for match in _DECLARATION.finditer(preprocessed)
    }


def stub_source(functions: dict[str, str]) -> str:
    """The C text of the weak NOT_SUPPORTED stubs, one per function, sorted by name."""
    lines = [
        "/* Generated by exporter/fakenvml/build.py from nvml.h; do not edit, never commit",
        " * (it copies NVIDIA's prototypes; see fakenvml.h for the notice nvml.h requires).",
        " * Every function nvml.h declares answers NOT_SUPPORTED unless the C sources model it:",
        " * those strong definitions override these weak ones at link time. */",
        "#include <nvml.h>",
        '#pragma GCC diagnostic ignored "-Wunused-parameter"',
        '#pragma GCC diagnostic ignored "-Wdeprecated-declarations"',
        '#define FK_STUB __attribute__((weak, visibility("default")))',
        "void fk_count_call(int with_latency); /* calls.c: every entry point is counted */",
        "",
    ]
    for name in sorted(functions):
        lines.append(
            f"FK_STUB nvmlReturn_t {name}({functions[name]}) "
            "{ fk_count_call(1); return NVML_ERROR_NOT_SUPPORTED; }"
        )
    return "\n".join(lines) + "\n"


def _write_stubs(target: Path, compiler: list[str], include: Path) -> Path:
    """Generate nvml_stubs.c into the build directory (temp file + rename: builds race)."""
    text = stub_source(declared_functions(preprocess_header(compiler, include)))
    final = target / STUBS_NAME
    fd, tmp_name = tempfile.mkstemp(prefix=f".{STUBS_NAME}.", suffix=".tmp", dir=target)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp_name, final)
    return final


def build_dir() -> Path:
    """The cache directory of the current sources (may not exist yet)."""
    return cache_root() / f"fakenvml-{build_id()}"


def _install_scenarios(target: Path) -> None:
    """Copy scenario files via a temp dir + rename so readers never see half a set."""
    final = target / "scenarios"
    if final.is_dir():
        return
    tmp = Path(tempfile.mkdtemp(prefix=".scenarios-", dir=target))
    try:
        for scn in scenario_files():
            shutil.copy2(scn, tmp / scn.name)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def build_fake_driver(force: bool = False) -> Path:
    """Compile the fake driver if needed and return the directory holding it.

    The returned directory contains ``libnvidia-ml.so.1`` and ``scenarios/*.scn``; put it
    on ``LD_LIBRARY_PATH`` (before the interpreter starts) or ``ctypes.CDLL`` the library
    by absolute path before ``pynvml.nvmlInit()``. Safe to call from several processes at
    once: the compiler writes a private temp file that is renamed into place.
    """
    target = build_dir()
    lib = target / LIBRARY_NAME
    if lib.is_file() and (target / "scenarios").is_dir() and not force:
        return target
    compiler = find_compiler()
    include = find_nvml_include_dir()
    target.mkdir(parents=True, exist_ok=True)
    _install_scenarios(target)
    stubs = _write_stubs(target, compiler, include)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{LIBRARY_NAME}.", suffix=".tmp", dir=target)
    os.close(fd)
    cmd = [
        *compiler,
        "-O2",
        "-shared",
        "-fPIC",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-fvisibility=hidden",
        f"-Wl,-soname,{LIBRARY_NAME}",
        "-I",
        str(include),
        *HEADER_DEFINES,
        *[str(p) for p in sorted(PACKAGE_DIR.glob("*.c"))],
        str(stubs),
        "-o",
        tmp_name,
        "-lm",
        "-lpthread",
        "-ldl",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(
                f"compiling the fake NVML driver failed ({shlex.join(cmd)}):\n{proc.stderr}"
            )
        os.replace(tmp_name, lib)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


def library_path(force: bool = False) -> Path:
    """Absolute path of the built ``libnvidia-ml.so.1`` (building it if needed)."""
    return build_fake_driver(force) / LIBRARY_NAME
