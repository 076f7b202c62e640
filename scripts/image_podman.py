"""podman and buildah on a work directory of their own: configuration, storage, the runner.

Part of scripts/image.py (the one owner of the podman, buildah and mmdebstrap command lines),
split out so that the base, the sizes and the build share one way to run a tool: nothing in /etc
changes; containers.conf, storage.conf and registries.conf are written into the work directory
(``$GPU_NODE_EXPORTER_IMAGE_DIR``, default ``~/.cache/gpu-node-exporter/image``) together with
the podman storage, and every podman call gets the environment that points at them. A failing
command raises ImageError with the tail of its output.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import resource
import shlex
import shutil
import subprocess  # noqa: TID251 - a build tool, not the exporter: it drives podman
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BUILD_TIMEOUT_SECONDS = 900


class ImageError(RuntimeError):
    """A step failed; the message says which, with the tail of its output."""


def work_dir() -> Path:
    """``$GPU_NODE_EXPORTER_IMAGE_DIR``, else ``<XDG cache>/gpu-node-exporter/image``."""
    explicit = os.environ.get("GPU_NODE_EXPORTER_IMAGE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "gpu-node-exporter" / "image"


def tool(name: str) -> str:
    """Absolute path of a command-line tool, or ImageError naming the Debian package."""
    path = shutil.which(name)
    if path is None:
        raise ImageError(f"{name} is not installed: run 'make system-deps' (Debian package {name})")
    return path


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def run_checked(
    argv: Sequence[str], env: dict[str, str] | None = None, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output, raise ImageError with its tail when it fails."""
    proc = subprocess.run(  # noqa: S603 - argv built here from constants and our own paths
        list(argv), env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise ImageError(
            f"{shlex.join(argv)} exited {proc.returncode}:\n{tail(proc.stdout + proc.stderr)}"
        )
    return proc


def _write_if_changed(path: Path, text: str) -> None:
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)


def _ulimits() -> tuple[int, int]:
    """(nofile, nproc) the container may have: podman's defaults exceed what runc may set here.

    A limit above the caller's hard limit fails with ``setrlimit ... Operation not permitted``;
    nproc above ``kernel.pid_max`` fails the same way.
    """
    hard_nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = 1048576 if hard_nofile == resource.RLIM_INFINITY else min(hard_nofile, 1048576)
    nproc = 32768
    with contextlib.suppress(OSError, ValueError):
        nproc = min(nproc, int(Path("/proc/sys/kernel/pid_max").read_text()))
    hard_nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    if hard_nproc != resource.RLIM_INFINITY:
        nproc = min(nproc, hard_nproc)
    return nofile, nproc


@dataclasses.dataclass(frozen=True)
class Podman:
    """podman and buildah on the work directory's own configuration and storage."""

    workdir: Path

    @classmethod
    def configure(cls, workdir: Path | None = None, driver: str | None = None) -> Podman:
        """Write the configuration files (when changed) and return the configured runner.

        runc, not crun: crun 1.8 refuses hybrid cgroups. cgroupfs and file events: there is no
        systemd on CI machines. Storage ``overlay`` (native on ext4) unless
        ``$GPU_NODE_EXPORTER_STORAGE_DRIVER`` says ``vfs``.
        """
        workdir = (workdir or work_dir()).resolve()
        driver = driver or os.environ.get("GPU_NODE_EXPORTER_STORAGE_DRIVER", "overlay")
        for sub in ("storage", "run", "tmp"):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        nofile, nproc = _ulimits()
        _write_if_changed(
            workdir / "containers.conf",
            "[containers]\n"
            f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
            "\n[engine]\n"
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{workdir / "run" / "events.log"}"\n'
            f'tmp_dir = "{workdir / "tmp"}"\n',
        )
        _write_if_changed(
            workdir / "storage.conf",
            "[storage]\n"
            f'driver = "{driver}"\n'
            f'graphroot = "{workdir / "storage"}"\n'
            f'runroot = "{workdir / "run"}"\n',
        )
        _write_if_changed(
            workdir / "registries.conf",
            'unqualified-search-registries = ["docker.io"]\nshort-name-mode = "permissive"\n',
        )
        return cls(workdir)

    def env(self) -> dict[str, str]:
        """The process environment that points podman and buildah at this configuration."""
        env = dict(os.environ)
        env.update(self.variables())
        return env

    def variables(self) -> dict[str, str]:
        return {
            "CONTAINERS_CONF": str(self.workdir / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(self.workdir / "storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(self.workdir / "registries.conf"),
        }

    def __call__(self, *args: str, timeout: float = 120.0) -> str:
        """``podman ARGS``; returns stdout."""
        return run_checked([tool("podman"), *args], env=self.env(), timeout=timeout).stdout

    def image_id(self, ref: str) -> str | None:
        """The image's full id, or None when the storage has no such image."""
        proc = subprocess.run(  # noqa: S603
            [tool("podman"), "image", "inspect", "--format", "{{.Id}}", ref],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0:
            return None
        return proc.stdout.strip().removeprefix("sha256:") or None

    def inspect_image(self, ref: str) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(self("image", "inspect", ref))
        return data[0]
