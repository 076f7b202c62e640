"""The installed version of a distribution, from its `.dist-info` directory name alone.

Why not importlib.metadata: importing it loads email, zipfile and csv (0.75 MB of resident
memory in this process, README "Measured") to answer two questions at start-up, our version
and pynvml's. The packaging spec names every installed distribution's metadata
directory `{name}-{version}.dist-info` with the name normalised (runs of `-_.` become `_`),
and the first one on sys.path is the one Python imports, so one directory listing per path
entry gives the same answer importlib.metadata.version does.
"""

from __future__ import annotations

import os
import re
import sys

_SEPARATORS = re.compile(r"[-_.]+")
_SUFFIX = ".dist-info"


def _normalise(name: str) -> str:
    return _SEPARATORS.sub("_", name).lower()


def distribution_version(name: str) -> str | None:
    """The version of the first installed distribution called `name`, or None."""
    wanted = _normalise(name) + "-"
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:  # a missing directory, a zip file on sys.path
            continue
        for candidate in names:
            if not candidate.endswith(_SUFFIX):
                continue
            stem = candidate[: -len(_SUFFIX)]
            head, sep, version = stem.rpartition("-")
            if sep and _normalise(head) + "-" == wanted and version:
                return version
    return None
