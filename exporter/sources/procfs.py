"""Who runs a GPU process: its name and pod/container, read from /proc/<pid>/{comm,cgroup}.

NVML lists host pids. The kubelet names pods, not pids. The link is the process's cgroup path,
which every container runtime builds from the pod UID and the container id:

- cgroup v2, systemd driver: `0::/kubepods.slice/kubepods-burstable.slice/
  kubepods-burstable-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope`
  (CRI-O: `crio-<id>.scope`, Docker/cri-dockerd: `docker-<id>.scope`)
- cgroupfs driver (v1 or v2): `/kubepods/burstable/pod<uid>/<id>`
- containerd's systemd form under its own slice: `...:cri-containerd:<id>`
- cgroup v1 lists one line per hierarchy (`12:memory:/kubepods/...`); any line that names a pod
  is used.

Why not psutil for the name: psutil reads /proc through the process-global `PROCFS_PATH`, and
the exporter's own process metrics need the container's /proc while this reader may need the
host's (`--path.procfs=/host/proc`). Reading `comm` directly keeps the two apart.

A process that exits between NVML's list and this read is not an error: `read()` returns None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from exporter.attribution import ProcessOwner

COMM_MAX = 15  # the kernel truncates comm to 15 characters (TASK_COMM_LEN - 1)
MAX_READ = 64 * 1024  # a cgroup file is a few hundred bytes; never read unbounded

_POD_UID = re.compile(
    r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
)
_CONTAINER = re.compile(
    r"(?:^|[/:-])(?:(cri-containerd|crio|docker|containerd)[-:])?([0-9a-f]{64})(?:\.scope)?$"
)
_RUNTIMES = {
    "cri-containerd": "containerd",
    "containerd": "containerd",
    "crio": "cri-o",
    "docker": "docker",
}


@dataclass(frozen=True, slots=True)
class CgroupOwner:
    """The pod UID and container id a cgroup path names ("" where it names none)."""

    pod_uid: str = ""
    container_id: str = ""
    runtime: str = ""


def parse_cgroup(text: str) -> CgroupOwner:
    """Parse /proc/<pid>/cgroup (v1 or v2) into the pod UID and container id it names."""
    best = CgroupOwner()
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        path = parts[2].strip()
        uid_match = _POD_UID.search(path)
        if uid_match is None:
            continue
        last = path.rstrip("/").rsplit("/", 1)[-1]
        container = _CONTAINER.search(last)
        owner = CgroupOwner(
            pod_uid=uid_match.group(1).replace("_", "-"),
            container_id=container.group(2) if container else "",
            runtime=_RUNTIMES.get(container.group(1) or "", "") if container else "",
        )
        if owner.container_id:
            return owner
        if not best.pod_uid:
            best = owner  # a pod-level cgroup (e.g. the pause process); keep looking
    return best


class ProcReader:
    """Reads process owners under a procfs root (`/proc`, or the host's mounted elsewhere)."""

    def __init__(self, root: str = "/proc") -> None:
        self._root = Path(root)

    def _read(self, pid: int, name: str) -> str | None:
        try:
            with (self._root / str(pid) / name).open("rb") as handle:
                return handle.read(MAX_READ).decode("utf-8", "replace")
        except OSError:  # ENOENT (exited), ESRCH, EACCES: no owner, not an error
            return None

    def name(self, pid: int) -> str | None:
        """The process name: `comm`, or argv[0]'s basename when comm is truncated."""
        comm = self._read(pid, "comm")
        if comm is None:
            return None
        comm = comm.rstrip("\n")
        if len(comm) >= COMM_MAX:
            cmdline = self._read(pid, "cmdline")
            if cmdline:
                argv0 = cmdline.split("\0", 1)[0].rsplit("/", 1)[-1]
                if argv0.startswith(comm):
                    return argv0
        return comm

    def read(self, pid: int) -> ProcessOwner | None:
        """The owner of `pid`, or None if the process is gone or unreadable."""
        name = self.name(pid)
        if name is None:
            return None
        cgroup = self._read(pid, "cgroup")
        owner = parse_cgroup(cgroup) if cgroup is not None else CgroupOwner()
        return ProcessOwner(name=name, pod_uid=owner.pod_uid, container_id=owner.container_id)

    def read_many(self, pids: set[int]) -> dict[int, ProcessOwner]:
        """Owners of every pid still alive."""
        owners: dict[int, ProcessOwner] = {}
        for pid in sorted(pids):
            owner = self.read(pid)
            if owner is not None:
                owners[pid] = owner
        return owners
