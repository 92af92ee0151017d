"""Building acknowledgements: MSH with sender and receiver swapped, MSA with the received
control ID, ERR with a table 0357 code and a location, and a default ACK when the message
could not be read at all."""

from __future__ import annotations

from datetime import UTC, datetime

from pedipacs.errors import InvalidInput, StorageUnavailable
from pedipacs.hl7.ack import (
    Acknowledgement,
    acknowledgement_from_error,
    acknowledgement_from_outcome,
    build_ack,
    location_named_in,
)
from pedipacs.hl7.messages import (
    ErrorCode,
    Hl7ContentError,
    Location,
    MessageRejected,
    read_header,
)
from pedipacs.ris.inbox import AckCode, Outcome
from support import hl7_samples as samples

NOW = datetime(2026, 11, 25, 7, 15, 0, tzinfo=UTC)


def fields(ack: str) -> dict[str, list[str]]:
    return samples.ack_fields(ack.encode())


def test_an_accept_swaps_sender_and_receiver_and_echoes_the_control_id() -> None:
    header = read_header(samples.adt().decode())

    ack = build_ack(header, Acknowledgement(AckCode.ACCEPTED), control_id="A1", now=NOW)

    assert ack.endswith("\r")
    segments = fields(ack)
    assert list(segments) == ["MSH", "MSA"]
    msh = segments["MSH"]  # msh[n] is MSH-(n+1)
    assert msh[1] == "^~\\&"
    assert msh[2:6] == ["PEDIPACS", "RADIOLOGY", "HIS", "CHILDRENS"]
    assert msh[6] == "20261125071500+0000"
    assert msh[8] == "ACK^A04^ACK"
    assert (msh[9], msh[10], msh[11]) == ("A1", "P", "2.5.1")
    assert msh[17] == "UNICODE UTF-8"
    assert segments["MSA"] == ["MSA", "AA", "ADT0001"]


def test_an_error_carries_err_with_code_location_and_message() -> None:
    header = read_header(samples.adt().decode())
    error = Hl7ContentError(
        "PID-3 is empty", Location("PID", 1, 3), ErrorCode.REQUIRED_FIELD_MISSING
    )

    segments = fields(build_ack(header, acknowledgement_from_error(error)))

    assert segments["MSA"] == ["MSA", "AE", "ADT0001", "PID-3 is empty"]
    err = segments["ERR"]
    assert err[1] == "PID^1^3^101&Required field missing&HL70357"  # ERR-1, for v2.3 readers
    assert err[2] == "PID^1^3"
    assert err[3] == "101^Required field missing^HL70357"
    assert err[4] == "E"
    assert err[8] == "PID-3 is empty"


def test_a_component_location_and_escaped_text() -> None:
    header = read_header(samples.orm().decode())
    rejected = MessageRejected(
        "MSH-9: event ORM^O02 is|not supported",
        ErrorCode.UNSUPPORTED_EVENT_CODE,
        Location("MSH", 1, 9, 2),
    )

    segments = fields(build_ack(header, acknowledgement_from_error(rejected)))

    assert segments["MSA"][1] == "AR"
    assert segments["ERR"][2] == "MSH^1^9^1^2"
    assert segments["ERR"][3] == "201^Unsupported event code^HL70357"
    assert "is\\F\\not supported" in segments["ERR"][8]


def test_an_unreadable_message_gets_a_default_reject() -> None:
    rejected = MessageRejected("no MSH", ErrorCode.SEGMENT_SEQUENCE_ERROR)

    ack = build_ack(read_header("not hl7 at all"), acknowledgement_from_error(rejected))

    segments = fields(ack)

    assert segments["MSH"][1] == "^~\\&"
    assert segments["MSH"][8] == "ACK"
    assert segments["MSH"][11] == "2.5"
    assert segments["MSA"][:3] == ["MSA", "AR", ""]


def test_unusable_delimiters_are_answered_with_the_defaults() -> None:
    data = samples.adt().replace(b"MSH|^~\\&|", b"MSH|^^^^|")

    segments = fields(build_ack(read_header(data.decode()), Acknowledgement(AckCode.ERROR)))

    assert segments["MSH"][1] == "^~\\&"
    assert segments["MSA"][2] == "ADT0001"
    assert segments["MSH"][8] == "ACK"  # MSH-9 cannot be split without its delimiters


def test_odd_but_valid_delimiters_are_kept() -> None:
    data = "MSH#$*!%#HIS#CHILDRENS#PEDIPACS#RADIOLOGY#20261125##ADT$A08#C1#P#2.5\r"

    ack = build_ack(read_header(data), Acknowledgement(AckCode.ACCEPTED), now=NOW)

    assert ack.startswith("MSH#$*!%#PEDIPACS#RADIOLOGY#HIS#CHILDRENS#")
    assert "#ACK$A08$ACK#" in ack
    assert "\rMSA#AA#C1\r" in ack


def test_service_errors_are_application_errors_pointing_at_the_field_they_name() -> None:
    outcome = Outcome(AckCode.ERROR, "PID-3: identifier X belongs to another patient")

    acknowledgement = acknowledgement_from_outcome(outcome)

    assert acknowledgement.error is ErrorCode.APPLICATION_INTERNAL_ERROR
    assert acknowledgement.location == Location("PID", 1, 3)
    assert location_named_in("no field here") is None
    assert acknowledgement_from_error(InvalidInput("OBR-4.2: too long")).location == Location(
        "OBR", 1, 4, 2
    )


def test_what_cannot_be_processed_now_is_rejected() -> None:
    assert acknowledgement_from_error(StorageUnavailable("disk full")).code is AckCode.REJECTED
    assert acknowledgement_from_error(RuntimeError("bug")).code is AckCode.REJECTED
