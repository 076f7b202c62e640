"""The one lifecycle every background thread of the exporter shares.

Why a base class: the poller, the kernel-log follower, the NVML event waiter, the udev watcher
and the kubelet refresher each own one daemon thread that the shutdown path joins under a shared
deadline (app.py). They set `_thread` in their constructor; start and join live here once.
"""

from __future__ import annotations

import threading


class ThreadWorker:
    """Owns one daemon thread (`self._thread`, set by the subclass)."""

    _thread: threading.Thread

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` for the thread to end; False if it is still running (hung)."""
        self._thread.join(timeout)
        return not self._thread.is_alive()
