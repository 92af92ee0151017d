"""Reading HL7 v2 messages: delimiters from MSH-1/MSH-2, segment separators, escapes,
character sets, timestamps, and the errors that name where a message is wrong."""

from __future__ import annotations

from datetime import date, time, timedelta, timezone

import pytest

from pedipacs.hl7.messages import (
    Delimiters,
    ErrorCode,
    Hl7ContentError,
    Location,
    NotHl7Error,
    decode,
    parse,
    read_header,
)
from pedipacs.hl7.values import timestamp_from_dtm
from support import hl7_samples as samples

PID_7 = Location("PID", 1, 7)


def test_the_sample_registration_is_split_into_plain_values() -> None:
    text, codec = decode(samples.adt())
    message = parse(text, codec)

    assert [s.name for s in message] == ["MSH", "EVN", "PID", "PV1", "OBX"]
    assert message.header.message_type == "ADT^A04"
    assert message.header.control_id == "ADT0001"
    pid = message.first("PID")
    assert pid is not None
    assert pid.value(3) == samples.NEWBORN_ID
    assert pid.value(3, 4, 2) == "1.2.250.1.999.1"  # a subcomponent of the assigning authority
    assert pid.value(5, 2) == "BABY GIRL"
    assert pid.value(99) == ""


def test_segments_may_end_with_lf_or_crlf() -> None:
    for ending in (b"\n", b"\r\n"):
        data = samples.adt().replace(b"\r", ending)

        message = parse(*decode(data))

        assert [s.name for s in message] == ["MSH", "EVN", "PID", "PV1", "OBX"]


def test_other_delimiters_are_read_from_msh() -> None:
    data = (
        b"MSH#$*!%#HIS#CHILDRENS#PEDIPACS#RADIOLOGY#20261125##ADT$A08#C1#P#2.5\r"
        b"PID#1##X1$$$ISSUER*X2$$$OTHER##DOE$JANE!T!CO#\r"
    )

    message = parse(*decode(data))

    pid = message.first("PID")
    assert message.header.delimiters == Delimiters("#", "$", "*", "!", "%")
    assert message.header.trigger_event == "A08"
    assert pid is not None
    assert [r[0][0] for r in pid.repetitions(3)] == ["X1", "X2"]
    assert pid.value(5, 2) == "JANE%CO"  # \T\ is the subcomponent separator, written plainly


@pytest.mark.parametrize(
    "encoding",
    [b"^~\\", b"^^\\&", b"^~A&", b"^~ &", b"^~\\&#!", b""],
    ids=["three", "repeated", "letter", "space", "six", "none"],
)
def test_unusable_encoding_characters_are_a_content_error_at_msh_2(encoding: bytes) -> None:
    data = b"MSH|" + encoding + b"|HIS|CHILDRENS|||20261125||ADT^A04|C1|P|2.5\rPID|1||X1\r"

    with pytest.raises(Hl7ContentError) as raised:
        parse(*decode(data))

    assert str(raised.value.location) == "MSH-2"
    assert raised.value.code is ErrorCode.DATA_TYPE_ERROR


def test_a_message_without_msh_is_not_hl7() -> None:
    with pytest.raises(NotHl7Error):
        parse("PID|1||X1\r")
    assert not read_header("garbage").is_readable


def test_a_bad_segment_name_is_a_segment_sequence_error() -> None:
    data = samples.adt().replace(b"\rPV1|", b"\rpv1|")

    with pytest.raises(Hl7ContentError) as raised:
        parse(*decode(data))

    assert raised.value.code is ErrorCode.SEGMENT_SEQUENCE_ERROR


def test_escape_sequences_are_resolved() -> None:
    data = samples.with_field(samples.adt(), "PID", 5, r"O\S\BRIEN\T\X^J\E\\F\Y^^^^^L")

    pid = parse(*decode(data)).first("PID")

    assert pid is not None
    assert pid.value(5, 1) == "O^BRIEN&X"
    assert pid.value(5, 2) == "J\\|Y"


def test_the_character_set_of_msh_18_decodes_the_message() -> None:
    latin = samples.with_field(samples.adt(), "MSH", 18, "8859/1").replace(
        b"LEFEVRE", "LEFÈVRE".encode("latin-1")
    )
    text, codec = decode(latin)

    assert codec == "latin-1"
    assert "LEFÈVRE" in text
    with pytest.raises(Hl7ContentError) as raised:
        decode(samples.with_field(samples.adt(), "MSH", 18, "ISO IR87"))
    assert raised.value.code is ErrorCode.TABLE_VALUE_NOT_FOUND


def test_bytes_that_are_not_utf_8_fail_when_msh_18_says_utf_8() -> None:
    latin = "LEFÈVRE".encode("latin-1")

    with pytest.raises(Hl7ContentError):
        decode(samples.adt().replace(b"LEFEVRE", latin))
    # Without MSH-18, ISO 8859-1 is assumed for what is not UTF-8.
    unnamed = samples.with_field(samples.adt(), "MSH", 18, "").replace(b"LEFEVRE", latin)
    assert "LEFÈVRE" in decode(unnamed)[0]


def test_timestamps_keep_date_time_and_offset() -> None:
    stamp = timestamp_from_dtm("202611240342+0100", PID_7, "birth date")

    assert stamp is not None
    assert stamp.date == date(2026, 11, 24)
    assert stamp.time == time(3, 42)
    assert stamp.offset == timezone(timedelta(hours=1))
    assert timestamp_from_dtm("20261124", PID_7, "birth date") is not None
    assert timestamp_from_dtm("", PID_7, "birth date") is None


@pytest.mark.parametrize("value", ["2026", "202611", "20261341", "2026112", "yesterday"])
def test_dates_without_a_day_or_invalid_are_refused(value: str) -> None:
    with pytest.raises(Hl7ContentError) as raised:
        timestamp_from_dtm(value, PID_7, "birth date")

    assert str(raised.value).startswith("PID-7")
