"""ThreadWorker: join reports whether the thread ended within the timeout."""

from __future__ import annotations

import threading

from exporter.worker import ThreadWorker


class Blocked(ThreadWorker):
    def __init__(self) -> None:
        self.release = threading.Event()
        self._thread = threading.Thread(target=self.release.wait, daemon=True)


def test_join_is_false_while_the_thread_runs_and_true_once_it_ended() -> None:
    worker = Blocked()
    worker.start()
    assert worker.join(0.05) is False  # still blocked: the shutdown path must know
    worker.release.set()
    assert worker.join(5.0) is True
