"""`python -m exporter` runs the same entry point as the `gpu-node-exporter` script."""

from __future__ import annotations

from exporter.cli import main

raise SystemExit(main())
