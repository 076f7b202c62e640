"""`gpu-node-exporter diagnose`: read every input once, bounded, and print the checklist.

Why NVML and the kubelet are asked in parallel with one deadline: each can hang (a GPU stuck
in reset, a kubelet restarting), and the command must finish in about --timeout whatever
happens; the kernel log, the PCI bus and /dev are read while they are waited on (they never
block). The exporter's own NvmlSource and pod-resources client do the reading, so diagnose sees
exactly what the exporter next to it would publish.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn

import structlog

from exporter.config import ConfigError
from exporter.diagnose.base import Host, Readings
from exporter.diagnose.checks import checklist
from exporter.diagnose.inputs import (
    KubeletReading,
    NvmlReading,
    read_dev,
    read_kmsg,
    read_kubelet,
    read_nvml,
    read_pci,
)
from exporter.diagnose.options import COMMAND, Options, parse_options
from exporter.diagnose.report import exit_code, to_json, to_text
from exporter.verdict import Finding


def current_host() -> Host:
    """Wall time, seconds since boot (the kernel log's clock) and the node's name."""
    return Host(now=time.time(), uptime=time.monotonic(), node=socket.gethostname())


def _library(options: Options) -> str | None:
    if options.simulate is None:
        return None
    from exporter.simulate import prepare_simulation

    return prepare_simulation(options.simulate)


def gather(options: Options, library: str | None) -> Readings:
    """Every input, NVML and kubelet concurrently, within --timeout."""
    deadline = time.monotonic() + options.timeout_seconds
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="diagnose") as pool:
        nvml = pool.submit(read_nvml, library, deadline, options.timeout_seconds)
        kubelet = pool.submit(
            read_kubelet, options.pod_resources_socket, deadline, options.timeout_seconds
        )
        kmsg = read_kmsg(options.kmsg_path, deadline)
        pci = read_pci(options.sysfs_path)
        dev = read_dev(options.dev_path)
        nvml_reading: NvmlReading = nvml.result()
        kubelet_reading: KubeletReading = kubelet.result()
    return Readings(nvml_reading, kubelet_reading, kmsg, pci, dev)


def diagnose(options: Options, host: Host, library: str | None) -> list[Finding]:
    """Read the inputs and run the checklist."""
    return checklist(gather(options, library), options, host)


def _quiet_logs() -> dict[str, Any]:
    """The exporter's sources log; diagnose reports everything itself. Returns the old config."""
    saved = structlog.get_config()
    structlog.configure(processors=[_drop], cache_logger_on_first_use=False)
    return saved


def _drop(_logger: object, _method: str, _event: object) -> NoReturn:
    raise structlog.DropEvent


def main(argv: Sequence[str], *, host: Host | None = None) -> int:
    """Entry point of `gpu-node-exporter diagnose`; `host` is injected by tests (time, name)."""
    try:
        options = parse_options(argv)
    except ConfigError as err:
        print(f"{COMMAND}: error: {err}", file=sys.stderr)
        return 2
    host = host or current_host()
    saved = _quiet_logs()
    library: str | None = None
    try:
        try:
            library = _library(options)
        except (RuntimeError, ValueError) as err:  # no fake driver here, or a bad scenario file
            print(f"{COMMAND}: error: --simulate: {err}", file=sys.stderr)
            return 2
        findings = diagnose(options, host, library)
    finally:
        if library is not None:
            from exporter.simulate import detach_log_handler

            detach_log_handler()  # the fake driver's messages go back to stderr
        structlog.configure(**saved)
    text = (
        to_json(findings, host.node)
        if options.json
        else to_text(findings, host.node, options.simulate)
    )
    sys.stdout.write(text)
    sys.stdout.flush()
    return exit_code(findings)
