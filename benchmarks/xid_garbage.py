"""Robustness: a large garbage stream with valid Xids mixed in, through the real follower.

Writes --megabytes of random bytes, truncated and oversized records, invalid UTF-8, NUL bytes,
stray continuation lines and escaped noise into a FIFO read by KmsgFollower, with --xids valid
Xid records mixed in (each after a newline: kernel records are newline-terminated). Prints how
many Xids were counted (must equal --xids) and the resident memory before and after (must stay
flat: the follower buffers at most one record).

    python benchmarks/xid_garbage.py [--megabytes 100] [--xids 1000]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter.logs import configure_logging
from exporter.model import GpuIdentity
from exporter.publisher import Publisher
from exporter.sources.kmsg import MAX_RECORD_BYTES, KmsgFollower
from exporter.xid.state import XidState

GPUS = (GpuIdentity(0, "GPU-bench-0", "00000000:07:00.0"),)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def record(seq: int, text: str) -> bytes:
    return f"4,{seq},{int(time.monotonic() * 1e6)},-;{text}\n".encode()


def stream(size: int, xids: int, seed: int) -> Iterator[bytes]:
    rng = random.Random(seed)  # noqa: S311 - reproducible garbage, not cryptography
    per_gap = size // (xids + 1)
    for index in range(xids + 1):
        written = 0
        while written < per_gap:
            kind = rng.randrange(7)
            if kind == 0:
                chunk = rng.randbytes(rng.randrange(1, 8192))
            elif kind == 1:  # a truncated Xid record: must never count
                chunk = record(rng.randrange(10**6), "NVRM: Xid (PCI:0000:07:00): 13, x")[:30]
            elif kind == 2:  # oversized
                chunk = b"6,1,1,-;" + b"A" * rng.randrange(MAX_RECORD_BYTES, 4 * MAX_RECORD_BYTES)
            elif kind == 3:
                chunk = b"\x00" * rng.randrange(1, 1024) + b"\xff\xfe\xc3(\n"
            elif kind == 4:
                chunk = b" SUBSYSTEM=pci\n DEVICE=+pci:0000:07:00.0\n"
            elif kind == 5:
                chunk = record(rng.randrange(10**6), "NVRM: GPU4 RPC history \\xff\\x0a\\x00")
            else:
                chunk = record(rng.randrange(10**6), "usb 1-1: device descriptor read error")
            written += len(chunk)
            yield chunk
        if index < xids:
            yield b"\n" + record(index, "NVRM: Xid (PCI:0000:07:00): 31, pid=1, name=b, MMU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--xids", type=int, default=1000)
    args = parser.parse_args()
    configure_logging("error", "console")
    with tempfile.TemporaryDirectory() as tmp:
        fifo = Path(tmp) / "kmsg"
        os.mkfifo(fifo)
        stop = threading.Event()
        publisher = Publisher(process_metrics=False)
        state = XidState(publisher, lambda: GPUS)
        follower = KmsgFollower(str(fifo), state, publisher, stop)
        follower.start()
        writer = os.open(fifo, os.O_WRONLY)
        warm = stream(2 * 1024 * 1024, 0, seed=1)  # warm up allocators before the baseline
        for chunk in warm:
            os.write(writer, chunk)
        time.sleep(0.5)
        before = rss_mib()
        started = time.perf_counter()
        written = 0
        for chunk in stream(args.megabytes * 1024 * 1024, args.xids, seed=42):
            os.write(writer, chunk)
            written += len(chunk)
        deadline = time.monotonic() + 120
        while state.total_counted() < args.xids and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # let the tail drain: nothing more may be counted
        elapsed = time.perf_counter() - started
        after = rss_mib()
        os.close(writer)
        stop.set()
        follower.join(2.0)
    counted = state.total_counted()
    print(
        f"garbage stream: {written / 2**20:.1f} MiB in {elapsed:.1f} s, "
        f"records by result {follower.results()}"
    )
    print(
        f"valid Xids written {args.xids}, counted {counted} "
        f"({'OK' if counted == args.xids else 'MISMATCH'})"
    )
    print(f"RSS before {before:.1f} MiB, after {after:.1f} MiB, growth {after - before:+.1f} MiB")
    sys.exit(0 if counted == args.xids else 1)


if __name__ == "__main__":
    main()
