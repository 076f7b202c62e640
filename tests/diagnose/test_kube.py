"""Kubelet checks of diagnose against a real gRPC fake kubelet (tests/fakekubelet.py)."""

from __future__ import annotations

import threading
import time

import pytest

from tests.fakekubelet import Behaviour, FakeKubelet, allocatable_reply, pods_reply

UUIDS = [f"GPU-{index:08x}-1111-2222-3333-444444444444" for index in range(8)]
NAMED = "".join(f"[gpu {index}]\nuuid = {uuid}\n" for index, uuid in enumerate(UUIDS))


@pytest.fixture
def kubelet(node):
    server = FakeKubelet(node.socket, Behaviour()).start()
    yield server
    server.stop()


def _args(node, *extra):
    return node.args("--simulate", node.scenario(NAMED), "--json", *extra)


def test_device_plugin_and_allocatable_pass(node, diagnose, kubelet):
    kubelet.behaviour.allocatable_reply = allocatable_reply([("nvidia.com/gpu", UUIDS)])
    run = diagnose(*_args(node))
    assert run.one("k8s.device_plugin")["evidence"] == "the kubelet advertises nvidia.com/gpu x8"
    assert run.one("k8s.allocatable") == {
        "check": "k8s.allocatable",
        "level": "passed",
        "gpu": None,
        "evidence": "all 8 GPUs NVML sees are allocatable",
        "next_step": "",
    }


def test_time_sliced_replicas_count_as_allocatable(node, diagnose, kubelet):
    ids = [f"{uuid}::{replica}" for uuid in UUIDS for replica in range(4)]
    kubelet.behaviour.allocatable_reply = allocatable_reply([("nvidia.com/gpu", ids)])
    run = diagnose(*_args(node))
    assert run.one("k8s.allocatable")["evidence"] == (
        "all 8 GPUs NVML sees are allocatable (32 device ids: shared or time-sliced)"
    )


def test_kubelet_advertises_fewer_gpus_than_nvml_sees(node, diagnose, kubelet):
    kubelet.behaviour.allocatable_reply = allocatable_reply(
        [("nvidia.com/gpu", [uuid for index, uuid in enumerate(UUIDS) if index not in (2, 5)])]
    )
    run = diagnose(*_args(node))
    allocatable = run.one("k8s.allocatable")
    assert allocatable["level"] == "failed"
    assert allocatable["evidence"] == (
        "the kubelet advertises 6 of the 8 GPUs NVML sees; missing: GPU 2, GPU 5"
    )
    assert "restart the device plugin" in allocatable["next_step"]
    assert run.rc == 2


def test_no_device_plugin(node, diagnose, kubelet):
    kubelet.behaviour.allocatable_reply = allocatable_reply([("example.com/fpga", ["f0"])])
    run = diagnose(*_args(node))
    plugin = run.one("k8s.device_plugin")
    assert plugin["level"] == "failed"
    assert "device plugin is not running" in plugin["evidence"]
    assert run.one("k8s.allocatable")["level"] == "skipped"


def test_kubelet_without_get_allocatable(node, diagnose, kubelet):
    kubelet.behaviour.allocatable_reply = None  # UNIMPLEMENTED: an old kubelet
    run = diagnose(*_args(node))
    assert run.one("k8s.device_plugin")["level"] == "skipped"
    assert run.one("k8s.allocatable")["level"] == "skipped"


def test_pod_holding_gpus(node, diagnose, kubelet):
    kubelet.behaviour.allocatable_reply = allocatable_reply([("nvidia.com/gpu", UUIDS)])
    kubelet.behaviour.list_reply = pods_reply(
        ("ml", "train-0", [("trainer", [("nvidia.com/gpu", [UUIDS[3], UUIDS[4]])])])
    )
    run = diagnose(*_args(node, "--pod", "ml/train-0"))
    pod = run.one("k8s.pod")
    assert (pod["level"], pod["evidence"]) == (
        "passed",
        "pod ml/train-0 holds trainer: GPU 3, GPU 4",
    )


def test_pod_without_gpus(node, diagnose, kubelet):
    kubelet.behaviour.allocatable_reply = allocatable_reply([("nvidia.com/gpu", UUIDS)])
    kubelet.behaviour.list_reply = pods_reply(
        ("ml", "notebook", [("jupyter", [("example.com/fpga", ["f0"])])]),
        ("ml", "train-0", [("trainer", [("nvidia.com/gpu", [UUIDS[3]])])]),
    )
    run = diagnose(*_args(node, "--pod", "ml/notebook"))
    pod = run.one("k8s.pod")
    assert pod["level"] == "failed"
    assert pod["evidence"].startswith("pod ml/notebook holds no GPU")
    assert "resources.limits" in pod["next_step"]
    assert run.rc == 2


def test_pod_not_on_this_node(node, diagnose, kubelet):
    run = diagnose(*_args(node, "--pod", "ml/elsewhere"))
    pod = run.one("k8s.pod")
    assert pod["level"] == "failed"
    assert pod["evidence"] == "pod ml/elsewhere is not on this node (the kubelet lists 0 pods)"


def test_no_kubelet_socket_skips(node, diagnose):
    run = diagnose(*_args(node, "--pod", "ml/train-0"))
    for check in ("k8s.device_plugin", "k8s.allocatable", "k8s.pod"):
        entry = run.one(check)
        assert entry["level"] == "skipped", check
        assert entry["evidence"].startswith(f"no kubelet socket at {node.socket}")
    assert run.rc == 0


def test_kubelet_error_fails(node, diagnose, kubelet):
    import grpc

    kubelet.behaviour.error = grpc.StatusCode.PERMISSION_DENIED
    run = diagnose(*_args(node))
    plugin = run.one("k8s.device_plugin")
    assert plugin["level"] == "failed"
    assert "PERMISSION_DENIED" in plugin["evidence"]


def test_hung_kubelet_is_bounded_by_timeout(node, diagnose, kubelet):
    kubelet.behaviour.hang = threading.Event()  # never set: every call hangs
    started = time.monotonic()
    run = diagnose(*_args(node, "--timeout", "1s"))
    elapsed = time.monotonic() - started
    kubelet.behaviour.hang.set()
    plugin = run.one("k8s.device_plugin")
    assert plugin["level"] == "failed"
    assert plugin["evidence"] == "kubelet pod-resources API: no answer in 1 s"
    assert elapsed < 3.0
    assert run.one("nvml.driver")["level"] == "passed"  # the other inputs still answer
