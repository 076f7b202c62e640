"""Kubelet pod-resources faults that tests/sources/test_podresources.py does not cover: every
other gRPC status the kubelet can answer, and a socket path that is not a socket (a regular
file or a directory, as a wrong hostPath mount gives). Each: health down naming the cause, the
cached view not served as fresh, recovery when the kubelet answers again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from exporter.publisher import Publisher
from exporter.sources.podresources import PodResourcesSource
from tests.fakekubelet import Behaviour, FakeKubelet, pods_reply

GPU0 = "GPU-00000000-0000-0000-0000-000000000000"
ONE_POD = pods_reply(("ml", "train-0", [("trainer", [("nvidia.com/gpu", [GPU0])])]))
STATUSES = [
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.FAILED_PRECONDITION,
]


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def make(socket_path: str, stop: threading.Event) -> tuple[PodResourcesSource, Publisher]:
    publisher = Publisher(process_metrics=False)
    source = PodResourcesSource(socket_path, publisher, stop=stop, deadline_seconds=0.5)
    return source, publisher


def up_and_detail(publisher: Publisher) -> tuple[bool, str]:
    health = publisher.source_health("podresources")
    assert health is not None
    return health.up, health.detail


@pytest.mark.parametrize("status", STATUSES, ids=lambda s: s.name)
def test_status_reports_down_then_recovers(
    tmp_path: Path, stop: threading.Event, status: grpc.StatusCode
) -> None:
    socket_path = str(tmp_path / "kubelet.sock")
    kubelet = FakeKubelet(socket_path, Behaviour(list_reply=ONE_POD)).start()
    try:
        source, publisher = make(socket_path, stop)
        source.refresh_once()
        assert up_and_detail(publisher)[0]
        kubelet.behaviour.error = status
        source.refresh_once()
        up, detail = up_and_detail(publisher)
        assert not up
        assert status.name in detail
        kubelet.behaviour.error = None
        source.refresh_once()
        assert up_and_detail(publisher)[0]
        assert source.view() is not None
    finally:
        kubelet.stop()


@pytest.mark.parametrize("kind", ["regular-file", "directory"])
def test_socket_path_that_is_not_a_socket(tmp_path: Path, stop: threading.Event, kind: str) -> None:
    path = tmp_path / "kubelet.sock"
    if kind == "directory":
        path.mkdir()
    else:
        path.write_text("not a socket")
    source, publisher = make(str(path), stop)
    source.refresh_once()  # must not raise
    up, detail = up_and_detail(publisher)
    assert not up
    assert detail
    assert source.view() is None
