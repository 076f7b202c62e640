"""Composition root: build the sources, the publisher and the server, run until SIGTERM.

Shutdown order matters: stop accepting scrapes, let the poll thread leave NVML, then call
nvmlShutdown only if no NVML call is still in flight (a hung call must not hang the exit).
The whole sequence is bounded to well under two seconds.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING

import structlog

from exporter import __version__
from exporter.config import Config, WebConfigError
from exporter.logs import configure_logging
from exporter.malloc import cap_malloc_arenas
from exporter.metrics import WEB_CONFIG_LOADED, WEB_CONFIG_RELOAD_OK
from exporter.model import SourceHealth
from exporter.poller import Poller
from exporter.publisher import Publisher
from exporter.server import ExporterHTTPServer, ListenError
from exporter.simulate import ScenarioError, detach_log_handler, prepare_simulation
from exporter.sources.allocation import build_attribution
from exporter.sources.nvml import NvmlSource
from exporter.xid.service import XidService

if TYPE_CHECKING:
    from exporter.webconfig import WebConfigWatcher

log = structlog.get_logger(__name__)

STOP_BUDGET_SECONDS = 1.0  # joins; with interpreter exit, SIGTERM to exit stays well under 2 s


class Application:
    """The running exporter; `start()` then `stop()` (tests drive it directly)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.stop_event = threading.Event()
        library_path = None
        if config.simulate is not None:
            library_path = prepare_simulation(config.simulate)
        self.nvml = NvmlSource(library_path=library_path, capture_processes=config.processes)
        self.publisher = Publisher(
            refresh_seconds=max(1.0, min(config.interval_seconds, 5.0)),
            pynvml_version=self.nvml.pynvml_version,
        )
        self.poller = Poller(
            self.nvml,
            self.publisher,
            config.interval_seconds,
            self.stop_event,
            on_first_collection=self._after_collection,
        )
        self.attribution = build_attribution(config, self.nvml, self.publisher, self.stop_event)
        self.xid = XidService(config, self.nvml, self.publisher, self.stop_event, library_path)
        self.web: WebConfigWatcher | None = None
        if config.web_config_file:  # the TLS and auth machinery loads only when configured
            from exporter.webconfig import WebConfigWatcher

            self.web = WebConfigWatcher(config.web_config_file)
        self.server = ExporterHTTPServer(config.listen, self.publisher, self.readiness, self.web)
        self._threads: list[threading.Thread] = []

    def _after_collection(self) -> None:
        """After each NVML collection: readiness, and the Xid state's view of the directory.

        Why here and not only on the kernel-log follower's wake-ups: the directory changes in a
        collection, and a GPU seen lost must be handed to the NVML source before a reset can
        end it; tying that to the collection makes it certain instead of a race with the
        follower's wait (and lets the follower sleep longer).
        """
        self.publisher.mark_first_collection()
        self.xid.state.refresh()

    def readiness(self) -> tuple[bool, str]:
        """Ready once the first NVML collection finished and NVML answers."""
        self.publisher.refresh()  # no render thread: the first reader takes the generation
        if not self.publisher.first_collection_done():
            return False, "not ready: first collection still running"
        health = self.publisher.source_health("nvml")
        if health is None or not health.up:
            detail = health.detail if health else "no collection yet"
            return False, f"not ready: nvml is down ({detail})"
        return True, "ready"

    def _web_config_state(self, ok: bool, error: str, loaded_at: float) -> None:
        """Show the web config's reload state (a failed reload keeps the previous config)."""
        self.publisher.publish(
            "web_config",
            {
                WEB_CONFIG_RELOAD_OK.name: (((), 1.0 if ok else 0.0),),
                WEB_CONFIG_LOADED.name: (((), loaded_at),),
            },
            SourceHealth(up=ok, last_success_timestamp=loaded_at, detail=error),
        )

    def start(self) -> None:
        """Start the poll thread and the HTTP server (scrapes render: no render thread)."""
        http = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="http",
            daemon=True,
        )
        self._threads = [http]
        for thread in self._threads:
            thread.start()
        if self.web is not None:
            self.web.set_listener(self._web_config_state)
            self.web.start(
                self.stop_event, on_checked=lambda: self.publisher.heartbeat("web_config")
            )
        self.poller.start()
        self.xid.start()
        self.attribution.start()
        log.info(
            "exporter_started",
            version=__version__,
            listen=str(self.config.listen),
            port=self.server.port,
            interval_seconds=self.config.interval_seconds,
            simulate=self.config.simulate,
            tls=self.web is not None and self.web.active.config.tls is not None,
            basic_auth=self.web is not None and self.web.active.config.auth_required,
        )

    def stop(self) -> None:
        """Stop everything within STOP_BUDGET_SECONDS, however many threads hang; idempotent.

        Every thread sees the stop event at once; the joins then share one deadline, so a
        hung kubelet call, a hung NVML call and a slow TLS client cannot add up past it.
        """
        started = time.monotonic()
        deadline = started + STOP_BUDGET_SECONDS
        self.stop_event.set()
        self.server.shutdown()
        self.server.server_close()

        def left() -> float:
            return max(0.05, deadline - time.monotonic())

        if self.web is not None:
            self.web.join(min(0.5, left()))
        self.xid.stop(min(0.5, left()))
        self.attribution.stop(min(0.5, left()))
        if self.poller.join(left()):
            self.poller.close_source()
        else:
            log.warning("nvml_call_in_flight_at_exit", detail="skipping nvmlShutdown")
        if self.config.simulate is not None:
            detach_log_handler()
        log.info("exporter_stopped", seconds=round(time.monotonic() - started, 3))


def run(config: Config, unknown_env: Sequence[tuple[str, str | None]] = ()) -> int:
    """Run until SIGTERM or SIGINT; returns the process exit code.

    `unknown_env`: GPU_NODE_EXPORTER_* variables the CLI did not recognise, each with the closest
    known name, warned about once logging is set up (exporter.cli.unknown_env).
    """
    cap_malloc_arenas()  # before any thread starts
    configure_logging(config.log_level, config.log_format)
    for variable, closest in unknown_env:
        log.warning("unknown_environment_variable", variable=variable, did_you_mean=closest)
    try:
        app = Application(config)
    except ScenarioError as err:  # the scenario file broke between flag validation and start
        log.error("scenario_invalid", error=str(err))
        return 2
    except ListenError as err:  # a taken or forbidden address is bad input, like a bad flag
        log.error("listen_failed", error=str(err))
        return 2
    except OSError as err:
        log.error("startup_failed", error=str(err))
        return 1
    except WebConfigError as err:  # the file broke between flag validation and start
        log.error("web_config_invalid", error=str(err))
        return 2
    except RuntimeError as err:  # the fake driver could not be built for --simulate
        log.error("simulation_unavailable", error=str(err))
        return 1
    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal_received", signal=signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    app.start()
    # No timeout: the wait is interrupted by the signal, whose handler sets the event, so the
    # main thread costs no wake-ups while the exporter runs.
    stop_requested.wait()
    app.stop()
    return 0
