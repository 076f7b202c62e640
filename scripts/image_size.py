"""How big the built image is, per layer: uncompressed and as a registry would store it.

Part of scripts/image.py (``build --report``, ``report``; tests/image bounds the total). The
uncompressed sizes come from ``podman history``; the compressed ones from a gzip push to a
throwaway OCI layout, whose manifest lists the layer blobs as a pull would download them. MB is
10^6 bytes, as podman prints them.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from image_podman import Podman


@dataclasses.dataclass(frozen=True)
class Layer:
    created_by: str
    size: int  # uncompressed bytes, as podman history reports them
    compressed: int | None  # gzip bytes as a registry would store the layer


@dataclasses.dataclass(frozen=True)
class Sizes:
    ref: str
    image_id: str
    total: int  # uncompressed, podman image inspect .Size
    compressed_total: int  # sum of the gzip layer blobs (what a pull downloads, less config)
    layers: tuple[Layer, ...]

    def table(self) -> str:
        """The size table (MB = 10^6 bytes, as podman prints them)."""
        lines = [
            f"{self.ref}  ({self.image_id[:12]})",
            f"{'uncompressed':>13} {'compressed':>11}  layer",
        ]
        for layer in self.layers:
            packed = f"{layer.compressed / 1e6:8.1f} MB" if layer.compressed is not None else "?"
            lines.append(f"{layer.size / 1e6:10.1f} MB {packed:>11}  {_short(layer.created_by)}")
        lines.append(f"{self.total / 1e6:10.1f} MB {self.compressed_total / 1e6:8.1f} MB  total")
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _short(created_by: str, width: int = 72) -> str:
    text = re.sub(
        r"\s+", " ", created_by.removeprefix("/bin/sh -c ").removeprefix("#(nop) ")
    ).strip()
    text = re.sub(
        r"^ADD file:([0-9a-f]{12})[0-9a-f]+ in / ?$", r"base image (ADD file:\1 in /)", text
    )
    text = re.sub(r"^(COPY \w+:[0-9a-f]{12})[0-9a-f]+", r"\1", text)
    return text if len(text) <= width else text[: width - 3] + "..."


def measure(podman: Podman, ref: str) -> Sizes:
    """Per-layer sizes (podman history) and gzip sizes (a push to an OCI layout)."""
    info = podman.inspect_image(ref)
    history: list[dict[str, Any]] = json.loads(
        podman("history", "--format", "json", "--no-trunc", ref)
    )
    history.reverse()  # oldest first, like the config's history and the manifest's layers
    config_history: list[dict[str, Any]] = info.get("History") or []
    with tempfile.TemporaryDirectory(prefix="oci-", dir=podman.workdir / "tmp") as tmp:
        podman("push", "--compression-format", "gzip", ref, f"oci:{tmp}:image", timeout=600)
        index = json.loads((Path(tmp) / "index.json").read_text())
        digest = index["manifests"][0]["digest"].split(":", 1)[1]
        manifest = json.loads((Path(tmp) / "blobs" / "sha256" / digest).read_text())
    blob_sizes = [int(layer["size"]) for layer in manifest["layers"]]
    layers: list[Layer] = []
    if len(config_history) == len(history):
        packed = iter(blob_sizes)
        for entry, config in zip(history, config_history, strict=True):
            if config.get("empty_layer"):
                continue
            created_by = str(config.get("created_by") or entry.get("CreatedBy") or "")
            layers.append(Layer(created_by, int(entry["size"]), next(packed, None)))
    else:  # an unusual history: keep the sizes, drop the pairing
        layers = [
            Layer(str(e.get("CreatedBy", "")), int(e["size"]), None)
            for e in history
            if int(e["size"])
        ]
    return Sizes(ref, str(info["Id"]), int(info["Size"]), sum(blob_sizes), tuple(layers))
