"""Patients as the hospital registers them: identifiers qualified by their issuer, demographics,
the link between a newborn and their mother.

The functions taking a `Session` work inside the caller's transaction, so that an HL7 message
that registers a patient and places an order applies both or neither; `PatientService` wraps
them for callers that need a transaction of their own.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from pedipacs.db.engine import Database
from pedipacs.db.tables import Patient, PatientIdentifier
from pedipacs.errors import InvalidInput, NotFound
from pedipacs.model.origin import Origin
from pedipacs.model.ris import PatientIdentity, PatientRegistration
from pedipacs.model.values import pn_search_form
from pedipacs.security.audit import AuditEventId, AuditRecord, record

MAX_IDENTIFIER = 64


class UnknownPatientError(NotFound):
    """No patient has that identifier (with that issuer)."""


def check_identity(identity: PatientIdentity, what: str = "patient identifier") -> None:
    if not identity.identifier.strip():
        raise InvalidInput(f"the {what} is empty")
    if len(identity.identifier) > MAX_IDENTIFIER or len(identity.issuer) > MAX_IDENTIFIER:
        raise InvalidInput(f"the {what} {identity} is longer than {MAX_IDENTIFIER} characters")
    if "\\" in identity.identifier:
        raise InvalidInput(f"the {what} {identity} holds a backslash")


def find_patient(session: Session, identity: PatientIdentity) -> Patient | None:
    """The patient known by `identity`: by any of their identifiers, or (for patients only the
    images told about) by Patient ID and issuer; a merged patient leads to the survivor."""
    patient = session.scalar(
        select(Patient)
        .join(PatientIdentifier, PatientIdentifier.patient_fk == Patient.id)
        .where(
            PatientIdentifier.identifier == identity.identifier,
            PatientIdentifier.issuer == identity.issuer,
        )
    )
    if patient is None:
        patient = session.scalar(
            select(Patient).where(
                Patient.patient_id == identity.identifier,
                Patient.issuer_of_patient_id == identity.issuer,
            )
        )
    seen = set()
    while patient is not None and patient.merged_into_fk is not None and patient.id not in seen:
        seen.add(patient.id)
        patient = session.get(Patient, patient.merged_into_fk)
    return patient


def register_patient(
    session: Session, registration: PatientRegistration, origin: Origin
) -> Patient:
    """Create the patient, or update them when any identifier is known already (HL7 A01, A04,
    A05, A08, A28, A31 all come here); every identifier given is kept. Audited (110110)."""
    if not registration.identifiers:
        raise InvalidInput("PID-3: the patient has no identifier")
    for identity in registration.identifiers:
        check_identity(identity, "PID-3 patient identifier")
    if registration.mother is not None:
        check_identity(registration.mother, "PID-21 mother's identifier")
    patient = next(
        (p for p in (find_patient(session, i) for i in registration.identifiers) if p), None
    )
    created = patient is None
    if patient is None:
        primary = registration.primary
        patient = Patient(
            patient_id=primary.identifier,
            issuer_of_patient_id=primary.issuer,
            number_of_patient_related_studies=0,
            number_of_patient_related_series=0,
            number_of_patient_related_instances=0,
        )
        session.add(patient)
    _apply_demographics(patient, registration)
    session.flush()
    _keep_identifiers(session, patient, registration.identifiers)
    record(
        session,
        AuditRecord(
            AuditEventId.PATIENT_RECORD,
            "C" if created else "U",
            origin,
            patient_id=patient.patient_id,
            detail=("registered" if created else "updated")
            + (" (temporary identity)" if registration.is_temporary else ""),
        ),
    )
    return patient


def _apply_demographics(patient: Patient, registration: PatientRegistration) -> None:
    """Fields the registration leaves out (None) keep their value, as HL7 treats an empty
    field: an order whose PID carries only the identifier does not blank the name. A temporary
    identity stays temporary until it is merged into a permanent one."""
    changes = {
        "patient_name": registration.name,
        "patient_birth_date": registration.birth_date,
        "patient_birth_time": registration.birth_time,
        "patient_sex": registration.sex,
        "multiple_birth": registration.multiple_birth,
        "birth_order": registration.birth_order,
    }
    if registration.mother is not None:
        changes["mother_identifier"] = registration.mother.identifier
        changes["mother_issuer"] = registration.mother.issuer
    for column, value in changes.items():
        if value is not None:
            setattr(patient, column, value)
    if registration.name is not None:
        patient.patient_name_search = pn_search_form(registration.name)
    if registration.is_temporary or patient.is_temporary is None:
        patient.is_temporary = registration.is_temporary


def _keep_identifiers(
    session: Session, patient: Patient, identities: tuple[PatientIdentity, ...]
) -> None:
    """List the primary identifier and every one given; one held by another patient is an
    error (the hospital merges patients explicitly, A40)."""
    rows = {
        (row.identifier, row.issuer): row
        for row in session.scalars(
            select(PatientIdentifier).where(PatientIdentifier.patient_fk == patient.id)
        )
    }
    primary = identity_from_patient(patient)
    for identity in (primary, *identities):
        key = (identity.identifier, identity.issuer)
        if key in rows:
            rows[key].type_code = identity.type_code or rows[key].type_code
            continue
        owner = session.scalar(
            select(PatientIdentifier.patient_fk).where(
                PatientIdentifier.identifier == identity.identifier,
                PatientIdentifier.issuer == identity.issuer,
            )
        )
        if owner is not None and owner != patient.id:
            raise InvalidInput(
                f"PID-3: identifier {identity} belongs to another patient; merge them (A40)"
            )
        rows[key] = PatientIdentifier(
            patient_fk=patient.id,
            identifier=identity.identifier,
            issuer=identity.issuer,
            type_code=identity.type_code,
        )
        session.add(rows[key])
    session.flush()


def identity_from_patient(patient: Patient) -> PatientIdentity:
    """The patient's primary identifier: the Patient ID (and issuer) the images carry."""
    return PatientIdentity(patient.patient_id, patient.issuer_of_patient_id)


def registration_from_patient(
    patient: Patient, identifiers: tuple[PatientIdentity, ...]
) -> PatientRegistration:
    """The patient as registered: `identifiers` (the primary one first) and the demographics
    kept."""
    mother = (
        PatientIdentity(patient.mother_identifier, patient.mother_issuer or "")
        if patient.mother_identifier
        else None
    )
    return PatientRegistration(
        identifiers=identifiers,
        name=patient.patient_name,
        birth_date=patient.patient_birth_date,
        birth_time=patient.patient_birth_time,
        sex=patient.patient_sex,
        mother=mother,
        multiple_birth=patient.multiple_birth,
        birth_order=patient.birth_order,
        is_temporary=bool(patient.is_temporary),
    )


class PatientService:
    def __init__(self, database: Database) -> None:
        self._database = database

    def register(self, registration: PatientRegistration, origin: Origin) -> PatientIdentity:
        with self._database.unit_of_work() as session:
            patient = register_patient(session, registration, origin)
            return identity_from_patient(patient)

    def get(self, identity: PatientIdentity) -> PatientRegistration:
        with self._database.reading() as session:
            patient = find_patient(session, identity)
            if patient is None:
                raise UnknownPatientError(f"no patient {identity}")
            identifiers = tuple(
                PatientIdentity(row.identifier, row.issuer, row.type_code)
                for row in session.scalars(
                    select(PatientIdentifier)
                    .where(PatientIdentifier.patient_fk == patient.id)
                    .order_by(PatientIdentifier.id)
                )
            )
            key = (patient.patient_id, patient.issuer_of_patient_id)
            primary = next(
                (i for i in identifiers if (i.identifier, i.issuer) == key),
                PatientIdentity(*key),
            )
            ordered = (primary, *(i for i in identifiers if i is not primary))
            return registration_from_patient(patient, ordered)
