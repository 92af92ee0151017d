"""Hl7Receiver: one message in, one acknowledgement out, whatever the message holds.

The order of the checks is fixed: the sender first (MSH-3 must be a configured sending
application; a refusal is audited), then the character set and the structure, then MSH-9,
MSH-11 and MSH-12, then the mapping of the content to the RIS' values (AE naming the field),
and last the work itself, applied at most once in one transaction by the inbox.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from pedipacs.config import Settings
from pedipacs.errors import PedipacsError
from pedipacs.hl7.ack import (
    Acknowledgement,
    acknowledgement_from_error,
    acknowledgement_from_outcome,
    build_ack,
)
from pedipacs.hl7.adt import (
    REGISTRATION_EVENTS,
    Work,
    handle_adt_change_identifier,
    handle_adt_merge,
    handle_adt_registration,
)
from pedipacs.hl7.messages import (
    ErrorCode,
    Header,
    Hl7ContentError,
    Location,
    Message,
    MessageRejected,
    NotHl7Error,
    decode,
    normalized_text,
    parse,
    read_header,
)
from pedipacs.hl7.orm import handle_omi_o23, handle_orm_o01
from pedipacs.model.origin import Door, Origin
from pedipacs.ris.inbox import AckCode, Hl7Inbox, MessageKey
from pedipacs.security.access import AccessPolicy

log = logging.getLogger(__name__)

Handler = Callable[[Message, Origin], Work]
HANDLERS: dict[tuple[str, str], Handler] = {
    **{("ADT", event): handle_adt_registration for event in REGISTRATION_EVENTS},
    ("ADT", "A40"): handle_adt_merge,
    ("ADT", "A47"): handle_adt_change_identifier,
    ("ORM", "O01"): handle_orm_o01,
    ("OMI", "O23"): handle_omi_o23,
}
MESSAGE_CODES = frozenset(code for code, _ in HANDLERS)
PROCESSING_IDS = frozenset({"P", "T", "D"})  # HL7 table 0103
ANY_SENDER = "*"
MAX_SENDER = 227  # MSH-3, MSH-4 as the inbox records them
MAX_CONTROL_ID = 199  # MSH-10


class Hl7Node(Protocol):
    """What the HL7 door needs of the node."""

    settings: Settings
    hl7_inbox: Hl7Inbox
    access: AccessPolicy


class Hl7Receiver:
    def __init__(self, inbox: Hl7Inbox, access: AccessPolicy, senders: Iterable[str]) -> None:
        self._inbox = inbox
        self._access = access
        self._senders = frozenset(sender.strip() for sender in senders)

    @classmethod
    def from_node(cls, node: Hl7Node) -> Hl7Receiver:
        return cls(node.hl7_inbox, node.access, node.settings.hl7_senders)

    def receive(self, payload: bytes, remote_host: str | None = None) -> bytes:
        """The acknowledgement for one message (its bytes between the MLLP start and end
        blocks), encoded in the message's character set. Never raises."""
        codec = "utf-8"
        header = read_header(normalized_text(payload.decode("latin-1")))
        origin = Origin(Door.HL7, user=header.sending_application or None, remote_host=remote_host)
        duplicate = False
        try:
            if not header.is_readable:
                raise NotHl7Error("not an HL7 v2 message: it does not start with an MSH segment")
            self._check_sender(header, origin)
            text, codec = decode(payload)
            message = parse(text, codec)
            header = message.header
            _check_header(header)
            handler = HANDLERS[(header.message_code, header.trigger_event)]
            work = handler(message, origin)
            key = MessageKey(header.sending_application, header.sending_facility, header.control_id)
            outcome = self._inbox.receive(key, header.message_type, work)
            duplicate = outcome.duplicate
            acknowledgement = acknowledgement_from_outcome(outcome)
        except PedipacsError as error:
            acknowledgement = acknowledgement_from_error(error)
        except Exception as error:  # every message gets an answer; nothing was applied
            log.exception("HL7 message %s not processed", header.control_id or "?")
            acknowledgement = acknowledgement_from_error(error)
        _log(header, origin, acknowledgement, duplicate=duplicate)
        return build_ack(header, acknowledgement).encode(codec, errors="replace")

    def _check_sender(self, header: Header, origin: Origin) -> None:
        sender = header.sending_application
        if ANY_SENDER in self._senders or (sender and sender in self._senders):
            return
        what = (
            f"HL7 {header.message_type or 'message'} {header.control_id[:40]!r} from sending "
            f"application {sender[:40]!r}, not in hl7_senders"
        )
        try:
            self._access.record_refusal(origin, what)
        except (PedipacsError, SQLAlchemyError) as error:
            log.error("refused HL7 message not audited: %s", error)
        raise MessageRejected(
            f"MSH-3: sending application {sender[:40]!r} is not allowed to send to pedipacs",
            ErrorCode.APPLICATION_INTERNAL_ERROR,
            Location("MSH", 1, 3),
        )


def _check_header(header: Header) -> None:
    """MSH-3, -4, -10 as the inbox can keep them; MSH-9, -11, -12 as pedipacs handles them."""
    for number, limit in ((3, MAX_SENDER), (4, MAX_SENDER), (10, MAX_CONTROL_ID)):
        if len(header.value(number)) > limit:
            raise Hl7ContentError(
                f"MSH-{number} is longer than {limit} characters", Location("MSH", 1, number)
            )
    if not header.control_id:
        raise Hl7ContentError(
            "MSH-10 is empty: the message control ID is required",
            Location("MSH", 1, 10),
            ErrorCode.REQUIRED_FIELD_MISSING,
        )
    version = header.version
    if version and not version.startswith("2."):
        raise MessageRejected(
            f"MSH-12: version {version[:12]!r} is not supported (HL7 v2.x)",
            ErrorCode.UNSUPPORTED_VERSION_ID,
            Location("MSH", 1, 12),
        )
    processing = header.value(11).upper()
    if processing and processing not in PROCESSING_IDS:
        raise MessageRejected(
            f"MSH-11: processing ID {processing[:8]!r} is not P, T or D",
            ErrorCode.UNSUPPORTED_PROCESSING_ID,
            Location("MSH", 1, 11),
        )
    code, trigger = header.message_code, header.trigger_event
    if not code:
        raise Hl7ContentError(
            "MSH-9 is empty: the message type is required",
            Location("MSH", 1, 9),
            ErrorCode.REQUIRED_FIELD_MISSING,
        )
    if code not in MESSAGE_CODES:
        raise MessageRejected(
            f"MSH-9: message type {code[:8]!r} is not supported (ADT, ORM, OMI)",
            ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
            Location("MSH", 1, 9, 1),
        )
    if (code, trigger) not in HANDLERS:
        raise MessageRejected(
            f"MSH-9: event {code}^{trigger[:8]} is not supported",
            ErrorCode.UNSUPPORTED_EVENT_CODE,
            Location("MSH", 1, 9, 2),
        )


def _log(
    header: Header, origin: Origin, acknowledgement: Acknowledgement, *, duplicate: bool
) -> None:
    level = logging.DEBUG if acknowledgement.code is AckCode.ACCEPTED else logging.INFO
    log.log(
        level,
        "HL7 %s %s from %s at %s: %s%s%s",
        header.message_type or "?",
        header.control_id[:40] or "?",
        origin.user or "?",
        origin.remote_host or "?",
        acknowledgement.code.value,
        " (duplicate)" if duplicate else "",
        f" {acknowledgement.text}" if acknowledgement.text else "",
    )
