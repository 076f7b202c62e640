"""The exporter's configuration: one frozen value built and validated by the CLI.

Validation lives next to the values so every entry point (flags, environment, tests) gets the
same rules and the same one-line error naming the flag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LISTEN_ADDRESS = ":9445"
DEFAULT_INTERVAL_SECONDS = 5.0
DEFAULT_KMSG_PATH = "/dev/kmsg"
DEFAULT_POD_RESOURCES_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "console")
MIN_INTERVAL_SECONDS = 0.1
MAX_INTERVAL_SECONDS = 3600.0
#: The one boolean vocabulary of every flag and variable (case-insensitive). A DaemonSet author
#: writes whatever their last tool took; accepting all four pairs ends the guessing.
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")
BOOL_WORDS = "true/false, 1/0, yes/no, on/off"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the flag."""


class WebConfigError(ValueError):
    """The web config file is invalid; the message names the key.

    Defined here, not in exporter.webconfig (which re-exports it), so the application can catch
    it without importing the web config's TLS and auth machinery when no file is configured.
    """


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """Where the HTTP server binds; an empty host means every interface (IPv4 and IPv6)."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the application needs to start; defaults equal the command line's."""

    listen: ListenAddress = ListenAddress("", 9445)
    interval_seconds: float = DEFAULT_INTERVAL_SECONDS
    web_config_file: Path | None = None
    simulate: str | None = None
    kmsg_path: str = DEFAULT_KMSG_PATH
    kmsg: bool = True  # follow the kernel log (off: NVML events are the only Xid source)
    pod_resources_socket: str = DEFAULT_POD_RESOURCES_SOCKET
    log_level: str = "info"
    log_format: str = "json"
    pod_attribution: str = "auto"
    processes: bool = False
    processes_top_n: int = 10
    procfs_path: str = "/proc"
    resource_prefixes: tuple[str, ...] = ("nvidia.com/gpu", "nvidia.com/mig-")
    xid_nvml_events: bool = True
    udev: bool = True


def parse_duration(flag: str, text: str) -> float:
    """Parse `5s`, `500ms`, `1m`, `1h` or plain seconds into seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(f"{flag}: invalid duration {text!r} (use e.g. 5s, 500ms, 1m)")
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not MIN_INTERVAL_SECONDS <= seconds <= MAX_INTERVAL_SECONDS:
        raise ConfigError(
            f"{flag}: {text!r} is out of range "
            f"({MIN_INTERVAL_SECONDS:g}s to {MAX_INTERVAL_SECONDS:g}s)"
        )
    return seconds


def parse_listen_address(flag: str, text: str) -> ListenAddress:
    """Parse `:9445`, `0.0.0.0:9445`, `localhost:9445` or `[::1]:9445`."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not port_text.isdigit():
        raise ConfigError(f"{flag}: invalid address {text!r} (use host:port, e.g. :9445)")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ConfigError(f"{flag}: port {port} is out of range 0-65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return ListenAddress(host, port)


def parse_choice(flag: str, text: str, choices: tuple[str, ...]) -> str:
    """Accept one of `choices`, case-insensitively."""
    value = text.strip().lower()
    if value not in choices:
        raise ConfigError(f"{flag}: {text!r} is not one of {', '.join(choices)}")
    return value


def parse_bool(flag: str, text: str) -> bool:
    """`true`/`false`, `1`/`0`, `yes`/`no` or `on`/`off`, case-insensitively."""
    value = text.strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise ConfigError(f"{flag}: {text!r} is not a boolean ({BOOL_WORDS})")


def parse_auto_bool(flag: str, text: str) -> str:
    """`auto` or a boolean, normalised to `auto`, `on` or `off` (e.g. --collector.pod-attribution).

    Tri-state switches take the same boolean words as every other flag, so `true` works where
    `on` does; the result keeps the historical on/off spelling the rest of the code compares to.
    """
    value = text.strip().lower()
    if value == "auto":
        return "auto"
    try:
        return "on" if parse_bool(flag, value) else "off"
    except ConfigError:
        raise ConfigError(f"{flag}: {text!r} is not auto or a boolean ({BOOL_WORDS})") from None


def parse_simulate(flag: str, text: str, scenarios: tuple[str, ...], default: str) -> str | None:
    """--simulate's value: a built-in scenario, a scenario file, or a boolean.

    A boolean lets the environment ask for the default scenario (`GPU_NODE_EXPORTER_SIMULATE=true`)
    or say "not simulating" explicitly (`false`), as a flag without a value cannot be written
    there. Returns the scenario name or path, or None for not simulating. The error lists the
    built-in scenarios, the thing a new user is most likely looking for.
    """
    value = text.strip()
    if value in scenarios:
        return value
    if value.lower() in TRUE_WORDS:
        return default
    if value.lower() in FALSE_WORDS:
        return None
    if value and Path(value).is_file():
        return value
    raise ConfigError(
        f"{flag}: {text!r} is not a built-in scenario ({', '.join(scenarios)}), a readable "
        f"scenario file or a boolean ({BOOL_WORDS}; true means {default})"
    )


def parse_int(flag: str, text: str, low: int, high: int) -> int:
    """An integer within [low, high]."""
    try:
        value = int(text.strip())
    except ValueError:
        raise ConfigError(f"{flag}: {text!r} is not an integer") from None
    if not low <= value <= high:
        raise ConfigError(f"{flag}: {value} is out of range {low}-{high}")
    return value


def parse_prefixes(flag: str, text: str) -> tuple[str, ...]:
    """A comma-separated list of resource-name prefixes, e.g. nvidia.com/gpu,nvidia.com/mig-."""
    prefixes = tuple(part.strip() for part in text.split(",") if part.strip())
    if not prefixes or any("/" not in prefix for prefix in prefixes):
        raise ConfigError(f"{flag}: {text!r} is not a list of prefixes like nvidia.com/gpu")
    return prefixes


def parse_existing_file(flag: str, text: str) -> Path:
    """A path that must exist and be a readable regular file."""
    path = Path(text)
    if not path.is_file():
        raise ConfigError(f"{flag}: {text!r} is not a readable file")
    return path
