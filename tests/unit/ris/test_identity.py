"""A newborn's temporary identity merged into the permanent one (HL7 A40), an identifier changed
(A47): in-process on both databases, through the HL7 door, with images stored under the
temporary number. The index and every answer (C-FIND, retrieved headers, metadata) carry the
surviving identity; the stored files keep what the modality sent."""

from __future__ import annotations

import json
from io import BytesIO

import pytest
from pydicom import dcmread
from sqlalchemy import select

from pedipacs.db.tables import AuditEvent, Patient, Study
from pedipacs.hl7.receiver import Hl7Receiver
from pedipacs.model.levels import InformationModel, QueryLevel
from pedipacs.model.origin import Origin
from pedipacs.model.query import KeyMatch, Query, SingleValue, Universal
from pedipacs.model.ris import PatientIdentity
from pedipacs.node import Node
from support import hl7_samples as samples
from support.files import PYDICOM_TEST_FILES

ORIGIN = Origin.cli("test")
TEMPORARY = PatientIdentity(samples.NEWBORN_ID, samples.FACILITY)
PERMANENT = PatientIdentity(samples.PERMANENT_ID, samples.FACILITY)
SECOND_STUDY_UID = "1.2.826.0.1.3680043.10.1001.9"


@pytest.fixture
def receiver(node: Node) -> Hl7Receiver:
    return Hl7Receiver(node.hl7_inbox, node.access, [samples.SENDER])


def answer(receiver: Hl7Receiver, data: bytes) -> list[str]:
    return samples.ack_fields(receiver.receive(data, "10.0.0.7"))["MSA"]


def image(
    sop_uid: str, study_uid: str = samples.STUDY_UID, patient_id: str = samples.NEWBORN_ID
) -> bytes:
    """An ultrasound-sized CT of the pydicom test files, as the modality filled it in from the
    worklist: the temporary number and name, the order's Study Instance UID."""
    dataset = dcmread(PYDICOM_TEST_FILES / "CT_small.dcm")
    dataset.PatientID = patient_id
    dataset.IssuerOfPatientID = samples.FACILITY
    dataset.PatientName = "LEFEVRE^BABY GIRL"
    dataset.StudyInstanceUID = study_uid
    dataset.SeriesInstanceUID = study_uid + ".1"
    dataset.SOPInstanceUID = sop_uid
    dataset.file_meta.MediaStorageSOPInstanceUID = sop_uid
    dataset.AccessionNumber = samples.ACCESSION
    buffer = BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


def studies_of(node: Node, patient_id: str, level: QueryLevel = QueryLevel.STUDY) -> list[str]:
    query = Query(
        InformationModel.STUDY_ROOT if level is QueryLevel.STUDY else InformationModel.PATIENT_ROOT,
        level,
        (
            KeyMatch("PatientID", SingleValue(patient_id)),
            KeyMatch("StudyInstanceUID" if level is QueryLevel.STUDY else "PatientName",
                     Universal()),
        ),
    )  # fmt: skip
    keyword = "StudyInstanceUID" if level is QueryLevel.STUDY else "PatientID"
    return [str(match.values[keyword]) for match in node.queries.find(query, ORIGIN)]


def study_query(study_uid: str = samples.STUDY_UID) -> Query:
    return Query(
        InformationModel.STUDY_ROOT,
        QueryLevel.STUDY,
        (KeyMatch("StudyInstanceUID", SingleValue(study_uid)),),
    )


def registered_with_images(node: Node, receiver: Hl7Receiver) -> None:
    assert answer(receiver, samples.adt())[1] == "AA"
    assert answer(receiver, samples.orm())[1] == "AA"
    node.ingest.ingest(image("1.2.826.0.1.3680043.10.1001.1.1.1"), ORIGIN)


def test_a_merge_moves_orders_and_studies_and_every_answer_follows(
    node: Node, receiver: Hl7Receiver
) -> None:
    registered_with_images(node, receiver)
    stored_before = node.retrieve.read_bytes(
        node.retrieve.locate(study_query(), ORIGIN, purpose="t")[0]
    )

    merged = answer(receiver, samples.merge())

    assert merged[1] == "AA", merged
    assert "1 studies, 1 orders" in merged[3]
    assert node.orders.get(samples.ACCESSION).patient == PERMANENT
    assert studies_of(node, samples.PERMANENT_ID) == [samples.STUDY_UID]
    assert studies_of(node, samples.NEWBORN_ID) == []
    assert studies_of(node, samples.NEWBORN_ID, QueryLevel.PATIENT) == []
    assert studies_of(node, samples.PERMANENT_ID, QueryLevel.PATIENT) == [samples.PERMANENT_ID]
    # The retrieved header carries the survivor; what the modality wrote is kept beside it.
    [location] = node.retrieve.locate(study_query(), ORIGIN, purpose="test")
    retrieved = dcmread(BytesIO(node.retrieve.read_bytes(location)))
    assert (retrieved.PatientID, str(retrieved.PatientName)) == (
        samples.PERMANENT_ID,
        "LEFEVRE^CLEMENCE",
    )
    [original] = retrieved.OriginalAttributesSequence
    assert original.ReasonForTheAttributeModification == "CORRECT"
    assert original.ModifiedAttributesSequence[0].PatientID == samples.NEWBORN_ID
    with node.retrieve.local_file(location) as path:
        assert dcmread(path).PatientID == samples.PERMANENT_ID  # what C-GET/C-MOVE send
    [metadata] = node.retrieve.metadata(study_query(), ORIGIN)
    document = json.loads(metadata.dicom_json)
    assert document["00100020"]["Value"] == [samples.PERMANENT_ID]
    assert document["00100010"]["Value"] == [{"Alphabetic": "LEFEVRE^CLEMENCE"}]
    # The stored file is untouched: it stays the record of what came in.
    with node.blob_store.open(location.blob_key) as stored:
        assert stored.read() == stored_before
    assert dcmread(BytesIO(stored_before)).PatientID == samples.NEWBORN_ID
    with node.database.reading() as session:
        survivor = session.scalar(select(Patient).where(Patient.patient_id == PERMANENT.identifier))
        prior = session.scalar(select(Patient).where(Patient.patient_id == TEMPORARY.identifier))
        assert survivor is not None and prior is not None
        assert (survivor.number_of_patient_related_studies, survivor.is_temporary) == (1, False)
        assert (prior.number_of_patient_related_studies, prior.merged_into_fk) == (0, survivor.id)
        details = session.scalars(select(AuditEvent.detail)).all()
    assert any(d and d.startswith("merged patient T-77") for d in details)


def test_images_sent_under_the_temporary_number_after_the_merge_join_the_survivor(
    node: Node, receiver: Hl7Receiver
) -> None:
    registered_with_images(node, receiver)
    answer(receiver, samples.merge())

    node.ingest.ingest(image("1.2.826.0.1.3680043.10.1001.1.1.2"), ORIGIN)
    node.ingest.ingest(image("1.2.826.0.1.3680043.10.1001.9.1.1", SECOND_STUDY_UID), ORIGIN)

    assert sorted(studies_of(node, samples.PERMANENT_ID)) == sorted(
        [samples.STUDY_UID, SECOND_STUDY_UID]
    )
    [location] = node.retrieve.locate(study_query(SECOND_STUDY_UID), ORIGIN, purpose="test")
    assert dcmread(BytesIO(node.retrieve.read_bytes(location))).PatientID == PERMANENT.identifier
    with node.database.reading() as session:
        counts = session.execute(
            select(Patient.patient_id, Patient.number_of_patient_related_instances)
        ).all()
    assert dict(counts)[PERMANENT.identifier] == 3


def test_a_merge_sent_again_or_of_an_unknown_patient_changes_nothing(
    node: Node, receiver: Hl7Receiver
) -> None:
    registered_with_images(node, receiver)
    answer(receiver, samples.merge())

    again = answer(receiver, samples.merge("ADT0041"))
    unknown = answer(receiver, samples.merge("ADT0042", prior="T-99"))
    without_mrg = answer(receiver, samples.without_segment(samples.merge("ADT0043"), "MRG"))

    assert again[1] == "AA" and "already merged" in again[3]
    assert unknown[1] == "AE" and "MRG-1" in unknown[3]
    assert without_mrg[1] == "AE"
    assert studies_of(node, samples.PERMANENT_ID) == [samples.STUDY_UID]


def test_a_changed_identifier_is_carried_by_every_answer(node: Node, receiver: Hl7Receiver) -> None:
    registered_with_images(node, receiver)

    changed = answer(receiver, samples.change_identifier())

    assert changed[1] == "AA", changed
    assert node.patients.get(PERMANENT).identifiers[0] == PatientIdentity(
        samples.PERMANENT_ID, samples.FACILITY, "MR"
    )
    assert studies_of(node, samples.PERMANENT_ID) == [samples.STUDY_UID]
    assert studies_of(node, samples.NEWBORN_ID) == []
    [location] = node.retrieve.locate(study_query(), ORIGIN, purpose="test")
    assert dcmread(BytesIO(node.retrieve.read_bytes(location))).PatientID == PERMANENT.identifier
    with node.database.reading() as session:
        assert session.scalar(select(Study.identity_changed)) is True


def test_changing_to_an_identifier_of_another_patient_is_refused(
    node: Node, receiver: Hl7Receiver
) -> None:
    registered_with_images(node, receiver)
    other = samples.with_field(samples.adt("ADT0002"), "PID", 3, "MRN900123^^^CHILDRENS^MR")
    assert answer(receiver, other)[1] == "AA"

    refused = answer(receiver, samples.change_identifier())

    assert refused[1] == "AE" and "belongs to another patient" in refused[3]
    assert studies_of(node, samples.NEWBORN_ID) == [samples.STUDY_UID]
