"""The local stand-in for the Dockerfile's base image, made with mmdebstrap (no registry).

Part of scripts/image.py. No base image can be pulled on our CI machines, so the Dockerfile's
``FROM debian:bookworm-slim`` is replaced by a tar of the same packages: ``mmdebstrap
--variant=minbase`` of Debian bookworm with merged /usr, the slim image's dpkg excludes and an
apt configuration that keeps no package caches, plus the host's extra certificate authorities
(CI's proxy). Everything that decides its content goes into a cache key that names the tar, so a
rebuild reuses it; the tar is imported into podman and tagged with the Dockerfile's FROM name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shlex
import subprocess  # noqa: TID251 - a build tool, not the exporter: it runs mmdebstrap
import tempfile
import time
from pathlib import Path
from typing import Any

from image_podman import BUILD_TIMEOUT_SECONDS, ImageError, Podman, tail, tool

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"

# The stand-in for debian:bookworm-slim. Every item below goes into the cache key.
SUITE = "bookworm"
VARIANT = "minbase"
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
DPKG_OPTIONS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/groff/*",
    "path-exclude=/usr/share/lintian/*",
)
APT_OPTIONS = ('Acquire::Languages "none"',)
# Written after the bootstrap (mmdebstrap itself needs the downloaded packages): like the real
# slim image, later apt-get runs keep neither the .deb files nor the 70 MB of binary caches.
APT_NO_CACHES = (
    'APT::Keep-Downloaded-Packages "false";\n'
    'Dir::Cache::pkgcache "";\n'
    'Dir::Cache::srcpkgcache "";\n'
)
MERGED_USR_HOOKS = Path("/usr/share/mmdebstrap/hooks/merged-usr")
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")


def normalise_reference(name: str) -> str:
    """``debian:bookworm-slim`` -> ``docker.io/library/debian:bookworm-slim`` (Docker's rule)."""
    first, _, rest = name.partition("/")
    if not rest:
        return f"docker.io/library/{name}"
    if "." in first or ":" in first or first == "localhost":
        return name
    return f"docker.io/{name}"


def dockerfile_base() -> str:
    """The one external image the Dockerfile's stages start FROM, normalised."""
    stages: set[str] = set()
    bases: set[str] = set()
    for match in re.finditer(
        r"^FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?\s*$",
        DOCKERFILE.read_text(),
        flags=re.MULTILINE | re.IGNORECASE,
    ):
        if match.group(1).lower() not in stages:
            bases.add(match.group(1))
        if match.group(2):
            stages.add(match.group(2).lower())
    if len(bases) != 1:
        raise ImageError(f"expected one base image in {DOCKERFILE}, found {sorted(bases)}")
    return normalise_reference(bases.pop())


def host_ca_files() -> list[Path]:
    """The host's extra certificate authorities (what update-ca-certificates adds)."""
    if not HOST_CA_DIR.is_dir():
        return []
    return sorted(p for p in HOST_CA_DIR.rglob("*.crt") if p.is_file())


def standin_recipe() -> dict[str, Any]:
    """Everything that decides the stand-in's content; its hash names the cached tar."""
    return {
        "suite": SUITE,
        "variant": VARIANT,
        "hooks": ["merged-usr"],
        "mirrors": list(MIRRORS),
        "dpkg": list(DPKG_OPTIONS),
        "apt": list(APT_OPTIONS),
        "apt_no_caches": APT_NO_CACHES,
        "ca": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in host_ca_files()},
    }


def standin_key() -> str:
    recipe = json.dumps(standin_recipe(), sort_keys=True).encode()
    return hashlib.sha256(recipe).hexdigest()[:16]


def mmdebstrap_command(target: Path) -> list[str]:
    cmd = [tool("mmdebstrap"), f"--variant={VARIANT}", f"--hook-dir={MERGED_USR_HOOKS}"]
    cmd += [f"--dpkgopt={opt}" for opt in DPKG_OPTIONS]
    cmd += [f"--aptopt={opt}" for opt in APT_OPTIONS]
    cmd.append(
        "--customize-hook=printf '%s' "
        + shlex.quote(APT_NO_CACHES)
        + ' > "$1/etc/apt/apt.conf.d/docker-clean"'
    )
    cas = host_ca_files()
    if cas:
        inside = str(HOST_CA_DIR)
        cmd.append(f'--customize-hook=mkdir -p "$1{inside}"')
        cmd.append(
            "--customize-hook=copy-in " + " ".join(shlex.quote(str(p)) for p in cas) + f" {inside}/"
        )
    cmd.append('--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin')
    cmd += [SUITE, str(target), *MIRRORS]
    return cmd


@dataclasses.dataclass(frozen=True)
class Base:
    name: str
    image_id: str
    tar: Path
    bootstrap_seconds: float  # 0 when the cached tar was used
    import_seconds: float  # 0 when the imported image was still there


def prepare_base(podman: Podman) -> Base:
    """Build (or reuse) the stand-in tar, import it and tag it as the Dockerfile's FROM name."""
    name = dockerfile_base()
    key = standin_key()
    cache = podman.workdir / "base"
    cache.mkdir(parents=True, exist_ok=True)
    tar = cache / f"{SUITE}-{VARIANT}-{key}.tar"
    bootstrap_seconds = 0.0
    if not tar.is_file():
        started = time.monotonic()
        fd, tmp_name = tempfile.mkstemp(prefix=".base-", suffix=".tar", dir=cache)
        os.close(fd)
        try:
            with open(os.devnull, "rb") as devnull:  # or mmdebstrap reads sources from stdin
                proc = subprocess.run(  # noqa: S603
                    mmdebstrap_command(Path(tmp_name)),
                    stdin=devnull,
                    capture_output=True,
                    text=True,
                    timeout=BUILD_TIMEOUT_SECONDS,
                    check=False,
                )
            if proc.returncode != 0:
                raise ImageError(f"mmdebstrap failed:\n{tail(proc.stdout + proc.stderr)}")
            os.replace(tmp_name, tar)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
        for old in cache.glob(f"{SUITE}-{VARIANT}-*.tar"):
            if old != tar:
                old.unlink()
        bootstrap_seconds = time.monotonic() - started
    marker = tar.with_suffix(".id")
    current = podman.image_id(name)
    import_seconds = 0.0
    if current is None or not marker.is_file() or marker.read_text().strip() != current:
        started = time.monotonic()
        out = podman(
            "import", "--change", 'CMD ["bash"]', str(tar), name, timeout=BUILD_TIMEOUT_SECONDS
        )
        current = out.strip().splitlines()[-1].removeprefix("sha256:")
        marker.write_text(current + "\n")
        import_seconds = time.monotonic() - started
    return Base(name, current, tar, bootstrap_seconds, import_seconds)
