"""End to end: Application on the simulated node with a fake kubelet, read over /metrics."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.app import Application
from exporter.cli import config_from_args
from exporter.model import GpuIdentity
from tests.fakekubelet import Behaviour, FakeKubelet, allocatable_reply, pods_reply

POD_UID = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
MIG_POD_UID = "11111111-2222-3333-4444-555555555555"


def fake_proc(root: Path, pid: int, name: str, pod_uid: str) -> None:
    cid = "a" * 64
    directory = root / str(pid)
    directory.mkdir(parents=True)
    (directory / "comm").write_text(name + "\n")
    slice_uid = pod_uid.replace("-", "_")
    (directory / "cgroup").write_text(
        f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{slice_uid}.slice/"
        f"cri-containerd-{cid}.scope\n"
    )


def scrape(app: Application) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{app.server.port}/metrics", timeout=5) as r:
        return r.read().decode()


def wait_for(app: Application, needle: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = scrape(app)
        if needle in text:
            return text
        time.sleep(0.1)
    raise AssertionError(f"{needle!r} never appeared:\n{text}")


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[Application, FakeKubelet]]:
    socket = tmp_path / "pod-resources" / "kubelet.sock"
    socket.parent.mkdir()
    kubelet = FakeKubelet(socket, Behaviour(list_reply=pods_reply())).start()
    procfs = tmp_path / "proc"
    fake_proc(procfs, 10001, "python3", POD_UID)
    fake_proc(procfs, 10601, "python3", MIG_POD_UID)
    config = config_from_args(
        [
            "--simulate",
            "--web.listen-address=127.0.0.1:0",
            "--collection.interval=1s",
            f"--path.pod-resources-socket={socket}",
            "--collector.processes=true",
            f"--path.procfs={procfs}",
            "--log.level=warning",
        ]
    )
    app = Application(config)
    app.start()
    try:
        yield app, kubelet
    finally:
        app.stop()
        kubelet.stop()


def directory(app: Application) -> tuple[GpuIdentity, ...]:
    """The GPUs, once the first collection is rendered (enumeration alone comes earlier)."""
    deadline = time.monotonic() + 20
    while not app.readiness()[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert app.readiness()[0], app.readiness()[1]
    return app.nvml.directory()


def test_pod_info_and_process_series_on_metrics(node):
    app, kubelet = node
    gpus = directory(app)
    gpu0 = gpus[0].uuid
    mig = gpus[6].migs[0]  # 1g.10gb, gi 7, runs pid 10601 in the scenario
    # Allocatable first: a refresh calls List, then GetAllocatableResources, so any refresh
    # that sees the new pods (what the test waits for) also sees the new allocatable devices.
    kubelet.behaviour.allocatable_reply = allocatable_reply(
        [("nvidia.com/gpu", [g.uuid for g in gpus if not g.migs])]
    )
    kubelet.behaviour.list_reply = pods_reply(
        ("ml", "train-0", [("trainer", [("nvidia.com/gpu", [gpu0])])]),
        ("infer", "small-0", [("server", [("nvidia.com/mig-1g.10gb", [mig.uuid])])]),
        ("share", "a", [("c", [("nvidia.com/gpu.shared", [f"{gpus[1].uuid}::0"])])]),
        ("share", "b", [("c", [("nvidia.com/gpu.shared", [f"{gpus[1].uuid}::1"])])]),
    )
    text = wait_for(app, 'namespace="infer"')
    assert (
        f'nvidia_gpu_pod_info{{gpu="0",uuid="{gpu0}",mig_uuid="",namespace="ml",pod="train-0",'
        f'container="trainer"}} 1' in text
    )
    assert (
        f'nvidia_gpu_pod_info{{gpu="6",uuid="{gpus[6].uuid}",mig_uuid="{mig.uuid}",'
        f'namespace="infer",pod="small-0",container="server"}} 1' in text
    )
    assert 'namespace="share",pod="a"' in text
    assert 'namespace="share",pod="b"' in text
    assert f'nvidia_gpu_allocated{{gpu="0",uuid="{gpu0}",mig_uuid=""}} 1' in text
    assert f'nvidia_gpu_allocated{{gpu="2",uuid="{gpus[2].uuid}",mig_uuid=""}} 0' in text
    assert 'nvidia_gpu_node_allocatable_devices{resource="nvidia.com/gpu"} 6' in text
    # per-process: pid 10001 (GPU 0) and 10601 (MIG gi 7) resolve to their pods via cgroups
    text = wait_for(app, 'pid="10601"')
    assert (
        f'nvidia_gpu_process_memory_used_bytes{{gpu="0",uuid="{gpu0}",mig_uuid="",pid="10001",'
        f'process_name="python3",namespace="ml",pod="train-0",container="trainer",'
        f'pod_uid="{POD_UID}"}} {40000 * 2**20:.1f}'
        in text
        or 'pid="10001",process_name="python3",namespace="ml",pod="train-0"' in text
    )
    assert f'namespace="infer",pod="small-0",container="server",pod_uid="{MIG_POD_UID}"' in text
    assert 'nvidia_gpu_exporter_source_up{source="podresources"} 1' in text
    assert 'nvidia_gpu_exporter_source_up{source="attribution"} 1' in text


def test_kubelet_down_keeps_gpu_metrics_and_reports_itself(node):
    app, kubelet = node
    directory(app)
    kubelet.stop()
    text = wait_for(app, 'nvidia_gpu_exporter_source_up{source="podresources"} 0')
    assert 'nvidia_gpu_exporter_source_up{source="nvml"} 1' in text
    assert "nvidia_gpu_utilization_ratio{" in text
