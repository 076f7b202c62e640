"""Screenshot of the node status page (`/`) on a simulated node with a failed GPU.

    python scripts/status_page_screenshot.py                 # writes docs/images/status-page.png
    python scripts/status_page_screenshot.py --out /tmp/page.png --dom /tmp/page.html

It starts what a user would look at: `gpu-node-exporter --simulate` (the 8-GPU A100 scenario),
a fake kubelet (tests/fakekubelet.py, a real gRPC server) handing pods their GPUs, and a faults
file in which GPU 3 falls off the bus (Xid 79, then NVML reports it lost) and GPU 5 logs Xid
13; then headless Chromium loads the page once the failed verdict shows. tests/test_statuspage.py
runs the same code with hostile pod names, so the screenshot in the docs is the tested path.

Why Chromium's own `--screenshot` and `--dump-dom` rather than a driver library: both ship with
the browser (Debian package `chromium`, installed by `make system-deps`), so nothing else needs
installing and the run is bounded by a plain process timeout.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import struct
import subprocess  # noqa: TID251 - a docs tool, not the exporter: it runs chromium
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python scripts/...` puts scripts/ first, not the repo root
    sys.path.insert(0, str(ROOT))

from exporter.fakenvml.control import FaultFile  # noqa: E402
from tests.fakekubelet import Behaviour, FakeKubelet, pods_reply  # noqa: E402
from tests.tools import ExporterProcess, http_get  # noqa: E402

WINDOW = (1280, 1000)
CHROMIUM_TIMEOUT = 60.0
LOST_GPU = 3
WARNING_GPU, WARNING_XID = 5, 13
OUT = ROOT / "docs" / "images" / "status-page.png"

# (namespace, pod, container) per GPU index: what the docs screenshot shows.
DEFAULT_PODS: dict[int, tuple[str, str, str]] = {
    0: ("ml", "train-llm-0", "trainer"),
    1: ("ml", "train-llm-0", "trainer"),
    3: ("ml", "train-llm-1", "trainer"),
    5: ("inference", "chat-7d9f", "server"),
}

Pods = dict[int, tuple[str, str, str]]


class ScreenshotError(RuntimeError):
    """Chromium failed, timed out or wrote nothing."""


@dataclass
class Node:
    """A running simulated node: the exporter, its fake kubelet and its faults file."""

    exporter: ExporterProcess
    kubelet: FakeKubelet
    faults: FaultFile

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.exporter.port}/"

    def page(self) -> str:
        status, body = http_get(self.exporter.port, "/")
        if status != 200:
            raise ScreenshotError(f"GET / answered {status}")
        return body.decode()


def gpu_uuids(exporter: ExporterProcess) -> dict[int, str]:
    """GPU index -> UUID from the exporter's own nvidia_gpu_info series."""
    uuids = {}
    for line in exporter.metrics().splitlines():
        if line.startswith("nvidia_gpu_info{"):
            gpu, uuid = re.search(r'gpu="(\d+)"', line), re.search(r'uuid="([^"]*)"', line)
            if gpu and uuid:
                uuids[int(gpu.group(1))] = uuid.group(1)
    return uuids


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll until `predicate()` holds (the page shows what we wait for), or fail naming it."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise ScreenshotError(f"{what} not reached within {timeout:.0f} s")
        time.sleep(0.1)


@contextmanager
def simulated_node(workdir: Path, pods: Pods | None = None) -> Iterator[Node]:
    """Start kubelet + exporter, hand out pods, fail GPU 3 and warn on GPU 5; stop on exit."""
    pods = DEFAULT_PODS if pods is None else pods
    socket_dir = workdir / "pod-resources"
    socket_dir.mkdir(parents=True, exist_ok=True)
    kubelet = FakeKubelet(socket_dir / "kubelet.sock", Behaviour(list_reply=pods_reply())).start()
    faults = FaultFile(workdir / "faults")
    exporter = ExporterProcess(
        "--simulate",
        "--collection.interval=1s",
        "--collector.kmsg=false",  # the xid source listens to NVML events from the faults file
        f"--path.pod-resources-socket={kubelet.socket_path}",
        env={**faults.env(), "FAKE_NVML_NODE": "gpu-node-07"},
    )
    try:
        exporter.wait_ready()
        uuids = gpu_uuids(exporter)
        by_pod: dict[tuple[str, str], list[tuple[str, list[tuple[str, list[str]]]]]] = {}
        for gpu, (namespace, pod, container) in sorted(pods.items()):
            containers = by_pod.setdefault((namespace, pod), [])
            containers.append((container, [("nvidia.com/gpu", [uuids[gpu]])]))
        kubelet.behaviour.list_reply = pods_reply(
            *((namespace, pod, containers) for (namespace, pod), containers in by_pod.items())
        )
        faults.xid(LOST_GPU, 79)
        faults.lost(LOST_GPU)
        faults.xid(WARNING_GPU, WARNING_XID)
        node = Node(exporter, kubelet, faults)
        wait_for(
            lambda: (
                f'id="gpu-{LOST_GPU}" data-verdict="failed"' in node.page()
                and f"Xid {WARNING_XID}" in node.page()
                and all(html.escape(pod, quote=True) in node.page() for _, pod, _ in pods.values())
            ),
            "the failed GPU, the Xid and the pods on the page",
        )
        yield node
    finally:
        if exporter.process.poll() is None:
            exporter.stop()
        kubelet.stop()


def chromium(url: str, args: Sequence[str], timeout: float = CHROMIUM_TIMEOUT) -> str:
    """Run headless Chromium once on `url` with its own throwaway profile; returns stdout."""
    binary = shutil.which("chromium")
    if binary is None:
        raise ScreenshotError("chromium is not installed: run 'make system-deps'")
    with tempfile.TemporaryDirectory(prefix="chromium-") as home:
        command = [
            binary,
            "--headless=new",
            "--no-sandbox",  # containers and CI runners lack the user namespaces it needs
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--hide-scrollbars",
            f"--user-data-dir={home}/profile",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            *args,
            url,
        ]
        env = {**os.environ, "HOME": home, "XDG_CONFIG_HOME": home, "XDG_CACHE_HOME": home}
        try:
            result = subprocess.run(  # noqa: S603 - argv from constants and our own paths
                command, capture_output=True, text=True, timeout=timeout, env=env, check=False
            )
        except subprocess.TimeoutExpired as err:
            raise ScreenshotError(f"chromium did not finish within {timeout:.0f} s") from err
    if result.returncode != 0:
        raise ScreenshotError(f"chromium exited {result.returncode}: {result.stderr[-2000:]}")
    return result.stdout


def screenshot(url: str, out: Path) -> bytes:
    """Write a WINDOW-sized PNG of `url` to `out` and return its bytes."""
    out.parent.mkdir(parents=True, exist_ok=True)
    chromium(url, [f"--screenshot={out}"])
    if not out.exists() or out.stat().st_size == 0:
        raise ScreenshotError(f"chromium wrote no screenshot at {out}")
    return out.read_bytes()


def dump_dom(url: str) -> str:
    """The DOM as Chromium parsed it (what a person would read), serialised as HTML."""
    return chromium(url, ["--dump-dom"])


@dataclass(frozen=True, slots=True)
class PngSummary:
    width: int
    height: int
    colours: int  # distinct RGB colours over every pixel


def _unfilter(kind: int, line: bytearray, previous: bytes, bpp: int) -> None:
    """Undo one PNG scanline filter in place (RFC 2083 section 6)."""
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        up = previous[i]
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 2:
            line[i] = (line[i] + up) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + ((left + up) >> 1)) & 0xFF
        elif kind == 4:
            corner = previous[i - bpp] if i >= bpp else 0
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            predictor = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
            line[i] = (line[i] + predictor) & 0xFF


def png_summary(data: bytes) -> PngSummary:
    """Check the PNG signature and chunks, decode 8-bit RGB(A), count distinct colours.

    Why decode at all: a blank or all-white capture is still a valid PNG of the right size;
    the colour count is what tells a rendered page from an empty one.
    """
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG (bad signature)")
    offset, idat, header = 8, bytearray(), b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        if zlib.crc32(kind + body) != crc:
            raise ValueError(f"PNG chunk {kind!r} fails its CRC")
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        offset += 12 + length
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or colour_type not in (2, 6) or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour_type}")
    bpp = 3 if colour_type == 2 else 4
    raw = zlib.decompress(bytes(idat))
    stride = width * bpp
    previous = bytes(stride)
    colours: set[bytes] = set()
    for row in range(height):
        start = row * (stride + 1)
        line = bytearray(raw[start + 1 : start + 1 + stride])
        _unfilter(raw[start], line, previous, bpp)
        colours.update(bytes(line[i : i + 3]) for i in range(0, stride, bpp))
        previous = bytes(line)
    return PngSummary(width, height, len(colours))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=OUT, help="PNG to write (%(default)s)")
    parser.add_argument("--dom", type=Path, help="also write the DOM Chromium saw here")
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="status-page-") as workdir,
        simulated_node(Path(workdir)) as node,
    ):
        started = time.perf_counter()
        data = screenshot(node.url, args.out)
        summary = png_summary(data)
        if args.dom:
            args.dom.write_text(dump_dom(node.url))
    print(
        f"{args.out}: {summary.width}x{summary.height}, {summary.colours} colours, "
        f"{len(data)} bytes, chromium {time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
