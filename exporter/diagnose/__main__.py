"""`python -m exporter.diagnose [options]`: the same as `gpu-node-exporter diagnose`."""

from __future__ import annotations

import sys

from exporter.diagnose import main

sys.exit(main(sys.argv[1:]))
