"""The servers under test: pedipacs, Orthanc and DCMTK storescp, each a fresh process tree.

Each server runs in its own session (process group) with its own data folder, is ready when
`echoscu` succeeds (polled, never a fixed sleep), and is stopped, with everything it forked, when
its `with` block ends, whatever the reason. Its memory is the sum of the resident set sizes of
the processes of its session, read from /proc.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx
from prometheus_client.parser import text_string_to_metric_families

LOOPBACK = "127.0.0.1"
SCU_AE_TITLE = "BENCHSCU"
READY_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
POLL_INTERVAL = 0.1  # between readiness probes
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# DCMTK (storescu, getscu, storescp and the DCMTK inside Orthanc) reads this to disable Nagle.
NODELAY_ENV = {"TCP_NODELAY": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def tool_environment() -> dict[str, str]:
    return {**os.environ, **NODELAY_ENV}


def echo(ae_title: str, port: int) -> bool:
    result = subprocess.run(
        [
            "echoscu",
            "-to",
            "2",
            "-ta",
            "5",
            "-aet",
            SCU_AE_TITLE,
            "-aec",
            ae_title,
            LOOPBACK,
            str(port),
        ],
        capture_output=True,
        env=tool_environment(),
        check=False,
    )
    return result.returncode == 0


class Server(ABC):
    """A server process tree started in `workdir`, listening for DICOM on `dicom_port`."""

    name: str
    ae_title: str
    supports_queries: bool = True

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.dicom_port = free_port()
        self.http_port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @abstractmethod
    def command(self) -> list[str]: ...

    @abstractmethod
    def stored_count(self) -> int:
        """How many instances the server says it has stored."""

    def environment(self) -> dict[str, str]:
        return tool_environment()

    def prepare(self) -> None:  # noqa: B027 (optional hook)
        """Write configuration files before the process starts."""

    def is_ready(self) -> bool:
        return echo(self.ae_title, self.dicom_port)

    @property
    def http_headers(self) -> dict[str, str]:
        """Headers every HTTP request to this server carries (its credentials, if any)."""
        return {}

    def browser_cookies(self) -> list[dict[str, str]]:
        """Cookies a browser needs to open the server's pages (a signed-in session)."""
        return []

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self.command(),
                cwd=self.workdir,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: stop() reaches every child
            )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early; see {self.log_path}")
            if self.is_ready():
                return
            time.sleep(POLL_INTERVAL)  # interval between probes, not a wait for an outcome
        raise RuntimeError(f"{self.name} was not ready after {READY_TIMEOUT:.0f} s")

    def stop(self) -> None:
        process = self._process
        if process is None:
            return
        self._process = None
        self._signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._signal_group(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)
        # Children that outlive the leader (storescp --fork) go with the group.
        self._signal_group(process.pid, signal.SIGKILL)

    @staticmethod
    def _signal_group(group: int, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signum)

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def session(self) -> int | None:
        """The session (and process group) id of the server's processes, while it runs."""
        return None if self._process is None else self._process.pid

    def rss_bytes(self) -> int:
        """Resident memory of every process in the server's session."""
        return sum(_rss(pid) for pid in session_members(self.session))

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class Pedipacs(Server):
    """`pedipacs serve` on SQLite with the default number of DIMSE workers (one per core)."""

    name = "pedipacs"
    ae_title = "PEDIPACS"
    DICOMWEB_ROOT = "/dicomweb"

    def __init__(
        self, workdir: Path, source: Path | None = None, viewer_dir: Path | None = None
    ) -> None:
        super().__init__(workdir)
        self.source = source  # a folder holding a `pedipacs` package to run instead
        self.viewer_dir = viewer_dir  # the OHIF build served under /viewer, if any
        self._token = ""

    BENCH_USER = "bench"
    BENCH_PASSWORD = "measured, not guessed"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "pedipacs", "serve"]

    def start(self) -> None:
        """Start, then sign up the benchmark's account: pedipacs answers no one anonymously,
        and the benchmark measures it as a hospital runs it, with every request authenticated.
        (An older pedipacs run with `source` may have no accounts: it is called as it is.)"""
        super().start()
        added = self._pedipacs(
            "user", "add", self.BENCH_USER, "--roles", "administrator,radiologist",
            "--password-stdin", stdin=self.BENCH_PASSWORD + "\n",
        )  # fmt: skip
        if added.returncode == 0:
            issued = self._pedipacs(
                "token", "issue", self.BENCH_USER, "--label", "benchmark", "--days", "1"
            )
            issued.check_returncode()
            self._token = issued.stdout.strip()
        elif "No such command" not in added.stderr:
            raise RuntimeError(f"the benchmark account could not be created: {added.stderr}")

    def _pedipacs(
        self, *arguments: str, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pedipacs", *arguments],
            env=self.environment(),
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )

    @property
    def http_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def browser_cookies(self) -> list[dict[str, str]]:
        if not self._token:
            return []
        base = f"http://{LOOPBACK}:{self.http_port}"
        with httpx.Client(base_url=base, timeout=30) as client:
            form = client.get("/signin").text
            csrf = form.split('name="csrf_token" value="')[1].split('"')[0]
            client.post(
                "/signin",
                data={"username": self.BENCH_USER, "password": self.BENCH_PASSWORD,
                      "csrf_token": csrf, "next": "/"},
            )  # fmt: skip
            session = client.cookies.get("pedipacs_session")
        if not session:
            raise RuntimeError("the benchmark account could not sign in")
        return [{"name": "pedipacs_session", "value": session, "url": base}]

    def environment(self) -> dict[str, str]:
        inherited = {k: v for k, v in tool_environment().items() if not k.startswith("PEDIPACS_")}
        if self.source is not None:
            inherited["PYTHONPATH"] = str(self.source)
        return {
            **inherited,
            "PEDIPACS_DATA_DIR": str(self.workdir / "data"),
            "PEDIPACS_HOST": LOOPBACK,
            "PEDIPACS_AE_TITLE": self.ae_title,
            "PEDIPACS_DICOM_PORT": str(self.dicom_port),
            "PEDIPACS_HTTP_PORT": str(self.http_port),
            "PEDIPACS_HL7_PORT": "0",  # no HL7 in these benchmarks
            "PEDIPACS_LOG_LEVEL": "WARNING",
            # The benchmark's SCUs are not registered peers; access control is not measured.
            "PEDIPACS_ACCEPT_UNKNOWN_CALLING_AES": "true",
            **({"PEDIPACS_VIEWER_DIR": str(self.viewer_dir)} if self.viewer_dir else {}),
        }

    @property
    def workers(self) -> int:
        return os.cpu_count() or 1

    def is_ready(self) -> bool:
        # Every worker must be listening, or the first seconds would run on fewer of them.
        return (
            _listening_sockets(self.dicom_port) >= self.workers
            and _listening_sockets(self.http_port) >= 1
            and super().is_ready()
        )

    def stored_count(self) -> int:
        text = _http_get(self.http_port, "/metrics").decode()
        return int(
            sum(
                sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == "pedipacs_instances_received_total"
                and sample.labels.get("outcome") == "stored"
            )
        )


class Orthanc(Server):
    """Orthanc with its default SQLite index and storage area, configured for the benchmark.

    With `dicomweb`, the DICOMweb plugin (Debian package `orthanc-dicomweb`) serves
    `DICOMWEB_ROOT` on the HTTP port; otherwise no plugin is loaded.
    """

    name = "orthanc"
    ae_title = "ORTHANC"
    DICOMWEB_ROOT = "/dicom-web"
    DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")

    def __init__(self, workdir: Path, dicomweb: bool = False) -> None:
        super().__init__(workdir)
        self.dicomweb = dicomweb

    def config(self) -> dict[str, object]:
        storage = str(self.workdir / "storage")
        plugin: dict[str, object] = {}
        if self.dicomweb:
            plugin = {
                "Plugins": [str(self.DICOMWEB_PLUGIN)],
                # The plugin's defaults otherwise (StudiesMetadata "Full": read every file).
                "DicomWeb": {
                    "Enable": True,
                    "Root": f"{self.DICOMWEB_ROOT}/",
                    "EnableWado": False,
                    "Host": f"{LOOPBACK}:{self.http_port}",
                    "Ssl": False,
                },
            }
        return {
            "Name": "pedipacs-bench",
            "StorageDirectory": storage,
            "IndexDirectory": storage,
            "Plugins": [],
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "TcpNoDelay": True,
            "DicomAet": self.ae_title,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            # The benchmark's own AE, allowed to C-FIND and C-GET; its port is never called,
            # as C-GET answers on the requestor's association.
            "DicomModalities": {"bench": [SCU_AE_TITLE, LOOPBACK, 104]},
            **plugin,
        }

    def prepare(self) -> None:
        (self.workdir / "orthanc.json").write_text(json.dumps(self.config(), indent=2))

    def command(self) -> list[str]:
        binary = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
        return [binary, str(self.workdir / "orthanc.json")]

    def is_ready(self) -> bool:
        return (not self.dicomweb or _listening_sockets(self.http_port) >= 1) and super().is_ready()

    def stored_count(self) -> int:
        statistics = json.loads(_http_get(self.http_port, "/statistics"))
        return int(statistics["CountInstances"])


class Storescp(Server):
    """DCMTK storescp writing each instance to disk, one forked process per association."""

    name = "storescp"
    ae_title = "STORESCP"
    supports_queries = False

    @property
    def output_dir(self) -> Path:
        return self.workdir / "received"

    def command(self) -> list[str]:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        return [
            "storescp",
            "--fork",
            "--aetitle",
            self.ae_title,
            "--output-directory",
            str(self.output_dir),
            str(self.dicom_port),
        ]

    def stored_count(self) -> int:
        return sum(1 for path in self.output_dir.rglob("*") if path.is_file())


SERVERS: dict[str, type[Server]] = {kind.name: kind for kind in (Pedipacs, Orthanc, Storescp)}


class MemorySampler:
    """Peak of `server.rss_bytes()`, sampled in a background thread while the block runs."""

    def __init__(self, server: Server, interval: float = 0.2) -> None:
        self._server = server
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.peak_bytes = 0

    def _run(self) -> None:
        while True:
            self.peak_bytes = max(self.peak_bytes, self._server.rss_bytes())
            if self._stopped.wait(self._interval):
                return

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stopped.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._server.rss_bytes())


def _http_get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}{path}", timeout=30) as response:
        return bytes(response.read())


def session_members(session: int | None) -> list[int]:
    if session is None:
        return []
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # the process ended meanwhile
        # Fields after the command name (which may hold spaces) start at state.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == session:
            members.append(int(entry.name))
    return members


def _rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


def _listening_sockets(port: int) -> int:
    """Listening TCP sockets on `port` (several with SO_REUSEPORT), from /proc/net/tcp."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


PRIVATE_NETWORK_ENV = "BENCH_PRIVATE_NETWORK"


def rerun_in_private_network(argv: list[str]) -> None:
    """Re-run this program in a network namespace whose only interface is loopback.

    Orthanc 1.10 and storescp 3.6.7 cannot bind to one address, so they would listen on every
    interface; in the namespace nothing the benchmark starts is reachable from outside.
    Returns when already inside; otherwise replaces the current process.
    """
    if os.environ.get(PRIVATE_NETWORK_ENV) == "1":
        return
    probe = subprocess.run(
        ["unshare", "--net", "--map-root-user", "true"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        raise SystemExit(
            "cannot create a private network namespace (unshare --net --map-root-user): "
            f"{probe.stderr.decode().strip()}; pass --shared-network to run without one"
        )
    os.environ[PRIVATE_NETWORK_ENV] = "1"
    ip = shutil.which("ip", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") or "ip"
    script = f'{ip} link set lo up && exec "$0" "$@"'
    command = ["unshare", "--net", "--map-root-user", "--", "sh", "-c", script]
    os.execvp("unshare", [*command, sys.executable, *argv])
