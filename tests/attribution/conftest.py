"""A small node for mapping tests: whole GPUs, a MIG-mode GPU, minor numbers that differ from
NVML indexes (as they do after a GPU is hidden or replaced)."""

from __future__ import annotations

import pytest

from exporter.model import GpuIdentity, MigIdentity

GPU0 = "GPU-00000000-0000-0000-0000-000000000000"
GPU1 = "GPU-11111111-1111-1111-1111-111111111111"
GPU2 = "GPU-22222222-2222-2222-2222-222222222222"
GPU3 = "GPU-33333333-3333-3333-3333-333333333333"
MIG_A = "MIG-aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"
MIG_B = "MIG-bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb"


def node() -> tuple[GpuIdentity, ...]:
    return (
        GpuIdentity(0, GPU0, "00000000:07:00.0", minor_number=0),
        GpuIdentity(1, GPU1, "00000000:0F:00.0", minor_number=1),
        GpuIdentity(
            2,
            GPU2,
            "00000000:47:00.0",
            minor_number=2,
            migs=(
                MigIdentity(
                    7, 0, MIG_A, "1g.10gb", profile_id=19, placement_start=0, placement_size=1
                ),
                MigIdentity(
                    2, 0, MIG_B, "3g.40gb", profile_id=9, placement_start=4, placement_size=4
                ),
            ),
        ),
        GpuIdentity(3, GPU3, "00000000:4E:00.0", minor_number=5),
    )


@pytest.fixture
def directory() -> tuple[GpuIdentity, ...]:
    return node()
