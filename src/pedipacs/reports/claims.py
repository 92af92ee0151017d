"""Reading claims: a radiologist who opens an exam to report it holds it for a while, so a
colleague does not read it too. The claim is renewed by every save, released by signing the
final report (or by hand), and lapses by itself after its time, so an exam left open on a
workstation at the end of a shift returns to the worklist."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from pedipacs.db.base import aware_utc, utc_now
from pedipacs.db.tables import ImagingOrder, ReadingClaim
from pedipacs.errors import Conflict
from pedipacs.model.reports import ClaimRecord


class ClaimedByOtherError(Conflict):
    """Another radiologist is reading this exam; their claim has not lapsed."""


def current_claim(session: Session, order_id: int, now: datetime) -> ReadingClaim | None:
    """The exam's claim if it has not lapsed."""
    claim = session.scalars(select(ReadingClaim).where(ReadingClaim.order_fk == order_id)).first()
    if claim is None or aware_utc(claim.expires_at) <= now:
        return None
    return claim


def take_claim(
    session: Session, order: ImagingOrder, username: str, duration: timedelta
) -> ClaimRecord:
    """Claim (or renew the claim on) an exam for `username`; refused while another holds it."""
    now = utc_now()
    claim = session.scalars(
        select(ReadingClaim).where(ReadingClaim.order_fk == order.id).with_for_update()
    ).first()
    if claim is not None and claim.username != username and aware_utc(claim.expires_at) > now:
        until = aware_utc(claim.expires_at).strftime("%H:%M UTC")
        raise ClaimedByOtherError(
            f"exam {order.accession_number} is being read by {claim.username} (claimed until "
            f"{until}); it returns to the worklist when they sign, release it, or the claim lapses"
        )
    if claim is None:
        claim = ReadingClaim(order_fk=order.id, username=username, claimed_at=now)
        session.add(claim)
    elif claim.username != username or aware_utc(claim.expires_at) <= now:
        claim.username, claim.claimed_at = username, now
    claim.expires_at = now + duration
    return ClaimRecord(
        order.accession_number, username, aware_utc(claim.claimed_at), aware_utc(claim.expires_at)
    )


def release_claim(session: Session, order_id: int, username: str | None = None) -> bool:
    """Remove the exam's claim (only `username`'s when given); whether one was removed."""
    statement = delete(ReadingClaim).where(ReadingClaim.order_fk == order_id)
    if username is not None:
        statement = statement.where(ReadingClaim.username == username)
    return bool(session.execute(statement).rowcount)  # type: ignore[attr-defined]
