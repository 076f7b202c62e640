"""The node status page served at `/`: per-GPU health verdict and readings, sources, links.

Why a page at all: the first thing someone does on a node that pages is `curl` the exporter,
and a wall of exposition text does not say "GPU 3 fell off the bus, Xid 79, pod ml/train-0
owns it". The page answers that from the last collection only:

- no NVML call, no lock and no kubelet call on the request path: it reads the publisher's
  last snapshot (`Publisher.snapshot()`, one attribute read) and is rendered at most once
  per publisher render (cached by the snapshot's generation), so a browser left open or a
  script hammering `/` costs what a /metrics scrape costs;
- the verdict is `exporter.verdict`'s, the same checks `gpu-node-exporter diagnose` runs, so
  the page and the command never disagree about a GPU;
- plain HTML with inline CSS, no script and no external asset: it works through
  `kubectl port-forward`, in a text browser and behind a strict Content-Security-Policy;
- every value that comes from outside the exporter (pod and container names from the
  kubelet, model names and versions from the driver, error details) is HTML-escaped with
  quotes, because pod names are chosen by whoever can create pods on the node.
"""

from __future__ import annotations

import html
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from exporter import __version__, metrics
from exporter.model import SampleMap
from exporter.publisher import Publisher, Snapshot
from exporter.verdict import Finding, Level, gpu_findings, gpu_verdict
from exporter.xid.catalog import XidCatalog, default_catalog

log = structlog.get_logger(__name__)

RECENT_XID_SECONDS = 24 * 3600.0  # an Xid counted since start always shows; older last-seen not
MAX_XIDS_SHOWN = 4
NO_VALUE = '<span class="muted">&ndash;</span>'
LEVELS: tuple[Level, ...] = ("failed", "warning", "skipped", "passed")
LINKS = (
    ("/metrics", "Prometheus and OpenMetrics exposition"),
    ("/healthz", "the process is alive"),
    ("/readyz", "the first collection finished and NVML answers"),
)

STYLE = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;
background:#f4f6f9}
header{background:#1d2330;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:20px}header h1 small{font-weight:400;color:#aab4c5;font-size:14px}
header p{margin:4px 0 0;color:#cfd6e2}
nav a{color:#8cc4ff;margin-right:14px}
main{padding:8px 24px 24px}
h2{font-size:16px;margin:20px 0 8px}
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px #0002}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #e3e7ee;vertical-align:top}
th{background:#eef1f6;font-weight:600;font-size:13px}
td.num,td.model{font-variant-numeric:tabular-nums;white-space:nowrap}
.badge{display:inline-block;padding:1px 9px;border-radius:10px;font-weight:600;font-size:12px;
color:#fff}
.passed{background:#1f8a4c}.warning{background:#c77800}.failed{background:#c62828}
.skipped{background:#7a8496}.down{background:#c62828}.up{background:#1f8a4c}
.stalled{background:#c77800}
ul.findings{margin:4px 0 0;padding-left:18px;font-size:12px}
ul.findings li.failed,ul.findings li.warning,ul.findings li.skipped{background:none}
ul.findings li.failed{color:#a31515}ul.findings li.warning{color:#8a5300}
.muted{color:#6b7485;font-size:12px}
.bar{width:90px;height:8px;background:#e3e7ee;border-radius:4px;margin-top:3px}
.bar span{display:block;height:8px;border-radius:4px;background:#3b7ddd}
.banner{margin:14px 0 0;padding:10px 14px;border-radius:4px;background:#fdecea;
border:1px solid #f5c2c0;color:#8a1c1c}
.summary .badge{margin-right:6px}
footer{padding:0 24px 24px;color:#6b7485;font-size:12px}
"""


def esc(value: object) -> str:
    """HTML-escape anything shown on the page, quotes included (safe in attributes too)."""
    return html.escape(str(value), quote=True)


@dataclass(slots=True)
class GpuView:
    """What the page shows for one GPU, gathered from the sample map."""

    index: str
    uuid: str = ""
    model: str = ""
    up: bool | None = None
    values: dict[str, float] = field(default_factory=dict)
    power_limit: float | None = None
    xids: dict[str, list[float | None]] = field(default_factory=dict)  # code -> [count, seen]
    pods: list[str] = field(default_factory=list)


def _gpu_sort_key(index: str) -> tuple[int, str]:
    return (int(index), "") if index.isdigit() else (1 << 30, index)


def gather_gpus(samples: SampleMap) -> tuple[list[GpuView], list[GpuView]]:
    """Per-GPU views in index order, plus pseudo-GPUs for Xids on addresses no GPU has."""
    gpus: dict[str, GpuView] = {}

    def view(labels: Sequence[str]) -> GpuView:
        entry = gpus.get(labels[0])
        if entry is None:
            entry = gpus[labels[0]] = GpuView(labels[0], labels[1])
        return entry

    model_at = metrics.INFO.labels.index("model")
    for labels, _ in samples.get(metrics.INFO.name, ()):
        view(labels).model = labels[model_at]
    for labels, value in samples.get(metrics.UP.name, ()):
        view(labels).up = value == 1.0
    for family in (
        metrics.UTILIZATION,
        metrics.MEMORY_USED,
        metrics.MEMORY_TOTAL,
        metrics.TEMPERATURE,
        metrics.POWER_USAGE,
        metrics.FALLEN_OFF_BUS,
    ):
        for labels, value in samples.get(family.name, ()):
            view(labels).values[family.name] = value
    limits: dict[str, dict[str, float]] = {}
    for labels, value in samples.get(metrics.POWER_LIMIT.name, ()):
        limits.setdefault(view(labels).index, {})[labels[2]] = value
    for index, by_kind in limits.items():
        gpus[index].power_limit = by_kind.get("enforced", by_kind.get("current"))
    for family, slot in ((metrics.XID_ERRORS, 0), (metrics.XID_LAST_SEEN, 1)):
        for labels, value in samples.get(family.name, ()):
            entry = view(labels)
            entry.xids.setdefault(labels[2], [None, None])[slot] = value
    for labels, _ in samples.get(metrics.POD_INFO.name, ()):
        _, _, mig_uuid, namespace, pod, container = labels
        text = f"{namespace}/{pod} ({container})" + (f" on MIG {mig_uuid}" if mig_uuid else "")
        pods = view(labels).pods
        if text not in pods:
            pods.append(text)
    ordered = [gpus[key] for key in sorted(gpus, key=_gpu_sort_key)]
    return [g for g in ordered if g.index], [g for g in ordered if not g.index]


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def _badge(level: str, text: str | None = None) -> str:
    return f'<span class="badge {esc(level)}">{esc(text or level)}</span>'


def _xid_cell(gpu: GpuView, catalog: XidCatalog, now: float) -> str:
    shown = []
    for code, (count, seen) in gpu.xids.items():
        recent = seen is not None and now - seen <= RECENT_XID_SECONDS
        if (count or 0) > 0 or recent:
            shown.append((seen or 0.0, code, count, seen))
    if not shown:
        return '<span class="muted">none</span>'
    shown.sort(reverse=True)
    items = []
    for _, code, count, seen in shown[:MAX_XIDS_SHOWN]:
        info = catalog.get(int(code)) if code.isdigit() else None
        full = info.name if info else "not a numbered Xid"
        short = full.split(": ", 1)[-1]
        severity = info.severity if info else "warning"
        times = f" &times;{count:.0f}" if count else ""
        when = f", {_age(now - seen)}" if seen is not None else ""
        items.append(
            f'<li title="{esc(full)}"><b>Xid {esc(code)}</b> {esc(short)}{times}'
            f'<span class="muted"> ({esc(severity)}{when})</span></li>'
        )
    more = len(shown) - MAX_XIDS_SHOWN
    if more > 0:
        items.append(f'<li class="muted">and {more} more on /metrics</li>')
    return '<ul class="findings">' + "".join(items) + "</ul>"


def _findings_list(findings: Sequence[Finding]) -> str:
    items = [
        f'<li class="{esc(f.level)}"><b>{esc(f.check)}</b>: {esc(f.evidence)}'
        + (f" &rarr; {esc(f.next_step)}" if f.next_step else "")
        + "</li>"
        for f in findings
        if f.level in ("failed", "warning")
    ]
    return f'<ul class="findings">{"".join(items)}</ul>' if items else ""


def _short_uuid(uuid: str) -> str:
    """`GPU-838098a0...`: enough to tell GPUs apart; the full UUID is the cell's tooltip."""
    return uuid if len(uuid) <= 16 else uuid[:12] + "\u2026"


def _gib(value: float) -> str:
    return f"{value / 2**30:.1f}"


def _gpu_row(gpu: GpuView, level: Level, findings: Sequence[Finding], xids: str) -> str:
    v = gpu.values
    util = v.get(metrics.UTILIZATION.name)
    util_cell = (
        f'{util * 100:.0f} %<div class="bar"><span style="width:{min(max(util, 0), 1) * 100:.0f}%">'
        "</span></div>"
        if util is not None
        else "&ndash;"
    )
    used, total = v.get(metrics.MEMORY_USED.name), v.get(metrics.MEMORY_TOTAL.name)
    memory = (
        f"{_gib(used)} / {_gib(total)} GiB"
        if used is not None and total is not None
        else (f"&ndash; / {_gib(total)} GiB" if total is not None else "&ndash;")
    )
    temp = v.get(metrics.TEMPERATURE.name)
    power = v.get(metrics.POWER_USAGE.name)
    power_cell = "&ndash;" if power is None else f"{power:.0f} W"
    if gpu.power_limit is not None:
        power_cell += f" / {gpu.power_limit:.0f} W"
    state = ""
    if v.get(metrics.FALLEN_OFF_BUS.name) == 1.0:
        state = '<div class="muted">fallen off the bus</div>'
    elif gpu.up is False:
        state = '<div class="muted">not answering NVML</div>'
    pods = "<br>".join(esc(p) for p in gpu.pods) if gpu.pods else '<span class="muted">none</span>'
    return (
        f'<tr id="gpu-{esc(gpu.index)}" data-verdict="{esc(level)}">'
        f'<td class="num"><b>{esc(gpu.index)}</b></td>'
        f'<td class="model">{esc(gpu.model or "unknown model")}'
        f'<div class="muted" title="{esc(gpu.uuid)}">{esc(_short_uuid(gpu.uuid))}</div></td>'
        f"<td>{_badge(level)}{state}{_findings_list(findings)}</td>"
        f'<td class="num">{util_cell}</td><td class="num">{memory}</td>'
        f'<td class="num">{"&ndash;" if temp is None else f"{temp:.0f} &deg;C"}</td>'
        f'<td class="num">{power_cell}</td><td>{xids}</td><td>{pods}</td></tr>'
    )


def _source_rows(snapshot: Snapshot, now: float) -> str:
    samples = snapshot.samples
    up = {labels[0]: value == 1.0 for labels, value in samples.get(metrics.SOURCE_UP.name, ())}
    stalled = {
        labels[0]: value == 1.0 for labels, value in samples.get(metrics.SOURCE_STALLED.name, ())
    }
    last = {labels[0]: value for labels, value in samples.get(metrics.SOURCE_LAST_SUCCESS.name, ())}
    rows = []
    for name in sorted(up):
        state = "stalled" if stalled.get(name) else ("up" if up[name] else "down")
        health = snapshot.sources.get(name)
        detail = health.detail if health is not None else ""
        seen = last.get(name)
        rows.append(
            f'<tr id="source-{esc(name)}"><td>{esc(name)}</td><td>{_badge(state)}</td>'
            f'<td class="num">{"never" if seen is None else _age(now - seen)}</td>'
            f"<td>{esc(detail) if detail else NO_VALUE}</td></tr>"
        )
    return "".join(rows)


def _verdicts(
    samples: SampleMap, gpus: Sequence[GpuView], now: float
) -> tuple[dict[str, Level], list[Finding], str]:
    """Each GPU's verdict and the findings; a verdict bug shows on the page, never a 500."""
    try:
        findings = gpu_findings(samples, now)
        levels = {gpu.index: gpu_verdict(findings, gpu.index) for gpu in gpus}
    except Exception as err:
        log.error("status_page_verdict_failed", error=repr(err))
        return {gpu.index: "skipped" for gpu in gpus}, [], f"health checks failed: {err!r}"
    return levels, findings, ""


def render_page(
    snapshot: Snapshot, now: float, catalog: XidCatalog | None = None, host: str = ""
) -> str:
    """The whole page as text, from one snapshot; pure apart from the verdict's log line."""
    catalog = catalog or default_catalog()
    samples = snapshot.samples
    gpus, _ = gather_gpus(samples)  # Xids on unknown addresses: node findings
    levels, findings, verdict_error = _verdicts(samples, gpus, now)
    version = next(
        (labels[0] for labels, _ in samples.get(metrics.BUILD_INFO.name, ())), __version__
    )
    driver_at = metrics.INFO.labels.index("driver_version")
    drivers = sorted({labels[driver_at] for labels, _ in samples.get(metrics.INFO.name, ())})
    nvml = snapshot.sources.get("nvml")
    nvml_seen = nvml.last_success_timestamp if nvml is not None else None
    facts = [f"host {host}"] if host else []
    if drivers:
        facts.append("driver " + ", ".join(drivers))
    facts.append(f"{len(gpus)} GPU{'' if len(gpus) == 1 else 's'}")
    facts.append(
        "last collection " + ("never" if nvml_seen is None else f"{_age(now - nvml_seen)}")
    )
    banners = []
    if snapshot.generation == 0:
        banners.append("No collection has been rendered yet; reload in a few seconds.")
    elif nvml is None or not nvml.up:
        detail = nvml.detail if nvml is not None and nvml.detail else "no detail"
        stale = " The GPU readings below are from the last successful collection." if gpus else ""
        banners.append(f"NVML is down: {detail}.{stale}")
    if verdict_error:
        banners.append(verdict_error)
    counts = dict.fromkeys(LEVELS, 0)
    for level in levels.values():
        counts[level] += 1
    summary = "".join(
        _badge(level, f"{counts[level]} {level}") for level in LEVELS if counts[level]
    )
    rows = "".join(
        _gpu_row(
            gpu,
            levels[gpu.index],
            [f for f in findings if f.gpu == gpu.index],
            _xid_cell(gpu, catalog, now),
        )
        for gpu in gpus
    )
    if not gpus:
        rows = '<tr><td colspan="9" class="muted">No GPUs in the last collection.</td></tr>'
    node_findings = _findings_list([f for f in findings if f.gpu is None])
    nav = "".join(f'<a href="{path}">{path}</a>' for path, _ in LINKS)
    link_list = "".join(f'<li><a href="{p}">{p}</a> - {esc(text)}</li>' for p, text in LINKS)
    rendered = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(snapshot.rendered_at))
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(host + ' - ' if host else '')}gpu-node-exporter</title>"
        f"<style>{STYLE}</style></head><body>"
        f"<header><h1>gpu-node-exporter <small>{esc(version)}</small></h1>"
        f"<p>{esc(' · '.join(facts))}</p><nav>{nav}</nav></header><main>"
        + "".join(f'<div class="banner">{esc(text)}</div>' for text in banners)
        + f'<h2>GPUs</h2><p class="summary">{summary}</p>'
        "<table><thead><tr><th>GPU</th><th>Model</th><th>Health</th><th>Utilization</th>"
        "<th>Memory used / total</th><th>Temperature</th><th>Power / limit</th>"
        f"<th>Recent Xids</th><th>Pod</th></tr></thead><tbody>{rows}</tbody></table>"
        + (f"<h2>Node checks</h2>{node_findings}" if node_findings else "")
        + "<h2>Sources</h2><table><thead><tr><th>Source</th><th>State</th>"
        "<th>Last success</th><th>Detail</th></tr></thead>"
        f"<tbody>{_source_rows(snapshot, now)}</tbody></table></main>"
        f"<footer><p>From the collection rendered at {esc(rendered)}; the page is rebuilt "
        "at most once per render of /metrics and never calls NVML.</p>"
        f"<ul>{link_list}</ul></footer></body></html>\n"
    )


class StatusPage:
    """Serves `render_page` of the publisher's latest snapshot, rendered once per generation."""

    def __init__(
        self,
        publisher: Publisher,
        clock: Callable[[], float] = time.time,
        host: str | None = None,
    ) -> None:
        self._publisher = publisher
        self._clock = clock
        self._host = socket.gethostname() if host is None else host
        self._cached: tuple[int, bytes] = (-1, b"")
        self.renders = 0  # pages built (tests check the cache)
        self.render_seconds = 0.0  # time the last build took

    def body(self) -> bytes:
        """The page for the current snapshot; a benign race may build one generation twice."""
        snapshot = self._publisher.snapshot()
        generation, body = self._cached
        if generation == snapshot.generation:
            return body
        started = time.perf_counter()
        body = render_page(snapshot, self._clock(), host=self._host).encode()
        self._cached = (snapshot.generation, body)
        self.renders += 1
        self.render_seconds = time.perf_counter() - started
        return body
