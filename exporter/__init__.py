"""gpu-node-exporter: a Prometheus exporter for NVIDIA GPU nodes."""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("gpu-node-exporter")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
