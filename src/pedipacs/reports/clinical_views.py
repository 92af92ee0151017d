"""Clinical records read in the caller's session: rows, by key, as the records of
`model/clinical.py`, in the order of the keys given, with a few queries per page rather than
per row. `ClinicalRecordService` (`reports/clinical_records.py`) gives them a transaction,
decides which keys the asker may see, and audits."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pedipacs.db.base import aware_utc
from pedipacs.db.tables import (
    ImagingOrder,
    Instance,
    Patient,
    PatientIdentifier,
    Report,
    ReportVersion,
    RequestedProcedure,
    Series,
    Study,
)
from pedipacs.model.clinical import (
    ClinicalReport,
    InstanceRecord,
    KnownIdentifier,
    OrderRecord,
    PatientRecord,
    PatientReference,
    ProcedureRecord,
    SeriesRecord,
    StudyRecord,
)
from pedipacs.model.reports import Addendum, VersionKind
from pedipacs.model.ris import OrderStatus, Priority
from pedipacs.reports.exams import modalities_of, order_studies
from pedipacs.reports.report_views import report_document
from pedipacs.reports.template_store import ReportTemplateService
from pedipacs.reports.templates import IMPRESSION


def patient_reference(patient: Patient) -> PatientReference:
    return PatientReference(
        key=patient.id,
        patient_id=patient.patient_id,
        issuer=patient.issuer_of_patient_id,
        name=patient.patient_name,
    )


# -- patients -------------------------------------------------------------------------------


def patient_records(session: Session, keys: Sequence[int]) -> list[PatientRecord]:
    if not keys:
        return []
    patients = {p.id: p for p in session.scalars(select(Patient).where(Patient.id.in_(keys)))}
    identifiers: dict[int, list[KnownIdentifier]] = defaultdict(list)
    for row in session.scalars(
        select(PatientIdentifier)
        .where(PatientIdentifier.patient_fk.in_(keys))
        .order_by(PatientIdentifier.id)
    ):
        identifiers[row.patient_fk].append(
            KnownIdentifier(row.identifier, row.issuer, row.type_code)
        )
    replaced: dict[int, list[int]] = defaultdict(list)
    for survivor, merged in session.execute(
        select(Patient.merged_into_fk, Patient.id)
        .where(Patient.merged_into_fk.in_(keys))
        .order_by(Patient.id)
    ):
        if survivor is not None:
            replaced[survivor].append(merged)
    return [
        _patient_record(patients[key], identifiers[key], replaced[key])
        for key in keys
        if key in patients
    ]


def _patient_record(
    patient: Patient, identifiers: list[KnownIdentifier], replaces: list[int]
) -> PatientRecord:
    primary = (patient.patient_id, patient.issuer_of_patient_id)
    first = [i for i in identifiers if (i.identifier, i.issuer) == primary] or [
        KnownIdentifier(patient.patient_id, patient.issuer_of_patient_id, None)
    ]
    others = [i for i in identifiers if (i.identifier, i.issuer) != primary]
    return PatientRecord(
        key=patient.id,
        patient_id=patient.patient_id,
        issuer=patient.issuer_of_patient_id,
        identifiers=(first[0], *others),
        name=patient.patient_name,
        birth_date=patient.patient_birth_date,
        sex=patient.patient_sex,
        multiple_birth=patient.multiple_birth,
        birth_order=patient.birth_order,
        is_temporary=bool(patient.is_temporary),
        merged_into=patient.merged_into_fk,
        replaces=tuple(replaces),
    )


# -- orders ---------------------------------------------------------------------------------


def order_records(session: Session, keys: Sequence[int]) -> list[OrderRecord]:
    if not keys:
        return []
    rows = {
        order.id: (order, patient)
        for order, patient in session.execute(
            select(ImagingOrder, Patient)
            .join(Patient, Patient.id == ImagingOrder.patient_fk)
            .where(ImagingOrder.id.in_(keys))
        )
    }
    procedures: dict[int, list[ProcedureRecord]] = defaultdict(list)
    for row in session.scalars(
        select(RequestedProcedure)
        .where(RequestedProcedure.order_fk.in_(keys))
        .order_by(RequestedProcedure.id)
    ):
        procedures[row.order_fk].append(
            ProcedureRecord(
                requested_procedure_id=row.requested_procedure_id,
                description=row.description,
                code_value=row.code_value,
                coding_scheme=row.coding_scheme,
                code_meaning=row.code_meaning,
                study_instance_uid=row.study_instance_uid,
            )
        )
    return [_order_record(*rows[key], procedures[key]) for key in keys if key in rows]


def _order_record(
    order: ImagingOrder, patient: Patient, procedures: list[ProcedureRecord]
) -> OrderRecord:
    return OrderRecord(
        key=order.id,
        accession_number=order.accession_number,
        placer_order_number=order.placer_order_number,
        filler_order_number=order.filler_order_number,
        status=OrderStatus(order.status),
        priority=Priority(order.priority),
        patient=patient_reference(patient),
        procedures=tuple(procedures),
        reason=order.reason,
        referring_physician=order.referring_physician_name,
        ordered_at=aware_utc(order.ordered_at or order.created_at),
    )


# -- studies --------------------------------------------------------------------------------


def study_records(session: Session, keys: Sequence[int]) -> list[StudyRecord]:
    if not keys:
        return []
    rows = {
        study.id: (study, patient)
        for study, patient in session.execute(
            select(Study, Patient)
            .join(Patient, Patient.id == Study.patient_fk)
            .where(Study.id.in_(keys))
        )
    }
    instances: dict[int, list[InstanceRecord]] = defaultdict(list)
    for series_key, uid, sop_class_uid, number in session.execute(
        select(
            Instance.series_fk, Instance.sop_instance_uid, Instance.sop_class_uid,
            Instance.instance_number,
        )
        .join(Series, Series.id == Instance.series_fk)
        .where(Series.study_fk.in_(keys))
        .order_by(Instance.instance_number.is_(None), Instance.instance_number, Instance.id)
    ):  # fmt: skip
        instances[series_key].append(InstanceRecord(uid, sop_class_uid, number))
    series: dict[int, list[SeriesRecord]] = defaultdict(list)
    for row in session.scalars(
        select(Series)
        .where(Series.study_fk.in_(keys))
        .order_by(Series.series_number.is_(None), Series.series_number, Series.id)
    ):
        series[row.study_fk].append(_series_record(row, instances[row.id]))
    return [_study_record(*rows[key], series[key]) for key in keys if key in rows]


def _series_record(row: Series, instances: list[InstanceRecord]) -> SeriesRecord:
    return SeriesRecord(
        series_instance_uid=row.series_instance_uid,
        series_number=row.series_number,
        modality=row.modality,
        series_description=row.series_description,
        body_part_examined=row.body_part_examined,
        series_date=row.series_date,
        series_time=row.series_time,
        number_of_instances=row.number_of_series_related_instances,
        instances=tuple(instances),
    )


def _study_record(study: Study, patient: Patient, series: list[SeriesRecord]) -> StudyRecord:
    return StudyRecord(
        study_instance_uid=study.study_instance_uid,
        accession_number=study.accession_number,
        patient=patient_reference(patient),
        order_key=study.order_fk,
        study_date=study.study_date,
        study_time=study.study_time,
        study_description=study.study_description,
        referring_physician=study.referring_physician_name,
        modalities=modalities_of([study]),
        number_of_series=study.number_of_study_related_series,
        number_of_instances=study.number_of_study_related_instances,
        series=tuple(series),
    )


# -- reports --------------------------------------------------------------------------------


def report_records(
    session: Session, templates: ReportTemplateService, keys: Sequence[int]
) -> list[ClinicalReport]:
    """Released reports as of their newest released version (a report never released, a
    draft, has none and is left out)."""
    if not keys:
        return []
    newest = {
        report_key: number
        for report_key, number in session.execute(
            select(ReportVersion.report_fk, func.max(ReportVersion.number))
            .where(ReportVersion.report_fk.in_(keys), ReportVersion.kind != VersionKind.DRAFT)
            .group_by(ReportVersion.report_fk)
        )
    }
    return [_report_record(session, templates, key, newest[key]) for key in keys if key in newest]


def _report_record(
    session: Session, templates: ReportTemplateService, key: int, version: int
) -> ClinicalReport:
    document = report_document(session, templates, key, version)
    report = session.get(Report, key)
    assert report is not None  # report_document found it
    order = session.get(ImagingOrder, report.order_fk)
    assert order is not None
    patient = session.get(Patient, order.patient_fk)
    assert patient is not None
    text = session.scalar(
        select(ReportVersion.sections).where(
            ReportVersion.report_fk == key, ReportVersion.number == version
        )
    )
    impression = str(json.loads(text or "{}").get(IMPRESSION) or "").strip()
    return ClinicalReport(
        key=key,
        version=version,
        status=document.status,
        accession_number=order.accession_number,
        filler_order_number=order.filler_order_number,
        order_key=order.id,
        patient=patient_reference(patient),
        study_instance_uids=tuple(s.study_instance_uid for s in order_studies(session, order.id)),
        procedure=document.procedure,
        sections=document.sections,
        impression=impression or None,
        addenda=tuple(Addendum(text, author, at) for text, author, at in document.addenda),
        critical_finding=document.critical_finding,
        signed_by=document.signed_by,
        signed_by_name=document.signed_by_name,
        released_at=document.observed_at,
        study_date=document.study_date,
    )
