"""Accept headers -> what WADO-RS sends (PS3.18 8.7)."""

from __future__ import annotations

import pytest

from pedipacs.dicomweb.media import (
    DICOM,
    OCTET_STREAM,
    Choice,
    NotAcceptableError,
    frame_choice,
    instance_choice,
    parse_accept,
)

EXPLICIT_LE = "1.2.840.10008.1.2.1"
JPEG_LS = "1.2.840.10008.1.2.4.80"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, Choice(DICOM, EXPLICIT_LE)),
        ("*/*", Choice(DICOM, EXPLICIT_LE)),
        ('multipart/related; type="application/dicom"', Choice(DICOM, EXPLICIT_LE)),
        ('multipart/related; type="application/dicom"; transfer-syntax=*', Choice(DICOM, None)),
        ("multipart/related; type=application/dicom; transfer-syntax=1.2.840.10008.1.2.4.80",
         Choice(DICOM, JPEG_LS)),
        ('image/png, multipart/related; type="application/dicom"; transfer-syntax=*; q=0.5',
         Choice(DICOM, None)),
    ],
)  # fmt: skip
def test_instance_choice_follows_the_accept_header(accept: str | None, expected: Choice) -> None:
    assert instance_choice(parse_accept(accept)) == expected


@pytest.mark.parametrize(
    "accept",
    ["image/png", 'multipart/related; type="application/dicom+xml"', "text/html"],
)
def test_instance_choice_refuses_what_it_cannot_send(accept: str) -> None:
    with pytest.raises(NotAcceptableError):
        instance_choice(parse_accept(accept))


@pytest.mark.parametrize(
    ("accept", "stored", "expected"),
    [
        # What OHIF sends: stored frames, labelled with the media type it asked for.
        ("multipart/related; type=application/octet-stream; transfer-syntax=*", JPEG_LS,
         Choice(OCTET_STREAM, None)),
        ('multipart/related; type="image/jls"', JPEG_LS, Choice("image/jls", None)),
        ('multipart/related; type="application/octet-stream"', JPEG_LS,
         Choice(OCTET_STREAM, EXPLICIT_LE)),
        (None, EXPLICIT_LE, Choice(OCTET_STREAM, EXPLICIT_LE)),
        ('multipart/related; type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.50',
         JPEG_BASELINE, Choice("image/jpeg", None)),
    ],
)  # fmt: skip
def test_frame_choice_sends_stored_frames_or_decoded_pixels(
    accept: str | None, stored: str, expected: Choice
) -> None:
    assert frame_choice(parse_accept(accept), stored) == expected


def test_frame_choice_refuses_a_compressed_type_other_than_the_stored_one() -> None:
    with pytest.raises(NotAcceptableError, match="image/jls"):
        frame_choice(parse_accept('multipart/related; type="image/jpeg"'), JPEG_LS)


def test_parse_accept_orders_by_quality_and_keeps_quoted_commas() -> None:
    ranges = parse_accept('a/b; q=0.2, multipart/related; type="x/y,z"; q=0.9, c/d')

    assert [r.media_type for r in ranges] == ["c/d", "multipart/related", "a/b"]
    assert ranges[1].part_type == "x/y,z"
