"""Start `pedipacs serve` as a real process and wait until it answers C-ECHO."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

READY_TIMEOUT = 60.0
AE_TITLE = "PEDIPACS"


# Listening ports for the servers the tests start come from below the kernel's ephemeral range
# (32768-60999 on Linux): a port picked there could be taken by any outgoing connection (a
# database client, an HTTP poll) in the seconds before the server binds it.
TEST_PORTS = range(20000, 32000)
_picked_ports: set[int] = set()


def free_port() -> int:
    """A port nobody listens on now, never handed out before in this test run."""
    if len(_picked_ports) > len(TEST_PORTS) // 2:
        _picked_ports.clear()  # a long run: ports of servers long stopped may serve again
    candidates = [port for port in TEST_PORTS if port not in _picked_ports]
    for port in random.sample(candidates, len(candidates)):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _picked_ports.add(port)
        return port
    raise RuntimeError(f"no free port in {TEST_PORTS} for the tests")


@dataclass
class RunningServer:
    data_dir: Path
    database_url: str
    dicom_port: int
    http_port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    ae_title: str = AE_TITLE
    # A bearer token of the test account `tester` (every role); see `sign_in_tester`.
    token: str = ""

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def _signed(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {**kwargs, "headers": {**self.auth_headers, **(kwargs.get("headers") or {})}}

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        """An HTTP GET as `tester` (bearer token); `headers` given here are added."""
        return httpx.get(url, **self._signed(kwargs))

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(url, **self._signed(kwargs))

    def stream(self, method: str, url: str, **kwargs: Any) -> Any:
        return httpx.stream(method, url, **self._signed(kwargs))

    def register_peer(
        self, ae_title: str, allow: str, *, host: str = "127.0.0.1", port: int = 104
    ) -> None:
        """`pedipacs peer add` on this server's database, as an operator would; `host` and
        `port` are where pedipacs reaches it (C-MOVE, Storage Commitment reports)."""
        env = {
            **os.environ,
            "PEDIPACS_DATA_DIR": str(self.data_dir),
            "PEDIPACS_DATABASE_URL": self.database_url,
        }
        added = subprocess.run(
            [sys.executable, "-m", "pedipacs", "peer", "add", ae_title.lower(), "--aet",
             ae_title, "--host", host, "--port", str(port), "--allow", allow],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr

    def security_alerts(self) -> list[str]:
        """The details of every security alert (110113) on this server's audit trail."""
        from sqlalchemy import create_engine, select

        from pedipacs.db.tables import AuditEvent

        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                return [
                    str(detail)
                    for detail in connection.scalars(
                        select(AuditEvent.detail).where(AuditEvent.event_id == "110113")
                    )
                ]
        finally:
            engine.dispose()

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole process group: the supervisor and its DIMSE workers."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> RunningServer:
        self.stop()
        return start_server(
            self.data_dir,
            self.database_url,
            dicom_port=self.dicom_port,
            http_port=self.http_port,
            extra_env=self.env,
        )


def start_server(
    data_dir: Path,
    database_url: str,
    *,
    dicom_port: int | None = None,
    http_port: int | None = None,
    extra_env: dict[str, str] | None = None,
) -> RunningServer:
    data_dir.mkdir(parents=True, exist_ok=True)
    dicom_port = dicom_port or free_port()
    http_port = http_port or free_port()
    env = {
        **os.environ,
        "PEDIPACS_DATA_DIR": str(data_dir),
        "PEDIPACS_DATABASE_URL": database_url,
        "PEDIPACS_DICOM_PORT": str(dicom_port),
        "PEDIPACS_HTTP_PORT": str(http_port),
        "PEDIPACS_ORPHAN_GRACE_SECONDS": "0",
        "PEDIPACS_DICOM_WORKERS": "2",
        # DCMTK tools call as STORESCU, FINDSCU, ...: tests about other things need not
        # register them (tests/integration/dimse/test_peer_access.py covers the refusal).
        "PEDIPACS_ACCEPT_UNKNOWN_CALLING_AES": "true",
        # The HL7 listeners on free ports too: never the fixed 2575/2576 another run holds.
        "PEDIPACS_HL7_PORT": str(free_port()),
        "PEDIPACS_HL7_TLS_PORT": str(free_port()),
        **(extra_env or {}),
    }
    log_path = data_dir / f"server-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "pedipacs", "serve"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so kill() reaches the workers
        )
    running = RunningServer(
        data_dir=data_dir,
        database_url=database_url,
        dicom_port=dicom_port,
        http_port=http_port,
        process=process,
        log_path=log_path,
        env=extra_env or {},
    )
    _wait_until_ready(running)
    try:
        running.token = tester_token(database_url)
    except BaseException:
        running.stop()  # never leave a server behind a failed start
        raise
    return running


TESTER = "tester"
TESTER_PASSWORD = "correct horse battery staple"


def tester_token(database_url: str) -> str:
    """A bearer token for `tester`, an account holding every role, created on first use:
    tests about other things than permissions call pedipacs as a fully entitled user."""
    from pedipacs.db.engine import Database
    from pedipacs.model.origin import Origin
    from pedipacs.security.accounts import AccountExistsError, AccountService
    from pedipacs.security.permissions import Role

    database = Database(database_url)
    try:
        accounts = AccountService(database)
        with contextlib.suppress(AccountExistsError):
            accounts.create(TESTER, frozenset(Role), Origin.cli("tests"), password=TESTER_PASSWORD)
        return accounts.issue_token(TESTER, "tests", 1, Origin.cli("tests"))
    finally:
        database.dispose()


def _wait_until_ready(running: RunningServer) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            raise RuntimeError(f"pedipacs exited early:\n{running.log()}")
        echo = subprocess.run(
            ["echoscu", "-to", "2", "-aec", AE_TITLE, "127.0.0.1", str(running.dicom_port)],
            capture_output=True,
            text=True,
            check=False,
        )
        # A server that refuses unknown calling AEs answers too: with an A-ASSOCIATE-RJ.
        answered = echo.returncode == 0 or "Association Rejected" in echo.stdout + echo.stderr
        if answered and _http_ready(running.http_port):
            return
        time.sleep(0.1)  # polling interval of a readiness probe, not a wait for an outcome
    running.kill()
    raise RuntimeError(f"pedipacs did not become ready:\n{running.log()}")


def _http_ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
