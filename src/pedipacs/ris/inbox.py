"""Hl7Inbox: applies an incoming message at most once, and remembers the answer it got.

A message is known by its sender and control ID (MSH-3, MSH-4, MSH-10). The first time, its
work runs in a savepoint and the message is recorded with its acknowledgement code in the same
transaction: applied and recorded together, or neither. A message seen before is not applied
again; it gets the acknowledgement it got the first time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pedipacs.db.engine import Database
from pedipacs.db.tables import Hl7MessageRecord
from pedipacs.errors import InvalidInput, PedipacsError, StorageUnavailable

MAX_DETAIL = 2000


class AckCode(StrEnum):
    ACCEPTED = "AA"  # applied
    ERROR = "AE"  # the content is wrong: the sender must correct it
    REJECTED = "AR"  # cannot be processed now (or at all, for this receiver): try later


@dataclass(frozen=True, slots=True)
class MessageKey:
    sending_application: str
    sending_facility: str
    control_id: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a message: the acknowledgement code, a reason for AE/AR, and whether
    this delivery was a duplicate of one already answered."""

    code: AckCode
    detail: str | None = None
    duplicate: bool = False


class Hl7Inbox:
    def __init__(self, database: Database) -> None:
        self._database = database

    def receive(
        self, key: MessageKey, message_type: str, apply: Callable[[Session], str | None]
    ) -> Outcome:
        """Apply the message's work once. `apply(session)` raises InvalidInput (-> AE) for
        wrong content and any other PedipacsError (-> AR) when it cannot be done now; what it
        returns is kept as the detail of an AA."""
        if not key.control_id:
            return Outcome(AckCode.ERROR, "MSH-10: the message control ID is empty")
        try:
            with self._database.unit_of_work() as session:
                earlier = self._earlier(session, key)
                if earlier is not None:
                    return earlier
                outcome = self._apply(session, apply)
                if outcome.code is AckCode.REJECTED:
                    return outcome  # not recorded: the sender will send it again
                session.add(
                    Hl7MessageRecord(
                        sending_application=key.sending_application,
                        sending_facility=key.sending_facility,
                        control_id=key.control_id,
                        message_type=message_type[:16],
                        ack_code=outcome.code,
                        detail=(outcome.detail or "")[:MAX_DETAIL] or None,
                    )
                )
                session.flush()
                return outcome
        except IntegrityError:
            # The same message, delivered twice at once: the other delivery applied it.
            with self._database.reading() as session:
                earlier = self._earlier(session, key)
            return earlier or Outcome(AckCode.REJECTED, "delivered twice at once; send again")
        except PedipacsError as error:
            return Outcome(AckCode.REJECTED, str(error))

    @staticmethod
    def _earlier(session: Session, key: MessageKey) -> Outcome | None:
        row = session.execute(
            select(Hl7MessageRecord.ack_code, Hl7MessageRecord.detail).where(
                Hl7MessageRecord.sending_application == key.sending_application,
                Hl7MessageRecord.sending_facility == key.sending_facility,
                Hl7MessageRecord.control_id == key.control_id,
            )
        ).first()
        if row is None:
            return None
        return Outcome(AckCode(row.ack_code), row.detail, duplicate=True)

    @staticmethod
    def _apply(session: Session, apply: Callable[[Session], str | None]) -> Outcome:
        try:
            with session.begin_nested():
                return Outcome(AckCode.ACCEPTED, apply(session))
        except InvalidInput as error:
            return Outcome(AckCode.ERROR, str(error))
        except PedipacsError as error:
            # NotFound (an order for an unknown patient), Conflict (closed order): content the
            # sender must look at, not a retry.
            if isinstance(error, StorageUnavailable):
                return Outcome(AckCode.REJECTED, str(error))
            return Outcome(AckCode.ERROR, str(error))
