"""multipart/related written and read back, whatever the chunking of the body."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pedipacs.dicomweb.multipart import (
    MalformedMultipartError,
    OutgoingPart,
    content_type,
    read_parts,
    write_parts,
)
from pedipacs.errors import ObjectTooLargeError


async def _chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def read_all(body: bytes, chunk_size: int, boundary: str, limit: int = 1 << 20) -> list[bytes]:
    async def collect() -> list[bytes]:
        header = content_type("application/dicom", boundary)
        return [
            p.body async for p in read_parts(_chunks(body, chunk_size), header, max_part_size=limit)
        ]

    return asyncio.run(collect())


@settings(max_examples=60, deadline=None)
@given(
    bodies=st.lists(st.binary(max_size=3000), min_size=1, max_size=5),
    chunk_size=st.integers(min_value=1, max_value=4096),
)
def test_parts_written_are_read_back_unchanged_whatever_the_chunk_size(
    bodies: list[bytes], chunk_size: int
) -> None:
    boundary = "b-123"
    # A body that happens to hold the delimiter is not a valid part (RFC 2046 5.1.1).
    bodies = [b.replace(b"--b-123", b"") for b in bodies]
    written = b"".join(
        write_parts(
            [OutgoingPart({"Content-Type": "application/dicom"}, [b]) for b in bodies], boundary
        )
    )

    assert read_all(b"preamble\r\n" + written, chunk_size, boundary) == bodies


def test_a_part_larger_than_the_limit_is_refused_before_it_is_whole() -> None:
    body = b"".join(write_parts([OutgoingPart({}, [b"x" * 300_000])], "b"))

    with pytest.raises(ObjectTooLargeError):
        read_all(body, 4096, "b", limit=100_000)


@pytest.mark.parametrize(
    "body",
    [
        b"--b\r\nContent-Type: application/dicom\r\n\r\nunterminated",
        b"no delimiter anywhere",
        b"--b\r\nBroken header line\r\n\r\nx\r\n--b--\r\n",
    ],
)
def test_malformed_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(MalformedMultipartError):
        read_all(body, 7, "b")
