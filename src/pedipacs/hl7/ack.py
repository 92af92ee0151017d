"""Acknowledgements (original mode, HL7 v2 chapter 2.9): the one table from what became of a
message to MSA-1 (AA, AE, AR) and ERR (a table 0357 code and where the fault is), and the ACK
message that carries them.

- AA: applied (or a duplicate of a message that was).
- AE: the content is wrong (a required field missing, a bad value, an unknown order): the
  sender must correct it; a resend as it is gets AE again.
- AR: not for this receiver (unknown sender, unsupported type, event or version, not HL7 at
  all), or not processed now (the database cannot take it): nothing was applied.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from pedipacs.errors import InvalidInput, PedipacsError, StorageUnavailable
from pedipacs.hl7.messages import (
    DEFAULT_DELIMITERS,
    Delimiters,
    ErrorCode,
    Header,
    Hl7ContentError,
    Location,
    MessageRejected,
    escape,
)
from pedipacs.ris.inbox import AckCode, Outcome

OUR_APPLICATION = "PEDIPACS"
DEFAULT_VERSION = "2.5"
CODING_SYSTEM = "HL70357"
MAX_MSA_TEXT = 80  # MSA-3 (ST)
MAX_USER_MESSAGE = 250  # ERR-8 (TX)
# A field named in an error text: "PID-3", "OBR-4.1".
_FIELD_NAMED = re.compile(r"\b([A-Z][A-Z0-9]{2})-(\d{1,3})(?:\.(\d{1,2}))?\b")
_TRIGGER = re.compile(r"^[A-Z0-9]{3}$")


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """What the ACK says: the code, a reason, and for AE/AR the error and its place."""

    code: AckCode
    text: str | None = None
    error: ErrorCode | None = None
    location: Location | None = None


def location_named_in(text: str | None) -> Location | None:
    """The first field an error text names (`PID-3: ...`), so that service errors, which
    name the HL7 field in their message, point ERR-2 at it too."""
    match = _FIELD_NAMED.search(text or "")
    if match is None:
        return None
    segment, field, component = match.groups()
    return Location(segment, 1, int(field), int(component) if component else None)


def acknowledgement_from_outcome(outcome: Outcome) -> Acknowledgement:
    """The answer for a message the inbox took (or had taken before: a duplicate gets the
    same code and reason). Errors the services raise are application errors (207)."""
    if outcome.code is AckCode.ACCEPTED:
        return Acknowledgement(AckCode.ACCEPTED, outcome.detail)
    return Acknowledgement(
        outcome.code,
        outcome.detail,
        ErrorCode.APPLICATION_INTERNAL_ERROR,
        location_named_in(outcome.detail),
    )


def acknowledgement_from_error(error: BaseException) -> Acknowledgement:
    """The one table from an error met while reading or applying a message to its answer."""
    if isinstance(error, MessageRejected):
        return Acknowledgement(AckCode.REJECTED, str(error), error.code, error.location)
    if isinstance(error, Hl7ContentError):
        return Acknowledgement(AckCode.ERROR, str(error), error.code, error.location)
    if isinstance(error, InvalidInput):
        text = str(error)
        return Acknowledgement(
            AckCode.ERROR, text, ErrorCode.APPLICATION_INTERNAL_ERROR, location_named_in(text)
        )
    if isinstance(error, StorageUnavailable) or not isinstance(error, PedipacsError):
        return Acknowledgement(
            AckCode.REJECTED,
            "not processed now (internal error); nothing was applied: send it again later",
            ErrorCode.APPLICATION_INTERNAL_ERROR,
        )
    return Acknowledgement(AckCode.ERROR, str(error), ErrorCode.APPLICATION_INTERNAL_ERROR)


def new_control_id() -> str:
    """A message control ID for an ACK (MSH-10, at most 20 characters)."""
    return uuid.uuid4().hex[:20].upper()


def build_ack(
    header: Header,
    acknowledgement: Acknowledgement,
    *,
    control_id: str | None = None,
    now: datetime | None = None,
) -> str:
    """The ACK for a message whose MSH is `header`: MSH, MSA and, for AE/AR, ERR; segments
    end with CR. The received delimiters, version, processing ID and character set are kept
    when usable; an unreadable MSH gets the defaults (`|^~\\&`, 2.5, P)."""
    delimiters = header.delimiters or DEFAULT_DELIMITERS

    def echo(number: int) -> str:
        # Received fields are already escaped for the received delimiters; with unusable
        # delimiters they are plain text to escape.
        written = header.field(number)
        return written if header.delimiters is not None else escape(written, delimiters)

    trigger = header.trigger_event if _TRIGGER.match(header.trigger_event) else ""
    message_type = delimiters.component.join(["ACK", trigger, "ACK"] if trigger else ["ACK"])
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    msh = [
        "MSH",
        delimiters.encoding_characters,
        OUR_APPLICATION,
        echo(6),
        echo(3),
        echo(4),
        moment.strftime("%Y%m%d%H%M%S+0000"),
        "",
        message_type,
        control_id or new_control_id(),
        echo(11) if header.value(11) else "P",
        echo(12) if header.value(12) else DEFAULT_VERSION,
    ]
    if header.value(18):
        msh += ["", "", "", "", "", echo(18)]
    text = escape((acknowledgement.text or "")[:MAX_MSA_TEXT], delimiters)
    msa = ["MSA", acknowledgement.code.value, echo(10)]
    if text:
        msa.append(text)
    segments = [
        delimiters.field.join(msh),
        delimiters.field.join(msa),
    ]
    if acknowledgement.code is not AckCode.ACCEPTED:
        segments.append(delimiters.field.join(_err(acknowledgement, delimiters)))
    return "".join(f"{segment}\r" for segment in segments)


def _err(acknowledgement: Acknowledgement, delimiters: Delimiters) -> list[str]:
    """ERR-1 (the v2.3/v2.4 form, for older senders), ERR-2 location, ERR-3 code, ERR-4
    severity, ERR-8 the reason for a person to read."""
    error = acknowledgement.error or ErrorCode.APPLICATION_INTERNAL_ERROR
    location = acknowledgement.location
    where = ["", "", ""]
    if location is not None:
        where = [
            location.segment,
            str(location.sequence),
            str(location.field) if location.field is not None else "",
        ]
    c, s = delimiters.component, delimiters.subcomponent
    code = c.join([str(error.value), error.text, CODING_SYSTEM])
    legacy = c.join([*where, s.join([str(error.value), error.text, CODING_SYSTEM])])  # ERR-1
    erl = ""
    if location is not None:
        erl_parts = [*where]
        if location.component is not None:
            erl_parts += ["1", str(location.component)]
        erl = c.join(erl_parts).rstrip(c)
    message = escape((acknowledgement.text or error.text)[:MAX_USER_MESSAGE], delimiters)
    return ["ERR", legacy, erl, code, "E", "", "", "", message]
