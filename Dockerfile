# gpu-node-exporter container image.
#
#   python scripts/image.py build --report     (what `make image` runs: builds on a local stand-in
#                                                base with podman, no registry needed; prints sizes)
#   podman build -t gpu-node-exporter .        (or docker build, against the real base)
#
# Base: Debian 12 "bookworm" slim with Debian's own python3 (3.11 in /usr/bin), in both stages, so
# the venv built in stage 1 runs unchanged in stage 2 (same interpreter path, same glibc; NVML is a
# glibc library injected by the NVIDIA container runtime, so musl or scratch bases cannot work).
# CI builds on a local stand-in for this tag made by mmdebstrap --variant=minbase (the same package
# set debian:bookworm-slim is built from; scripts/image.py).
#
# Pinned by tag here. Production builds should pin by digest, e.g.
#   FROM debian:bookworm-slim@sha256:<digest>   (docker buildx imagetools inspect debian:bookworm-slim)
# in both FROM lines, and let a bot such as Renovate bump it.

# ---- stage 1: build the wheel, install it into a venv, compile the fake NVML driver -------------
FROM debian:bookworm-slim AS build

# gcc and libc6-dev only here: they compile the fake libnvidia-ml.so.1 that --simulate loads.
# Package versions come from the pinned base's release (bookworm and its security updates); pinning
# each Debian version would break the build whenever a security update replaces it.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# Two venvs: /opt/tools holds pip (and builds the wheel), /opt/venv is what ships, without pip.
RUN python3 -m venv /opt/tools \
 && python3 -m venv --without-pip /opt/venv

WORKDIR /src
# Only what the wheel is made of (README.md is the package's readme in pyproject.toml).
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN /opt/tools/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/tools/bin/pip --python /opt/venv/bin/python install /wheels/*.whl

# The fake driver, built into the cache directory the exporter looks in (GPU_NODE_EXPORTER_CACHE):
# at run time --simulate finds it there and writes nothing (the root filesystem is read-only).
# Built by the installed package (not /src: its directory name is a hash of the installed C
# sources and scenarios, which is what the exporter recomputes at run time). The build writes the
# library mode 0600 (a private temp file renamed into place): make it readable, or the non-root
# user cannot dlopen it.
WORKDIR /
ENV GPU_NODE_EXPORTER_CACHE=/opt/gpu-node-exporter
RUN /opt/venv/bin/python -m exporter.fakenvml build \
 && chmod -R a+rX,go-w /opt/gpu-node-exporter

# ---- stage 2: the runtime image ----------------------------------------------------------------
FROM debian:bookworm-slim

# Debian's python3 only; no compiler, no pip, no curl. The UID/GID are numeric so Kubernetes'
# runAsNonRoot can verify them.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 exporter \
 && useradd --uid 65532 --gid 65532 --no-log-init --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin exporter

COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/gpu-node-exporter /opt/gpu-node-exporter

# NVIDIA_*: read by the NVIDIA container runtime only (ignored elsewhere). "utility" asks for the
# NVML library and device nodes, nothing for CUDA compute; "all" makes the runtime inject every GPU
# even when the pod spec sets no NVIDIA_* variable (the exporter must not request nvidia.com/gpu,
# which would take a GPU away from workloads).
# PYTHONDONTWRITEBYTECODE: the root filesystem is read-only at run time; the .pyc files were
# compiled at install time.
ENV PATH=/opt/venv/bin:$PATH \
    GPU_NODE_EXPORTER_CACHE=/opt/gpu-node-exporter \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=utility

# Non-root by default. What needs more, on the host (docs/install.md, "The image"):
#   /dev/nvidia*, /proc/driver/nvidia (NVML)   usually 0666 / world-readable: works as 65532
#   /dev/kmsg (Xid errors)                     needs CAP_SYSLOG when kernel.dmesg_restrict=1; under
#                                              Kubernetes (containerd, CRI-O) an added capability is
#                                              effective for UID 0 only, so: UID 0 with only SYSLOG
#                                              added, or non-root and NVML Xid events (on by default)
#   kubelet pod-resources socket (pods)        root-owned srwxr-xr-x; connect() needs write
#                                              permission on it: UID 0 (no capability needed)
USER 65532:65532

EXPOSE 9445

# Exec form: the exporter is PID 1 and handles SIGTERM itself (exporter/app.py stops every thread
# within a second), so no init wrapper; it starts no child processes, so nothing needs reaping.
ENTRYPOINT ["/opt/venv/bin/gpu-node-exporter"]

# Labels last: a new revision rebuilds only this metadata step. scripts/image.py passes both
# arguments; the VERSION default is kept equal to pyproject.toml's by tests/image.
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="gpu-node-exporter" \
      org.opencontainers.image.description="Prometheus exporter for NVIDIA GPU nodes: NVML metrics, Xid errors, pod attribution." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"
