"""Process metrics (CPU, memory, file descriptors) from prometheus_client's ProcessCollector.

Why borrow them: they are the standard `process_*` series every Prometheus user already has
dashboards for, and client_python reads them from /proc without extra dependencies. This is the
only module that imports prometheus_client.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_latest_om


class ProcessMetrics:
    """Renders the `process_*` families of this process in either exposition format."""

    def __init__(self) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self._registry)

    def render(self, openmetrics: bool) -> str:
        """Return the process families; OpenMetrics output without its closing `# EOF`."""
        if openmetrics:
            text: str = generate_latest_om(self._registry).decode()  # type: ignore[no-untyped-call]
            return text.removesuffix("# EOF\n")
        return str(generate_latest(self._registry).decode())
