"""A fake kubelet: a real gRPC server on a unix socket serving v1.PodResourcesLister.

Why raw bytes handlers: the server must also answer what a real kubelet's clients meet in the
field (garbage bytes, fields our minimal proto does not declare, 6 MB replies, hangs,
ResourceExhausted), so it serialises nothing itself; scenarios hand it protobuf messages or
bytes. Used by tests/sources/test_podresources*.py and benchmarks/kubelet_hang.py.
"""

from __future__ import annotations

import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from exporter.sources._pb import podresources_v1_pb2 as pb

MAX_MESSAGE = 64 * 1024 * 1024


@dataclass
class Behaviour:
    """What the next calls get; tests change it while the server runs."""

    list_reply: bytes = b""
    allocatable_reply: bytes | None = b""  # None: UNIMPLEMENTED (an old kubelet)
    delay_seconds: float = 0.0
    hang: threading.Event | None = None  # block until set (or the server stops)
    error: grpc.StatusCode | None = None
    calls: dict[str, int] = field(default_factory=dict)


def pods_reply(*pods: tuple[str, str, list[tuple[str, list[tuple[str, list[str]]]]]]) -> bytes:
    """Serialise pods given as (namespace, name, [(container, [(resource, [ids])])])."""
    message = pb.ListPodResourcesResponse()
    for namespace, name, containers in pods:
        pod = message.pod_resources.add(namespace=namespace, name=name)
        for container_name, groups in containers:
            container = pod.containers.add(name=container_name)
            for resource, ids in groups:
                container.devices.add(resource_name=resource, device_ids=ids)
    return message.SerializeToString()


def allocatable_reply(groups: list[tuple[str, list[str]]]) -> bytes:
    message = pb.AllocatableResourcesResponse()
    for resource, ids in groups:
        message.devices.add(resource_name=resource, device_ids=ids)
    return message.SerializeToString()


class FakeKubelet:
    """Serves `behaviour` on `socket_path` until `stop()`."""

    def __init__(self, socket_path: str | Path, behaviour: Behaviour | None = None) -> None:
        self.socket_path = str(socket_path)
        self.behaviour = behaviour or Behaviour()
        self._server: grpc.Server | None = None
        self._stopping = threading.Event()

    def _handle(self, method: str, reply: bytes | None, context: grpc.ServicerContext) -> bytes:
        b = self.behaviour
        b.calls[method] = b.calls.get(method, 0) + 1
        if b.hang is not None:
            while not b.hang.wait(0.05) and not self._stopping.is_set() and context.is_active():
                pass
        if b.delay_seconds:
            time.sleep(b.delay_seconds)
        if b.error is not None:
            context.abort(
                b.error,
                "rejected by rate limit"
                if b.error == grpc.StatusCode.RESOURCE_EXHAUSTED
                else "fake error",
            )
        if reply is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "unknown method")
        return reply or b""

    def start(self) -> FakeKubelet:
        self._stopping.clear()
        identity = lambda data: data  # noqa: E731 - bytes in, bytes out
        handlers = {
            "List": grpc.unary_unary_rpc_method_handler(
                lambda _req, ctx: self._handle("List", self.behaviour.list_reply, ctx),
                request_deserializer=identity,
                response_serializer=identity,
            ),
            "GetAllocatableResources": grpc.unary_unary_rpc_method_handler(
                lambda _req, ctx: self._handle(
                    "GetAllocatableResources", self.behaviour.allocatable_reply, ctx
                ),
                request_deserializer=identity,
                response_serializer=identity,
            ),
        }
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4),
            options=[("grpc.max_send_message_length", MAX_MESSAGE)],
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("v1.PodResourcesLister", handlers),)
        )
        server.add_insecure_port(f"unix:{self.socket_path}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.stop(grace=None).wait(2)
            self._server = None
        Path(self.socket_path).unlink(missing_ok=True)
