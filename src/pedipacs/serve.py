"""`pedipacs serve`: migrate, sweep, start the DIMSE worker processes and the HTTP server.

Several worker processes listen on the DICOM port together (SO_REUSEPORT), each with its own
database connections, because one Python interpreter cannot use both cores for ingest.
"""

from __future__ import annotations

import ctypes
import ipaddress
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
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
AUDIT_EXPORT_STOP_SECONDS = 15.0
COMMITMENT_REPORTS_STOP_SECONDS = 15.0
JOBS_STOP_SECONDS = 15.0


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
    secure_first_start(node, settings)
    workers = settings.resolved_dicom_workers
    _ensure_port_free(settings)
    _check_tls_files(settings)
    http = _http_server(node, settings)
    pool: DimseWorkers | None = None
    if workers == 1:
        node.start_dimse()
    else:
        pool = DimseWorkers(settings, workers, on_fatal=lambda: setattr(http, "should_exit", True))
        pool.start()
    audit_export = _start_audit_export(settings, node)
    commitment_reports = _start_commitment_reports(settings, node)
    jobs = _start_jobs(settings, node)
    hl7 = _hl7_server(node)
    try:
        _start_hl7(hl7, settings)
        scheme = "HTTPS" if settings.tls_enabled else "HTTP"
        log.info("%s listening on %s:%d", scheme, settings.host, settings.http_port)
        http.run()
    finally:
        hl7.stop()
        if pool is not None:
            pool.stop()
        if audit_export is not None:
            thread, stop = audit_export
            stop.set()
            thread.join(AUDIT_EXPORT_STOP_SECONDS)
        commitment_reports.stop(COMMITMENT_REPORTS_STOP_SECONDS)
        jobs.stop(JOBS_STOP_SECONDS)
        node.stop()
    if pool is not None and pool.failed:
        raise SystemExit("DICOM workers could not start; see the log above")


def _start_audit_export(settings: Settings, node: Any) -> tuple[threading.Thread, Any] | None:
    """The ATNA syslog export, when a collector is configured: a thread of the supervisor."""
    from pedipacs.security.atna import exporter_from_settings, run_in_background

    exporter = exporter_from_settings(settings, node.database)
    if exporter is None:
        return None
    log.info("audit records go to the ATNA collector %s", exporter.collector)
    return run_in_background(exporter)


def _start_commitment_reports(settings: Settings, node: Any) -> Any:
    """The Storage Commitment report worker: one thread of the supervisor, whichever DIMSE
    worker process took the request."""
    from pedipacs.dimse.commitment import start_commitment_reports

    return start_commitment_reports(
        node.commitments,
        ae_title=settings.ae_title,
        network_timeout=settings.network_timeout,
        max_pdu_size=settings.max_pdu_size,
        poll_seconds=settings.commitment_poll_seconds,
    )


def _start_jobs(settings: Settings, node: Any) -> Any:
    """The background job worker (reports sent on as ORU^R01 and stored as DICOM objects): a
    thread of the supervisor; jobs enqueued by the HTTP server start at once."""
    from pedipacs.hl7.oru import oru_handler
    from pedipacs.jobs.worker import JobWorker
    from pedipacs.reports.distribution import ORU_JOB, REPORT_OBJECT_JOB
    from pedipacs.reports.report_objects import report_object_handler

    worker = JobWorker(
        node.jobs,
        {
            ORU_JOB: oru_handler(
                node.reports,
                receiving_facility=settings.hl7_receiving_facility,
                timeout=settings.network_timeout,
            ),
            REPORT_OBJECT_JOB: report_object_handler(node.report_objects),
        },
        poll_seconds=settings.job_poll_seconds,
    )
    worker.start()
    return worker


def _hl7_server(node: Any) -> Any:
    """The HL7 v2 (MLLP) listener, a thread of the supervisor."""
    from pedipacs.hl7.mllp import MllpServer

    return MllpServer(node)


def _start_hl7(server: Any, settings: Settings) -> None:
    try:
        server.start()
    except OSError as error:
        raise SystemExit(
            f"HL7 port {settings.host}:{settings.hl7_port} (or its TLS port "
            f"{settings.hl7_tls_port}) is not available: {error.strerror or error}"
        ) from error


def secure_first_start(node: Any, settings: Settings) -> None:
    """No default password: on an empty database an administrator `admin` is created with a
    one-time password, shown once here. Until an administrator has credentials of their own,
    pedipacs listens on the loopback address only."""
    from pedipacs.model.origin import Origin

    password = node.accounts.create_first_administrator(Origin.cli("pedipacs serve"))
    if password is not None:
        banner = (
            "\n" + "=" * 72 + "\n"
            "  First start: an administrator account was created.\n"
            f"    username: admin\n    one-time password: {password}\n"
            f"  Sign in at http://127.0.0.1:{settings.http_port}/signin and choose a password.\n"
            "  This password is shown only once.\n" + "=" * 72
        )
        print(banner, file=sys.stderr, flush=True)
    if not _is_loopback(settings.host) and not node.accounts.has_ready_administrator():
        raise SystemExit(
            f"refusing to listen on {settings.host}: no administrator has a password of their "
            "own yet. Start once on 127.0.0.1, sign in as admin with the one-time password and "
            "change it (or create one with `pedipacs user add NAME --roles administrator`)."
        )


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _ensure_port_free(settings: Settings) -> None:
    """Workers share the DICOM ports with SO_REUSEPORT, which would also let them share one with
    another program already listening there. A plain bind first proves each port is ours."""
    ports = [("DICOM port", settings.dicom_port)]
    if settings.tls_enabled:
        ports.append(("DICOM TLS port", settings.dicom_tls_port))
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    for name, port in ports:
        try:
            with socket.socket(family) as probe:
                # SO_REUSEADDR: connections of a previous run in TIME_WAIT do not count; a
                # listening socket still does.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((settings.host, port))
        except OSError as error:
            raise SystemExit(
                f"{name} {settings.host}:{port} is not available: {error.strerror}"
            ) from error


def _check_tls_files(settings: Settings) -> None:
    """Stop with the file named, before any worker starts, when a TLS file is unusable."""
    from pedipacs.errors import TlsConfigurationError
    from pedipacs.security.tls import server_context

    if settings.tls_certificate_file is None or settings.tls_key_file is None:
        return
    try:
        server_context(settings.tls_certificate_file, settings.tls_key_file, settings.tls_ca_file)
    except TlsConfigurationError as error:
        raise SystemExit(str(error)) from error


def _http_server(node: object, settings: Settings) -> Any:
    import ssl

    import uvicorn

    from pedipacs.security.tls import server_context
    from pedipacs.web.app import create_app

    certificate, key = settings.tls_certificate_file, settings.tls_key_file

    def https_context(_config: object, _default: object) -> ssl.SSLContext:
        # Browsers and DICOMweb clients are not asked for a certificate: they sign in.
        assert certificate is not None and key is not None
        return server_context(certificate, key)

    config = uvicorn.Config(
        create_app(node),  # type: ignore[arg-type]
        host=settings.host,
        port=settings.http_port,
        log_level="warning",
        access_log=False,
        ssl_context_factory=https_context if settings.tls_enabled else None,
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
