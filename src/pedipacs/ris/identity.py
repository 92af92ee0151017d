"""Changes of a patient's identity after the fact: a merge (HL7 A40: a newborn's temporary
identity into the permanent one), a changed identifier (A47), a study moved to another patient
(an exception resolved on the exceptions page).

The stored files are never rewritten: they stay the record of what the modality sent. The index
moves, and each moved study is marked `identity_changed`, so that every answer (C-FIND, QIDO-RS,
the retrieved headers and metadata) carries the patient the archive knows now.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from pedipacs.db.tables import ImagingOrder, Patient, PatientIdentifier, Study
from pedipacs.errors import Conflict, InvalidInput
from pedipacs.model.origin import Origin
from pedipacs.model.ris import PatientIdentity, PatientRegistration
from pedipacs.ris.patients import (
    UnknownPatientError,
    check_identity,
    find_patient,
    identity_from_patient,
    register_patient,
)
from pedipacs.security.audit import AuditEventId, AuditRecord, record


class IdentifierInUseError(Conflict):
    """The new identifier already names another patient: that is a merge (A40), not a change."""


@dataclass(frozen=True, slots=True)
class MergeOutcome:
    survivor: PatientIdentity
    prior: PatientIdentity
    studies_moved: int
    orders_moved: int
    already_merged: bool = False


def merge_patients(
    session: Session, survivor: PatientRegistration, prior: PatientIdentity, origin: Origin
) -> MergeOutcome:
    """Merge the patient known as `prior` into `survivor` (registered or updated first, as the
    A40's PID describes them): their orders and studies follow; the prior record stays, pointing
    at the survivor, so that a late image or message naming it lands on the survivor."""
    check_identity(prior, "MRG-1 prior patient identifier")
    survivor_row = register_patient(session, survivor, origin)
    prior_row = find_patient(session, prior)
    if prior_row is None:
        raise UnknownPatientError(f"MRG-1: no patient {prior} to merge")
    survivor_identity = identity_from_patient(survivor_row)
    prior_identity = identity_from_patient(prior_row)
    if prior_row.id == survivor_row.id:
        return MergeOutcome(survivor_identity, prior, 0, 0, already_merged=True)
    orders = len(
        session.scalars(
            update(ImagingOrder)
            .where(ImagingOrder.patient_fk == prior_row.id)
            .values(patient_fk=survivor_row.id)
            .returning(ImagingOrder.id)
        ).all()
    )
    studies = list(session.scalars(select(Study).where(Study.patient_fk == prior_row.id)))
    for study in studies:
        _move(session, study, prior_row, survivor_row)
    prior_row.merged_into_fk = survivor_row.id
    if not survivor.is_temporary:
        survivor_row.is_temporary = False  # the permanent identity is known now
    session.flush()
    _audit_patient(
        session, origin, survivor_row,
        f"merged patient {prior_identity} into {survivor_identity}: "
        f"{len(studies)} study(ies), {orders} order(s) moved",
    )  # fmt: skip
    for study in studies:
        audit_study_update(session, origin, survivor_row, study, f"moved from {prior_identity}")
    return MergeOutcome(survivor_identity, prior_identity, len(studies), orders)


def change_identifier(
    session: Session,
    prior: PatientIdentity,
    new: PatientIdentity,
    origin: Origin,
    registration: PatientRegistration | None = None,
) -> Patient:
    """Replace one identifier of a patient (HL7 A47): the patient, their orders and studies
    stay together; when it was the primary one, every answer carries the new Patient ID."""
    check_identity(prior, "MRG-1 prior patient identifier")
    check_identity(new, "PID-3 patient identifier")
    patient = find_patient(session, prior)
    if patient is None:
        raise UnknownPatientError(f"MRG-1: no patient {prior}")
    holder = find_patient(session, new)
    if holder is not None and holder.id != patient.id:
        raise IdentifierInUseError(
            f"PID-3: identifier {new} belongs to another patient; merge them (A40)"
        )
    row = session.scalar(
        select(PatientIdentifier).where(
            PatientIdentifier.patient_fk == patient.id,
            PatientIdentifier.identifier == prior.identifier,
            PatientIdentifier.issuer == prior.issuer,
        )
    )
    if row is not None:
        if holder is None:
            row.identifier, row.issuer = new.identifier, new.issuer
            row.type_code = new.type_code or row.type_code
        else:
            session.delete(row)  # the new identifier is listed already
    is_primary = (patient.patient_id, patient.issuer_of_patient_id) == (
        prior.identifier,
        prior.issuer,
    )
    if is_primary:
        if session.scalar(
            select(Patient.id).where(
                Patient.patient_id == new.identifier,
                Patient.issuer_of_patient_id == new.issuer,
                Patient.id != patient.id,
            )
        ):
            raise IdentifierInUseError(
                f"PID-3: images are stored under {new} for another patient; merge them (A40)"
            )
        patient.patient_id, patient.issuer_of_patient_id = new.identifier, new.issuer
        session.execute(
            update(Study).where(Study.patient_fk == patient.id).values(identity_changed=True)
        )
    session.flush()
    if registration is not None:
        patient = register_patient(session, registration, origin)
    _audit_patient(session, origin, patient, f"identifier {prior} changed to {new}")
    return patient


def move_study(
    session: Session, study: Study, to_patient: Patient, origin: Origin, reason: str
) -> None:
    """Put a stored study under another patient (an exception resolved by a person)."""
    if to_patient.merged_into_fk is not None:
        raise InvalidInput(
            f"patient {identity_from_patient(to_patient)} was merged into another patient"
        )
    from_patient = session.get(Patient, study.patient_fk)
    assert from_patient is not None
    if from_patient.id == to_patient.id:
        return
    _move(session, study, from_patient, to_patient)
    moved_from = identity_from_patient(from_patient)
    audit_study_update(session, origin, to_patient, study, f"moved from {moved_from}: {reason}")


def _move(session: Session, study: Study, from_patient: Patient, to_patient: Patient) -> None:
    """Move the study and keep both patients' counts (PS3.4 C.6.1.1.2 aggregates) exact. The
    study row is locked, as ingest locks it, and the counts change by SQL increments, so an
    image arriving meanwhile is counted once, on the right patient."""
    session.refresh(study, with_for_update=True)
    study.patient_fk = to_patient.id
    study.identity_changed = True
    for patient, sign in ((from_patient, -1), (to_patient, 1)):
        session.execute(
            update(Patient)
            .where(Patient.id == patient.id)
            .values(
                number_of_patient_related_studies=Patient.number_of_patient_related_studies + sign,
                number_of_patient_related_series=Patient.number_of_patient_related_series
                + sign * study.number_of_study_related_series,
                number_of_patient_related_instances=Patient.number_of_patient_related_instances
                + sign * study.number_of_study_related_instances,
            )
            .execution_options(synchronize_session=False)
        )
    session.flush()
    for patient in (from_patient, to_patient):
        session.expire(patient, ["number_of_patient_related_studies",
                                 "number_of_patient_related_series",
                                 "number_of_patient_related_instances"])  # fmt: skip


def _audit_patient(session: Session, origin: Origin, patient: Patient, detail: str) -> None:
    """A Patient Record event (110110), update."""
    record(
        session,
        AuditRecord(
            AuditEventId.PATIENT_RECORD, "U", origin, patient_id=patient.patient_id, detail=detail
        ),
    )


def audit_study_update(
    session: Session, origin: Origin, patient: Patient, study: Study, detail: str
) -> None:
    """A Procedure Record event (110111), update: a stored study changed (moved to another
    patient, its exception dismissed); `patient` is whom it is under now."""
    record(
        session,
        AuditRecord(
            AuditEventId.PROCEDURE_RECORD,
            "U",
            origin,
            patient_id=patient.patient_id,
            study_instance_uid=study.study_instance_uid,
            detail=detail,
        ),
    )
