"""An exam as reporting sees it: the order (by accession number), its patient and the studies
that arrived for it. Functions taking a `Session` work in the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from pedipacs.db.tables import ImagingOrder, Patient, RequestedProcedure, Study
from pedipacs.model.reports import PatientLine
from pedipacs.ris.orders import UnknownOrderError

MODALITY_SEPARATOR = "\\"  # modalities_in_study keeps the DICOM multi-value form
# Objects about the images rather than images: pedipacs' own report PDFs (DOC), structured
# reports, key object selections, presentation states. An exam's modalities are its images'.
NON_IMAGE_MODALITIES = frozenset({"DOC", "SR", "KO", "PR"})


def order_by_accession(
    session: Session, accession: str, *, for_update: bool = False
) -> ImagingOrder:
    statement = select(ImagingOrder).where(ImagingOrder.accession_number == accession.strip())
    if for_update:
        statement = statement.with_for_update()
    row = session.scalars(statement).first()
    if row is None:
        raise UnknownOrderError(f"no exam has accession number {accession!r}")
    return row


def patient_of(session: Session, order: ImagingOrder) -> Patient:
    patient = session.get(Patient, order.patient_fk)
    assert patient is not None  # a foreign key
    return patient


def patient_line(patient: Patient) -> PatientLine:
    return PatientLine(
        patient_id=patient.patient_id,
        issuer=patient.issuer_of_patient_id,
        name=patient.patient_name,
        birth_date=patient.patient_birth_date,
        sex=patient.patient_sex,
    )


def order_studies(session: Session, order_id: int) -> list[Study]:
    return list(session.scalars(select(Study).where(Study.order_fk == order_id).order_by(Study.id)))


def modalities_of(studies: Iterable[Study]) -> tuple[str, ...]:
    """The image modalities of some studies, each once, in order of appearance.

    >>> modalities_of([Study(modalities_in_study="US\\\\DOC"), Study(modalities_in_study="CR")])
    ('US', 'CR')
    """
    return image_modalities(study.modalities_in_study for study in studies)


def image_modalities(values: Iterable[str | None]) -> tuple[str, ...]:
    """The image modalities in some `modalities_in_study` values, each once, in order."""
    seen: dict[str, None] = {}
    for value in values:
        for modality in (value or "").split(MODALITY_SEPARATOR):
            if modality and modality not in NON_IMAGE_MODALITIES:
                seen.setdefault(modality, None)
    return tuple(seen)


def procedure_description(session: Session, order_id: int) -> str | None:
    """What was ordered, in words: the requested procedures' descriptions, joined."""
    return procedure_descriptions(session, [order_id]).get(order_id)


def procedure_descriptions(session: Session, order_ids: Iterable[int]) -> dict[int, str]:
    """`procedure_description` of several orders in one query (a worklist page)."""
    words: dict[int, list[str]] = {}
    for row in session.scalars(
        select(RequestedProcedure)
        .where(RequestedProcedure.order_fk.in_(list(order_ids)))
        .order_by(RequestedProcedure.id)
    ):
        word = row.description or row.code_meaning
        if word:
            words.setdefault(row.order_fk, []).append(word)
    return {order_id: "; ".join(found) for order_id, found in words.items()}
