"""`gpu-node-exporter diagnose`: the GPU node checklist and health questions as one command.

See docs/diagnose.md. The package reads NVML, the kubelet pod-resources API, the kernel log
backlog, the PCI bus and /dev/nvidia* (inputs.py), judges them (checks.py, with the GPU-health
rules of exporter.verdict) and prints one line per check or a JSON document (report.py).
"""

from __future__ import annotations

from exporter.diagnose.run import main

__all__ = ["main"]
