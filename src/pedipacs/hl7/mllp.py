"""MLLP, the Minimal Lower Layer Protocol of HL7 v2: frames `<VT>message<FS><CR>` on TCP (or
TLS), and the listener that hands each message to the receiver and writes its acknowledgement.

One asyncio loop in a daemon thread serves every connection; the work on a message (database)
runs in a thread pool, never on the loop. A connection carries any number of messages, answered
in order. Bytes outside a frame are dropped; a frame longer than `max_hl7_message` closes the
connection (and is audited) without being held beyond the limit; a connection silent for
`network_timeout` seconds is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.exc import SQLAlchemyError

from pedipacs.archive.peers import NODE_AUTHENTICATION
from pedipacs.errors import PedipacsError
from pedipacs.hl7.receiver import Hl7Node, Hl7Receiver
from pedipacs.model.origin import Door, Origin
from pedipacs.security.tls import server_context

log = logging.getLogger(__name__)

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
CARRIAGE_RETURN = b"\r"
READ_SIZE = 64 * 1024
WORKERS = 4  # messages applied at once (each connection answers its messages in order)
STOP_SECONDS = 10.0


def frame(message: bytes) -> bytes:
    """`message` wrapped as one MLLP block."""
    return START_BLOCK + message + END_BLOCK + CARRIAGE_RETURN


class FrameTooLargeError(Exception):
    """A frame grew past the largest message accepted."""


class FrameReader:
    """Cuts a byte stream into MLLP frames, whatever the TCP reads: a frame split across
    reads, several frames in one read. Bytes before a start block are dropped; a start block
    inside a frame starts over (the sender gave up on the one before); the CR after the end
    block is outside any frame and dropped with the rest."""

    def __init__(self, max_size: int) -> None:
        self._max_size = max_size
        self._buffer = bytearray()
        self._in_frame = False
        self.dropped = 0  # bytes outside frames, and of abandoned frames

    def feed(self, data: bytes) -> list[bytes]:
        """The frames completed by `data`; FrameTooLargeError as soon as one is too long."""
        frames: list[bytes] = []
        position = 0
        while position < len(data):
            if not self._in_frame:
                start = data.find(START_BLOCK, position)
                if start < 0:
                    self.dropped += len(data) - position
                    break
                self.dropped += start - position
                self._in_frame = True
                position = start + 1
                continue
            end = data.find(END_BLOCK, position)
            restart = data.find(START_BLOCK, position)
            if restart >= 0 and (end < 0 or restart < end):
                self.dropped += len(self._buffer) + restart - position
                self._buffer.clear()
                position = restart + 1
                continue
            stop = end if end >= 0 else len(data)
            if len(self._buffer) + stop - position > self._max_size:
                self._buffer.clear()
                raise FrameTooLargeError(f"an HL7 frame longer than {self._max_size} bytes")
            self._buffer += data[position:stop]
            if end < 0:
                break
            frames.append(bytes(self._buffer))
            self._buffer.clear()
            self._in_frame = False
            position = end + 1
        return frames


class MllpServer:
    """The HL7 listener(s): `hl7_port` (0: none) and, with a certificate, `hl7_tls_port`."""

    def __init__(self, node: Hl7Node) -> None:
        self._settings = node.settings
        self._access = node.access
        self._receiver = Hl7Receiver.from_node(node)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.ports: list[int] = []  # bound, once started

    def start(self) -> None:
        """Bind and serve in a daemon thread; raises OSError when a port cannot be bound."""
        listeners = self._listeners()
        if not listeners:
            log.info("HL7 listener off (hl7_port is 0)")
            return
        self._executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="hl7")
        started = threading.Event()
        failures: list[BaseException] = []
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._serve(listeners, started, failures)),
            name="hl7-mllp",
            daemon=True,
        )
        self._thread.start()
        started.wait()
        if failures:
            self.stop()
            raise failures[0]

    def stop(self) -> None:
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended already
                loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            self._thread.join(STOP_SECONDS)
            self._thread = None
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def _listeners(self) -> list[tuple[int, ssl.SSLContext | None]]:
        settings = self._settings
        listeners: list[tuple[int, ssl.SSLContext | None]] = []
        if settings.hl7_port:
            listeners.append((settings.hl7_port, None))
        certificate, key = settings.tls_certificate_file, settings.tls_key_file
        if certificate is not None and key is not None and settings.hl7_tls_port:
            context = server_context(certificate, key, settings.tls_ca_file)
            listeners.append((settings.hl7_tls_port, context))
        return listeners

    async def _serve(
        self,
        listeners: list[tuple[int, ssl.SSLContext | None]],
        started: threading.Event,
        failures: list[BaseException],
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        servers: list[asyncio.Server] = []
        try:
            for port, context in listeners:

                async def connected(
                    reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter,
                    context: ssl.SSLContext | None = context,
                ) -> None:
                    await self._connection(reader, writer, context)

                server = await asyncio.start_server(connected, self._settings.host, port)
                servers.append(server)
                self.ports.append(int(server.sockets[0].getsockname()[1]))
                log.info(
                    "HL7 MLLP listening on %s:%d%s",
                    self._settings.host,
                    self.ports[-1],
                    "" if context is None else " with TLS",
                )
        except Exception as error:  # told to start(), which raises it in its own thread
            failures.append(error)
        started.set()
        if not failures:
            await self._stopping.wait()
        for server in servers:
            server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(self._connections, timeout=STOP_SECONDS)

    async def _connection(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        context: ssl.SSLContext | None,
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        peer = writer.get_extra_info("peername")
        host = str(peer[0]) if peer else None
        try:
            if context is not None:
                # The handshake first, before anything is read: its failure is audited.
                try:
                    await writer.start_tls(
                        context, ssl_handshake_timeout=self._settings.network_timeout
                    )
                except (ssl.SSLError, OSError, TimeoutError) as error:
                    reason = getattr(error, "reason", None) or str(error) or type(error).__name__
                    log.warning("HL7 TLS handshake from %s failed: %s", host, reason)
                    await self._refuse(host, f"{NODE_AUTHENTICATION} TLS handshake: {reason}")
                    return
            await self._converse(reader, writer, host)
        except (ConnectionError, TimeoutError) as error:
            log.info("HL7 connection from %s ended: %s", host, error or type(error).__name__)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _converse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str | None
    ) -> None:
        loop = asyncio.get_running_loop()
        timeout = self._settings.network_timeout
        frames = FrameReader(self._settings.max_hl7_message)
        while True:
            try:
                data = await asyncio.wait_for(reader.read(READ_SIZE), timeout)
            except TimeoutError:
                log.info("HL7 connection from %s silent for %.0f s: closed", host, timeout)
                return
            if not data:
                return
            try:
                messages = frames.feed(data)
            except FrameTooLargeError as error:
                log.warning("HL7 connection from %s closed: %s", host, error)
                await self._refuse(host, str(error))
                return
            for message in messages:
                assert self._executor is not None
                ack = await loop.run_in_executor(
                    self._executor, self._receiver.receive, message, host
                )
                writer.write(frame(ack))
                await asyncio.wait_for(writer.drain(), timeout)

    async def _refuse(self, host: str | None, what: str) -> None:
        """A refused connection on the audit trail (security alert), off the loop."""
        origin = Origin(Door.HL7, remote_host=host)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._access.record_refusal, origin, what)
        except (PedipacsError, SQLAlchemyError) as error:
            log.error("refused HL7 connection from %s not audited: %s", host, error)
