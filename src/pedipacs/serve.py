"""`pedipacs serve`: migrate, sweep, start the DIMSE worker processes and the HTTP server.

Several worker processes listen on the DICOM port together (SO_REUSEPORT), each with its own
database connections, because one Python interpreter cannot use both cores for ingest.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

from pedipacs.config import Settings

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s [%(processName)s] %(name)s: %(message)s",
    )
    # pynetdicom logs every PDU at INFO; keep its warnings only.
    logging.captureWarnings(True)
    quiet = max(logging.WARNING, logging.getLogger().level)
    logging.getLogger("pynetdicom").setLevel(quiet)
    logging.getLogger("alembic").setLevel(quiet)


def prepare_metrics_dir(settings: Settings) -> Path:
    """prometheus_client's multi-process mode needs a fresh folder named before it is imported."""
    metrics_dir = (settings.data_dir / "run" / "metrics").resolve()
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    return metrics_dir


def serve(settings: Settings) -> None:
    configure_logging(settings.log_level)
    metrics_dir = prepare_metrics_dir(settings)
    from pedipacs.node import Node  # imported after the metrics folder is set

    node = Node.from_settings(settings, metrics_dir=metrics_dir)
    node.migrate()
    report = node.sweep_orphans()
    log.info(
        "storage checked: %d blob(s), %d orphan(s) swept", report.blobs_seen, report.orphans_removed
    )
    workers = settings.resolved_dicom_workers
    _ensure_port_free(settings.host, settings.dicom_port)
    http = _http_server(node, settings)
    pool: DimseWorkers | None = None
    if workers == 1:
        node.start_dimse()
    else:
        pool = DimseWorkers(settings, workers, on_fatal=lambda: setattr(http, "should_exit", True))
        pool.start()
    try:
        log.info("HTTP listening on %s:%d", settings.host, settings.http_port)
        http.run()
    finally:
        if pool is not None:
            pool.stop()
        node.stop()
    if pool is not None and pool.failed:
        raise SystemExit("DICOM workers could not start; see the log above")


def _ensure_port_free(host: str, port: int) -> None:
    """Workers share the DICOM port with SO_REUSEPORT, which would also let them share it with
    another program already listening there. A plain bind first proves the port is ours."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            # SO_REUSEADDR: connections of a previous run in TIME_WAIT do not count; a
            # listening socket still does.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as error:
        raise SystemExit(f"DICOM port {host}:{port} is not available: {error.strerror}") from error


def _http_server(node: object, settings: Settings) -> Any:
    import uvicorn

    from pedipacs.web.app import create_app

    config = uvicorn.Config(
        create_app(node),  # type: ignore[arg-type]
        host=settings.host,
        port=settings.http_port,
        log_level="warning",
        access_log=False,
    )
    return uvicorn.Server(config)


class DimseWorkers:
    """Keeps the DIMSE worker processes running.

    A worker that dies is restarted. Workers that keep dying right after they start (the port
    is taken, the database unreachable) stop the node instead of looping forever.
    """

    QUICK_DEATH_SECONDS = 10.0
    MAX_QUICK_DEATHS = 3

    def __init__(
        self,
        settings: Settings,
        count: int,
        on_fatal: Callable[[], None],
        *,
        forget_metrics: bool = True,
    ) -> None:
        self._settings = settings
        self._forget_metrics = forget_metrics
        self._context = multiprocessing.get_context("spawn")
        self._slots: list[tuple[BaseProcess, float]] = []
        self._count = count
        self._on_fatal = on_fatal
        self._stopping = threading.Event()
        self._quick_deaths = 0
        self.failed = False
        self._watcher = threading.Thread(target=self._watch, name="dimse-watch", daemon=True)

    def start(self) -> None:
        self._slots = [self._spawn(number) for number in range(self._count)]
        self._watcher.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._watcher.is_alive():
            self._watcher.join(timeout=5)
        for process, _ in self._slots:
            process.terminate()
        for process, _ in self._slots:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()

    def _spawn(self, number: int) -> tuple[BaseProcess, float]:
        process = self._context.Process(
            target=run_dimse_worker,
            args=(self._settings,),
            name=f"dimse-{number}",
            daemon=True,
        )
        process.start()
        return process, time.monotonic()

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            for number, (process, started) in enumerate(self._slots):
                if process.is_alive() or self._stopping.is_set():
                    continue
                if not self._replace(number, process, time.monotonic() - started):
                    self.failed = True
                    self._on_fatal()
                    return

    def _replace(self, number: int, process: BaseProcess, lived: float) -> bool:
        """Restart a dead worker; False when workers keep dying as they start."""
        if process.pid is not None and self._forget_metrics:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(process.pid)  # type: ignore[no-untyped-call]
        log.error(
            "DICOM worker %s exited (code %s) after %.1f s", process.name, process.exitcode, lived
        )
        is_quick = lived < self.QUICK_DEATH_SECONDS
        self._quick_deaths = self._quick_deaths + 1 if is_quick else 0
        if self._quick_deaths >= self.MAX_QUICK_DEATHS:
            log.critical("DICOM workers keep failing at start-up: stopping pedipacs")
            return False
        self._slots[number] = self._spawn(number)
        return True


def run_dimse_worker(settings: Settings) -> None:
    """Entry point of one DIMSE worker process."""
    _die_with_parent()
    configure_logging(settings.log_level)
    from pedipacs.node import Node

    node = Node.from_settings(settings)
    stopped = threading.Event()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when workers stop
    node.start_dimse()
    stopped.wait()
    node.stop()


def _die_with_parent() -> None:
    """If the supervisor is killed (even with SIGKILL), its workers must not keep the port.

    PR_SET_PDEATHSIG only covers a death after the call; a supervisor killed while this
    worker was still starting (importing, unpickling settings) shows as a changed parent.
    """
    parent = multiprocessing.parent_process()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        log.debug("prctl unavailable; workers will exit when the parent asks")
    if parent is not None and os.getppid() != parent.pid:
        os._exit(1)  # orphaned before the request took effect: never serve without a supervisor
