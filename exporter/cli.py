"""Command line: flags with GPU_NODE_EXPORTER_* environment fallbacks, turned into a Config.

Every flag can also come from the environment (a DaemonSet sets env more easily than args):
`--collection.interval` is `GPU_NODE_EXPORTER_COLLECTION_INTERVAL`. A flag on the command line
wins over the environment. An invalid value exits with code 2 and one line naming the flag.
Boolean flags all take one vocabulary (true/false, 1/0, yes/no, on/off). A GPU_NODE_EXPORTER_*
variable the exporter does not know is a warning at start naming the closest known one: the
environment has no "unknown flag" error, so a typo would otherwise be silently ignored.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from exporter import __version__
from exporter.config import (
    DEFAULT_INTERVAL_SECONDS,
    DEFAULT_KMSG_PATH,
    DEFAULT_LISTEN_ADDRESS,
    DEFAULT_POD_RESOURCES_SOCKET,
    LOG_FORMATS,
    LOG_LEVELS,
    Config,
    ConfigError,
    WebConfigError,
    parse_auto_bool,
    parse_bool,
    parse_choice,
    parse_duration,
    parse_existing_file,
    parse_int,
    parse_listen_address,
    parse_prefixes,
    parse_simulate,
)
from exporter.fakenvml import BUILTIN_SCENARIOS, DEFAULT_SCENARIO

PROG = "gpu-node-exporter"
ENV_PREFIX = "GPU_NODE_EXPORTER_"
#: GPU_NODE_EXPORTER_* variables that are not flags but are read by this project (the fake
#: driver's build cache) or by its tooling, which may share the exporter's environment (the
#: image build, the Grafana provisioning files): known, so never warned about.
OTHER_ENV = (
    "GPU_NODE_EXPORTER_CACHE",  # exporter/fakenvml/build.py: where --simulate's driver lives
    "GPU_NODE_EXPORTER_IMAGE_DIR",  # scripts/image_podman.py
    "GPU_NODE_EXPORTER_STORAGE_DRIVER",  # scripts/image_podman.py
    "GPU_NODE_EXPORTER_PROMETHEUS_URL",  # dashboards/provisioning
    "GPU_NODE_EXPORTER_DASHBOARDS",  # dashboards/provisioning
)


def env_name(flag: str) -> str:
    """`--web.listen-address` -> `GPU_NODE_EXPORTER_WEB_LISTEN_ADDRESS`."""
    return ENV_PREFIX + flag.lstrip("-").replace(".", "_").replace("-", "_").upper()


class _OneLineParser(argparse.ArgumentParser):
    """argparse prints usage plus the error; we print one line that names the problem."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


# flag, default, help (the environment variable is appended to each help text)
FLAGS: tuple[tuple[str, str | None, str], ...] = (
    ("--web.listen-address", DEFAULT_LISTEN_ADDRESS, "Address to serve /metrics on (host:port)."),
    (
        "--web.config.file",
        None,
        "Exporter-toolkit web config file (TLS, client certificates, basic auth with bcrypt "
        "hashes, security headers); re-read when it or a certificate changes. See "
        "docs/web-config.md.",
    ),
    (
        "--collection.interval",
        f"{DEFAULT_INTERVAL_SECONDS:g}s",
        "How often NVML is polled (e.g. 5s, 500ms). Scrapes never call NVML.",
    ),
    ("--path.kmsg", DEFAULT_KMSG_PATH, "Kernel log to follow for Xid errors (device or file)."),
    (
        "--path.pod-resources-socket",
        DEFAULT_POD_RESOURCES_SOCKET,
        "Kubelet pod-resources socket used to map GPUs to pods.",
    ),
    (
        "--collector.pod-attribution",
        "auto",
        "Map GPUs to pods through the kubelet: auto (on when the socket or its directory "
        "exists) or a boolean (on/off, true/false).",
    ),
    (
        "--kubelet.resource-prefixes",
        "nvidia.com/gpu,nvidia.com/mig-",
        "Comma-separated resource-name prefixes that name GPUs (nvidia.com/gpu also matches "
        "nvidia.com/gpu.shared).",
    ),
    (
        "--collector.processes",
        "false",
        "Export per-process GPU memory and per-pod utilization (busy seconds on shared GPUs) "
        "with pod attribution (true/false; needs hostPID or the host's /proc at --path.procfs).",
    ),
    ("--collector.processes.top-n", "10", "Per-process series kept per GPU, largest first."),
    ("--path.procfs", "/proc", "Where the host's /proc is mounted (per-process attribution)."),
    (
        "--collector.kmsg",
        "true",
        "Follow the kernel log (--path.kmsg) for Xid errors (true/false). In a container it needs "
        "the device /dev/kmsg allowed by the runtime; off, Xids come from NVML events alone.",
    ),
    (
        "--collector.nvml-events",
        "true",
        "Also take Xid errors from NVML events (the signal when the kernel log is unreadable; "
        "true/false).",
    ),
    (
        "--collector.udev",
        "true",
        "Watch NVIDIA GPUs appear on and leave the PCI bus (udev; true/false); always off with "
        "--simulate.",
    ),
    ("--log.level", "info", f"Log level: {', '.join(LOG_LEVELS)}."),
    ("--log.format", "json", f"Log format: {', '.join(LOG_FORMATS)}."),
)


def add_flag(
    parser: argparse.ArgumentParser, flag: str, default: str | None, help_text: str
) -> None:
    """One flag whose default is its GPU_NODE_EXPORTER_* variable (also used by diagnose)."""
    env = env_name(flag)
    parser.add_argument(
        flag,
        default=os.environ.get(env, default),
        metavar="VALUE",
        help=f"{help_text} Default: {default or 'unset'}. Env: {env}.",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; defaults come from the environment where set."""
    parser = _OneLineParser(
        prog=PROG,
        description="Prometheus exporter for NVIDIA GPU nodes (NVML metrics, Xid errors, pods).",
    )
    for flag, default, help_text in FLAGS:
        add_flag(parser, flag, default, help_text)
    simulate_env = os.environ.get(env_name("--simulate"))
    parser.add_argument(
        "--simulate",
        nargs="?",
        const=DEFAULT_SCENARIO,
        default=simulate_env or None,
        metavar="SCENARIO",
        help=(
            "Run on the bundled fake NVML driver instead of a real one, with a built-in scenario "
            f"({', '.join(BUILTIN_SCENARIOS)}; default {DEFAULT_SCENARIO}) or a scenario file "
            "(checked before start). A boolean asks for the default scenario (true) or turns "
            f"simulation off (false). Env: {env_name('--simulate')}."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def config_from_args(argv: Sequence[str] | None = None) -> Config:
    """Parse and validate; raises ConfigError naming the offending flag."""
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    given = set(argv if argv is not None else sys.argv[1:])

    def from_env(flag: str) -> bool:
        return not any(arg == flag or arg.startswith(flag + "=") for arg in given) and (
            env_name(flag) in os.environ
        )

    def value(flag: str) -> str | None:
        result = args[flag.lstrip("-").replace("-", "_")]
        return None if result is None else str(result)

    def label(flag: str) -> str:
        return f"{flag} (from {env_name(flag)})" if from_env(flag) else flag

    listen = parse_listen_address(
        label("--web.listen-address"), value("--web.listen-address") or ""
    )
    interval = parse_duration(label("--collection.interval"), value("--collection.interval") or "")
    web_config_raw = value("--web.config.file")
    web_config = None
    if web_config_raw:
        web_config = parse_existing_file(label("--web.config.file"), web_config_raw)
        from exporter.webconfig import load_web_config  # TLS and auth only when configured

        try:
            load_web_config(web_config)
        except WebConfigError as err:
            raise ConfigError(f"{label('--web.config.file')}: {err}") from None
    simulate = args["simulate"]
    if simulate is not None:
        simulate = parse_simulate(
            label("--simulate"), str(simulate), BUILTIN_SCENARIOS, DEFAULT_SCENARIO
        )
    if simulate is not None and simulate not in BUILTIN_SCENARIOS:
        from exporter.simulate import scenario_problem  # builds the fake driver: only here

        problem = scenario_problem(simulate)
        if problem:
            raise ConfigError(f"{label('--simulate')}: {problem}")
    return Config(
        listen=listen,
        interval_seconds=interval,
        web_config_file=web_config,
        simulate=simulate,
        kmsg_path=value("--path.kmsg") or DEFAULT_KMSG_PATH,
        pod_resources_socket=value("--path.pod-resources-socket") or DEFAULT_POD_RESOURCES_SOCKET,
        kmsg=parse_bool(label("--collector.kmsg"), value("--collector.kmsg") or ""),
        xid_nvml_events=parse_bool(
            label("--collector.nvml-events"), value("--collector.nvml-events") or ""
        ),
        udev=parse_bool(label("--collector.udev"), value("--collector.udev") or ""),
        log_level=parse_choice(label("--log.level"), value("--log.level") or "", LOG_LEVELS),
        log_format=parse_choice(label("--log.format"), value("--log.format") or "", LOG_FORMATS),
        pod_attribution=parse_auto_bool(
            label("--collector.pod-attribution"), value("--collector.pod-attribution") or ""
        ),
        processes=parse_bool(label("--collector.processes"), value("--collector.processes") or ""),
        processes_top_n=parse_int(
            label("--collector.processes.top-n"),
            value("--collector.processes.top-n") or "",
            1,
            1000,
        ),
        procfs_path=value("--path.procfs") or "/proc",
        resource_prefixes=parse_prefixes(
            label("--kubelet.resource-prefixes"), value("--kubelet.resource-prefixes") or ""
        ),
    )


def known_env() -> tuple[str, ...]:
    """Every GPU_NODE_EXPORTER_* variable this project reads, sorted."""
    flags = [flag for flag, _, _ in FLAGS] + ["--simulate"]
    return tuple(sorted({env_name(flag) for flag in flags} | set(OTHER_ENV)))


def unknown_env(environ: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """(variable, closest known variable or None) for each unknown GPU_NODE_EXPORTER_* name."""
    known = known_env()
    return [
        (name, next(iter(difflib.get_close_matches(name, known, n=1, cutoff=0.6)), None))
        for name in sorted(environ)
        if name.startswith(ENV_PREFIX) and name not in known
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `gpu-node-exporter` and `python -m exporter`; `diagnose` as the first
    argument runs the node checklist instead (exporter/diagnose) and exits with its verdict."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["diagnose"]:
        from exporter import diagnose  # imported late: the exporter itself never needs it

        return diagnose.main(args[1:])
    try:
        config = config_from_args(args)
    except ConfigError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    from exporter.app import run  # imported late: --help and bad flags stay fast

    return run(config, unknown_env=unknown_env(os.environ))
