"""The kubelet client against a real gRPC server on a unix socket, in every failure mode."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest

from exporter.attribution import DeviceGroup
from exporter.publisher import Publisher
from exporter.sources.podresources import BACKOFF_MAX_SECONDS, PodResourcesSource
from tests.fakekubelet import Behaviour, FakeKubelet, allocatable_reply, pods_reply

GPU0 = "GPU-00000000-0000-0000-0000-000000000000"
MIG = "MIG-aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"
ONE_POD = pods_reply(("ml", "train-0", [("trainer", [("nvidia.com/gpu", [GPU0])])]))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def socket_path(tmp_path: Path) -> str:
    return str(tmp_path / "kubelet.sock")


@pytest.fixture
def kubelet(socket_path: str):
    server = FakeKubelet(socket_path, Behaviour(list_reply=ONE_POD)).start()
    yield server
    server.stop()


@pytest.fixture
def stop():
    event = threading.Event()
    yield event
    event.set()


def make(socket_path: str, stop: threading.Event, **kw) -> tuple[PodResourcesSource, Publisher]:
    publisher = Publisher(process_metrics=False)
    kw.setdefault("deadline_seconds", 0.5)
    source = PodResourcesSource(socket_path, publisher, stop=stop, **kw)
    return source, publisher


def health(publisher: Publisher):
    state = publisher.source_health("podresources")
    assert state is not None
    return state


def test_list_and_allocatable(kubelet, socket_path, stop):
    kubelet.behaviour.allocatable_reply = allocatable_reply([("nvidia.com/gpu", [GPU0])])
    source, publisher = make(socket_path, stop)
    source.refresh_once()
    view = source.view()
    assert view is not None
    assert [(p.namespace, p.name, p.containers[0].name) for p in view.pods] == [
        ("ml", "train-0", "trainer")
    ]
    assert view.pods[0].containers[0].devices == (DeviceGroup("nvidia.com/gpu", (GPU0,)),)
    assert view.allocatable == (DeviceGroup("nvidia.com/gpu", (GPU0,)),)
    assert health(publisher).up


def test_old_kubelet_without_allocatable(kubelet, socket_path, stop):
    kubelet.behaviour.allocatable_reply = None
    source, publisher = make(socket_path, stop)
    source.refresh_once()
    source.refresh_once()
    view = source.view()
    assert view is not None
    assert view.allocatable is None
    assert health(publisher).up
    assert kubelet.behaviour.calls["GetAllocatableResources"] == 1  # not asked again soon


def test_reply_over_grpc_default_4mib(kubelet, socket_path, stop):
    pods = [
        (
            f"ns-{i:04d}",
            f"pod-{i:04d}-" + "x" * 200,
            [("c" * 50, [("nvidia.com/gpu", [GPU0] * 20)])],
        )
        for i in range(6000)
    ]
    reply = pods_reply(*pods)
    assert len(reply) > 6_000_000
    kubelet.behaviour.list_reply = reply
    source, publisher = make(socket_path, stop, deadline_seconds=2.0)
    source.refresh_once()
    assert health(publisher).up, health(publisher).detail
    view = source.view()
    assert view is not None
    assert len(view.pods) == 6000


def test_fields_our_proto_does_not_declare_are_skipped(kubelet, socket_path, stop):
    # PodResources.cpu_ids (4, packed int64) and ContainerResources.memory (4) from newer kubelets
    extra_pod_field = bytes([0x22, 0x02, 0x01, 0x02])
    pod = ONE_POD[2:] + extra_pod_field  # ONE_POD is field 1, length < 128: 2-byte header
    kubelet.behaviour.list_reply = bytes([0x0A, len(pod)]) + pod + bytes([0x38, 0x05])
    source, publisher = make(socket_path, stop)
    source.refresh_once()
    assert health(publisher).up, health(publisher).detail
    assert source.view().pods[0].name == "train-0"


def test_garbage_bytes_report_down_and_recover(kubelet, socket_path, stop):
    kubelet.behaviour.list_reply = b"\xff\xff\xff\xff garbage"
    source, publisher = make(socket_path, stop)
    source.refresh_once()
    assert not health(publisher).up
    assert source.view() is None
    kubelet.behaviour.list_reply = ONE_POD
    source.refresh_once()
    assert health(publisher).up
    assert source.view() is not None


def test_slow_kubelet_hits_the_deadline(kubelet, socket_path, stop):
    kubelet.behaviour.hang = threading.Event()
    source, publisher = make(socket_path, stop, deadline_seconds=0.3)
    started = time.monotonic()
    source.refresh_once()
    elapsed = time.monotonic() - started
    kubelet.behaviour.hang.set()
    assert not health(publisher).up
    assert "DEADLINE_EXCEEDED" in health(publisher).detail
    assert elapsed < 2.0


def test_deadline_is_never_above_two_seconds(socket_path, stop):
    source, _ = make(socket_path, stop, deadline_seconds=30.0)
    assert source._deadline == 2.0


def test_resource_exhausted_backs_off_then_recovers(kubelet, socket_path, stop):
    kubelet.behaviour.error = grpc.StatusCode.RESOURCE_EXHAUSTED
    source, publisher = make(socket_path, stop, refresh_seconds=1.0)
    waits = [source.refresh_once() for _ in range(8)]
    assert "RESOURCE_EXHAUSTED" in health(publisher).detail
    assert waits[0] >= 1.5  # doubled at once
    assert waits[1] > waits[0]
    assert max(waits) <= BACKOFF_MAX_SECONDS
    kubelet.behaviour.error = None
    assert source.refresh_once() <= 1.0
    assert health(publisher).up


def test_socket_absent_then_kubelet_starts(socket_path, stop):
    source, publisher = make(socket_path, stop)
    source.refresh_once()
    assert not health(publisher).up
    assert "does not exist" in health(publisher).detail
    server = FakeKubelet(socket_path, Behaviour(list_reply=ONE_POD)).start()
    try:
        deadline = time.monotonic() + 10
        while not health(publisher).up and time.monotonic() < deadline:
            source.refresh_once()  # the same channel reconnects by itself
        assert health(publisher).up
    finally:
        server.stop()


def test_kubelet_restart_is_followed(kubelet, socket_path, stop):
    source, publisher = make(socket_path, stop)
    source.refresh_once()
    assert health(publisher).up
    kubelet.stop()
    source.refresh_once()
    assert not health(publisher).up
    kubelet.behaviour.list_reply = pods_reply(("b", "after", [("c", [("nvidia.com/gpu", [MIG])])]))
    kubelet.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        source.refresh_once()
        view = source.view()
        if health(publisher).up and view and view.pods[0].name == "after":
            break
    assert source.view().pods[0].name == "after"


def test_view_expires_after_ttl(kubelet, socket_path, stop):
    clock = Clock()
    source, publisher = make(socket_path, stop, ttl_seconds=30.0, clock=clock)
    source.refresh_once()
    kubelet.behaviour.error = grpc.StatusCode.UNAVAILABLE
    clock.now += 20
    source.refresh_once()
    assert not health(publisher).up
    assert source.view() is not None  # a short outage does not flap the join series
    clock.now += 20
    assert source.view() is None  # a long one removes attribution rather than lie
    kubelet.behaviour.error = None
    source.refresh_once()
    assert source.view() is not None


def test_stop_cancels_a_hung_call_within_a_second(kubelet, socket_path, stop):
    kubelet.behaviour.hang = threading.Event()
    source, _ = make(socket_path, stop, deadline_seconds=2.0)
    source.start()
    deadline = time.monotonic() + 10
    while not kubelet.behaviour.calls.get("List") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert kubelet.behaviour.calls.get("List"), "the call never reached the kubelet"
    started = time.monotonic()  # the thread is inside the hung call now
    stop.set()
    assert source.join(1.0)
    assert time.monotonic() - started < 1.0
    kubelet.behaviour.hang.set()
    source.close()
