from __future__ import annotations

import gzip
import time

from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter import metrics
from exporter.model import SourceHealth
from exporter.publisher import Publisher


def _values(publisher: Publisher, family: str) -> dict[tuple[str, ...], float]:
    text = publisher.exposition(openmetrics=False).body.decode()
    out = {}
    for parsed in parse_text(text):
        for sample in parsed.samples:
            if sample.name == family:
                out[tuple(sample.labels.values())] = sample.value
    return out


def test_published_samples_reach_the_exposition_after_a_render() -> None:
    publisher = Publisher(process_metrics=False)
    publisher.register("nvml", stall_after=10)
    publisher.publish("nvml", {metrics.UP.name: ((("0", "GPU-a"), 1.0),)}, SourceHealth(up=True))
    publisher.render_now()
    assert _values(publisher, "nvidia_gpu_up") == {("0", "GPU-a"): 1.0}
    assert _values(publisher, "nvidia_gpu_exporter_source_up") == {("nvml",): 1.0}


def test_samples_none_keeps_previous_samples() -> None:
    publisher = Publisher(process_metrics=False)
    publisher.publish("nvml", {metrics.UP.name: ((("0", "GPU-a"), 1.0),)}, SourceHealth(up=True))
    publisher.publish("nvml", None, SourceHealth(up=False))
    publisher.render_now()
    assert _values(publisher, "nvidia_gpu_up") == {("0", "GPU-a"): 1.0}
    assert _values(publisher, "nvidia_gpu_exporter_source_up") == {("nvml",): 0.0}


def test_a_collection_running_past_its_stall_limit_is_reported() -> None:
    publisher = Publisher(process_metrics=False)
    publisher.register("nvml", stall_after=0.05)
    publisher.publish("nvml", {}, SourceHealth(up=True))
    publisher.begin("nvml")
    time.sleep(0.1)
    publisher.render_now()
    assert _values(publisher, "nvidia_gpu_exporter_source_stalled") == {("nvml",): 1.0}
    assert _values(publisher, "nvidia_gpu_exporter_source_up") == {("nvml",): 0.0}


def test_gzip_variant_holds_the_same_bytes() -> None:
    publisher = Publisher(process_metrics=False)
    publisher.publish("nvml", {metrics.UP.name: ((("0", "GPU-a"), 1.0),)}, SourceHealth(up=True))
    publisher.render_now()
    exposition = publisher.exposition(openmetrics=False)
    assert gzip.decompress(exposition.gzipped) == exposition.body


def test_openmetrics_is_rendered_on_first_request_then_kept_current() -> None:
    publisher = Publisher(process_metrics=False)
    publisher.publish("nvml", {metrics.UP.name: ((("0", "GPU-a"), 1.0),)}, SourceHealth(up=True))
    first = publisher.exposition(openmetrics=True)
    assert first.body.endswith(b"# EOF\n")
    publisher.publish("nvml", {metrics.UP.name: ((("0", "GPU-a"), 0.0),)}, SourceHealth(up=True))
    publisher.render_now()
    assert b'nvidia_gpu_up{gpu="0",uuid="GPU-a"} 0' in publisher.exposition(openmetrics=True).body


def test_a_publish_reaches_the_next_scrape_without_a_render_thread() -> None:
    publisher = Publisher(refresh_seconds=30, process_metrics=False)
    assert b'gpu="3"' not in publisher.exposition(openmetrics=False).body
    publisher.publish("kmsg", {metrics.UP.name: ((("3", "GPU-d"), 0.0),)}, SourceHealth(up=True))
    assert b'gpu="3"' in publisher.exposition(openmetrics=False).body


def test_each_format_and_its_gzip_render_once_per_generation() -> None:
    publisher = Publisher(refresh_seconds=30, process_metrics=False)
    publisher.publish("nvml", {metrics.UP.name: ((("0", "GPU-a"), 1.0),)}, SourceHealth(up=True))
    text = publisher.exposition(openmetrics=False)
    assert publisher.exposition(openmetrics=False) is text
    assert text.gzipped is text.gzipped  # compressed once, on first use
    openmetrics = publisher.exposition(openmetrics=True)
    assert publisher.exposition(openmetrics=False) is text  # asking for one leaves the other
    publisher.publish("nvml", {metrics.UP.name: ((("0", "GPU-a"), 0.0),)}, SourceHealth(up=True))
    assert publisher.exposition(openmetrics=False) is not text
    assert publisher.exposition(openmetrics=True) is not openmetrics


def test_health_is_reread_once_the_generation_is_older_than_refresh() -> None:
    publisher = Publisher(refresh_seconds=0.05, process_metrics=False)
    publisher.register("kmsg", stall_after=float("inf"))
    publisher.publish("kmsg", {}, SourceHealth(up=True, last_success_timestamp=1.0))
    first = publisher.exposition(openmetrics=False)
    publisher.heartbeat("kmsg")  # stamps the time, changes no samples
    assert publisher.exposition(openmetrics=False) is first
    time.sleep(0.1)
    assert publisher.exposition(openmetrics=False) is not first
    assert (
        _values(publisher, "nvidia_gpu_exporter_source_last_success_timestamp_seconds")[("kmsg",)]
        > 1.0
    )


def test_request_counter_and_build_info() -> None:
    publisher = Publisher(process_metrics=False, pynvml_version="13.0")
    publisher.count_request("/metrics", 200)
    publisher.count_request("/metrics", 200)
    publisher.render_now()
    assert _values(publisher, "nvidia_gpu_exporter_http_requests_total") == {
        ("/metrics", "200"): 2.0
    }
    build = _values(publisher, "nvidia_gpu_exporter_build_info")
    assert len(build) == 1 and next(iter(build))[2] == "13.0"


def test_process_metrics_are_appended() -> None:
    publisher = Publisher(process_metrics=True)
    publisher.render_now()
    assert b"process_resident_memory_bytes" in publisher.exposition(openmetrics=False).body


def test_first_collection_counts_only_once_it_is_rendered() -> None:
    publisher = Publisher(process_metrics=False)
    assert not publisher.first_collection_done()
    publisher.publish("nvml", {metrics.UP.name: ((("0", "GPU-a"), 1.0),)}, SourceHealth(up=True))
    publisher.mark_first_collection()
    # Not yet: /metrics would still serve the exposition from before the collection.
    assert not publisher.first_collection_done()
    publisher.render_now()
    assert publisher.first_collection_done()
    assert b"nvidia_gpu_up{" in publisher.exposition(openmetrics=False).body
