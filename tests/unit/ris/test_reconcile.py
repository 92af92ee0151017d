"""Arriving studies matched to their orders, on both databases, with images ingested through
the one ingest path: by Study Instance UID, by accession number, the exceptions (no order,
another patient, a cancelled order), an order placed after its images, and the exceptions
resolved by hand (attach, with a confirmation for another patient; dismiss)."""

from __future__ import annotations

from datetime import date
from io import BytesIO

import pytest
from pydicom import dcmread
from sqlalchemy import func, select, update

from pedipacs.db.tables import AuditEvent, ImageException, ImagingOrder, Patient, Study
from pedipacs.errors import Conflict, InvalidInput, NotFound
from pedipacs.model.levels import InformationModel, QueryLevel
from pedipacs.model.origin import Origin
from pedipacs.model.query import KeyMatch, Query, SingleValue, Universal
from pedipacs.model.ris import (
    OrderRequest,
    OrderStatus,
    PatientIdentity,
    PatientRegistration,
)
from pedipacs.node import Node
from pedipacs.ris.reconcile import (
    CancelledOrderError,
    ExceptionReason,
    ExceptionResolvedError,
    ExceptionState,
    OtherPatientError,
    UnknownAccessionError,
    UnknownExceptionError,
)
from support.files import PYDICOM_TEST_FILES
from support.worklist import us_abdomen

HIS = Origin.cli("his")
NURSE = Origin.http("nurse.kim", "10.0.0.9")
ISSUER = "CHILDRENS"
NGUYEN = PatientRegistration(
    identifiers=(PatientIdentity("MRN3001", ISSUER, "MR"),),
    name="NGUYEN^LAN",
    birth_date=date(2025, 5, 20),
    sex="F",
)
OKORO = PatientRegistration(
    identifiers=(PatientIdentity("MRN3002", ISSUER, "MR"),),
    name="OKORO^CHIDI",
    birth_date=date(2016, 3, 2),
    sex="M",
)
ORDER_UID = "1.2.826.0.1.3680043.10.3001"
OTHER_UID = "1.2.826.0.1.3680043.10.3002"


def order(
    accession: str = "R3001", patient: PatientRegistration = NGUYEN, study_uid: str = ORDER_UID
) -> OrderRequest:
    return us_abdomen(patient.primary, accession, study_uid)


def image(
    study_uid: str = ORDER_UID,
    *,
    patient: PatientRegistration = NGUYEN,
    accession: str = "R3001",
    number: int = 1,
) -> bytes:
    """A CT of the pydicom test files, as a modality filled it in (from the worklist or not)."""
    dataset = dcmread(PYDICOM_TEST_FILES / "CT_small.dcm")
    dataset.PatientID = patient.primary.identifier
    dataset.IssuerOfPatientID = patient.primary.issuer
    dataset.PatientName = patient.name
    dataset.StudyInstanceUID = study_uid
    dataset.SeriesInstanceUID = f"{study_uid}.1"
    dataset.SOPInstanceUID = f"{study_uid}.1.{number}"
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.AccessionNumber = accession
    buffer = BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


@pytest.fixture
def registered(node: Node) -> Node:
    node.patients.register(NGUYEN, HIS)
    node.patients.register(OKORO, HIS)
    return node


def store(node: Node, data: bytes) -> None:
    node.ingest.ingest(data, Origin.dimse("US_ED_1", "PEDIPACS", "10.0.0.5"))


def study_row(node: Node, study_uid: str = ORDER_UID) -> tuple[str | None, str, bool]:
    """The study's order (accession number), patient ID and whether its identity changed."""
    with node.database.reading() as session:
        row = session.execute(
            select(ImagingOrder.accession_number, Patient.patient_id, Study.identity_changed)
            .select_from(Study)
            .join(Patient, Patient.id == Study.patient_fk)
            .outerjoin(ImagingOrder, ImagingOrder.id == Study.order_fk)
            .where(Study.study_instance_uid == study_uid)
        ).one()
        return row[0], row[1], row[2]


def exceptions(node: Node) -> list[tuple[str, str, str | None]]:
    """Every exception: reason, state and the order it names."""
    with node.database.reading() as session:
        return [
            (row.reason, row.state, row.accession_number)
            for row in session.execute(
                select(ImageException.reason, ImageException.state, ImagingOrder.accession_number)
                .outerjoin(ImagingOrder, ImagingOrder.id == ImageException.order_fk)
                .order_by(ImageException.id)
            )
        ]


def status(node: Node, accession: str = "R3001") -> OrderStatus:
    return node.orders.get(accession).status


def audit_details(node: Node, event_id: str) -> list[str]:
    with node.database.reading() as session:
        return [
            str(detail)
            for detail in session.scalars(
                select(AuditEvent.detail)
                .where(AuditEvent.event_id == event_id)
                .order_by(AuditEvent.id)
            )
        ]


def open_exception_id(node: Node) -> int:
    [item] = node.exceptions.search(NURSE).items
    return item.id


# -- at ingest ---------------------------------------------------------------------------------


def test_images_with_the_order_study_uid_join_it_and_the_order_arrives(registered: Node) -> None:
    node = registered
    node.orders.place(order(), HIS)

    store(node, image(accession=""))  # a modality that dropped the accession number
    store(node, image(accession="", number=2))

    assert study_row(node) == ("R3001", "MRN3001", False)
    assert status(node) is OrderStatus.ARRIVED
    assert exceptions(node) == []


def test_images_with_the_accession_number_join_the_order(registered: Node) -> None:
    node = registered
    node.orders.place(order(), HIS)

    store(node, image(OTHER_UID))  # its own Study Instance UID, the order's accession number

    assert study_row(node, OTHER_UID) == ("R3001", "MRN3001", False)
    assert status(node) is OrderStatus.ARRIVED


def test_the_study_uid_wins_over_the_accession_number(registered: Node) -> None:
    node = registered
    node.orders.place(order(), HIS)
    node.orders.place(order("R3009", study_uid=OTHER_UID), HIS)

    store(node, image(OTHER_UID, accession="R3001"))

    assert study_row(node, OTHER_UID)[0] == "R3009"
    assert (status(node), status(node, "R3009")) == (OrderStatus.SCHEDULED, OrderStatus.ARRIVED)


def test_images_of_another_patient_are_stored_but_not_attached(registered: Node) -> None:
    node = registered
    node.orders.place(order(), HIS)

    store(node, image(patient=OKORO))  # the wrong child picked on the worklist

    assert study_row(node) == (None, "MRN3002", False)
    assert status(node) is OrderStatus.SCHEDULED
    assert exceptions(node) == [("patient-differs", "open", "R3001")]
    [item] = node.exceptions.search(NURSE).items
    assert item.reason is ExceptionReason.PATIENT_DIFFERS
    assert (item.patient.patient_id, item.patient.name) == ("MRN3002", "OKORO^CHIDI")
    assert item.order is not None
    assert (item.order.accession_number, item.order.patient.patient_id) == ("R3001", "MRN3001")
    assert item.detail is not None
    assert "matched by Study Instance UID" in item.detail
    assert "MRN3001^^^CHILDRENS (NGUYEN^LAN)" in item.detail
    assert (item.instances, item.modalities, item.accession_number) == (1, ("CT",), "R3001")


def test_the_same_patient_id_under_another_issuer_is_another_patient(registered: Node) -> None:
    node = registered
    node.orders.place(order(), HIS)
    no_issuer = PatientRegistration(
        identifiers=(PatientIdentity("MRN3001"),), name="NGUYEN^LAN"
    )  # a modality that drops the issuer

    store(node, image(patient=no_issuer))

    [item] = node.exceptions.search(NURSE).items
    assert item.reason is ExceptionReason.PATIENT_DIFFERS
    assert item.detail is not None
    assert item.detail.endswith("the same Patient ID under another issuer")


def test_images_without_an_order_open_an_exception_once(registered: Node) -> None:
    node = registered

    store(node, image(accession="R9999"))
    store(node, image(accession="R9999", number=2))

    assert study_row(node) == (None, "MRN3001", False)
    assert exceptions(node) == [("no-order", "open", None)]
    [item] = node.exceptions.search(NURSE).items
    assert item.instances == 2
    assert item.detail == (
        f"no order has Study Instance UID {ORDER_UID}; the images carry accession number R9999"
    )


def test_images_of_a_cancelled_order_open_an_exception(registered: Node) -> None:
    node = registered
    node.orders.place(order(), HIS)
    node.orders.cancel("R3001", HIS, reason="booked twice")

    store(node, image())

    assert study_row(node)[0] is None
    assert exceptions(node) == [("order-cancelled", "open", "R3001")]
    with pytest.raises(CancelledOrderError):
        node.exceptions.attach(open_exception_id(node), "R3001", NURSE)


@pytest.mark.parametrize("mpps_status", [OrderStatus.IN_PROGRESS, OrderStatus.COMPLETED])
def test_an_order_the_modality_moved_on_is_never_moved_back(
    registered: Node, mpps_status: OrderStatus
) -> None:
    node = registered
    node.orders.place(order(), HIS)
    with node.database.unit_of_work() as session:  # as MPPS N-CREATE / N-SET leave it
        session.execute(update(ImagingOrder).values(status=mpps_status))

    store(node, image())

    assert study_row(node)[0] == "R3001"
    assert status(node) is mpps_status


# -- an order placed after its images ----------------------------------------------------------


def test_an_order_placed_after_its_images_resolves_their_exception(registered: Node) -> None:
    node = registered
    store(node, image(OTHER_UID))  # accession R3001, before the order exists
    assert exceptions(node) == [("no-order", "open", None)]

    node.orders.place(order(), HIS)

    assert study_row(node, OTHER_UID) == ("R3001", "MRN3001", False)
    assert status(node) is OrderStatus.ARRIVED
    assert exceptions(node) == [("no-order", "attached", "R3001")]
    assert node.exceptions.search(NURSE).items == ()
    [attached] = node.exceptions.search(NURSE, state=ExceptionState.ATTACHED).items
    assert attached.resolved_by == "his"
    assert any("arrived before the order, attached" in d for d in audit_details(node, "110109"))


def test_an_order_placed_after_images_of_another_patient_says_so(registered: Node) -> None:
    node = registered
    store(node, image(patient=OKORO))

    node.orders.place(order(), HIS)  # for NGUYEN, with the images' Study Instance UID

    assert study_row(node) == (None, "MRN3002", False)
    assert status(node) is OrderStatus.SCHEDULED
    assert exceptions(node) == [("patient-differs", "open", "R3001")]


# -- resolved by hand --------------------------------------------------------------------------


def test_attaching_to_another_patients_order_needs_a_confirmation_and_moves_the_study(
    registered: Node,
) -> None:
    node = registered
    node.orders.place(order(), HIS)
    store(node, image(patient=OKORO))
    exception_id = open_exception_id(node)

    with pytest.raises(OtherPatientError) as refused:
        node.exceptions.attach(exception_id, "R3001", NURSE)
    assert (refused.value.images.patient_id, refused.value.order.patient_id) == (
        "MRN3002",
        "MRN3001",
    )
    assert study_row(node) == (None, "MRN3002", False)

    attached = node.exceptions.attach(exception_id, " R3001 ", NURSE, confirm_other_patient=True)

    assert (attached.state, attached.resolved_by) == (ExceptionState.ATTACHED, "nurse.kim")
    assert attached.patient.patient_id == "MRN3001"
    assert study_row(node) == ("R3001", "MRN3001", True)
    assert status(node) is OrderStatus.ARRIVED
    found = node.queries.find(
        Query(
            InformationModel.STUDY_ROOT,
            QueryLevel.STUDY,
            (KeyMatch("PatientID", SingleValue("MRN3001")),
             KeyMatch("StudyInstanceUID", Universal())),
        ),
        NURSE,
    )  # fmt: skip
    assert [str(m.values["StudyInstanceUID"]) for m in found] == [ORDER_UID]
    with node.database.reading() as session:
        counts = {
            patient_id: instances
            for patient_id, instances in session.execute(
                select(Patient.patient_id, Patient.number_of_patient_related_instances)
            )
        }
    assert counts == {"MRN3001": 1, "MRN3002": 0}
    [order_audit] = [d for d in audit_details(node, "110109") if "attached" in d]
    assert "moved from patient MRN3002^^^CHILDRENS (OKORO^CHIDI), as confirmed" in order_audit
    assert any("moved from" in d for d in audit_details(node, "110111"))


def test_images_still_arriving_for_a_moved_study_join_it_under_its_new_patient(
    registered: Node,
) -> None:
    node = registered
    node.orders.place(order(), HIS)
    store(node, image(patient=OKORO))
    node.exceptions.attach(open_exception_id(node), "R3001", NURSE, confirm_other_patient=True)

    store(node, image(patient=OKORO, number=2))  # the modality still has the wrong child

    with node.database.reading() as session:
        rows = session.execute(
            select(Patient.patient_id, Patient.number_of_patient_related_instances)
        ).all()
    assert {row[0]: row[1] for row in rows} == {"MRN3001": 2, "MRN3002": 0}
    [_, late] = node.retrieve.locate(
        Query(InformationModel.STUDY_ROOT, QueryLevel.STUDY,
              (KeyMatch("StudyInstanceUID", SingleValue(ORDER_UID)),)),
        NURSE,
        purpose="test",
    )  # fmt: skip
    assert dcmread(BytesIO(node.retrieve.read_bytes(late))).PatientID == "MRN3001"


def test_files_imported_from_a_folder_open_no_exception_but_still_find_their_order(
    registered: Node,
) -> None:
    node = registered
    node.orders.place(order(), HIS)

    node.ingest.ingest(image(OTHER_UID, accession="PRIOR-1"), Origin.cli("import"))
    node.ingest.ingest(image(), Origin.cli("import"))

    assert exceptions(node) == []
    assert study_row(node) == ("R3001", "MRN3001", False)
    assert study_row(node, OTHER_UID) == (None, "MRN3001", False)


def test_attaching_to_the_same_patients_order_needs_no_confirmation(registered: Node) -> None:
    node = registered
    store(node, image(OTHER_UID, accession="TYPO"))  # no order: the accession was mistyped
    node.orders.place(order(), HIS)

    attached = node.exceptions.attach(open_exception_id(node), "R3001", NURSE)

    assert attached.order is not None
    assert attached.order.accession_number == "R3001"
    assert study_row(node, OTHER_UID) == ("R3001", "MRN3001", False)
    assert status(node) is OrderStatus.ARRIVED


def test_a_dismissed_exception_keeps_the_study_as_it_came(registered: Node) -> None:
    node = registered
    store(node, image())
    exception_id = open_exception_id(node)

    with pytest.raises(InvalidInput, match="note"):
        node.exceptions.dismiss(exception_id, NURSE, "  ")
    dismissed = node.exceptions.dismiss(exception_id, NURSE, "phantom images, quality control")

    assert dismissed.state is ExceptionState.DISMISSED
    assert dismissed.detail is not None
    assert dismissed.detail.endswith("dismissed: phantom images, quality control")
    assert study_row(node) == (None, "MRN3001", False)
    assert node.exceptions.search(NURSE).items == ()
    assert audit_details(node, "110111")[-1] == (
        f"image exception {exception_id} (no-order) dismissed: phantom images, quality control"
    )


def test_an_exception_is_resolved_once(registered: Node) -> None:
    node = registered
    node.orders.place(order(), HIS)
    store(node, image(patient=OKORO))
    exception_id = open_exception_id(node)
    node.exceptions.dismiss(exception_id, NURSE, "sent to the wrong archive")

    with pytest.raises(ExceptionResolvedError, match=r"dismissed already, by nurse\.kim"):
        node.exceptions.dismiss(exception_id, NURSE, "again")
    with pytest.raises(Conflict):
        node.exceptions.attach(exception_id, "R3001", NURSE, confirm_other_patient=True)
    assert study_row(node) == (None, "MRN3002", False)


def test_unknown_exceptions_and_orders_are_named(registered: Node) -> None:
    node = registered
    store(node, image())

    with pytest.raises(UnknownExceptionError):
        node.exceptions.attach(999, "R3001", NURSE)
    with pytest.raises(UnknownAccessionError):
        node.exceptions.attach(open_exception_id(node), "R0000", NURSE)
    with pytest.raises(InvalidInput):
        node.exceptions.attach(open_exception_id(node), " ", NURSE)
    with pytest.raises(NotFound):
        node.exceptions.dismiss(999, NURSE, "gone")


def test_the_list_is_newest_first_paged_and_audited(registered: Node) -> None:
    node = registered
    uids = [f"{ORDER_UID}.{n}" for n in range(1, 4)]
    for uid in uids:
        store(node, image(uid, accession=""))

    first = node.exceptions.search(NURSE, limit=2)
    rest = node.exceptions.search(NURSE, offset=2, limit=2)

    assert [i.study_instance_uid for i in first.items + rest.items] == uids[::-1]
    assert (first.has_more, rest.has_more) == (True, False)
    assert node.exceptions.count_open() == 3
    with node.database.reading() as session:
        queries = session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.event_id == "110112")
        )
    assert queries == 2
    with pytest.raises(InvalidInput):
        node.exceptions.search(NURSE, limit=0)
