"""MLLP framing: frames found whatever the TCP reads, bytes outside frames dropped, and a frame
over the limit refused before it is held."""

from __future__ import annotations

import pytest

from pedipacs.hl7.mllp import FrameReader, FrameTooLargeError, frame


def test_a_frame_split_across_reads_is_put_together() -> None:
    reader = FrameReader(1024)
    data = frame(b"MSH|one\rPID|1\r")

    found = [reader.feed(data[i : i + 3]) for i in range(0, len(data), 3)]

    assert [f for part in found for f in part] == [b"MSH|one\rPID|1\r"]


def test_several_frames_in_one_read_are_each_found() -> None:
    reader = FrameReader(1024)

    assert reader.feed(frame(b"A") + frame(b"B") + frame(b"C")[:-2]) == [b"A", b"B"]
    assert reader.feed(b"\x1c\r") == [b"C"]


def test_bytes_outside_frames_are_dropped() -> None:
    reader = FrameReader(1024)

    assert reader.feed(b"noise\r\n" + frame(b"A") + b"more noise" + frame(b"B")) == [b"A", b"B"]
    assert reader.dropped == len(b"noise\r\n") + len(b"\rmore noise") + 1


def test_a_new_start_block_abandons_an_unfinished_frame() -> None:
    reader = FrameReader(1024)

    assert reader.feed(b"\x0bhalf a mess" + frame(b"whole")) == [b"whole"]


def test_a_frame_over_the_limit_is_refused_as_it_grows() -> None:
    reader = FrameReader(10)
    reader.feed(b"\x0b12345")

    with pytest.raises(FrameTooLargeError):
        reader.feed(b"678901")
    assert reader.feed(b"") == []


def test_a_frame_at_the_limit_is_accepted() -> None:
    assert FrameReader(10).feed(frame(b"1234567890")) == [b"1234567890"]
