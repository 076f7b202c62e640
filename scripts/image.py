"""Build, measure and run the container image with podman, with no registry.

The one owner of the podman, buildah and mmdebstrap command lines: `make image`, tests/image and
people use this module. No base image can be pulled on our CI machines, so the Dockerfile's base
(``FROM debian:bookworm-slim``) is replaced by a local stand-in made of the same packages:
``mmdebstrap --variant=minbase`` of Debian bookworm (the package set the real slim image is built
from), with merged /usr, the slim image's dpkg excludes (no man pages, docs or locales) and an apt
configuration that keeps no package caches. CI-only addition: the host's extra certificate
authorities (``/usr/local/share/ca-certificates/*.crt``), which the Dockerfile's
``apt-get install ca-certificates`` then trusts, so pip reaches PyPI through the same proxy as
the host. The stand-in is imported and tagged with the Dockerfile's FROM name; the image is built
with ``--pull=never``.

Everything lives in a work directory of its own (``$GPU_NODE_EXPORTER_IMAGE_DIR``, default
``~/.cache/gpu-node-exporter/image``): containers.conf, storage.conf and registries.conf (nothing
in /etc changes), the podman storage (so ``--layers`` caching survives between runs) and the
stand-in base tar, cached under a key of everything that goes into it.

    python scripts/image.py build --report     build (base cached) and print the size table
    python scripts/image.py report [--json]    size table of the image already built
    python scripts/image.py run [-- ARGS]      run it as the DaemonSet does (default: --simulate)
    python scripts/image.py env                the exports to use podman by hand on this storage
    python scripts/image.py clean              delete the work directory (storage, base tar)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import shlex
import shutil
import socket
import subprocess  # noqa: TID251 - a build tool, not the exporter: it drives podman
import sys
import time
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path

# scripts/ is not a package: the helper modules next to this file are found through the
# script's folder (also when a test imports this file as scripts.image or loads it by path).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from image_base import (
    APT_NO_CACHES,
    APT_OPTIONS,
    DOCKERFILE,
    DPKG_OPTIONS,
    HOST_CA_DIR,
    MERGED_USR_HOOKS,
    MIRRORS,
    ROOT,
    SUITE,
    VARIANT,
    Base,
    dockerfile_base,
    host_ca_files,
    mmdebstrap_command,
    normalise_reference,
    prepare_base,
    standin_key,
    standin_recipe,
)
from image_podman import (
    BUILD_TIMEOUT_SECONDS,
    ImageError,
    Podman,
    run_checked,
    tail,
    tool,
    work_dir,
)
from image_size import Layer, Sizes, measure

__all__ = [
    "APT_NO_CACHES",
    "APT_OPTIONS",
    "BUILD_TIMEOUT_SECONDS",
    "CONTAINER_PORT",
    "DOCKERFILE",
    "DPKG_OPTIONS",
    "HOST_CA_DIR",
    "IMAGE",
    "MERGED_USR_HOOKS",
    "MIRRORS",
    "ROOT",
    "SUITE",
    "VARIANT",
    "Base",
    "Build",
    "ImageError",
    "Layer",
    "Podman",
    "Sizes",
    "Stopped",
    "build",
    "constrained_run_args",
    "dockerfile_base",
    "free_port",
    "git_revision",
    "host_ca_files",
    "image_ref",
    "image_user",
    "logs",
    "main",
    "measure",
    "mmdebstrap_command",
    "normalise_reference",
    "prepare_base",
    "project_version",
    "remove",
    "running",
    "standin_key",
    "standin_recipe",
    "start",
    "stop",
    "tool",
    "work_dir",
]

IMAGE = "localhost/gpu-node-exporter"
CONTAINER_PORT = 9445

# ---- build ---------------------------------------------------------------------------------------


def project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def git_revision() -> str:
    git = shutil.which("git")
    if git is None:
        return "unknown"
    proc = subprocess.run(  # noqa: S603
        [git, "-C", str(ROOT), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return proc.stdout.strip() if proc.returncode == 0 else "unknown"


def image_ref() -> str:
    return f"{IMAGE}:{project_version()}"


@dataclasses.dataclass(frozen=True)
class Build:
    ref: str
    image_id: str
    base: Base
    seconds: float
    log: Path


def build(podman: Podman | None = None) -> Build:
    """Prepare the base, then ``podman build --pull=never --layers``; the log is kept."""
    podman = podman or Podman.configure()
    base = prepare_base(podman)
    ref = image_ref()
    log = podman.workdir / "build.log"
    iidfile = podman.workdir / "build.iid"
    started = time.monotonic()
    argv = [
        tool("podman"),
        "build",
        "--pull=never",
        "--layers",
        "--file",
        str(DOCKERFILE),
        "--tag",
        ref,
        "--iidfile",
        str(iidfile),
        "--build-arg",
        f"VERSION={project_version()}",
        "--build-arg",
        f"REVISION={git_revision()}",
        str(ROOT),
    ]
    proc = subprocess.run(  # noqa: S603
        argv,
        env=podman.env(),
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
        check=False,
    )
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise ImageError(
            f"podman build failed ({proc.returncode}); full log in {log}:\n"
            f"{tail(proc.stdout + proc.stderr)}"
        )
    image_id = iidfile.read_text().strip().removeprefix("sha256:")
    return Build(ref, image_id, base, time.monotonic() - started, log)


# ---- run -----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def image_user(podman: Podman, ref: str) -> str:
    return str(podman.inspect_image(ref)["Config"].get("User") or "")


def constrained_run_args(podman: Podman, ref: str, port: int) -> list[str]:
    """``podman run`` options matching the DaemonSet's container securityContext.

    ``--read-only-tmpfs=false``: podman's ``--read-only`` otherwise mounts writable tmpfs on
    /tmp, /var/tmp and /run, which Kubernetes' readOnlyRootFilesystem does not; the exporter
    needs no writable path at all (the fake driver was built into the image).
    """
    return [
        "--pull=never",
        "--read-only",
        "--read-only-tmpfs=false",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        f"--user={image_user(podman, ref)}",
        f"--publish=127.0.0.1:{port}:{CONTAINER_PORT}",
    ]


def start(podman: Podman, ref: str, port: int, args: Sequence[str] = ("--simulate",)) -> str:
    """Start the container detached under the DaemonSet's constraints; returns its id."""
    out = podman("run", "--detach", *constrained_run_args(podman, ref, port), ref, *args)
    return out.strip().splitlines()[-1]


@dataclasses.dataclass(frozen=True)
class Stopped:
    seconds: float  # how long `podman stop` took
    exit_code: int
    logs: str


def stop(podman: Podman, container: str, grace_seconds: int = 10) -> Stopped:
    """``podman stop`` (SIGTERM, then SIGKILL after the grace period), timed; then remove."""
    started = time.monotonic()
    podman("stop", "--time", str(grace_seconds), container, timeout=grace_seconds + 60)
    seconds = time.monotonic() - started
    exit_code = int(podman("inspect", "--format", "{{.State.ExitCode}}", container).strip())
    output = logs(podman, container)
    remove(podman, container)
    return Stopped(seconds, exit_code, output)


def logs(podman: Podman, container: str) -> str:
    """The container's stdout and stderr (the exporter logs to stderr)."""
    proc = run_checked([tool("podman"), "logs", container], env=podman.env())
    return proc.stdout + proc.stderr


def remove(podman: Podman, container: str) -> None:
    with contextlib.suppress(ImageError):
        podman("rm", "--force", "--time", "0", container)


@contextlib.contextmanager
def running(
    podman: Podman, ref: str, args: Sequence[str] = ("--simulate",)
) -> Iterator[tuple[str, int]]:
    """A started container and its host port; removed on exit whatever happened."""
    port = free_port()
    container = start(podman, ref, port, args)
    try:
        yield container, port
    finally:
        remove(podman, container)


# ---- command line --------------------------------------------------------------------------------


def _print_build(result: Build) -> None:
    base = result.base
    if base.bootstrap_seconds:
        print(f"stand-in base: mmdebstrap {base.bootstrap_seconds:.1f} s -> {base.tar}")
    else:
        print(f"stand-in base: cached {base.tar}")
    if base.import_seconds:
        print(f"stand-in base: imported as {base.name} in {base.import_seconds:.1f} s")
    print(
        f"built {result.ref} ({result.image_id[:12]}) in {result.seconds:.1f} s; log {result.log}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/image.py", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the stand-in base (cached) and the image")
    b.add_argument("--report", action="store_true", help="print the size table afterwards")
    r = sub.add_parser("report", help="print the size table of the built image")
    r.add_argument("--json", action="store_true", help="as JSON")
    run = sub.add_parser("run", help="run the image in the foreground under the DaemonSet's limits")
    run.add_argument("--port", type=int, default=CONTAINER_PORT, help="host port (127.0.0.1)")
    run.add_argument("args", nargs="*", help="exporter arguments (default: --simulate)")
    sub.add_parser("env", help="print the exports that point podman at this storage")
    sub.add_parser("clean", help="delete the work directory (podman storage and base tar)")
    ns = parser.parse_args(argv)
    try:
        podman = Podman.configure()
        if ns.command == "build":
            result = build(podman)
            _print_build(result)
            if ns.report:
                print(measure(podman, result.ref).table())
        elif ns.command == "report":
            sizes = measure(podman, image_ref())
            print(json.dumps(sizes.as_json(), indent=2) if ns.json else sizes.table())
        elif ns.command == "run":
            ref = image_ref()
            argv_run = [
                tool("podman"),
                "run",
                "--rm",
                *constrained_run_args(podman, ref, ns.port),
                ref,
                *(ns.args or ["--simulate"]),
            ]
            print(f"http://127.0.0.1:{ns.port}/metrics  (Ctrl-C stops)", file=sys.stderr)
            with contextlib.suppress(KeyboardInterrupt):
                return subprocess.run(argv_run, env=podman.env(), check=False).returncode  # noqa: S603
        elif ns.command == "env":
            for name, value in podman.variables().items():
                print(f"export {name}={shlex.quote(value)}")
        elif ns.command == "clean":
            with contextlib.suppress(ImageError):
                podman("system", "reset", "--force", timeout=300)
            shutil.rmtree(podman.workdir, ignore_errors=True)
            print(f"removed {podman.workdir}")
    except ImageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
