"""The diagnose command line: the exporter's input flags (same defaults and environment) plus
the questions only diagnose asks (--pod, --cuda-runtime, --need-memory).

Why the exporter's flags and environment: diagnose runs in the DaemonSet pod with
`kubectl exec`, where the exporter's GPU_NODE_EXPORTER_* variables are already set; it must
read the same kernel log and kubelet socket as the exporter next to it, without retyping them.
A bad value exits 2 with one line naming the flag, like the exporter.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from exporter.cli import PROG, add_flag, env_name
from exporter.config import (
    DEFAULT_KMSG_PATH,
    DEFAULT_POD_RESOURCES_SOCKET,
    ConfigError,
    parse_duration,
    parse_prefixes,
)
from exporter.fakenvml import BUILTIN_SCENARIOS, DEFAULT_SCENARIO

COMMAND = f"{PROG} diagnose"
DEFAULT_TIMEOUT = "5s"
DEFAULT_SYSFS = "/sys"
DEFAULT_DEV = "/dev"
DEFAULT_PREFIXES = "nvidia.com/gpu,nvidia.com/mig-"
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)(b?)\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}
_CUDA = re.compile(r"^\s*(\d{1,3})\.(\d{1,3})\s*$")
_POD = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)/([a-z0-9]([-.a-z0-9]*[a-z0-9])?)$")


@dataclass(frozen=True, slots=True)
class Options:
    """What one diagnose run looks at and asks."""

    json: bool = False
    simulate: str | None = None
    kmsg_path: str = DEFAULT_KMSG_PATH
    pod_resources_socket: str = DEFAULT_POD_RESOURCES_SOCKET
    resource_prefixes: tuple[str, ...] = ("nvidia.com/gpu", "nvidia.com/mig-")
    sysfs_path: str = DEFAULT_SYSFS
    dev_path: str = DEFAULT_DEV
    # --simulate reads no real PCI bus or /dev unless the path was given explicitly
    sysfs_given: bool = False
    dev_given: bool = False
    pod: tuple[str, str] | None = None
    cuda_runtime: tuple[int, int] | None = None
    need_memory_bytes: int | None = None
    need_memory_text: str = ""
    timeout_seconds: float = 5.0


class _Parser(argparse.ArgumentParser):
    """One line naming the problem instead of usage plus error (the exporter's style)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_size(flag: str, text: str) -> int:
    """`40GiB`, `24G`, `8000MiB`, `80GB`, `1.5T`, or bytes.

    K/M/G/T with or without `i` and `B` are binary (1024-based), as nvidia-smi prints memory
    and as `ls -h` counts; only an explicit decimal `KB`/`MB`/`GB`/`TB` is 1000-based. A bare
    `24G` thus asks for the larger of the two readings: a fit that holds for it holds for both.
    """
    match = _SIZE.match(text)
    if not match or (match.group(2) == "" and match.group(3)):
        raise ConfigError(f"{flag}: invalid size {text!r} (use e.g. 40GiB, 24G, 8000MiB)")
    number, prefix, binary, byte = match.groups()
    power = _POWERS[prefix.lower()]
    base = 1000 if (byte and not binary and prefix) else 1024
    value = int(float(number) * base**power)
    if value <= 0:
        raise ConfigError(f"{flag}: {text!r} is not a positive size")
    return value


def parse_cuda_version(flag: str, text: str) -> tuple[int, int]:
    """`12.4` -> (12, 4)."""
    match = _CUDA.match(text)
    if not match:
        raise ConfigError(f"{flag}: invalid CUDA version {text!r} (use MAJOR.MINOR, e.g. 12.4)")
    return int(match.group(1)), int(match.group(2))


def parse_pod(flag: str, text: str) -> tuple[str, str]:
    """`NAMESPACE/NAME` (Kubernetes names: lower-case DNS labels and subdomains)."""
    match = _POD.match(text.strip())
    if not match:
        raise ConfigError(f"{flag}: {text!r} is not NAMESPACE/NAME (e.g. default/train-0)")
    return match.group(1), match.group(3)


def parse_simulate(flag: str, text: str | None) -> str | None:
    """A built-in scenario, a scenario file, or on/off words (from the environment)."""
    if text is None:
        return None
    word = text.strip().lower()
    if word in _TRUE:
        return DEFAULT_SCENARIO
    if word in _FALSE or word == "":
        return None
    if text in BUILTIN_SCENARIOS or Path(text).is_file():
        return text
    raise ConfigError(
        f"{flag}: {text!r} is neither a built-in scenario ({', '.join(BUILTIN_SCENARIOS)}) "
        "nor a readable file"
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser; the exporter's flags default to its GPU_NODE_EXPORTER_* variables."""
    parser = _Parser(
        prog=COMMAND,
        description=(
            "Walk the GPU node checklist (driver, device plugin, allocatable, pod, container "
            "devices, CUDA, memory) and the GPU health questions; one line per check. Exit "
            "code 0: all passed, 1: warnings, 2: failures (skipped checks do not count)."
        ),
    )
    parser.add_argument("--json", action="store_true", help="Print one JSON document.")
    simulate_env = env_name("--simulate")
    parser.add_argument(
        "--simulate",
        nargs="?",
        const=DEFAULT_SCENARIO,
        default=os.environ.get(simulate_env) or None,
        metavar="SCENARIO",
        help=(
            "Diagnose the bundled fake NVML driver (as the exporter's --simulate): a built-in "
            f"scenario ({', '.join(BUILTIN_SCENARIOS)}; default {DEFAULT_SCENARIO}) or a "
            f"scenario file. Env: {simulate_env}."
        ),
    )
    shared = (
        ("--path.kmsg", DEFAULT_KMSG_PATH, "Kernel log whose backlog is searched for Xids."),
        (
            "--path.pod-resources-socket",
            DEFAULT_POD_RESOURCES_SOCKET,
            "Kubelet pod-resources socket (List, GetAllocatableResources).",
        ),
        (
            "--kubelet.resource-prefixes",
            DEFAULT_PREFIXES,
            "Comma-separated resource-name prefixes that name GPUs.",
        ),
    )
    for flag, default, help_text in shared:
        add_flag(parser, flag, default, help_text)
    parser.add_argument(
        "--path.sysfs",
        default=None,
        metavar="PATH",
        help=f"Where sysfs is mounted (PCI bus scan). Default: {DEFAULT_SYSFS}; with --simulate "
        "the PCI check is skipped unless given.",
    )
    parser.add_argument(
        "--path.dev",
        default=None,
        metavar="PATH",
        help=f"Where to look for nvidia* device files. Default: {DEFAULT_DEV}; with --simulate "
        "the check is skipped unless given.",
    )
    parser.add_argument(
        "--pod", metavar="NAMESPACE/NAME", help="Check that this pod holds GPUs on this node."
    )
    parser.add_argument(
        "--cuda-runtime",
        metavar="X.Y",
        help="A container's CUDA runtime version, checked against the driver's maximum.",
    )
    parser.add_argument(
        "--need-memory",
        metavar="SIZE",
        help="Model memory (e.g. 40GiB, 24G, 8000MiB): which GPUs or MIG devices fit it.",
    )
    parser.add_argument(
        "--timeout",
        default=DEFAULT_TIMEOUT,
        metavar="DURATION",
        help="Longest wait for NVML and for the kubelet (they are asked in parallel); a check "
        f"whose input does not answer in time fails. Default: {DEFAULT_TIMEOUT}.",
    )
    return parser


def parse_options(argv: Sequence[str]) -> Options:
    """Parse and validate; raises ConfigError naming the flag (argparse exits 2 itself)."""
    args = vars(build_parser().parse_args(list(argv)))
    given = list(argv)

    def label(flag: str) -> str:
        on_line = any(arg == flag or arg.startswith(flag + "=") for arg in given)
        return flag if on_line or env_name(flag) not in os.environ else f"{flag} ({env_name(flag)})"

    def value(flag: str) -> str | None:
        result = args[flag.lstrip("-").replace("-", "_")]
        return None if result is None else str(result)

    memory_text = value("--need-memory")
    cuda = value("--cuda-runtime")
    pod = value("--pod")
    sysfs = value("--path.sysfs")
    dev = value("--path.dev")
    return Options(
        json=bool(args["json"]),
        simulate=parse_simulate(label("--simulate"), value("--simulate")),
        kmsg_path=value("--path.kmsg") or DEFAULT_KMSG_PATH,
        pod_resources_socket=value("--path.pod-resources-socket") or DEFAULT_POD_RESOURCES_SOCKET,
        resource_prefixes=parse_prefixes(
            label("--kubelet.resource-prefixes"), value("--kubelet.resource-prefixes") or ""
        ),
        sysfs_path=sysfs or DEFAULT_SYSFS,
        dev_path=dev or DEFAULT_DEV,
        sysfs_given=sysfs is not None,
        dev_given=dev is not None,
        pod=parse_pod("--pod", pod) if pod is not None else None,
        cuda_runtime=parse_cuda_version("--cuda-runtime", cuda) if cuda is not None else None,
        need_memory_bytes=parse_size("--need-memory", memory_text) if memory_text else None,
        need_memory_text=memory_text or "",
        timeout_seconds=parse_duration("--timeout", value("--timeout") or ""),
    )
