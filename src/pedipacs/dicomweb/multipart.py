"""multipart/related (RFC 2387) for DICOMweb: written and read as streams.

The writer yields each part's bytes as they are read from storage, so a study of several GB
leaves the server without being held in memory. The reader yields one part at a time from the
request body; a part is held whole (bounded by the caller's limit) because ingest takes one object.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field

from pedipacs.errors import InvalidInput, ObjectTooLargeError

CRLF = b"\r\n"
CHUNK = 1024 * 1024


class MalformedMultipartError(InvalidInput):
    """The body is not the multipart/related message its Content-Type announces."""


def new_boundary() -> str:
    return f"pedipacs-{secrets.token_hex(16)}"


def content_type(part_type: str, boundary: str, transfer_syntax: str | None = None) -> str:
    """The Content-Type of a multipart/related response whose parts are `part_type`."""
    syntax = f"; transfer-syntax={transfer_syntax}" if transfer_syntax else ""
    return f'multipart/related; type="{part_type}"; boundary={boundary}{syntax}'


@dataclass(frozen=True, slots=True)
class OutgoingPart:
    """One part to send: its headers and its body as chunks (read lazily)."""

    headers: dict[str, str]
    chunks: Iterable[bytes]


def write_parts(parts: Iterable[OutgoingPart], boundary: str) -> Iterator[bytes]:
    """The bytes of a multipart/related body, in pieces of about CHUNK bytes.

    Small pieces (part headers, small instances) are joined: the server hands each piece to
    the network from a worker thread, and one hand-off per megabyte costs far less than one per
    part header.
    """
    pending: list[bytes] = []
    size = 0
    for piece in _pieces(parts, boundary):
        pending.append(piece)
        size += len(piece)
        if size >= CHUNK:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


def _pieces(parts: Iterable[OutgoingPart], boundary: str) -> Iterator[bytes]:
    delimiter = f"--{boundary}".encode()
    for part in parts:
        head = [delimiter]
        head += [f"{name}: {value}".encode() for name, value in part.headers.items()]
        yield CRLF.join(head) + CRLF + CRLF
        yield from part.chunks
        yield CRLF
    yield delimiter + b"--" + CRLF


def boundary_from_content_type(content_type_header: str | None) -> tuple[str, str | None]:
    """The boundary and the `type` parameter of a multipart/related Content-Type.

    >>> boundary_from_content_type('multipart/related; type="application/dicom"; boundary=xyz')
    ('xyz', 'application/dicom')
    """
    if not content_type_header:
        raise MalformedMultipartError("the request has no Content-Type")
    media_type, *parameters = content_type_header.split(";")
    if media_type.strip().lower() != "multipart/related":
        raise MalformedMultipartError(
            f"Content-Type must be multipart/related, not {media_type.strip()!r}"
        )
    values: dict[str, str] = {}
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        values[name.strip().lower()] = value.strip().strip('"')
    boundary = values.get("boundary")
    if not boundary or len(boundary) > 200:
        raise MalformedMultipartError("the multipart Content-Type has no valid boundary")
    return boundary, values.get("type", "").lower() or None


@dataclass
class IncomingPart:
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


@dataclass
class _Reader:
    """An incremental parser over the chunks of a request body."""

    boundary: bytes
    max_part_size: int
    buffer: bytearray = field(default_factory=bytearray)
    parts_seen: int = 0
    # How far the current part was already searched for its end: each byte is scanned once.
    searched: int = 0

    def parts(self, is_final: bool) -> Iterator[IncomingPart]:
        """Complete parts now in the buffer; at the end of the body, insist on the close."""
        delimiter = b"--" + self.boundary
        while True:
            if self.parts_seen == 0:
                start = self.buffer.find(delimiter)
                if start < 0:
                    self._check_size()
                    break
                del self.buffer[:start]
            # The buffer begins with a delimiter: "--b--" closes, "--b\r\n" opens a part.
            after = self.buffer[len(delimiter) : len(delimiter) + 2]
            if after == b"--":
                self.buffer.clear()
                self.parts_seen = -1
                return
            if len(after) < 2:
                break
            closing = CRLF + delimiter
            end = self.buffer.find(closing, max(len(delimiter), self.searched))
            if end < 0:
                self.searched = max(0, len(self.buffer) - len(closing))
                self._check_size()
                break
            part = self._part(bytes(self.buffer[len(delimiter) + 2 : end]))
            del self.buffer[: end + 2]
            self.searched = 0
            yield part
        if is_final and self.parts_seen != -1:
            raise MalformedMultipartError(
                "the multipart body ended without its closing boundary"
                if self.parts_seen
                else "the body holds no part delimited by the announced boundary"
            )

    def _part(self, raw: bytes) -> IncomingPart:
        head, separator, body = raw.partition(CRLF + CRLF)
        if not separator:
            if raw.startswith(CRLF):  # a part with no header at all
                head, body = b"", raw[2:]
            else:
                raise MalformedMultipartError("a part has no blank line after its headers")
        headers: dict[str, str] = {}
        for line in head.split(CRLF):
            if not line.strip():
                continue
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon:
                raise MalformedMultipartError(f"malformed part header {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        self.parts_seen += 1
        return IncomingPart(headers, body)

    def _check_size(self) -> None:
        if len(self.buffer) > self.max_part_size + 64 * 1024:
            raise ObjectTooLargeError(
                f"a part is larger than the maximum object size of {self.max_part_size} bytes"
            )


async def read_parts(
    chunks: AsyncIterator[bytes], content_type_header: str | None, *, max_part_size: int
) -> AsyncIterator[IncomingPart]:
    """Parse a multipart/related body as it arrives, yielding each part once it is complete."""
    boundary, _ = boundary_from_content_type(content_type_header)
    reader = _Reader(boundary.encode("latin-1"), max_part_size)
    async for chunk in chunks:
        reader.buffer += chunk
        for part in reader.parts(is_final=False):
            yield part
    for part in reader.parts(is_final=True):
        yield part
