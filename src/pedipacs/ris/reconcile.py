"""Arriving studies matched to their orders, and the exceptions list for the studies that match
none or disagree with theirs.

A new study is reconciled once, with its first image, inside the ingest transaction. It is
matched by Study Instance UID (the one the worklist gave the modality), else by accession
number:

- the order's patient is the images' patient (both followed through merges): the study joins
  the order, and a scheduled order moves to arrived. Never backwards: an order that MPPS has in
  progress or completed, a discontinued or a reported one, keeps its status;
- the order is another patient's: an exception 'patient-differs', and the study is NOT
  attached: images are never silently put with the wrong child;
- the order was cancelled: an exception 'order-cancelled';
- no order: an exception 'no-order'. Placing the order later resolves it the same way.

The images are stored whatever is found: what reconciliation finds never fails an ingest (only
a database error does). A person resolves an open exception on the exceptions page: attach the
study to an order (one of another patient only with an explicit confirmation: the study then
moves to that patient), or dismiss it with a note. Each resolution is audited.

As in `ris/orders.py`, the functions taking a `Session` work in the caller's transaction;
`ExceptionService` gives them transactions of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import Row, Select, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from pedipacs.db.base import utc_now
from pedipacs.db.engine import Database
from pedipacs.db.tables import (
    ImageException,
    ImagingOrder,
    Patient,
    PatientIdentifier,
    RequestedProcedure,
    Study,
)
from pedipacs.errors import Conflict, InvalidInput, NotFound
from pedipacs.model.origin import Origin
from pedipacs.model.ris import OrderStatus
from pedipacs.ris.identity import audit_study_update, move_study
from pedipacs.security.audit import AuditEventId, AuditRecord, record, record_query

MAX_NOTE = 1000
MAX_ACCESSION = 64  # what a study may carry (the order side allows 16)
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# A merge chain longer than this is a loop, not a history (as in archive/index.py).
MAX_MERGE_HOPS = 16


class ExceptionReason(StrEnum):
    NO_ORDER = "no-order"
    PATIENT_DIFFERS = "patient-differs"
    ORDER_CANCELLED = "order-cancelled"


class ExceptionState(StrEnum):
    OPEN = "open"
    ATTACHED = "attached"
    DISMISSED = "dismissed"


# -- errors ---------------------------------------------------------------------------------


class UnknownExceptionError(NotFound):
    """No image exception has that number (or its patient is outside the asker's care)."""


class ExceptionResolvedError(Conflict):
    """The exception was attached or dismissed already."""


class UnknownAccessionError(NotFound):
    """No order has that accession number."""


class CancelledOrderError(Conflict):
    """The order was cancelled: images are not attached to it."""


@dataclass(frozen=True, slots=True)
class PatientLabel:
    """A patient as a person checking an identity sees them."""

    patient_id: str
    issuer: str
    name: str | None
    birth_date: date | None
    sex: str | None

    def __str__(self) -> str:
        identity = f"{self.patient_id}^^^{self.issuer}" if self.issuer else self.patient_id
        return f"{identity} ({self.name})" if self.name else identity


class OtherPatientError(Conflict):
    """The order is another patient's: attaching moves the study to them, which must be
    confirmed explicitly (`confirm_other_patient`)."""

    def __init__(self, message: str, images: PatientLabel, order: PatientLabel) -> None:
        super().__init__(message)
        self.images = images
        self.order = order


# -- what the services return -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reconciled:
    """What reconciling one study found: the order it joined, or the exception it opened."""

    study_instance_uid: str
    accession_number: str | None  # of the order matched, if any
    exception: ExceptionReason | None


@dataclass(frozen=True, slots=True)
class OrderLabel:
    accession_number: str
    status: OrderStatus
    patient: PatientLabel


@dataclass(frozen=True, slots=True)
class ImageExceptionSummary:
    """An exception with its study, the images' patient (the study's patient once attached)
    and the order it names, when one was matched or chosen."""

    id: int
    reason: ExceptionReason
    state: ExceptionState
    detail: str | None
    created_at: datetime
    resolved_by: str | None
    resolved_at: datetime | None
    study_instance_uid: str
    accession_number: str | None
    study_date: date | None
    study_description: str | None
    modalities: tuple[str, ...]
    series: int
    instances: int
    patient: PatientLabel
    order: OrderLabel | None


@dataclass(frozen=True, slots=True)
class ExceptionPage:
    items: tuple[ImageExceptionSummary, ...]
    offset: int
    limit: int
    has_more: bool


# -- matching ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Match:
    order_id: int
    accession_number: str
    patient_fk: int  # the surviving patient
    status: str
    by: str  # what matched, for the detail


@dataclass(frozen=True, slots=True)
class _Verdict:
    match: _Match | None
    reason: ExceptionReason | None  # None: attach
    detail: str


_STUDY_COLUMNS = (
    Study.id,
    Study.patient_fk,
    Study.study_instance_uid,
    Study.accession_number,
    Study.order_fk,
)
_ORDER_COLUMNS = (
    ImagingOrder.id,
    ImagingOrder.accession_number,
    ImagingOrder.patient_fk,
    ImagingOrder.status,
)


def _survivor(session: Session, patient_fk: int) -> int:
    """The patient a (possibly merged) patient row stands for now."""
    for _ in range(MAX_MERGE_HOPS):
        merged_into = session.scalar(select(Patient.merged_into_fk).where(Patient.id == patient_fk))
        if merged_into is None:
            break
        patient_fk = int(merged_into)
    return patient_fk


def _match(session: Session, study_uid: str, accession: str | None) -> _Match | None:
    """The order by Study Instance UID, else by accession number (both unique, indexed)."""
    by = "Study Instance UID"
    row = session.execute(
        select(*_ORDER_COLUMNS)
        .join(RequestedProcedure, RequestedProcedure.order_fk == ImagingOrder.id)
        .where(RequestedProcedure.study_instance_uid == study_uid)
    ).first()
    if row is None and accession:
        by = "accession number"
        row = session.execute(
            select(*_ORDER_COLUMNS).where(ImagingOrder.accession_number == accession)
        ).first()
    if row is None:
        return None
    return _Match(
        order_id=row.id,
        accession_number=row.accession_number,
        patient_fk=_survivor(session, row.patient_fk),
        status=row.status,
        by=by,
    )


def _verdict(
    session: Session, study_uid: str, accession_number: str | None, patient_fk: int
) -> _Verdict:
    accession = (accession_number or "").strip() or None
    match = _match(session, study_uid, accession)
    if match is None:
        carried = f"accession number {accession}" if accession else "no accession number"
        return _Verdict(
            None,
            ExceptionReason.NO_ORDER,
            f"no order has Study Instance UID {study_uid}; the images carry {carried}",
        )
    if match.status == OrderStatus.CANCELLED:
        return _Verdict(
            match,
            ExceptionReason.ORDER_CANCELLED,
            f"order {match.accession_number} (matched by {match.by}) was cancelled",
        )
    images_patient = _survivor(session, patient_fk)
    if images_patient != match.patient_fk:
        return _Verdict(
            match,
            ExceptionReason.PATIENT_DIFFERS,
            _differs(session, match, images_patient),
        )
    return _Verdict(match, None, "")


def _differs(session: Session, match: _Match, images_patient: int) -> str:
    images = session.get_one(Patient, images_patient)
    order = session.get_one(Patient, match.patient_fk)
    detail = (
        f"order {match.accession_number} (matched by {match.by}) is for patient "
        f"{_label(order)}; the images are of patient {_label(images)}"
    )
    # Hints for the person resolving it; never a reason to attach on one's own.
    if images.patient_id == order.patient_id:
        detail += "; the same Patient ID under another issuer"
    elif session.scalar(
        select(PatientIdentifier.id).where(
            PatientIdentifier.patient_fk == order.id,
            PatientIdentifier.identifier == images.patient_id,
            PatientIdentifier.issuer == images.issuer_of_patient_id,
        )
    ):
        detail += "; the order's patient is also known by the images' Patient ID"
    return detail


def _attach(session: Session, study_id: int, order_id: int) -> bool:
    """Join the study to the order; a scheduled order moves to arrived (a conditional update:
    an MPPS moving the same order meanwhile is never undone). Whether the order moved."""
    session.execute(update(Study).where(Study.id == study_id).values(order_fk=order_id))
    # The first images' arrival, whatever the modality reported before (MPPS often comes first).
    session.execute(
        update(ImagingOrder)
        .where(ImagingOrder.id == order_id, ImagingOrder.images_arrived_at.is_(None))
        .values(images_arrived_at=utc_now())
    )
    moved = session.execute(
        update(ImagingOrder)
        .where(ImagingOrder.id == order_id, ImagingOrder.status == OrderStatus.SCHEDULED)
        .values(status=OrderStatus.ARRIVED)
    )
    return bool(moved.rowcount)  # type: ignore[attr-defined]


def reconcile_new_study(
    session: Session, study_id: int, *, unmatched_is_exception: bool = True
) -> Reconciled | None:
    """Match a study that just got its first image (called by ingest, in its transaction):
    attach it to its order or open an exception. A few indexed lookups; raises nothing for what
    it finds. None when the study was reconciled before (a study emptied and sent again).

    Without `unmatched_is_exception` (files imported from a folder: priors, outside studies) a
    study matching no order is left alone instead of opening a 'no-order' exception."""
    study = session.execute(select(*_STUDY_COLUMNS).where(Study.id == study_id)).one()
    if study.order_fk is not None or session.scalar(
        select(ImageException.id).where(ImageException.study_fk == study_id)
    ):
        return None
    verdict = _verdict(session, study.study_instance_uid, study.accession_number, study.patient_fk)
    match = verdict.match
    if verdict.reason is ExceptionReason.NO_ORDER and not unmatched_is_exception:
        return None
    if verdict.reason is None:
        if match is not None:
            _attach(session, study_id, match.order_id)
    else:
        session.add(
            ImageException(
                study_fk=study_id,
                reason=verdict.reason,
                order_fk=match.order_id if match else None,
                detail=verdict.detail,
                state=ExceptionState.OPEN,
            )
        )
        session.flush()
    return Reconciled(
        study.study_instance_uid, match.accession_number if match else None, verdict.reason
    )


def reconcile_order(session: Session, order: ImagingOrder, origin: Origin) -> list[Reconciled]:
    """An order just placed: the studies that arrived before it (open 'no-order' exceptions with
    one of its Study Instance UIDs or its accession number) are matched again, as at ingest:
    attached when the patient is the same, else their exception says why (still open)."""
    uids = select(RequestedProcedure.study_instance_uid).where(
        RequestedProcedure.order_fk == order.id
    )
    rows = session.execute(
        select(ImageException, *_STUDY_COLUMNS)
        .join(Study, Study.id == ImageException.study_fk)
        .where(
            ImageException.state == ExceptionState.OPEN,
            ImageException.reason == ExceptionReason.NO_ORDER,
            or_(
                Study.study_instance_uid.in_(uids),
                Study.accession_number == order.accession_number,
            ),
        )
        .order_by(ImageException.id)
        .with_for_update(of=ImageException)
    ).all()
    outcomes = []
    for row in rows:
        exception: ImageException = row[0]
        verdict = _verdict(session, row.study_instance_uid, row.accession_number, row.patient_fk)
        match = verdict.match
        if match is None:
            continue
        exception.order_fk = match.order_id
        if verdict.reason is None:
            _attach(session, row.id, match.order_id)
            exception.state = ExceptionState.ATTACHED
            exception.resolved_by = origin.who[:128]
            exception.resolved_at = utc_now()
            exception.detail = (
                f"{exception.detail}; attached when order {match.accession_number} was placed"
            )
            _audit_order(
                session, origin, match.patient_fk, row.study_instance_uid,
                f"order {match.accession_number}: study {row.study_instance_uid}, which arrived "
                f"before the order, attached (exception {exception.id} resolved)",
            )  # fmt: skip
        else:
            exception.reason = verdict.reason
            exception.detail = verdict.detail
        outcomes.append(Reconciled(row.study_instance_uid, match.accession_number, verdict.reason))
    session.flush()
    return outcomes


# -- resolving by hand -------------------------------------------------------------------------


def _open_exception(session: Session, exception_id: int, origin: Origin) -> ImageException:
    exception = session.scalar(
        select(ImageException).where(ImageException.id == exception_id).with_for_update()
    )
    if exception is None:
        raise UnknownExceptionError(f"no image exception {exception_id}")
    study = session.get_one(Study, exception.study_fk)
    if not origin.sees(session.get_one(Patient, study.patient_fk).patient_id):
        raise UnknownExceptionError(f"no image exception {exception_id}")
    if exception.state != ExceptionState.OPEN:
        when = f" at {exception.resolved_at:%Y-%m-%d %H:%M} UTC" if exception.resolved_at else ""
        raise ExceptionResolvedError(
            f"image exception {exception_id} was {exception.state} already, "
            f"by {exception.resolved_by or 'unknown'}{when}"
        )
    return exception


def attach_exception(
    session: Session,
    exception_id: int,
    accession_number: str,
    origin: Origin,
    *,
    confirm_other_patient: bool = False,
) -> ImageException:
    """Attach the exception's study to the order with that accession number. An order of
    another patient needs `confirm_other_patient`: the study then moves to that patient.
    Audited (110109 U; the move itself 110111 U)."""
    accession = accession_number.strip()
    if not accession:
        raise InvalidInput("the accession number is empty")
    if len(accession) > MAX_ACCESSION:
        raise InvalidInput(f"accession number: at most {MAX_ACCESSION} characters")
    exception = _open_exception(session, exception_id, origin)
    order = session.scalar(
        select(ImagingOrder).where(ImagingOrder.accession_number == accession).with_for_update()
    )
    if order is None:
        raise UnknownAccessionError(f"no order has accession number {accession}")
    order_patient = session.get_one(Patient, _survivor(session, order.patient_fk))
    if not origin.sees(order_patient.patient_id):
        raise UnknownAccessionError(f"no order has accession number {accession}")
    if order.status == OrderStatus.CANCELLED:
        raise CancelledOrderError(
            f"order {accession} was cancelled; place a new order or dismiss the exception"
        )
    study = session.get_one(Study, exception.study_fk)
    images_patient = session.get_one(Patient, _survivor(session, study.patient_fk))
    moved = images_patient.id != order_patient.id
    if moved and not confirm_other_patient:
        raise OtherPatientError(
            f"order {accession} is for patient {_label(order_patient)}, the images are of "
            f"patient {_label(images_patient)}: confirm to move the study to "
            f"{_label(order_patient)}",
            images=_patient_label(images_patient),
            order=_patient_label(order_patient),
        )
    if moved:
        move_study(
            session, study, order_patient, origin,
            f"image exception {exception.id} ({exception.reason}) attached to order {accession}",
        )  # fmt: skip
    _attach(session, study.id, order.id)
    exception.state = ExceptionState.ATTACHED
    exception.order_fk = order.id
    exception.resolved_by = origin.who[:128]
    exception.resolved_at = utc_now()
    session.flush()
    _audit_order(
        session, origin, order_patient.id, study.study_instance_uid,
        f"order {accession}: study {study.study_instance_uid} attached (image exception "
        f"{exception.id}, {exception.reason})"
        + (f"; moved from patient {_label(images_patient)}, as confirmed" if moved else ""),
    )  # fmt: skip
    return exception


def dismiss_exception(
    session: Session, exception_id: int, origin: Origin, note: str
) -> ImageException:
    """Close the exception without attaching: the study stays with its patient and no order.
    The note says why. Audited (110111 U)."""
    note = note.strip()
    if not note:
        raise InvalidInput("a note is needed: say why the exception is dismissed")
    if len(note) > MAX_NOTE:
        raise InvalidInput(f"the note is longer than {MAX_NOTE} characters")
    exception = _open_exception(session, exception_id, origin)
    study = session.get_one(Study, exception.study_fk)
    patient = session.get_one(Patient, study.patient_fk)
    exception.state = ExceptionState.DISMISSED
    exception.resolved_by = origin.who[:128]
    exception.resolved_at = utc_now()
    exception.detail = f"{exception.detail or ''}\ndismissed: {note}".strip()
    session.flush()
    audit_study_update(
        session, origin, patient, study,
        f"image exception {exception.id} ({exception.reason}) dismissed: {note}",
    )  # fmt: skip
    return exception


def _audit_order(
    session: Session, origin: Origin, patient_fk: int, study_uid: str, detail: str
) -> None:
    record(
        session,
        AuditRecord(
            AuditEventId.ORDER_RECORD,
            "U",
            origin,
            patient_id=session.get_one(Patient, patient_fk).patient_id,
            study_instance_uid=study_uid,
            detail=detail,
        ),
    )


def _label(patient: Patient) -> str:
    return str(_patient_label(patient))


def _patient_label(patient: Patient) -> PatientLabel:
    return PatientLabel(
        patient_id=patient.patient_id,
        issuer=patient.issuer_of_patient_id,
        name=patient.patient_name,
        birth_date=patient.patient_birth_date,
        sex=patient.patient_sex,
    )


# -- reading -----------------------------------------------------------------------------------

_IMAGES_PATIENT = aliased(Patient, name="images_patient")
_ORDER_PATIENT = aliased(Patient, name="order_patient")


def _summaries() -> Select[ImageException, Study, Patient, ImagingOrder, Patient]:
    return (
        select(ImageException, Study, _IMAGES_PATIENT, ImagingOrder, _ORDER_PATIENT)
        .join(Study, Study.id == ImageException.study_fk)
        .join(_IMAGES_PATIENT, _IMAGES_PATIENT.id == Study.patient_fk)
        .outerjoin(ImagingOrder, ImagingOrder.id == ImageException.order_fk)
        .outerjoin(_ORDER_PATIENT, _ORDER_PATIENT.id == ImagingOrder.patient_fk)
    )


def _summary(
    row: Row[ImageException, Study, Patient, ImagingOrder | None, Patient | None],
) -> ImageExceptionSummary:
    exception, study, patient, order, order_patient = row
    return ImageExceptionSummary(
        id=exception.id,
        reason=ExceptionReason(exception.reason),
        state=ExceptionState(exception.state),
        detail=exception.detail,
        created_at=exception.created_at,
        resolved_by=exception.resolved_by,
        resolved_at=exception.resolved_at,
        study_instance_uid=study.study_instance_uid,
        accession_number=study.accession_number,
        study_date=study.study_date,
        study_description=study.study_description,
        modalities=tuple(m for m in study.modalities_in_study.split("\\") if m),
        series=study.number_of_study_related_series,
        instances=study.number_of_study_related_instances,
        patient=_patient_label(patient),
        order=(
            OrderLabel(order.accession_number, OrderStatus(order.status),
                       _patient_label(order_patient))
            if order is not None and order_patient is not None
            else None
        ),
    )  # fmt: skip


def search_exceptions(
    session: Session,
    state: ExceptionState,
    offset: int,
    limit: int,
    patient_scope: frozenset[str] | None,
) -> ExceptionPage:
    """One page of exceptions in `state`, newest first."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidInput(f"limit must be 1 to {MAX_PAGE_SIZE}")
    if offset < 0:
        raise InvalidInput("offset must not be negative")
    query = _summaries().where(ImageException.state == state)
    if patient_scope is not None:
        query = query.where(_IMAGES_PATIENT.patient_id.in_(sorted(patient_scope)))
    rows = session.execute(
        query.order_by(ImageException.created_at.desc(), ImageException.id.desc())
        .offset(offset)
        .limit(limit + 1)
    ).all()
    return ExceptionPage(
        tuple(_summary(row) for row in rows[:limit]), offset, limit, len(rows) > limit
    )


def exception_summary(session: Session, exception_id: int) -> ImageExceptionSummary:
    row = session.execute(_summaries().where(ImageException.id == exception_id)).first()
    if row is None:
        raise UnknownExceptionError(f"no image exception {exception_id}")
    return _summary(row)


def count_open(session: Session) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(ImageException)
            .where(ImageException.state == ExceptionState.OPEN)
        )
        or 0
    )


class ExceptionService:
    """The exceptions list and its resolutions, each in a transaction of its own."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def search(
        self,
        origin: Origin,
        *,
        state: ExceptionState = ExceptionState.OPEN,
        offset: int = 0,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> ExceptionPage:
        """One page of exceptions, newest first, audited as a query (110112)."""
        with self._database.reading() as session:
            page = search_exceptions(session, state, offset, limit, origin.patient_scope)
        with self._database.unit_of_work() as session:
            record_query(
                session,
                origin,
                (item.patient.patient_id for item in page.items),
                f"image exceptions: {state}, from {offset}; {len(page.items)} shown",
            )
        return page

    def get(self, exception_id: int, origin: Origin) -> ImageExceptionSummary:
        with self._database.reading() as session:
            found = exception_summary(session, exception_id)
        if not origin.sees(found.patient.patient_id):
            raise UnknownExceptionError(f"no image exception {exception_id}")
        return found

    def count_open(self) -> int:
        with self._database.reading() as session:
            return count_open(session)

    def attach(
        self,
        exception_id: int,
        accession_number: str,
        origin: Origin,
        *,
        confirm_other_patient: bool = False,
    ) -> ImageExceptionSummary:
        def work(session: Session) -> ImageExceptionSummary:
            attach_exception(
                session, exception_id, accession_number, origin,
                confirm_other_patient=confirm_other_patient,
            )  # fmt: skip
            return exception_summary(session, exception_id)

        return self._database.transaction(work)

    def dismiss(self, exception_id: int, origin: Origin, note: str) -> ImageExceptionSummary:
        def work(session: Session) -> ImageExceptionSummary:
            dismiss_exception(session, exception_id, origin, note)
            return exception_summary(session, exception_id)

        return self._database.transaction(work)
