"""The kubelet pod-resources client: which container holds which device, refreshed in background.

Why a background refresher with a TTL: the kubelet can be slow, restarting, rate-limiting
(ResourceExhausted, 100 qps shared by every client on the node) or absent. Nothing that serves
a scrape or runs an NVML collection waits on it: this thread calls `List` (and
`GetAllocatableResources` where the kubelet has it) with a deadline on every call, stores the
last good answer, and `view()` hands it out for `ttl_seconds`. A kubelet that stays broken
longer than the TTL makes attribution disappear (stale owners are worse than none); the
source's health says why, and the next good answer brings attribution back by itself.

This is the only module that imports grpc (about 12 MB of resident memory), and the
application imports it only when attribution is on. One channel serves the process lifetime:
gRPC reconnects to the socket path by itself, also when a restarted kubelet recreates it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import structlog
from google.protobuf.message import Message

from exporter.attribution import (
    ClaimDevice,
    ContainerAllocation,
    DeviceGroup,
    KubeletView,
    PodAllocation,
)
from exporter.model import SourceHealth
from exporter.publisher import Publisher
from exporter.sources._pb import podresources_v1_pb2 as pb
from exporter.sources._pb import podresources_v1_pb2_grpc as pb_grpc
from exporter.worker import ThreadWorker

log = structlog.get_logger(__name__)

SOURCE_NAME = "podresources"
DEFAULT_DEADLINE_SECONDS = 2.0
# gRPC's default is 4 MiB; busy nodes answer List with 5 MB and more (dcgm-exporter#509).
MAX_RECEIVE_BYTES = 64 * 1024 * 1024
BACKOFF_MAX_SECONDS = 60.0
ALLOCATABLE_REPROBE_SECONDS = 300.0
_STOP_POLL_SECONDS = 0.05


def _channel_options() -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
        # Reconnect quickly after a kubelet restart (gRPC's own default backs off to 120 s).
        ("grpc.initial_reconnect_backoff_ms", 500),
        ("grpc.min_reconnect_backoff_ms", 500),
        ("grpc.max_reconnect_backoff_ms", 5000),
        ("grpc.enable_retries", 0),
        ("grpc.enable_http_proxy", 0),
    ]


def to_view(
    listed: pb.ListPodResourcesResponse, allocatable: pb.AllocatableResourcesResponse | None
) -> KubeletView:
    """Copy the protobuf answer into plain frozen values (pure; tested without a socket)."""
    pods = tuple(
        PodAllocation(
            namespace=pod.namespace,
            name=pod.name,
            containers=tuple(
                ContainerAllocation(
                    name=container.name,
                    devices=tuple(
                        DeviceGroup(group.resource_name, tuple(group.device_ids))
                        for group in container.devices
                    ),
                    claims=tuple(
                        ClaimDevice(
                            claim.driver_name, claim.pool_name, claim.device_name, claim.share_id
                        )
                        for dynamic in container.dynamic_resources
                        for claim in dynamic.claim_resources
                    ),
                )
                for container in pod.containers
            ),
        )
        for pod in listed.pod_resources
    )
    groups = None
    if allocatable is not None:
        groups = tuple(
            DeviceGroup(group.resource_name, tuple(group.device_ids))
            for group in allocatable.devices
        )
    return KubeletView(pods=pods, allocatable=groups)


class PodResourcesSource(ThreadWorker):
    """Refreshes the kubelet view every `refresh_seconds` in its own thread."""

    name = SOURCE_NAME

    def __init__(
        self,
        socket_path: str,
        publisher: Publisher,
        *,
        stop: threading.Event,
        refresh_seconds: float = 10.0,
        ttl_seconds: float = 60.0,
        deadline_seconds: float = DEFAULT_DEADLINE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.socket_path = socket_path
        self._publisher = publisher
        self._stop = stop
        self._refresh = refresh_seconds
        self._ttl = ttl_seconds
        self._deadline = min(deadline_seconds, DEFAULT_DEADLINE_SECONDS)
        self._clock = clock
        self._channel = grpc.insecure_channel(f"unix://{socket_path}", options=_channel_options())
        self._stub = pb_grpc.PodResourcesListerStub(self._channel)
        self._view: tuple[float, KubeletView] | None = None
        self._allocatable_missing_since: float | None = None
        self._collections = 0
        self._errors = 0
        self._cpu_seconds = 0.0
        self._last_success: float | None = None
        self._backoff = refresh_seconds
        self._thread = threading.Thread(target=self._run, name="podresources", daemon=True)
        publisher.register(SOURCE_NAME, stall_after=3 * self._deadline + 1.0)

    # -- reading -------------------------------------------------------------------------

    def view(self) -> KubeletView | None:
        """The last good kubelet view, or None if there is none younger than the TTL."""
        held = self._view
        if held is None or self._clock() - held[0] > self._ttl:
            return None
        return held[1]

    # -- lifecycle (start/join from ThreadWorker; a call in flight is cancelled within ~50 ms
    # of the stop event, so join returns promptly) -----------------------------------------

    def close(self) -> None:
        """Close the channel (once, at exit)."""
        self._channel.close()

    # -- the refresh ---------------------------------------------------------------------

    def _call(self, method: grpc.UnaryUnaryMultiCallable, request: Message) -> Message:
        """One unary call with the deadline, abandoned at once when the exporter stops."""
        future = method.future(request, timeout=self._deadline)
        while not future.done():
            if self._stop.wait(_STOP_POLL_SECONDS):
                future.cancel()
                raise InterruptedError("stopping")
        result: Message = future.result()
        return result

    def _want_allocatable(self) -> bool:
        missing = self._allocatable_missing_since
        return missing is None or self._clock() - missing > ALLOCATABLE_REPROBE_SECONDS

    def refresh_once(self) -> float:
        """One refresh: call the kubelet, store the view, publish health; returns the wait."""
        self._publisher.begin(SOURCE_NAME)
        started = time.perf_counter()
        cpu_started = time.thread_time()
        self._collections += 1
        detail = ""
        wait = self._refresh
        try:
            if not os.path.exists(self.socket_path):
                raise FileNotFoundError(f"socket {self.socket_path} does not exist")
            listed = self._call(self._stub.List, pb.ListPodResourcesRequest())
            allocatable = None
            if self._want_allocatable():
                try:
                    allocatable = self._call(
                        self._stub.GetAllocatableResources, pb.AllocatableResourcesRequest()
                    )
                    self._allocatable_missing_since = None
                except grpc.RpcError as err:
                    if err.code() != grpc.StatusCode.UNIMPLEMENTED:
                        raise
                    self._allocatable_missing_since = self._clock()
                    log.info("kubelet_allocatable_unimplemented")
            self._view = (self._clock(), to_view(listed, allocatable))
            self._last_success = time.time()
            self._backoff = self._refresh
        except InterruptedError:
            return 0.0
        except grpc.RpcError as err:
            code = err.code()
            detail = f"{getattr(code, 'name', code)}: {err.details()}"
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                # The kubelet's token bucket is shared by every client on the node: back off.
                self._backoff = min(self._backoff * 2, BACKOFF_MAX_SECONDS)
                wait = self._backoff
        except Exception as err:
            detail = f"{type(err).__name__}: {err}"
        cpu = time.thread_time() - cpu_started
        self._cpu_seconds += cpu
        duration = time.perf_counter() - started
        if detail:
            self._errors += 1
            log.warning("kubelet_refresh_failed", error=detail, retry_in_seconds=wait)
        self._publisher.publish(
            SOURCE_NAME,
            {},
            SourceHealth(
                up=not detail,
                duration_seconds=duration,
                last_success_timestamp=self._last_success,
                collections=self._collections,
                errors=self._errors,
                cpu_seconds=self._cpu_seconds,
                detail=detail,
            ),
        )
        return max(0.0, wait - duration)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.refresh_once()
            except Exception:
                log.exception("podresources_loop_error")
                wait = self._refresh
            self._stop.wait(wait)
