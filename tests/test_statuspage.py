"""The status page at `/`: rendering from hand-made sample maps, the cache, HTTP, a real browser."""

from __future__ import annotations

import http.client
import statistics
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from exporter import metrics, statuspage
from exporter.config import ListenAddress
from exporter.model import Sample, SampleMap, SourceHealth
from exporter.publisher import Publisher, Snapshot
from exporter.server import ExporterHTTPServer
from exporter.statuspage import StatusPage, render_page
from exporter.verdict import gpu_findings, gpu_verdict
from tests.tools import require_tool

NOW = 1_800_000_000.0
MODEL = "NVIDIA A100-SXM4-80GB"
GIB = 2.0**30
HOSTILE_POD = "<script>alert(1)</script>"
HOSTILE_CONTAINER = '"><img src=x onerror=alert(2)>'
HOSTILE_NAMESPACE = "a'b&c"
# Every element the page itself writes; anything else in a parsed page came from a label value.
PAGE_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "h1", "small", "p", "nav", "a",
    "main", "div", "h2", "span", "table", "thead", "tbody", "tr", "th", "td", "b", "ul", "li",
    "br", "footer",
}  # fmt: skip


def info_labels(gpu: str, uuid: str, model: str = MODEL) -> tuple[str, ...]:
    values = {
        "gpu": gpu,
        "uuid": uuid,
        "model": model,
        "driver_version": "550.54.15",
        "pci_bus_id": f"00000000:0{gpu}:00.0",
        "mig_mode": "disabled",
        "persistence_mode": "enabled",
    }
    return tuple(values.get(name, "") for name in metrics.INFO_LABELS)


def healthy_gpu(gpu: str, uuid: str, model: str = MODEL) -> dict[str, list[Sample]]:
    key = (gpu, uuid)
    return {
        metrics.INFO.name: [(info_labels(gpu, uuid, model), 1.0)],
        metrics.UP.name: [(key, 1.0)],
        metrics.FALLEN_OFF_BUS.name: [(key, 0.0)],
        metrics.UTILIZATION.name: [(key, 0.37)],
        metrics.MEMORY_USED.name: [(key, 12 * GIB)],
        metrics.MEMORY_TOTAL.name: [(key, 80 * GIB)],
        metrics.TEMPERATURE.name: [(key, 45.0)],
        metrics.POWER_USAGE.name: [(key, 250.0)],
        metrics.POWER_LIMIT.name: [((*key, "enforced"), 400.0), ((*key, "max"), 500.0)],
        metrics.ECC_UNCORRECTED.name: [((*key, "volatile"), 0.0), ((*key, "aggregate"), 0.0)],
        metrics.XID_ERRORS.name: [((*key, "79"), 0.0), ((*key, "48"), 0.0)],
    }


def fallen_gpu(gpu: str, uuid: str) -> dict[str, list[Sample]]:
    """NVML lost it and the driver logged Xid 79 half a minute ago: no value series."""
    key = (gpu, uuid)
    return {
        metrics.INFO.name: [(info_labels(gpu, uuid), 1.0)],
        metrics.UP.name: [(key, 0.0)],
        metrics.FALLEN_OFF_BUS.name: [(key, 1.0)],
        metrics.XID_ERRORS.name: [((*key, "79"), 1.0), ((*key, "48"), 0.0)],
        metrics.XID_LAST_SEEN.name: [((*key, "79"), NOW - 30)],
    }


def merge(*parts: dict[str, list[Sample]]) -> dict[str, tuple[Sample, ...]]:
    out: dict[str, list[Sample]] = {}
    for part in parts:
        for family, samples in part.items():
            out.setdefault(family, []).extend(samples)
    return {family: tuple(samples) for family, samples in out.items()}


def sources_up(*names: str, down: dict[str, str] | None = None) -> dict[str, list[Sample]]:
    down = down or {}
    return {
        metrics.SOURCE_UP.name: [((name,), 0.0 if name in down else 1.0) for name in names],
        metrics.SOURCE_STALLED.name: [((name,), 0.0) for name in names],
        metrics.SOURCE_LAST_SUCCESS.name: [((name,), NOW - 2) for name in names],
        metrics.BUILD_INFO.name: [(("9.8.7", "3.11.9", "12.560"), 1.0)],
    }


def snapshot(samples: SampleMap, down: dict[str, str] | None = None) -> Snapshot:
    down = down or {}
    names = tuple(dict.fromkeys(("nvml", "xid", *down)))
    health = {
        name: SourceHealth(
            up=name not in down, last_success_timestamp=NOW - 2, detail=down.get(name, "")
        )
        for name in names
    }
    return Snapshot(7, merge(dict(samples), sources_up(*names, down=down)), health, NOW - 1)


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text, as a browser's parser sees them."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def rows(self) -> dict[str, str | None]:
        """GPU row id -> its data-verdict attribute."""
        return {
            str(attrs["id"]): attrs.get("data-verdict")
            for tag, attrs in self.tags
            if tag == "tr" and str(attrs.get("id", "")).startswith("gpu-")
        }

    def plain(self) -> str:
        return " ".join(" ".join(self.text).split())


# -- rendering ----------------------------------------------------------------------------


def test_each_gpu_gets_the_verdict_modules_verdict_and_its_readings() -> None:
    samples = merge(
        healthy_gpu("0", "GPU-aaaa"),
        fallen_gpu("1", "GPU-bbbb"),
        {
            metrics.POD_INFO.name: [
                (("0", "GPU-aaaa", "", "ml", "train-0", "trainer"), 1.0),
                (("1", "GPU-bbbb", "", "ml", "train-1", "trainer"), 1.0),
            ]
        },
    )
    page = Elements(render_page(snapshot(samples), NOW, host="node-a"))
    findings = gpu_findings(samples, NOW)
    assert page.rows() == {
        "gpu-0": gpu_verdict(findings, "0"),
        "gpu-1": gpu_verdict(findings, "1"),
    }
    assert page.rows() == {"gpu-0": "passed", "gpu-1": "failed"}
    text = page.plain()
    assert text.count(MODEL) == 2
    assert "37 %" in text and "12.0 / 80.0 GiB" in text and "45 °C" in text
    assert "250 W / 400 W" in text  # the enforced limit, not max
    assert "Xid 79 GPU has fallen off the bus" in text  # the catalog's name
    assert "Xid 48" not in text  # critical codes start at 0 on every GPU: 0 is not recent
    assert "has fallen off the bus (nvidia_gpu_fallen_off_bus 1" in text  # the finding
    assert "ml/train-0 (trainer)" in text and "ml/train-1 (trainer)" in text
    assert "1 failed" in text and "1 passed" in text
    assert "gpu-node-exporter 9.8.7" in text and "host node-a" in text
    assert "driver 550.54.15" in text and "2 GPUs" in text
    assert "last collection 2.0 s ago" in text
    for path in ("/metrics", "/healthz", "/readyz"):
        assert ("a", {"href": path}) in page.tags


def test_hostile_label_values_are_escaped_everywhere() -> None:
    hostile_uuid = 'GPU-"><script>x</script>'
    samples = merge(
        healthy_gpu("0", hostile_uuid, model="<b onmouseover=alert(3)>A100</b>"),
        {
            metrics.POD_INFO.name: [
                (("0", hostile_uuid, "", HOSTILE_NAMESPACE, HOSTILE_POD, HOSTILE_CONTAINER), 1.0)
            ],
            metrics.XID_LAST_SEEN.name: [(("0", hostile_uuid, "<i>"), NOW - 5)],
        },
    )
    html = render_page(snapshot(samples, down={"kmsg": "open <iframe src=x>: denied"}), NOW)
    page = Elements(html)
    assert {tag for tag, _ in page.tags} <= PAGE_TAGS
    assert not [attrs for _, attrs in page.tags if any(k.startswith("on") for k in attrs)]
    text = page.plain()
    assert f"{HOSTILE_NAMESPACE}/{HOSTILE_POD} ({HOSTILE_CONTAINER})" in text
    assert "<b onmouseover=alert(3)>A100</b>" in text
    assert "open <iframe src=x>: denied" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in html
    assert "a&#x27;b&amp;c" in html
    titles = [attrs["title"] for tag, attrs in page.tags if "title" in attrs]
    assert hostile_uuid in titles  # intact inside the attribute, not breaking out of it


def test_an_empty_node_and_a_page_before_the_first_render() -> None:
    text = Elements(render_page(snapshot({}), NOW)).plain()
    assert "No GPUs in the last collection." in text and "0 GPUs" in text
    assert "NVML is down" not in text
    first = Elements(render_page(Snapshot(0, {}, {}, 0.0), NOW)).plain()
    assert "No collection has been rendered yet" in first
    assert "last collection never" in first


def test_nvml_down_says_why_and_marks_the_readings_stale() -> None:
    detail = "nvmlInit failed: DRIVER_NOT_LOADED"
    page = Elements(render_page(snapshot(healthy_gpu("0", "GPU-a"), down={"nvml": detail}), NOW))
    text = page.plain()
    assert f"NVML is down: {detail}." in text
    assert "readings below are from the last successful collection" in text
    rows = [attrs for tag, attrs in page.tags if tag == "tr" and attrs.get("id") == "source-nvml"]
    assert rows and f"nvml down 2.0 s ago {detail}" in text


def test_a_failing_health_check_still_serves_the_page(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(samples: SampleMap, now: float) -> list[statuspage.Finding]:
        raise ValueError("bug in a rule")

    monkeypatch.setattr(statuspage, "gpu_findings", broken)
    page = Elements(render_page(snapshot(healthy_gpu("0", "GPU-a")), NOW))
    assert page.rows() == {"gpu-0": "skipped"}
    assert "health checks failed: ValueError('bug in a rule')" in page.plain()


# -- the publisher's snapshot and the cache ------------------------------------------------


def test_the_snapshot_is_the_last_render_merged_without_copies() -> None:
    publisher = Publisher(process_metrics=False)
    assert publisher.snapshot().generation == 0
    up = ((("0", "GPU-a"), 1.0),)
    shared_a = ((("a",), 1.0),)
    publisher.publish("nvml", {metrics.UP.name: up, "shared": shared_a}, SourceHealth(up=True))
    publisher.publish(
        "xid", {"shared": ((("b",), 2.0),)}, SourceHealth(up=False, detail="kmsg: denied")
    )
    assert publisher.snapshot().generation == 0  # published, not rendered yet
    publisher.render_now()
    first = publisher.snapshot()
    assert first.generation == 1
    assert first.samples[metrics.UP.name] is up  # one source's family: its own tuple
    assert first.samples["shared"] == ((("a",), 1.0), (("b",), 2.0))
    assert first.sources["xid"].detail == "kmsg: denied"
    assert ((("xid",), 0.0)) in first.samples[metrics.SOURCE_UP.name]
    assert publisher.snapshot() is first  # no copy per read
    publisher.render_now()
    assert publisher.snapshot().generation == 2


def test_the_page_is_built_once_per_render() -> None:
    publisher = Publisher(process_metrics=False)
    publisher.publish("nvml", merge(healthy_gpu("0", "GPU-a")), SourceHealth(up=True))
    publisher.render_now()
    page = StatusPage(publisher, host="")
    first = page.body()
    assert page.body() is first and page.renders == 1
    publisher.publish("nvml", merge(fallen_gpu("0", "GPU-a")), SourceHealth(up=True))
    assert page.body() is first  # published but not rendered: /metrics has not changed either
    publisher.render_now()
    second = page.body()
    assert page.renders == 2 and b'data-verdict="failed"' in second


# -- over HTTP ------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[ExporterHTTPServer]:
    publisher = Publisher(process_metrics=False)
    gpus = [healthy_gpu(str(i), f"GPU-{i:04d}") for i in range(7)] + [fallen_gpu("7", "GPU-7")]
    publisher.publish("nvml", merge(*gpus), SourceHealth(up=True, last_success_timestamp=NOW))
    publisher.render_now()
    srv = ExporterHTTPServer(ListenAddress("127.0.0.1", 0), publisher, lambda: (True, "ready"))
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_get_and_head_and_the_request_time(server: ExporterHTTPServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200
        assert response.getheader("Content-Type") == "text/html; charset=utf-8"
        assert response.getheader("Cache-Control") == "no-store"
        assert len(Elements(body.decode()).rows()) == 8
        conn.request("HEAD", "/")
        head = conn.getresponse()
        assert head.status == 200 and head.read() == b""
        assert head.getheader("Content-Length") == str(len(body))
        timings = []
        for _ in range(300):
            started = time.perf_counter()
            conn.request("GET", "/")
            reply = conn.getresponse().read()
            timings.append(time.perf_counter() - started)
            assert reply is not None and len(reply) == len(body)
    finally:
        conn.close()
    assert server.status_page.renders == 1  # 302 requests, one render of the page
    timings.sort()
    p50, p99 = statistics.median(timings), timings[int(len(timings) * 0.99)]
    print(
        f"\nGET / ({len(body)} bytes, 8 GPUs): p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms; "
        f"page build {server.status_page.render_seconds * 1000:.2f} ms"
    )
    assert p50 < 0.05  # generous: a cached page is a socket write (about 0.3 ms measured)


# -- in a real browser ----------------------------------------------------------------------


@pytest.mark.slow
def test_a_real_browser_shows_every_gpu_and_the_failed_one(tmp_path: Path) -> None:
    require_tool("chromium")
    from scripts import status_page_screenshot as shot

    pods = {
        0: (HOSTILE_NAMESPACE, HOSTILE_POD, HOSTILE_CONTAINER),
        3: ("ml", "train-1", "trainer"),
    }
    with shot.simulated_node(tmp_path / "node", pods) as node:
        png = tmp_path / "page.png"
        data = shot.screenshot(node.url, png)
        dom = shot.dump_dom(node.url)
    summary = shot.png_summary(data)
    assert (summary.width, summary.height) == shot.WINDOW
    assert summary.colours > 100, f"a blank or near-blank capture: {summary.colours} colours"
    page = Elements(dom)
    rows = page.rows()
    assert sorted(rows) == [f"gpu-{i}" for i in range(8)]
    assert rows[f"gpu-{shot.LOST_GPU}"] == "failed"
    assert rows[f"gpu-{shot.WARNING_GPU}"] in ("warning", "failed")  # Xid 13 (+ its NVLink)
    assert list(rows.values()).count("passed") >= 5
    text = page.plain()
    assert text.count(MODEL) == 8
    assert "fallen off the bus" in text and "Xid 79" in text and "Xid 13" in text
    assert f"{HOSTILE_NAMESPACE}/{HOSTILE_POD} ({HOSTILE_CONTAINER})" in text
    assert {tag for tag, _ in page.tags} <= PAGE_TAGS  # the browser built no script or img


def _png(width: int, height: int, pixel: Callable[[int, int], bytes]) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    rows = b"".join(b"\0" + b"".join(pixel(x, y) for x in range(width)) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_the_png_check_tells_a_blank_capture_from_a_page() -> None:
    from scripts.status_page_screenshot import png_summary

    blank = png_summary(_png(6, 4, lambda x, y: b"\xff\xff\xff"))
    assert (blank.width, blank.height, blank.colours) == (6, 4, 1)
    assert png_summary(_png(6, 4, lambda x, y: bytes((x * 40, y * 60, 7)))).colours == 24
    corrupt = bytearray(_png(6, 4, lambda x, y: b"\0\0\0"))
    corrupt[42] ^= 0xFF  # a byte of the IDAT data: its CRC no longer matches
    with pytest.raises(ValueError, match="CRC"):
        png_summary(bytes(corrupt))
    with pytest.raises(ValueError, match="signature"):
        png_summary(b"GIF89a")
