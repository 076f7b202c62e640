"""gpu-node-exporter: a Prometheus exporter for NVIDIA GPU nodes."""

from __future__ import annotations

from exporter.distinfo import distribution_version

# None: running from a source tree that was never installed.
__version__ = distribution_version("gpu-node-exporter") or "0.0.0+source"
