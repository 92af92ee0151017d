"""The DICOMweb client side, the same for every server: one httpx client with a persistent
connection, timing on the client side, and every answer read to its end and checked.

Multipart answers (WADO-RS) are parsed as they stream: the parts are counted, their bytes
summed, and each DICOM part must carry "DICM" at offset 128.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

import httpx

from peers import LOOPBACK, Server

REQUEST_TIMEOUT = 600.0  # seconds; a hung server must not hang the benchmark
DICOM_JSON = "application/dicom+json"
# What a browser sends; pass "identity" to get uncompressed answers from every server.
DEFAULT_ACCEPT_ENCODING = "gzip, deflate"
# Stored bytes, no transcoding; Orthanc's plugin honours the same parameter.
RETRIEVE_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
DICM_OFFSET = 128


class AnswerError(RuntimeError):
    """The server answered with an error status or a body that does not hold what it should."""


@dataclass
class Answer:
    """What one request brought back, beyond its time."""

    status: int
    seconds: float
    wire_bytes: int  # as received, before any Content-Encoding was undone
    body_bytes: int  # after
    content_encoding: str | None
    items: int  # JSON array entries, multipart parts, or instances stored
    part_bytes: int = 0  # the parts' bodies, without multipart framing
    client_cpu_seconds: float = 0.0  # this process's CPU time during the request


@dataclass(frozen=True)
class Timing:
    """`repeats` requests after `warmup` untimed ones: p50 and p95 of their times."""

    p50_ms: float
    p95_ms: float
    client_cpu_ms: float  # median; the client's decoding and parsing are part of each time
    samples_ms: list[float]
    last: Answer

    @classmethod
    def of(cls, answers: Sequence[Answer]) -> Timing:
        times = sorted(answer.seconds * 1000 for answer in answers)
        cpu = statistics.median(answer.client_cpu_seconds * 1000 for answer in answers)
        return cls(statistics.median(times), percentile(times, 95), cpu, times, answers[-1])


def percentile(values: Sequence[float], percent: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * percent / 100
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def time_requests(request: Callable[[], Answer], repeats: int, warmup: int) -> Timing:
    for _ in range(warmup):
        request()
    return Timing.of([request() for _ in range(repeats)])


class MultipartCounter:
    """Counts the parts of a multipart body fed in pieces, and the bytes of their bodies."""

    def __init__(self, boundary: bytes, check_dicm: bool) -> None:
        self._delimiter = b"\r\n--" + boundary
        # A CRLF in front lets the first boundary (at the very start) match the delimiter.
        self._buffer = bytearray(b"\r\n")
        self._state = "preamble"
        self._check_dicm = check_dicm
        self._head = bytearray()  # the first bytes of the current part's body
        self.parts = 0
        self.part_bytes = 0
        self.closed = False
        self.problems: list[str] = []

    def feed(self, data: bytes) -> None:
        self._buffer += data
        steps = {
            "preamble": self._to_boundary,
            "body": self._to_boundary,
            "after-boundary": self._after_boundary,
            "headers": self._headers,
            "epilogue": self._epilogue,
        }
        # Each step consumes what the buffer allows in its state; False when it needs more.
        while steps[self._state]():
            pass

    def _to_boundary(self) -> bool:
        buffer = self._buffer
        found = buffer.find(self._delimiter)
        end = found if found >= 0 else max(0, len(buffer) - len(self._delimiter) + 1)
        if self._state == "body":
            self._body(buffer[:end])
        if found < 0:
            del buffer[:end]
            return False
        if self._state == "body":
            self._end_part()
        del buffer[: found + len(self._delimiter)]
        self._state = "after-boundary"
        return True

    def _after_boundary(self) -> bool:
        buffer = self._buffer
        if buffer.startswith(b"--"):
            self.closed = True
            self._state = "epilogue"
            return True
        line_end = buffer.find(b"\r\n")
        if line_end < 0:
            return False
        del buffer[: line_end + 2]  # transport padding and the line end
        self._state = "headers"
        return True

    def _headers(self) -> bool:
        buffer = self._buffer
        found = 0 if buffer.startswith(b"\r\n") else buffer.find(b"\r\n\r\n")
        if found < 0:
            return False
        del buffer[: found + (2 if found == 0 else 4)]
        self._state = "body"
        return True

    def _epilogue(self) -> bool:
        self._buffer.clear()
        return False

    def _body(self, data: bytearray) -> None:
        self.part_bytes += len(data)
        if self._check_dicm and len(self._head) < DICM_OFFSET + 4:
            self._head += data[: DICM_OFFSET + 4 - len(self._head)]

    def _end_part(self) -> None:
        self.parts += 1
        if self._check_dicm and self._head[DICM_OFFSET : DICM_OFFSET + 4] != b"DICM":
            self.problems.append(f"part {self.parts} is not a DICOM file (no DICM at 128)")
        self._head.clear()


def boundary_of(content_type: str) -> bytes:
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.strip().partition("=")
        if name.lower() == "boundary":
            return value.strip('"').encode()
    raise AnswerError(f"no boundary in {content_type!r}")


@dataclass(frozen=True)
class StowRequest:
    """A multipart/related STOW-RS body, built before any timing starts."""

    content_type: str
    body: bytes
    instances: int

    @classmethod
    def of(cls, files: Sequence[Path]) -> StowRequest:
        boundary = f"bench-{uuid.uuid4().hex}"
        head = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        chunks = [piece for path in files for piece in (head, path.read_bytes(), b"\r\n")]
        chunks.append(f"--{boundary}--\r\n".encode())
        content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
        return cls(content_type, b"".join(chunks), len(files))


@dataclass
class QueryForm:
    """How a query value had to be written in the URL for a server to match it."""

    encoded: bool = True
    notes: list[str] = field(default_factory=list)


class DicomwebClient:
    """One persistent HTTP/1.1 connection to `server`'s DICOMweb root."""

    def __init__(self, server: Server, root: str, accept_encoding: str) -> None:
        self.server = server
        self.base = f"http://{LOOPBACK}:{server.http_port}{root}"
        self._http = httpx.Client(
            timeout=REQUEST_TIMEOUT,
            headers={
                "Accept-Encoding": accept_encoding,
                "User-Agent": "pedipacs-bench",
                **server.http_headers,
            },
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._http.close()

    # -- QIDO-RS and metadata: JSON arrays ------------------------------------------------

    def search_studies(self, key: str, value: str, encoded: bool = True) -> Answer:
        """GET /studies?key=value, the value percent-encoded as a client would (or as typed)."""
        written = quote(value, safe="") if encoded else value
        return self._json(f"{self.base}/studies?{key}={written}")

    def metadata(self, study: str) -> Answer:
        return self._json(f"{self.base}/studies/{study}/metadata")

    def _json(self, url: str) -> Answer:
        started, cpu_started = time.perf_counter(), time.process_time()
        response = self._http.get(url, headers={"Accept": DICOM_JSON})
        # Timed to the last byte received (and decompressed): what the server takes. Parsing
        # the JSON is the client's own cost (about 45 ms for 1.2 MB in Python), checked untimed.
        seconds = time.perf_counter() - started
        if response.status_code != 200:
            raise AnswerError(f"GET {url}: {response.status_code} {response.content[:500]!r}")
        items = len(json.loads(response.content))
        answer = _answer(response, seconds, len(response.content), items)
        answer.client_cpu_seconds = time.process_time() - cpu_started
        return answer

    # -- WADO-RS: multipart ---------------------------------------------------------------

    def retrieve(self, path: str) -> Answer:
        """GET a study, series or instance as stored, parsing the multipart answer fully."""
        url = f"{self.base}{path}"
        started, cpu_started = time.perf_counter(), time.process_time()
        with self._http.stream("GET", url, headers={"Accept": RETRIEVE_STORED}) as response:
            if response.status_code != 200:
                raise AnswerError(f"GET {url}: {response.status_code} {response.read()[:500]!r}")
            counter = MultipartCounter(boundary_of(response.headers["content-type"]), True)
            body_bytes = 0
            for chunk in response.iter_bytes():
                body_bytes += len(chunk)
                counter.feed(chunk)
        seconds = time.perf_counter() - started
        if not counter.closed or counter.problems:
            raise AnswerError(f"GET {url}: {counter.problems or 'no closing boundary'}")
        answer = _answer(response, seconds, body_bytes, counter.parts)
        answer.part_bytes = counter.part_bytes
        answer.client_cpu_seconds = time.process_time() - cpu_started
        return answer

    # -- STOW-RS --------------------------------------------------------------------------

    def store(self, request: StowRequest) -> Answer:
        started = time.perf_counter()
        response = self._http.post(
            f"{self.base}/studies",
            content=request.body,
            headers={"Content-Type": request.content_type, "Accept": DICOM_JSON},
        )
        seconds = time.perf_counter() - started
        stored, failed = _stow_outcome(response)
        if response.status_code != 200 or stored != request.instances or failed:
            raise AnswerError(
                f"STOW-RS of {request.instances}: {response.status_code}, {stored} stored, "
                f"{failed} failed; {response.headers.get('warning', '')} {response.text[:500]}"
            )
        return _answer(response, seconds, len(response.content), stored)


def _answer(response: httpx.Response, seconds: float, body_bytes: int, items: int) -> Answer:
    return Answer(
        status=response.status_code,
        seconds=seconds,
        wire_bytes=response.num_bytes_downloaded,
        body_bytes=body_bytes,
        content_encoding=response.headers.get("content-encoding"),
        items=items,
    )


def _stow_outcome(response: httpx.Response) -> tuple[int, int]:
    """Instances the STOW-RS answer lists as stored (00081199) and as failed (00081198)."""
    try:
        document: Any = response.json()
    except ValueError:
        return 0, 0
    if isinstance(document, list):  # some servers answer with a one-item array
        document = document[0] if document else {}

    def count(tag: str) -> int:
        return len(document.get(tag, {}).get("Value", []))

    return count("00081199"), count("00081198")
