"""Writing one instance into the index: patient, study, series and instance rows with their
aggregates. Helpers take the caller's session and never commit."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pedipacs.archive.duplicates import StoredIdentity
from pedipacs.db.statements import insert_ignoring_conflict
from pedipacs.db.tables import Change, Instance, Patient, Series, Study
from pedipacs.dicom.header import InstanceHeader
from pedipacs.errors import InconsistentIdentityError
from pedipacs.model.values import pn_search_form
from pedipacs.storage.blob_store import BlobInfo


def stored_identity(session: Session, sop_instance_uid: str) -> StoredIdentity | None:
    row = session.execute(
        select(
            Instance.dataset_sha256,
            Study.study_instance_uid,
            Series.series_instance_uid,
            Instance.blob_key,
        )
        .join(Series, Instance.series_fk == Series.id)
        .join(Study, Series.study_fk == Study.id)
        .where(Instance.sop_instance_uid == sop_instance_uid)
    ).first()
    if row is None:
        return None
    return StoredIdentity(
        sha256=row.dataset_sha256,
        study_instance_uid=row.study_instance_uid,
        series_instance_uid=row.series_instance_uid,
        blob_key=row.blob_key,
    )


def add_instance(
    session: Session,
    header: InstanceHeader,
    blob: BlobInfo,
    dataset_sha256: str,
    source_ae_title: str | None,
) -> None:
    """Index a new instance and keep every aggregate exact."""
    patient_id = _patient(session, header)
    study, is_new_study = _study(session, header, patient_id)
    series, is_new_series = _series(session, header, study.id)
    session.add(_instance_row(header, blob, dataset_sha256, series.id, source_ae_title))
    session.execute(
        update(Series)
        .where(Series.id == series.id)
        .values(number_of_series_related_instances=Series.number_of_series_related_instances + 1)
    )
    study.number_of_study_related_instances += 1
    if is_new_series:
        study.number_of_study_related_series += 1
        study.modalities_in_study = _with_value(study.modalities_in_study, header.modality)
    study.sop_classes_in_study = _with_value(study.sop_classes_in_study, header.sop_class_uid)
    session.execute(
        update(Patient)
        .where(Patient.id == patient_id)
        .values(
            number_of_patient_related_instances=Patient.number_of_patient_related_instances + 1,
            number_of_patient_related_series=Patient.number_of_patient_related_series
            + int(is_new_series),
            number_of_patient_related_studies=Patient.number_of_patient_related_studies
            + int(is_new_study),
        )
    )
    session.add(
        Change(
            change_type="NEW_INSTANCE",
            level="IMAGE",
            uid=header.sop_instance_uid,
            study_instance_uid=header.study_instance_uid,
        )
    )


def replace_instance(
    session: Session,
    header: InstanceHeader,
    blob: BlobInfo,
    dataset_sha256: str,
    source_ae_title: str | None,
) -> None:
    """Point an existing instance at new bytes (keep-newest policy); aggregates are unchanged."""
    session.execute(
        update(Instance)
        .where(Instance.sop_instance_uid == header.sop_instance_uid)
        .values(
            blob_key=blob.key,
            size=blob.size,
            sha256=blob.sha256,
            dataset_sha256=dataset_sha256,
            transfer_syntax_uid=header.transfer_syntax_uid,
            sop_class_uid=header.sop_class_uid,
            instance_number=header.instance_number,
            source_ae_title=source_ae_title,
        )
    )
    session.add(
        Change(
            change_type="REPLACED_INSTANCE",
            level="IMAGE",
            uid=header.sop_instance_uid,
            study_instance_uid=header.study_instance_uid,
        )
    )


def _patient(session: Session, header: InstanceHeader) -> int:
    key = (Patient.patient_id == header.patient_id) & (
        Patient.issuer_of_patient_id == header.issuer_of_patient_id
    )
    patient_id = session.scalar(select(Patient.id).where(key))
    if patient_id is not None:
        return patient_id
    insert_ignoring_conflict(
        session,
        Patient.__table__,  # type: ignore[arg-type]
        {
            "patient_id": header.patient_id,
            "issuer_of_patient_id": header.issuer_of_patient_id,
            "patient_name": header.patient_name,
            "patient_name_search": pn_search_form(header.patient_name),
            "patient_birth_date": header.patient_birth_date,
            "patient_birth_time": header.patient_birth_time,
            "patient_sex": header.patient_sex,
            "number_of_patient_related_studies": 0,
            "number_of_patient_related_series": 0,
            "number_of_patient_related_instances": 0,
        },
        ["patient_id", "issuer_of_patient_id"],
    )
    return session.execute(select(Patient.id).where(key)).scalar_one()


def _study(session: Session, header: InstanceHeader, patient_fk: int) -> tuple[Study, bool]:
    """The study row, locked for the aggregate update; created when new."""
    query = (
        select(Study).where(Study.study_instance_uid == header.study_instance_uid).with_for_update()
    )
    study = session.scalar(query)
    is_new = False
    if study is None:
        insert_ignoring_conflict(
            session,
            Study.__table__,  # type: ignore[arg-type]
            {
                "patient_fk": patient_fk,
                "study_instance_uid": header.study_instance_uid,
                "study_date": header.study_date,
                "study_time": header.study_time,
                "accession_number": header.accession_number,
                "study_id": header.study_id,
                "study_description": header.study_description,
                "referring_physician_name": header.referring_physician_name,
                "referring_physician_name_search": pn_search_form(header.referring_physician_name),
                "patient_age": header.patient_age,
                "patient_size": header.patient_size,
                "patient_weight": header.patient_weight,
                "institution_name": header.institution_name,
                "modalities_in_study": "",
                "sop_classes_in_study": "",
                "number_of_study_related_series": 0,
                "number_of_study_related_instances": 0,
            },
            ["study_instance_uid"],
        )
        study = session.execute(query).scalar_one()
        is_new = study.number_of_study_related_instances == 0
    if study.patient_fk != patient_fk:
        raise InconsistentIdentityError(
            f"study {header.study_instance_uid} is stored for another patient than "
            f"PatientID {header.patient_id!r}"
        )
    return study, is_new


def _series(session: Session, header: InstanceHeader, study_fk: int) -> tuple[Series, bool]:
    query = select(Series).where(Series.series_instance_uid == header.series_instance_uid)
    series = session.scalar(query)
    is_new = False
    if series is None:
        insert_ignoring_conflict(
            session,
            Series.__table__,  # type: ignore[arg-type]
            {
                "study_fk": study_fk,
                "series_instance_uid": header.series_instance_uid,
                "modality": header.modality,
                "series_number": header.series_number,
                "series_description": header.series_description,
                "series_date": header.series_date,
                "series_time": header.series_time,
                "body_part_examined": header.body_part_examined,
                "laterality": header.laterality,
                "protocol_name": header.protocol_name,
                "station_name": header.station_name,
                "manufacturer": header.manufacturer,
                "institution_name": header.institution_name,
                "performed_procedure_step_start_date": header.performed_procedure_step_start_date,
                "performed_procedure_step_start_time": header.performed_procedure_step_start_time,
                "number_of_series_related_instances": 0,
            },
            ["series_instance_uid"],
        )
        series = session.execute(query).scalar_one()
        # Under the study lock, a series with no instance yet is one we just created.
        is_new = series.number_of_series_related_instances == 0
    if series.study_fk != study_fk:
        raise InconsistentIdentityError(
            f"series {header.series_instance_uid} is stored under another study than "
            f"{header.study_instance_uid}"
        )
    return series, is_new


def _instance_row(
    header: InstanceHeader,
    blob: BlobInfo,
    dataset_sha256: str,
    series_fk: int,
    source_ae_title: str | None,
) -> Instance:
    return Instance(
        series_fk=series_fk,
        sop_instance_uid=header.sop_instance_uid,
        sop_class_uid=header.sop_class_uid,
        transfer_syntax_uid=header.transfer_syntax_uid,
        instance_number=header.instance_number,
        content_date=header.content_date,
        content_time=header.content_time,
        acquisition_number=header.acquisition_number,
        rows=header.rows,
        columns=header.columns,
        number_of_frames=header.number_of_frames,
        blob_key=blob.key,
        size=blob.size,
        sha256=blob.sha256,
        dataset_sha256=dataset_sha256,
        source_ae_title=source_ae_title,
    )


def _with_value(joined: str, value: str | None) -> str:
    """Add `value` to a backslash-separated, sorted set of values."""
    if not value:
        return joined
    values = {item for item in joined.split("\\") if item}
    values.add(value)
    return "\\".join(sorted(values))
