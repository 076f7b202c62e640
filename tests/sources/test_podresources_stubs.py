"""The committed stubs are what scripts/gen_proto.py generates from proto/ (CI check)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_regenerating_the_stubs_changes_nothing():
    if importlib.util.find_spec("grpc_tools") is None:
        pytest.skip("LOUD: grpcio-tools is not installed; cannot verify the generated stubs")
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gen_proto
    finally:
        sys.path.pop(0)
    assert gen_proto.main(["--check"]) == 0


def test_the_proto_keeps_the_public_field_numbers():
    from exporter.sources._pb import podresources_v1_pb2 as pb

    def numbers(message) -> dict[str, int]:
        return {f.name: f.number for f in message.DESCRIPTOR.fields}

    assert numbers(pb.ListPodResourcesResponse) == {"pod_resources": 1}
    assert numbers(pb.PodResources) == {"name": 1, "namespace": 2, "containers": 3}
    assert numbers(pb.ContainerResources) == {"name": 1, "devices": 2, "dynamic_resources": 5}
    assert numbers(pb.ContainerDevices) == {"resource_name": 1, "device_ids": 2}
    assert numbers(pb.DynamicResource) == {
        "claim_name": 2,
        "claim_namespace": 3,
        "claim_resources": 4,
    }
    assert numbers(pb.ClaimResource) == {
        "driver_name": 2,
        "pool_name": 3,
        "device_name": 4,
        "share_id": 5,
    }
    assert numbers(pb.AllocatableResourcesResponse) == {"devices": 1}
    assert pb.DESCRIPTOR.package == "v1"
