"""Clinical records as other systems read them (the FHIR door): patients, orders, studies and
reports found by their keys, identifiers and references, each search limited to the patients
the asker may see and audited.

- A record the asker may not see is as good as missing (`UnknownClinicalRecordError`, never a
  refusal that would tell it exists).
- Searches leave out patients merged into another (HL7 A40); a merged record is still read by
  its key, pointing at the survivor.
- Reports are those released (preliminary, final, amended), as of their newest released
  version: drafts stay with the radiologists.
- Every read is audited as a read of its record (patient 110110, order 110109, study 110103,
  report 110111), every search as a query (110112), committed before the answer is returned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select, true
from sqlalchemy.orm import InstrumentedAttribute, Session

from pedipacs.db.engine import Database
from pedipacs.db.tables import ImagingOrder, Patient, PatientIdentifier, Report, Study
from pedipacs.errors import NotFound
from pedipacs.model.clinical import (
    AllOf,
    ClinicalReport,
    Criteria,
    DateRange,
    IdentifierKind,
    IdentifierMatch,
    OrderCriteria,
    OrderRecord,
    PatientCriteria,
    PatientRecord,
    RecordPage,
    ReportCriteria,
    StudyCriteria,
    StudyRecord,
    describe,
)
from pedipacs.model.identifiers import is_valid_uid
from pedipacs.model.origin import Origin
from pedipacs.model.reports import ReportStatus
from pedipacs.model.values import pn_search_form
from pedipacs.reports.clinical_views import (
    order_records,
    patient_records,
    report_records,
    study_records,
)
from pedipacs.reports.template_store import ReportTemplateService
from pedipacs.security.audit import AuditEventId, AuditRecord, audited_read, record, record_query

T = TypeVar("T")
R = TypeVar("R")
MAX_KEY = 2**63 - 1
KNOWN_SEXES = ("M", "F", "O")


class UnknownClinicalRecordError(NotFound):
    """No record has that key (or it is about a patient the asker may not see)."""


class ClinicalRecordService:
    def __init__(self, database: Database, templates: ReportTemplateService) -> None:
        self._database = database
        self._templates = templates

    # -- patients ---------------------------------------------------------------------------

    def get_patient(self, key: str, origin: Origin) -> PatientRecord:
        """One patient by key, a merged one too; audited (110110 read)."""
        statement = select(Patient.id).where(_is_key(Patient.id, key), _in_scope(origin))
        return self._read(
            statement, patient_records, origin, f"Patient/{key[:64]}",
            lambda p: (AuditEventId.PATIENT_RECORD, p.patient_id, None),
        )  # fmt: skip

    def find_patients(self, criteria: PatientCriteria, origin: Origin) -> RecordPage[PatientRecord]:
        """Patients not merged into another, by id, identifier, name, birth date and sex."""
        statement = select(Patient.id).where(
            Patient.merged_into_fk.is_(None), _in_scope(origin), *_patient_conditions(criteria)
        )
        return self._search(
            "Patient", statement, Patient.id, criteria, patient_records, origin,
            lambda p: p.patient_id,
        )  # fmt: skip

    # -- orders -----------------------------------------------------------------------------

    def get_order(self, key: str, origin: Origin) -> OrderRecord:
        """One imaging order by key; audited (110109 read)."""
        statement = _orders(origin).where(_is_key(ImagingOrder.id, key))
        return self._read(
            statement, order_records, origin, f"ServiceRequest/{key[:64]}",
            lambda o: (AuditEventId.ORDER_RECORD, o.patient.patient_id, None),
        )  # fmt: skip

    def find_orders(self, criteria: OrderCriteria, origin: Origin) -> RecordPage[OrderRecord]:
        """Imaging orders by id, patient, identifier and status; newest first."""
        statement = _orders(origin).where(*_order_conditions(criteria))
        return self._search(
            "ServiceRequest", statement, ImagingOrder.id.desc(), criteria, order_records,
            origin, lambda o: o.patient.patient_id,
        )  # fmt: skip

    # -- studies ----------------------------------------------------------------------------

    def get_study(self, study_instance_uid: str, origin: Origin) -> StudyRecord:
        """One study with its series and instances; audited (110103 read)."""
        uid = study_instance_uid if is_valid_uid(study_instance_uid) else ""
        statement = _studies(origin).where(Study.study_instance_uid == uid)
        return self._read(
            statement, study_records, origin, f"ImagingStudy/{study_instance_uid[:64]}",
            lambda s: (AuditEventId.INSTANCES_ACCESSED, s.patient.patient_id,
                       s.study_instance_uid),
        )  # fmt: skip

    def find_studies(self, criteria: StudyCriteria, origin: Origin) -> RecordPage[StudyRecord]:
        """Studies by UID, patient, identifier, order and date; newest first."""
        statement = _studies(origin).where(*_study_conditions(criteria))
        return self._search(
            "ImagingStudy", statement, Study.id.desc(), criteria, study_records, origin,
            lambda s: s.patient.patient_id,
        )  # fmt: skip

    # -- reports ----------------------------------------------------------------------------

    def get_report(self, key: str, origin: Origin) -> ClinicalReport:
        """One released report by key; audited (110111 read)."""
        statement = _reports(origin).where(_is_key(Report.id, key))
        return self._read(
            statement, self._report_records, origin, f"DiagnosticReport/{key[:64]}",
            lambda r: (AuditEventId.PROCEDURE_RECORD, r.patient.patient_id,
                       r.study_instance_uids[0] if r.study_instance_uids else None),
        )  # fmt: skip

    def find_reports(self, criteria: ReportCriteria, origin: Origin) -> RecordPage[ClinicalReport]:
        """Released reports by id, patient, identifier, order and status; newest first."""
        statement = _reports(origin).where(*_report_conditions(criteria))
        return self._search(
            "DiagnosticReport", statement, Report.id.desc(), criteria, self._report_records,
            origin, lambda r: r.patient.patient_id,
        )  # fmt: skip

    def _report_records(self, session: Session, keys: Sequence[int]) -> list[ClinicalReport]:
        return report_records(session, self._templates, keys)

    # -- the two shapes of every method -----------------------------------------------------

    def _read(
        self,
        statement: Select[int],
        load: Callable[[Session, Sequence[int]], list[R]],
        origin: Origin,
        name: str,
        audited: Callable[[R], tuple[AuditEventId, str, str | None]],
    ) -> R:
        def read(session: Session) -> R:
            key = session.scalar(statement.limit(1))
            if key is None:
                raise UnknownClinicalRecordError(f"no {name} that you may see")
            [found] = load(session, [key])
            return found

        def audit(session: Session, found: R) -> None:
            event, patient_id, study_instance_uid = audited(found)
            record(
                session,
                AuditRecord(
                    event, "R", origin, patient_id=patient_id,
                    study_instance_uid=study_instance_uid, detail=f"FHIR {name} read",
                ),
            )  # fmt: skip

        return audited_read(self._database, read, audit)

    def _search(
        self,
        what: str,
        statement: Select[int],
        order_by: ColumnElement[int] | InstrumentedAttribute[int],
        criteria: Criteria,
        load: Callable[[Session, Sequence[int]], list[R]],
        origin: Origin,
        patient_of: Callable[[R], str],
    ) -> RecordPage[R]:
        def read(session: Session) -> RecordPage[R]:
            total = session.scalar(select(func.count()).select_from(statement.subquery()))
            keys: list[int] = []
            if criteria.count > 0:
                keys = list(
                    session.scalars(
                        statement.order_by(order_by).offset(criteria.offset).limit(criteria.count)
                    )
                )
            items = tuple(load(session, keys))
            return RecordPage(items, int(total or 0), criteria.offset, criteria.count)

        def audit(session: Session, page: RecordPage[R]) -> None:
            record_query(
                session, origin, (patient_of(item) for item in page.items),
                f"FHIR {what} search ({describe(criteria)}): {len(page.items)} of {page.total}",
            )  # fmt: skip

        return audited_read(self._database, read, audit)


# -- what a search is made of ----------------------------------------------------------------


def _orders(origin: Origin) -> Select[int]:
    return (
        select(ImagingOrder.id)
        .join(Patient, Patient.id == ImagingOrder.patient_fk)
        .where(_in_scope(origin))
    )


def _studies(origin: Origin) -> Select[int]:
    return select(Study.id).join(Patient, Patient.id == Study.patient_fk).where(_in_scope(origin))


def _reports(origin: Origin) -> Select[int]:
    return (
        select(Report.id)
        .join(ImagingOrder, ImagingOrder.id == Report.order_fk)
        .join(Patient, Patient.id == ImagingOrder.patient_fk)
        .where(Report.status != ReportStatus.DRAFT, _in_scope(origin))
    )


def _in_scope(origin: Origin) -> ColumnElement[bool]:
    if origin.patient_scope is None:
        return true()
    return Patient.patient_id.in_(sorted(origin.patient_scope))


def _all_of(
    groups: AllOf[T], condition: Callable[[T], ColumnElement[bool]]
) -> list[ColumnElement[bool]]:
    """Every group must match, any value in a group; an empty group matches nothing."""
    return [or_(false(), *(condition(value) for value in group)) for group in groups]


def _is_key(column: InstrumentedAttribute[Any], key: str) -> ColumnElement[bool]:
    """A logical id names a row key; anything but a number names nothing."""
    text = key.strip()
    if not text.isascii() or not text.isdigit() or int(text) > MAX_KEY:
        return false()
    return column == int(text)


def _patient_conditions(criteria: PatientCriteria) -> list[ColumnElement[bool]]:
    return [
        *_all_of(criteria.keys, lambda key: _is_key(Patient.id, key)),
        *_all_of(criteria.identifiers, _patient_identifier),
        *_all_of(criteria.names, lambda text: or_(_family(text), _given(text))),
        *_all_of(criteria.families, _family),
        *_all_of(criteria.givens, _given),
        *_all_of(criteria.birth_dates, lambda r: _in_range(Patient.patient_birth_date, r)),
        *_all_of(criteria.sexes, _sex),
    ]


def _order_conditions(criteria: OrderCriteria) -> list[ColumnElement[bool]]:
    return [
        *_all_of(criteria.keys, lambda key: _is_key(ImagingOrder.id, key)),
        *_all_of(criteria.patients, lambda key: _is_key(ImagingOrder.patient_fk, key)),
        *_all_of(criteria.patient_identifiers, _patient_identifier),
        *_all_of(criteria.identifiers, _order_identifier),
        *_all_of(criteria.statuses, lambda status: ImagingOrder.status == str(status)),
    ]


def _study_conditions(criteria: StudyCriteria) -> list[ColumnElement[bool]]:
    return [
        *_all_of(criteria.keys, lambda uid: Study.study_instance_uid == uid),
        *_all_of(criteria.patients, lambda key: _is_key(Study.patient_fk, key)),
        *_all_of(criteria.patient_identifiers, _patient_identifier),
        *_all_of(criteria.identifiers, _study_identifier),
        *_all_of(criteria.orders, lambda key: _is_key(Study.order_fk, key)),
        *_all_of(criteria.study_dates, lambda r: _in_range(Study.study_date, r)),
    ]


def _report_conditions(criteria: ReportCriteria) -> list[ColumnElement[bool]]:
    return [
        *_all_of(criteria.keys, lambda key: _is_key(Report.id, key)),
        *_all_of(criteria.patients, lambda key: _is_key(ImagingOrder.patient_fk, key)),
        *_all_of(criteria.patient_identifiers, _patient_identifier),
        *_all_of(criteria.identifiers, _order_identifier),
        *_all_of(criteria.orders, lambda key: _is_key(Report.order_fk, key)),
        *_all_of(criteria.statuses, lambda status: Report.status == str(status)),
    ]


def _patient_identifier(match: IdentifierMatch) -> ColumnElement[bool]:
    """Any identifier the patient is known by, or (patients only images told about) their
    Patient ID and issuer."""
    if match.kind is not IdentifierKind.PATIENT_ID:
        return false()
    known = select(PatientIdentifier.id).where(PatientIdentifier.patient_fk == Patient.id)
    primary: list[ColumnElement[bool]] = []
    if match.value is not None:
        known = known.where(PatientIdentifier.identifier == match.value)
        primary.append(Patient.patient_id == match.value)
    if match.issuer is not None:
        known = known.where(PatientIdentifier.issuer == match.issuer)
        primary.append(Patient.issuer_of_patient_id == match.issuer)
    return or_(known.exists(), and_(true(), *primary))


def _order_identifier(match: IdentifierMatch) -> ColumnElement[bool]:
    columns = {
        IdentifierKind.ACCESSION_NUMBER: ImagingOrder.accession_number,
        IdentifierKind.PLACER_ORDER_NUMBER: ImagingOrder.placer_order_number,
        IdentifierKind.FILLER_ORDER_NUMBER: ImagingOrder.filler_order_number,
    }
    column = columns.get(match.kind)
    if column is None:
        return false()
    return column.is_not(None) if match.value is None else column == match.value


def _study_identifier(match: IdentifierMatch) -> ColumnElement[bool]:
    """By Study Instance UID, or by accession number: the images' own, or their order's."""
    if match.kind is IdentifierKind.STUDY_INSTANCE_UID:
        return true() if match.value is None else Study.study_instance_uid == match.value
    if match.kind is not IdentifierKind.ACCESSION_NUMBER:
        return false()
    if match.value is None:
        return or_(Study.accession_number.is_not(None), Study.order_fk.is_not(None))
    of_order = select(ImagingOrder.id).where(ImagingOrder.accession_number == match.value)
    return or_(Study.accession_number == match.value, Study.order_fk.in_(of_order))


def _like_prefix(text: str) -> str:
    prefix = pn_search_form(text) or ""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _family(text: str) -> ColumnElement[bool]:
    return Patient.patient_name_search.like(f"{_like_prefix(text)}%", escape="\\")


def _given(text: str) -> ColumnElement[bool]:
    """Any name part after the family name (given, middle)."""
    return Patient.patient_name_search.like(f"%^{_like_prefix(text)}%", escape="\\")


def _in_range(column: InstrumentedAttribute[Any], dates: DateRange) -> ColumnElement[bool]:
    bounds: list[ColumnElement[bool]] = [column.is_not(None)]
    if dates.earliest is not None:
        bounds.append(column >= dates.earliest)
    if dates.latest is not None:
        bounds.append(column <= dates.latest)
    return and_(*bounds)


def _sex(sex: str | None) -> ColumnElement[bool]:
    if sex is None:
        return or_(Patient.patient_sex.is_(None), Patient.patient_sex.not_in(KNOWN_SEXES))
    return Patient.patient_sex == sex
