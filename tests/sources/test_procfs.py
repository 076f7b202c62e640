"""cgroup formats of every runtime and driver map to the right pod UID and container id."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exporter.attribution import ProcessOwner
from exporter.sources.procfs import ProcReader, parse_cgroup

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "procfs"


@pytest.mark.parametrize(
    ("pid", "name", "pod_uid", "container_id", "runtime"),
    [
        (1001, "python", "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b", "a" * 64, "containerd"),
        (1002, "vllm", "11111111-2222-3333-4444-555555555555", "b" * 64, "cri-o"),
        (1003, "tritonserver", "22222222-3333-4444-5555-666666666666", "c" * 64, ""),
        (1004, "pt_main_thread", "33333333-4444-5555-6666-777777777777", "d" * 64, "docker"),
        (1005, "nccl-tests", "44444444-5555-6666-7777-888888888888", "e" * 64, "containerd"),
        (1006, "Xorg", "", "", ""),
        (
            1007,
            "comm-truncated-name-is-longer",
            "55555555-6666-7777-8888-999999999999",
            "f" * 64,
            "",
        ),
    ],
)
def test_fixture_processes(pid, name, pod_uid, container_id, runtime):
    reader = ProcReader(str(FIXTURES))
    assert reader.read(pid) == ProcessOwner(name, pod_uid, container_id)
    owner = parse_cgroup((FIXTURES / str(pid) / "cgroup").read_text())
    assert (owner.pod_uid, owner.container_id, owner.runtime) == (pod_uid, container_id, runtime)


def test_pod_level_cgroup_without_container():
    owner = parse_cgroup(
        "0::/kubepods.slice/kubepods-pod12345678_1234_1234_1234_123456789abc.slice\n"
    )
    assert owner.pod_uid == "12345678-1234-1234-1234-123456789abc"
    assert owner.container_id == ""


@pytest.mark.parametrize("text", ["", "garbage", "\x00\xff::", "0::/\n", "1:2\n" * 1000])
def test_garbage_cgroup_names_nothing(text):
    owner = parse_cgroup(text)
    assert (owner.pod_uid, owner.container_id) == ("", "")


def test_exited_process_is_none_not_an_error():
    reader = ProcReader(str(FIXTURES))
    assert reader.read(999999) is None
    assert reader.read_many({1006, 999999}) == {1006: ProcessOwner("Xorg")}


def test_reads_the_real_proc_for_this_process():
    owner = ProcReader("/proc").read(os.getpid())
    assert owner is not None
    assert owner.name.startswith(Path(f"/proc/{os.getpid()}/comm").read_text().strip())


def test_process_that_exits_between_comm_and_cgroup(tmp_path):
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "comm").write_text("short\n")  # no cgroup file: it vanished
    assert ProcReader(str(tmp_path)).read(42) == ProcessOwner("short")
