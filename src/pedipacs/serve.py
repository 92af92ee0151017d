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
import threading
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

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
    processes: list[BaseProcess] = []
    process: BaseProcess
    if workers == 1:
        node.start_dimse()
    else:
        context = multiprocessing.get_context("spawn")
        for number in range(workers):
            process = context.Process(
                target=run_dimse_worker, args=(settings,), name=f"dimse-{number}", daemon=True
            )
            process.start()
            processes.append(process)
    try:
        _serve_http(node, settings)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=10)
        node.stop()


def _serve_http(node: object, settings: Settings) -> None:
    import uvicorn

    from pedipacs.web.app import create_app

    app = create_app(node)  # type: ignore[arg-type]
    log.info("HTTP listening on %s:%d", settings.host, settings.http_port)
    uvicorn.run(
        app, host=settings.host, port=settings.http_port, log_level="warning", access_log=False
    )


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
    """If the supervisor is killed (even with SIGKILL), its workers must not keep the port."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        log.debug("prctl unavailable; workers will exit when the parent asks")
