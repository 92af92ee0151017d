"""What to do when a SOP Instance UID that is already stored arrives again."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.orm import Session

from pedipacs.config import DuplicatePolicy
from pedipacs.db.tables import InstanceConflict
from pedipacs.model.origin import Origin


class DuplicateDecision(StrEnum):
    NEW = "NEW"  # not stored yet
    IGNORE_IDENTICAL = "IGNORE_IDENTICAL"  # same bytes: acknowledge, no second copy
    REPLACE = "REPLACE"  # keep-newest
    KEEP_STORED = "KEEP_STORED"  # keep-first: acknowledge, drop the new object
    REJECT = "REJECT"  # refuse the new object
    REJECT_IDENTITY = "REJECT_IDENTITY"  # same UID under another study/series: always refused


@dataclass(frozen=True, slots=True)
class StoredIdentity:
    sha256: str
    study_instance_uid: str
    series_instance_uid: str
    blob_key: str


def decide(
    policy: DuplicatePolicy,
    stored: StoredIdentity | None,
    *,
    sha256: str,
    study_instance_uid: str,
    series_instance_uid: str,
) -> DuplicateDecision:
    """Apply the duplicate policy.

    An object moving to another study or series is refused whatever the policy: it would
    silently re-file an image under a different examination, possibly a different child.
    """
    if stored is None:
        return DuplicateDecision.NEW
    if stored.sha256 == sha256:
        return DuplicateDecision.IGNORE_IDENTICAL
    if (stored.study_instance_uid, stored.series_instance_uid) != (
        study_instance_uid,
        series_instance_uid,
    ):
        return DuplicateDecision.REJECT_IDENTITY
    return {
        DuplicatePolicy.REJECT: DuplicateDecision.REJECT,
        DuplicatePolicy.KEEP_NEWEST: DuplicateDecision.REPLACE,
        DuplicatePolicy.KEEP_FIRST: DuplicateDecision.KEEP_STORED,
    }[policy]


def record_conflict(
    session: Session,
    *,
    decision: DuplicateDecision,
    sop_instance_uid: str,
    stored: StoredIdentity,
    received_sha256: str,
    study_instance_uid: str,
    series_instance_uid: str,
    origin: Origin,
) -> None:
    if decision is DuplicateDecision.REJECT_IDENTITY:
        reason = (
            f"stored under study {stored.study_instance_uid} series "
            f"{stored.series_instance_uid}; received under study {study_instance_uid} "
            f"series {series_instance_uid}"
        )
    else:
        reason = "same SOP Instance UID with different content"
    session.add(
        InstanceConflict(
            sop_instance_uid=sop_instance_uid,
            reason=reason[:256],
            resolution=str(decision),
            stored_sha256=stored.sha256,
            received_sha256=received_sha256,
            received_study_instance_uid=study_instance_uid,
            received_series_instance_uid=series_instance_uid,
            source=f"{origin.door}:{origin.who}@{origin.remote_host or ''}"[:128],
        )
    )
