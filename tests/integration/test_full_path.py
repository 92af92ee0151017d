"""The filmless workflow as one path, against a running `pedipacs serve` on both databases, with
every peer real: the HIS registers preterm twin 2 under a temporary number and orders a cranial
ultrasound (HL7 A04 + ORM^O01 over MLLP); the modality asks its worklist (DCMTK `findscu -W`),
fills its images in from the item and stores them (DCMTK `storescu`), reports its progress
(MPPS N-CREATE, N-SET COMPLETED with pynetdicom); the order shows completed with its images.
Days later the HIS merges the temporary identity into the permanent one (A40): C-FIND by the
permanent number finds the study, the temporary number finds nothing, and a retrieve (C-GET)
hands out headers carrying the permanent identity."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import ModalityPerformedProcedureStep
from sqlalchemy import create_engine, select

from pedipacs.db.tables import ImagingOrder, Study
from support import hl7_samples as samples
from support.databases import fresh_database
from support.dcmtk import findscu_outcome, getscu, run, storescu
from support.files import PYDICOM_TEST_FILES
from support.hl7_samples import MllpClient, ack_code
from support.server import RunningServer, free_port, start_server

MODALITY = "US_NICU_1"  # the station the order schedules, registered as a peer
SPS = "ScheduledProcedureStepSequence"
SUCCESS = 0x0000


@pytest.fixture(params=["sqlite", "postgresql"])
def hospital(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_available: bool, dcmtk: None
) -> Iterator[tuple[RunningServer, int]]:
    """pedipacs with the HIS as an HL7 sender and the ultrasound as a registered modality."""
    if request.param == "postgresql" and not postgres_available:
        pytest.skip("PostgreSQL is not reachable")
    hl7_port = free_port()
    with fresh_database(request.param, tmp_path) as url:
        server = start_server(
            tmp_path / "server",
            url,
            extra_env={"PEDIPACS_HL7_PORT": str(hl7_port), "PEDIPACS_HL7_SENDERS": '["HIS"]'},
        )
        try:
            server.register_peer(MODALITY, allow="store,find,get,worklist")
            yield server, hl7_port
        finally:
            server.stop()


def worklist_item(server: RunningServer, output_dir: Path) -> Dataset:
    keys = [
        "PatientName=", "PatientID=", "IssuerOfPatientID=", "PatientBirthDate=", "PatientSex=",
        "AccessionNumber=", "StudyInstanceUID=", "RequestedProcedureID=",
        f"{SPS}[0].ScheduledStationAETitle={MODALITY}", f"{SPS}[0].Modality=US",
        f"{SPS}[0].ScheduledProcedureStepStartDate=20261125", f"{SPS}[0].ScheduledProcedureStepID=",
    ]  # fmt: skip
    output_dir.mkdir()
    args = ["findscu", "-W", "-aet", MODALITY, "-aec", server.ae_title, "-X", "-od",
            str(output_dir)]  # fmt: skip
    for key in keys:
        args += ["-k", key]
    result = run([*args, "127.0.0.1", str(server.dicom_port)])
    assert result.returncode == 0, result.stderr[-4000:]
    [item] = [dcmread(path) for path in output_dir.glob("rsp*.dcm")]
    return item


def images_from(item: Dataset, folder: Path, count: int = 3) -> list[Path]:
    """What the modality writes: the worklist's patient, accession and Study Instance UID."""
    folder.mkdir()
    series_uid = generate_uid()
    paths = []
    for number in range(1, count + 1):
        dataset = dcmread(PYDICOM_TEST_FILES / "CT_small.dcm")
        for keyword in ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate",
                        "PatientSex", "AccessionNumber", "StudyInstanceUID"):  # fmt: skip
            setattr(dataset, keyword, item.get(keyword, ""))
        dataset.SeriesInstanceUID = series_uid
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        dataset.InstanceNumber = number
        path = folder / f"us{number}.dcm"
        dataset.save_as(path)
        paths.append(path)
    return paths


def performed_step(item: Dataset, status: str) -> Dataset:
    step = item[SPS][0]
    scheduled = Dataset()
    scheduled.StudyInstanceUID = item.StudyInstanceUID
    scheduled.AccessionNumber = item.AccessionNumber
    scheduled.RequestedProcedureID = item.RequestedProcedureID
    scheduled.ScheduledProcedureStepID = step.ScheduledProcedureStepID
    dataset = Dataset()
    dataset.ScheduledStepAttributesSequence = Sequence([scheduled])
    dataset.PatientName = item.PatientName
    dataset.PatientID = item.PatientID
    dataset.PerformedStationAETitle = MODALITY
    dataset.PerformedProcedureStepStartDate = "20261125"
    dataset.PerformedProcedureStepStartTime = "103500"
    dataset.PerformedProcedureStepID = "PPS1"
    dataset.Modality = "US"
    dataset.PerformedProcedureStepStatus = status
    return dataset


def performed_series(images: list[Path]) -> Dataset:
    """The Performed Series Sequence item a COMPLETED step must carry (PS3.4 F.7.2.2.3)."""
    first = dcmread(images[0])
    series = Dataset()
    series.SeriesInstanceUID = first.SeriesInstanceUID
    series.Modality = "US"
    series.PerformingPhysicianName = ""
    series.ProtocolName = "US HEAD NEONATAL"
    series.OperatorsName = ""
    series.SeriesDescription = ""
    series.RetrieveAETitle = ""
    series.ReferencedNonImageCompositeSOPInstanceSequence = Sequence([])
    references = []
    for path in images:
        dataset = dcmread(path)
        reference = Dataset()
        reference.ReferencedSOPClassUID = dataset.SOPClassUID
        reference.ReferencedSOPInstanceUID = dataset.SOPInstanceUID
        references.append(reference)
    series.ReferencedImageSequence = Sequence(references)
    return series


def report_progress(server: RunningServer, item: Dataset, images: list[Path]) -> tuple[int, int]:
    """MPPS as the modality sends it: N-CREATE IN PROGRESS, then N-SET COMPLETED."""
    ae = AE(ae_title=MODALITY)
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate("127.0.0.1", server.dicom_port, ae_title=server.ae_title)
    assert assoc.is_established
    try:
        uid = generate_uid()
        created, _ = assoc.send_n_create(
            performed_step(item, "IN PROGRESS"), ModalityPerformedProcedureStep, uid
        )
        completed = Dataset()
        completed.PerformedProcedureStepStatus = "COMPLETED"
        completed.PerformedProcedureStepEndDate = "20261125"
        completed.PerformedProcedureStepEndTime = "104500"
        completed.PerformedSeriesSequence = Sequence([performed_series(images)])
        set_status, _ = assoc.send_n_set(completed, ModalityPerformedProcedureStep, uid)
        return int(created.Status), int(set_status.Status)
    finally:
        assoc.release()


def order_and_studies(server: RunningServer) -> tuple[str, list[tuple[str, bool]]]:
    engine = create_engine(server.database_url)
    try:
        with engine.connect() as connection:
            order = connection.execute(
                select(ImagingOrder.id, ImagingOrder.status).where(
                    ImagingOrder.accession_number == samples.ACCESSION
                )
            ).one()
            studies = connection.execute(
                select(Study.study_instance_uid, Study.identity_changed).where(
                    Study.order_fk == order.id
                )
            ).all()
            return order.status, [tuple(row) for row in studies]
    finally:
        engine.dispose()


def studies_found(server: RunningServer, patient_id: str, output_dir: Path) -> list[str]:
    outcome = findscu_outcome(
        server,
        ["QueryRetrieveLevel=STUDY", f"PatientID={patient_id}", "StudyInstanceUID="],
        output_dir,
    )
    assert outcome.status == SUCCESS
    return [str(identifier.StudyInstanceUID) for identifier in outcome.responses]


def test_order_to_worklist_to_images_to_completed_then_the_newborns_merge(
    hospital: tuple[RunningServer, int], tmp_path: Path
) -> None:
    server, hl7_port = hospital
    with MllpClient(hl7_port) as his:
        assert ack_code(his.send(samples.adt())) == "AA"
        assert ack_code(his.send(samples.orm())) == "AA"

    item = worklist_item(server, tmp_path / "worklist")
    assert (item.PatientID, item.AccessionNumber, item.StudyInstanceUID) == (
        samples.NEWBORN_ID,
        samples.ACCESSION,
        samples.STUDY_UID,
    )
    images = images_from(item, tmp_path / "images")
    stored = storescu(server, images, calling_ae=MODALITY)
    assert stored.returncode == 0, stored.stderr[-4000:]
    assert order_and_studies(server) == ("arrived", [(samples.STUDY_UID, False)])
    assert report_progress(server, item, images) == (SUCCESS, SUCCESS)
    assert order_and_studies(server) == ("completed", [(samples.STUDY_UID, False)])
    shown = server.get(f"{server.http_url}/api/orders/{samples.ACCESSION}")
    assert shown.status_code == 200, shown.text
    assert shown.json()["status"] == "completed"
    assert [(s["studyInstanceUid"], s["modalities"], s["instances"])
            for s in shown.json()["studies"]] == [(samples.STUDY_UID, ["CT"], 3)]  # fmt: skip

    with MllpClient(hl7_port) as his:
        assert ack_code(his.send(samples.merge())) == "AA"

    assert order_and_studies(server) == ("completed", [(samples.STUDY_UID, True)])
    assert studies_found(server, samples.PERMANENT_ID, tmp_path / "permanent") == [
        samples.STUDY_UID
    ]
    assert studies_found(server, samples.NEWBORN_ID, tmp_path / "temporary") == []
    result, files = getscu(
        server,
        ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={samples.STUDY_UID}"],
        tmp_path / "retrieved",
    )
    assert result.returncode == 0, result.stderr[-4000:]
    headers = [dcmread(path) for path in files]
    assert len(headers) == 3
    assert {(h.PatientID, str(h.PatientName)) for h in headers} == {
        (samples.PERMANENT_ID, "LEFEVRE^CLEMENCE")
    }
    assert {h.OriginalAttributesSequence[0].ModifiedAttributesSequence[0].PatientID
            for h in headers} == {samples.NEWBORN_ID}  # fmt: skip
