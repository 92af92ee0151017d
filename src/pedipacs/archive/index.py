"""Writing one instance into the index: patient, study, series and instance rows with their
aggregates. Helpers take the caller's session and never commit.

This runs once per received image, so it uses statements built once at import, executed on the
session's connection: the ORM's unit of work, and building statements per call, would cost more
than the SQL itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from pedipacs.archive.duplicates import StoredIdentity
from pedipacs.db.statements import insert_ignoring_conflict
from pedipacs.db.tables import Change, Instance, InstanceMetadata, Patient, Series, Study
from pedipacs.dicom.header import InstanceHeader
from pedipacs.errors import InconsistentIdentityError
from pedipacs.model.values import pn_search_form
from pedipacs.ris.reconcile import reconcile_new_study
from pedipacs.storage.blob_store import BlobInfo

PATIENT: Table = Patient.__table__  # type: ignore[assignment]
STUDY: Table = Study.__table__  # type: ignore[assignment]
SERIES: Table = Series.__table__  # type: ignore[assignment]
INSTANCE: Table = Instance.__table__  # type: ignore[assignment]
CHANGE: Table = Change.__table__  # type: ignore[assignment]

# Bound parameter names start with b_ so they never collide with a column of an UPDATE.
_STORED_IDENTITY = (
    select(
        INSTANCE.c.dataset_sha256,
        STUDY.c.study_instance_uid,
        SERIES.c.series_instance_uid,
        INSTANCE.c.blob_key,
    )
    .select_from(
        INSTANCE.join(SERIES, INSTANCE.c.series_fk == SERIES.c.id).join(
            STUDY, SERIES.c.study_fk == STUDY.c.id
        )
    )
    .where(INSTANCE.c.sop_instance_uid == bindparam("b_uid"))
)
_PATIENT_ID = select(PATIENT.c.id, PATIENT.c.merged_into_fk).where(
    PATIENT.c.patient_id == bindparam("b_patient_id"),
    PATIENT.c.issuer_of_patient_id == bindparam("b_issuer"),
)
_MERGED_INTO = select(PATIENT.c.merged_into_fk).where(PATIENT.c.id == bindparam("b_id"))
# A merge chain longer than this is a loop, not a history.
MAX_MERGE_HOPS = 16
_STUDY_LOCKED = (
    select(
        STUDY.c.id,
        STUDY.c.patient_fk,
        STUDY.c.modalities_in_study,
        STUDY.c.sop_classes_in_study,
        STUDY.c.number_of_study_related_instances,
        STUDY.c.identity_changed,
    )
    .where(STUDY.c.study_instance_uid == bindparam("b_uid"))
    .with_for_update()
)
_SERIES = select(SERIES.c.id, SERIES.c.study_fk, SERIES.c.number_of_series_related_instances).where(
    SERIES.c.series_instance_uid == bindparam("b_uid")
)
_INSERT_INSTANCE = insert(INSTANCE)
_INSERT_METADATA = insert(InstanceMetadata)
_INSERT_CHANGE = insert(CHANGE)
_COUNT_SERIES = (
    update(SERIES)
    .where(SERIES.c.id == bindparam("b_id"))
    .values(number_of_series_related_instances=SERIES.c.number_of_series_related_instances + 1)
)
_COUNT_STUDY = (
    update(STUDY)
    .where(STUDY.c.id == bindparam("b_id"))
    .values(
        number_of_study_related_instances=STUDY.c.number_of_study_related_instances + 1,
        number_of_study_related_series=STUDY.c.number_of_study_related_series
        + bindparam("b_new_series"),
    )
)
_STUDY_VALUE_SETS = (
    update(STUDY)
    .where(STUDY.c.id == bindparam("b_id"))
    .values(
        modalities_in_study=bindparam("b_modalities"),
        sop_classes_in_study=bindparam("b_sop_classes"),
    )
)
_COUNT_PATIENT = (
    update(PATIENT)
    .where(PATIENT.c.id == bindparam("b_id"))
    .values(
        number_of_patient_related_instances=PATIENT.c.number_of_patient_related_instances + 1,
        number_of_patient_related_series=PATIENT.c.number_of_patient_related_series
        + bindparam("b_new_series"),
        number_of_patient_related_studies=PATIENT.c.number_of_patient_related_studies
        + bindparam("b_new_study"),
    )
)


def stored_identity(session: Session, sop_instance_uid: str) -> StoredIdentity | None:
    row = session.connection().execute(_STORED_IDENTITY, {"b_uid": sop_instance_uid}).first()
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
    metadata: str,
    *,
    unmatched_is_exception: bool = True,
) -> None:
    """Index a new instance (with its DICOM JSON metadata) and keep every aggregate exact.

    The first instance of a study matches the study to its order (`ris.reconcile`); with
    `unmatched_is_exception` False a study matching no order opens no exception."""
    connection = session.connection()
    patient_fk, is_merged = _patient(connection, header)
    study = _study(connection, header, patient_fk, identity_changed=is_merged)
    series_fk, is_new_series = _series(connection, header, study.id)
    inserted = connection.execute(
        _INSERT_INSTANCE,
        _instance_values(header, blob, dataset_sha256, series_fk, source_ae_title),
    )
    instance_fk = inserted.inserted_primary_key[0]  # type: ignore[index]
    connection.execute(_INSERT_METADATA, {"instance_fk": instance_fk, "dicom_json": metadata})
    connection.execute(_COUNT_SERIES, {"b_id": series_fk})
    connection.execute(_COUNT_STUDY, {"b_id": study.id, "b_new_series": int(is_new_series)})
    modalities = study.modalities_in_study
    if is_new_series:
        modalities = _with_value(modalities, header.modality)
    sop_classes = _with_value(study.sop_classes_in_study, header.sop_class_uid)
    if (modalities, sop_classes) != (study.modalities_in_study, study.sop_classes_in_study):
        connection.execute(
            _STUDY_VALUE_SETS,
            {"b_id": study.id, "b_modalities": modalities, "b_sop_classes": sop_classes},
        )
    connection.execute(
        _COUNT_PATIENT,
        # The study's patient: not the header's when the study was moved to another patient.
        {
            "b_id": study.patient_fk,
            "b_new_series": int(is_new_series),
            "b_new_study": int(study.is_new),
        },
    )
    connection.execute(
        _INSERT_CHANGE,
        {
            "change_type": "NEW_INSTANCE",
            "level": "IMAGE",
            "uid": header.sop_instance_uid,
            "study_instance_uid": header.study_instance_uid,
        },
    )
    if study.is_new:
        # Matched to its order once, with its first image; never fails the ingest.
        reconcile_new_study(session, study.id, unmatched_is_exception=unmatched_is_exception)


def replace_instance(
    session: Session,
    header: InstanceHeader,
    blob: BlobInfo,
    dataset_sha256: str,
    source_ae_title: str | None,
    metadata: str,
) -> None:
    """Point an existing instance at new bytes (keep-newest policy); aggregates are unchanged."""
    instance_fk = session.execute(
        select(Instance.id).where(Instance.sop_instance_uid == header.sop_instance_uid)
    ).scalar_one()
    session.execute(
        update(InstanceMetadata)
        .where(InstanceMetadata.instance_fk == instance_fk)
        .values(dicom_json=metadata)
    )
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
    session.connection().execute(
        _INSERT_CHANGE,
        {
            "change_type": "REPLACED_INSTANCE",
            "level": "IMAGE",
            "uid": header.sop_instance_uid,
            "study_instance_uid": header.study_instance_uid,
        },
    )


def _existing_or_created(
    connection: Connection,
    query: Any,
    key: dict[str, Any],
    table: Table,
    new_values: Callable[[], dict[str, Any]],
    unique_columns: list[str],
) -> Any:
    """The row `query` finds, inserting it first when absent; a concurrent creator wins."""
    row = connection.execute(query, key).first()
    if row is None:
        insert_ignoring_conflict(connection, table, new_values(), unique_columns)
        row = connection.execute(query, key).one()
    return row


def _patient(connection: Connection, header: InstanceHeader) -> tuple[int, bool]:
    """The patient the images belong to, and whether that is another patient than the one they
    name: images of a merged (temporary) identity go to the surviving patient."""
    row = _existing_or_created(
        connection,
        _PATIENT_ID,
        {"b_patient_id": header.patient_id, "b_issuer": header.issuer_of_patient_id},
        PATIENT,
        lambda: _new_patient_values(header),
        ["patient_id", "issuer_of_patient_id"],
    )
    patient_fk, merged_into = int(row.id), row.merged_into_fk
    for _ in range(MAX_MERGE_HOPS):
        if merged_into is None:
            break
        patient_fk = int(merged_into)
        merged_into = connection.execute(_MERGED_INTO, {"b_id": patient_fk}).scalar_one()
    return patient_fk, patient_fk != row.id


def _new_patient_values(header: InstanceHeader) -> dict[str, Any]:
    return {
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
    }


@dataclass(frozen=True, slots=True)
class _StudyRow:
    id: int
    patient_fk: int
    modalities_in_study: str
    sop_classes_in_study: str
    is_new: bool


def _study(
    connection: Connection, header: InstanceHeader, patient_fk: int, *, identity_changed: bool
) -> _StudyRow:
    """The study row, locked (on PostgreSQL) for the aggregate update; created when new."""
    row = _existing_or_created(
        connection,
        _STUDY_LOCKED,
        {"b_uid": header.study_instance_uid},
        STUDY,
        lambda: {**_new_study_values(header, patient_fk), "identity_changed": identity_changed},
        ["study_instance_uid"],
    )
    # A study moved to another patient by a person (an exception resolved) keeps taking the
    # modality's images under the identity it first had: answers carry the corrected one.
    if row.patient_fk != patient_fk and not row.identity_changed:
        raise InconsistentIdentityError(
            f"study {header.study_instance_uid} is stored for another patient than "
            f"PatientID {header.patient_id!r}"
        )
    # Under the study lock, a study without instances is one this transaction created.
    return _StudyRow(
        id=row.id,
        patient_fk=row.patient_fk,
        modalities_in_study=row.modalities_in_study,
        sop_classes_in_study=row.sop_classes_in_study,
        is_new=row.number_of_study_related_instances == 0,
    )


def _new_study_values(header: InstanceHeader, patient_fk: int) -> dict[str, Any]:
    return {
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
    }


def _series(connection: Connection, header: InstanceHeader, study_fk: int) -> tuple[int, bool]:
    row = _existing_or_created(
        connection,
        _SERIES,
        {"b_uid": header.series_instance_uid},
        SERIES,
        lambda: _new_series_values(header, study_fk),
        ["series_instance_uid"],
    )
    if row.study_fk != study_fk:
        raise InconsistentIdentityError(
            f"series {header.series_instance_uid} is stored under another study than "
            f"{header.study_instance_uid}"
        )
    # Under the study lock, a series with no instance yet is one this transaction created.
    return int(row.id), row.number_of_series_related_instances == 0


def _new_series_values(header: InstanceHeader, study_fk: int) -> dict[str, Any]:
    return {
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
    }


def _instance_values(
    header: InstanceHeader,
    blob: BlobInfo,
    dataset_sha256: str,
    series_fk: int,
    source_ae_title: str | None,
) -> dict[str, Any]:
    return {
        "series_fk": series_fk,
        "sop_instance_uid": header.sop_instance_uid,
        "sop_class_uid": header.sop_class_uid,
        "transfer_syntax_uid": header.transfer_syntax_uid,
        "instance_number": header.instance_number,
        "content_date": header.content_date,
        "content_time": header.content_time,
        "acquisition_number": header.acquisition_number,
        "rows": header.rows,
        "columns": header.columns,
        "number_of_frames": header.number_of_frames,
        "blob_key": blob.key,
        "size": blob.size,
        "sha256": blob.sha256,
        "dataset_sha256": dataset_sha256,
        "source_ae_title": source_ae_title,
    }


def _with_value(joined: str, value: str | None) -> str:
    """Add `value` to a backslash-separated, sorted set of values."""
    if not value:
        return joined
    values = {item for item in joined.split("\\") if item}
    values.add(value)
    return "\\".join(sorted(values))
