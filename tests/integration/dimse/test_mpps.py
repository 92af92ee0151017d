"""Modality Performed Procedure Step SCP against a running `pedipacs serve`: pynetdicom as the
modality (DCMTK has no MPPS SCU) sends N-CREATE and N-SET for orders scheduled through the RIS
services, and the order status is read back through them. A peer without the worklist grant
gets 0x0124; every refusal names its reason and leaves nothing behind."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import ModalityPerformedProcedureStep
from sqlalchemy import create_engine, func, select

from pedipacs.db.engine import Database
from pedipacs.db.tables import PerformedStep
from pedipacs.model.ris import OrderStatus
from pedipacs.ris.orders import OrderService
from support.databases import fresh_database
from support.mpps import ended, in_progress
from support.server import RunningServer, start_server
from support.worklist import schedule_on

MODALITY = "US_ED_1"  # a registered modality, granted the worklist (and so MPPS)
FINDSCU = "FINDSCU"  # a registered peer granted C-FIND only
SUCCESS = 0x0000
INVALID_ATTRIBUTE_VALUE = 0x0106
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
NO_SUCH_SOP_INSTANCE = 0x0112
MISSING_ATTRIBUTE = 0x0120
NOT_AUTHORIZED = 0x0124
MAY_NO_LONGER_BE_UPDATED = 0xA710  # Error ID, PS3.4 Table F.7.2-2
N_CREATE_RSP = 0x8140  # Command Field, PS3.7 E.1


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def mpps_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_available: bool,
    dcmtk: None,
) -> Iterator[RunningServer]:
    """A server refusing unknown calling AEs, with the orders of support.worklist scheduled."""
    if request.param == "postgresql" and not postgres_available:
        pytest.skip("PostgreSQL is not reachable")
    directory = tmp_path_factory.mktemp(f"mpps_{request.param}")
    with fresh_database(request.param, directory) as url:
        server = start_server(
            directory / "server", url, extra_env={"PEDIPACS_ACCEPT_UNKNOWN_CALLING_AES": "false"}
        )
        try:
            server.register_peer(MODALITY, allow="worklist")
            server.register_peer(FINDSCU, allow="find")
            schedule_on(url)
            yield server
        finally:
            server.stop()


@pytest.fixture
def modality(mpps_server: RunningServer) -> Iterator[Association]:
    yield from _associate(mpps_server, MODALITY)


def _associate(
    server: RunningServer, ae_title: str, handlers: list[Any] | None = None
) -> Iterator[Association]:
    ae = AE(ae_title=ae_title)
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate(
        "127.0.0.1", server.dicom_port, ae_title=server.ae_title, evt_handlers=handlers
    )
    assert assoc.is_established
    try:
        yield assoc
    finally:
        assoc.release()
        ae.shutdown()


def n_create(assoc: Association, dataset: Dataset, uid: str | None) -> tuple[Dataset, Any]:
    status, attributes = assoc.send_n_create(dataset, ModalityPerformedProcedureStep, uid)
    assert status is not None, "no N-CREATE response"
    return status, attributes


def n_set(assoc: Association, modifications: Dataset, uid: str) -> Dataset:
    status, _ = assoc.send_n_set(modifications, ModalityPerformedProcedureStep, uid)
    assert status is not None, "no N-SET response"
    return status


def order_status(server: RunningServer, accession_number: str) -> OrderStatus:
    database = Database(server.database_url)
    try:
        return OrderService(database).get(accession_number).status
    finally:
        database.dispose()


def stored(server: RunningServer, uid: str) -> int:
    engine = create_engine(server.database_url)
    try:
        with engine.connect() as connection:
            where = PerformedStep.sop_instance_uid == uid
            query = select(func.count()).select_from(PerformedStep).where(where)
            return int(connection.scalar(query) or 0)
    finally:
        engine.dispose()


def started(accession: str, study_uid: str, step_id: str, **changes: Any) -> Dataset:
    return in_progress(
        study_instance_uid=study_uid,
        accession_number=accession,
        requested_procedure_id=f"RP{accession[1:]}",
        step_id=step_id,
        **changes,
    )


def test_a_modality_starts_and_completes_an_exam_and_the_order_follows(
    mpps_server: RunningServer, modality: Association
) -> None:
    uid = "2.25.31001"

    created, _ = n_create(modality, started("A1001", "2.25.1001", "S1001"), uid)
    assert created.Status == SUCCESS
    assert order_status(mpps_server, "A1001") is OrderStatus.IN_PROGRESS

    completed = n_set(modality, ended("COMPLETED"), uid)
    assert completed.Status == SUCCESS
    assert order_status(mpps_server, "A1001") is OrderStatus.COMPLETED

    # PS3.4 F.7.2.2.3: an ended step may no longer be updated.
    again = n_set(modality, ended("IN PROGRESS"), uid)
    assert (again.Status, again.ErrorID) == (PROCESSING_FAILURE, MAY_NO_LONGER_BE_UPDATED)
    assert again.ErrorComment == "Performed Procedure Step Object may no longer be updated"
    assert order_status(mpps_server, "A1001") is OrderStatus.COMPLETED


def test_a_discontinued_exam_discontinues_its_order(
    mpps_server: RunningServer, modality: Association
) -> None:
    uid = "2.25.31004"
    radiograph = started("A1004", "2.25.1004", "S1004", modality="DX", station="DX_WARD")

    assert n_create(modality, radiograph, uid)[0].Status == SUCCESS
    assert n_set(modality, ended("DISCONTINUED"), uid).Status == SUCCESS

    assert order_status(mpps_server, "A1004") is OrderStatus.DISCONTINUED


def test_a_second_create_with_the_same_uid_is_refused_as_a_duplicate(
    mpps_server: RunningServer, modality: Association
) -> None:
    uid = "2.25.31002"
    head_ct = started("A1002", "2.25.1002", "S1002", modality="CT", station="CT_MAIN")

    assert n_create(modality, head_ct, uid)[0].Status == SUCCESS
    duplicate, _ = n_create(modality, head_ct, uid)

    assert duplicate.Status == DUPLICATE_SOP_INSTANCE
    assert stored(mpps_server, uid) == 1


def test_an_n_set_of_an_unknown_step_is_refused(modality: Association) -> None:
    assert n_set(modality, ended(), "2.25.404404").Status == NO_SUCH_SOP_INSTANCE


def test_a_create_that_is_not_in_progress_is_refused_and_nothing_is_stored(
    mpps_server: RunningServer, modality: Association
) -> None:
    uid = "2.25.31003"
    hips = started("A1003", "2.25.999", "S1003")
    hips.PerformedProcedureStepStatus = "COMPLETED"

    refused, _ = n_create(modality, hips, uid)

    assert refused.Status == INVALID_ATTRIBUTE_VALUE
    assert "PerformedProcedureStepStatus" in refused.ErrorComment
    assert stored(mpps_server, uid) == 0
    assert order_status(mpps_server, "A1003") is OrderStatus.SCHEDULED


def test_a_create_without_a_required_attribute_is_refused(
    mpps_server: RunningServer, modality: Association
) -> None:
    uid = "2.25.31005"
    request = started("A1003", "2.25.999", "S1003")
    del request.PerformedProcedureStepStartDate

    refused, _ = n_create(modality, request, uid)

    assert refused.Status == MISSING_ATTRIBUTE
    assert "PerformedProcedureStepStartDate" in refused.ErrorComment
    assert stored(mpps_server, uid) == 0


def test_an_n_set_changing_what_the_create_fixed_is_refused_naming_the_attribute(
    mpps_server: RunningServer, modality: Association
) -> None:
    uid = "2.25.31006"
    wrist = started("A1006", "2.25.1006", "S1006A")
    assert n_create(modality, wrist, uid)[0].Status == SUCCESS
    other_modality = Dataset()
    other_modality.Modality = "MR"

    refused = n_set(modality, other_modality, uid)

    assert refused.Status == INVALID_ATTRIBUTE_VALUE
    assert refused.AttributeIdentifierList == 0x00080060
    # The radiograph of the same order is still to be taken: the order stays in progress.
    assert n_set(modality, ended(), uid).Status == SUCCESS
    assert order_status(mpps_server, "A1006") is OrderStatus.IN_PROGRESS


def test_without_a_uid_from_the_modality_the_response_names_the_one_chosen(
    mpps_server: RunningServer,
) -> None:
    walk_in = in_progress(study_instance_uid="2.25.888", patient_id="WALKIN1")
    # pynetdicom's send_n_create returns the status only: the UID is read off the response's
    # command set as it arrives.
    chosen: list[str] = []

    def read_response(event: Any) -> None:
        command = event.message.command_set
        if command.CommandField == N_CREATE_RSP:
            chosen.append(str(command.AffectedSOPInstanceUID))

    for assoc in _associate(mpps_server, MODALITY, [(evt.EVT_DIMSE_RECV, read_response)]):
        created, _ = n_create(assoc, walk_in, None)
        assert created.Status == SUCCESS
        [uid] = chosen
        assert n_set(assoc, ended(), uid).Status == SUCCESS

    assert stored(mpps_server, uid) == 1


def test_a_peer_without_the_worklist_grant_is_refused_with_0124_and_the_refusal_audited(
    mpps_server: RunningServer,
) -> None:
    uid = "2.25.31007"
    for assoc in _associate(mpps_server, FINDSCU):
        refused, _ = n_create(assoc, started("A1003", "2.25.999", "S1003"), uid)
        refused_set = n_set(assoc, ended(), "2.25.31001")

    assert (refused.Status, refused_set.Status) == (NOT_AUTHORIZED, NOT_AUTHORIZED)
    assert stored(mpps_server, uid) == 0
    assert order_status(mpps_server, "A1003") is OrderStatus.SCHEDULED
    assert any("worklist by FINDSCU" in alert for alert in mpps_server.security_alerts())
