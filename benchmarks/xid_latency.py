"""Time from writing an Xid record to seeing it on /metrics, over 200 records.

Runs exporter.app.Application on the simulated node (a100-mig) with a FIFO as the kernel log,
writes one Xid record at a time and polls /metrics until that record's count shows up. Prints
the median and 99th percentile. Budget (DESIGN.md section 8): under 100 ms.

    python benchmarks/xid_latency.py [--records 200]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter.app import Application
from exporter.config import Config, ListenAddress
from exporter.logs import configure_logging
from exporter.xid.parser import normalize_pci

COUNTER = "nvidia_gpu_xid_errors_total{"


def count_for(body: str, gpu: str, xid: str) -> float:
    for line in body.splitlines():
        if line.startswith(COUNTER) and f'gpu="{gpu}"' in line and f'xid="{xid}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200)
    args = parser.parse_args()
    configure_logging("warning", "console")
    with tempfile.TemporaryDirectory() as tmp:
        fifo = Path(tmp) / "kmsg"
        os.mkfifo(fifo)
        config = Config(
            listen=ListenAddress("127.0.0.1", 0),
            simulate="a100-mig",
            kmsg_path=str(fifo),
            pod_resources_socket="/nonexistent",
            log_level="warning",
            pod_attribution="off",
            udev=False,
        )
        app = Application(config)
        app.start()
        try:
            while len(app.nvml.directory()) < 8:
                time.sleep(0.05)
            gpu = app.nvml.directory()[1]
            pci = normalize_pci(gpu.pci_bus_id)
            conn = http.client.HTTPConnection("127.0.0.1", app.server.port, timeout=5)
            writer = os.open(fifo, os.O_WRONLY)
            latencies = []
            for seq in range(args.records):
                usec = int(time.monotonic() * 1e6)
                line = f"3,{seq},{usec},-;NVRM: Xid (PCI:{pci}): 13, pid=1, name=bench, SM\n"
                started = time.perf_counter()
                os.write(writer, line.encode())
                while True:
                    conn.request("GET", "/metrics")
                    body = conn.getresponse().read().decode()
                    if count_for(body, str(gpu.index), "13") >= seq + 1:
                        break
                latencies.append((time.perf_counter() - started) * 1000)
            os.close(writer)
            conn.close()
        finally:
            app.stop()
    latencies.sort()
    p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
    print(
        f"xid record -> /metrics latency over {len(latencies)} records: "
        f"median {statistics.median(latencies):.2f} ms, p99 {p99:.2f} ms, "
        f"max {latencies[-1]:.2f} ms (budget 100 ms)"
    )


if __name__ == "__main__":
    main()
