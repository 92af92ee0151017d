"""Storage Commitment Push Model SCP against a running `pedipacs serve`: images sent with DCMTK
`storescu`, then pynetdicom as the modality (DCMTK has no Storage Commitment SCU) sends the
N-ACTION and listens for the N-EVENT-REPORT, which pedipacs sends on a new association it opens
to the address the peer registry holds, as SCP by role selection. A report that cannot be
delivered survives a killed server and arrives, once, when the modality listens again."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StorageCommitmentPushModel,
    StorageCommitmentPushModelInstance,
)
from sqlalchemy import create_engine, select

from pedipacs.db.tables import CommitmentRequest
from support.databases import fresh_database
from support.dcmtk import storescu
from support.files import PYDICOM_TEST_FILES
from support.server import RunningServer, free_port, start_server

MODALITY = "CT_ROOM_1"  # registered, granted store, listening for reports on `listen_port`
FINDER = "VIEWER_1"  # registered, granted find only
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SUCCESS = 0x0000
NO_SUCH_OBJECT_INSTANCE = 0x0112
CLASS_INSTANCE_CONFLICT = 0x0119
MISSING_ATTRIBUTE = 0x0120
NO_SUCH_ACTION = 0x0123
NOT_AUTHORIZED = 0x0124
ALL_SUCCEEDED, SOME_FAILED = 1, 2
REPORT_TIMEOUT = 60.0


@dataclass
class Archive:
    """The server (replaced when a test restarts it) and where the modality listens."""

    server: RunningServer
    listen_port: int


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def archive(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_available: bool,
    dcmtk: None,
) -> Iterator[Archive]:
    if request.param == "postgresql" and not postgres_available:
        pytest.skip("PostgreSQL is not reachable")
    directory = tmp_path_factory.mktemp(f"commitment_{request.param}")
    with fresh_database(request.param, directory) as url:
        # Short retries, so a report waiting for its peer is tried again within the test.
        server = start_server(
            directory / "server", url, extra_env={"PEDIPACS_COMMITMENT_RETRY_SECONDS": "0.5"}
        )
        held = Archive(server, free_port())
        try:
            server.register_peer(MODALITY, allow="store", port=held.listen_port)
            server.register_peer(FINDER, allow="find", port=free_port())
            yield held
        finally:
            held.server.stop()


@dataclass
class Listener:
    """The modality's side of the report: an SCU of Storage Commitment that accepts the
    association pedipacs requests, with pedipacs as SCP by role selection."""

    reports: queue.Queue[tuple[int, Dataset, bool]] = field(default_factory=queue.Queue)

    def on_event_report(self, event: Any) -> tuple[int, None]:
        [context] = [
            cx
            for cx in event.assoc.accepted_contexts
            if cx.abstract_syntax == StorageCommitmentPushModel
        ]
        # Role selection took: here (the association's acceptor) is the SCU only.
        is_scu_by_role = bool(context.as_scu) and not context.as_scp
        self.reports.put((event.event_type, event.event_information, is_scu_by_role))
        return SUCCESS, None

    def report_for(self, transaction_uid: str) -> tuple[int, Dataset, bool]:
        """The next report of `transaction_uid` (reports of earlier tests are passed over)."""
        deadline = time.monotonic() + REPORT_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            event_type, information, by_role = self.reports.get(timeout=left)
            if information.TransactionUID == transaction_uid:
                return event_type, information, by_role
        raise AssertionError(f"no report for {transaction_uid}")


@contextmanager
def listening(port: int) -> Iterator[Listener]:
    """The modality listening for reports on `port` (the address the registry holds)."""
    listener = Listener()
    ae = AE(ae_title=MODALITY)
    # Accept the requestor (pedipacs) as SCP of Storage Commitment, never as SCU.
    ae.add_supported_context(StorageCommitmentPushModel, scu_role=False, scp_role=True)
    ae.start_server(
        ("127.0.0.1", port),
        block=False,
        evt_handlers=[(evt.EVT_N_EVENT_REPORT, listener.on_event_report)],
    )
    try:
        yield listener
    finally:
        ae.shutdown()


def n_action(
    server: RunningServer, ae_title: str, information: Dataset, *, action_type: int = 1
) -> int:
    """Send one N-ACTION as `ae_title`; the status of its response."""
    ae = AE(ae_title=ae_title)
    ae.add_requested_context(StorageCommitmentPushModel)
    assoc = ae.associate("127.0.0.1", server.dicom_port, ae_title=server.ae_title)
    assert assoc.is_established
    try:
        status, _reply = assoc.send_n_action(
            information, action_type, StorageCommitmentPushModel, StorageCommitmentPushModelInstance
        )
    finally:
        assoc.release()
    return int(status.Status)


def action_information(transaction_uid: str, references: list[tuple[str, str]]) -> Dataset:
    information = Dataset()
    information.TransactionUID = transaction_uid
    information.ReferencedSOPSequence = [_item(class_uid, uid) for class_uid, uid in references]
    return information


def _item(sop_class_uid: str, sop_instance_uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class_uid
    item.ReferencedSOPInstanceUID = sop_instance_uid
    return item


def store_cts(server: RunningServer, directory: Path, count: int) -> list[tuple[str, str]]:
    """Send `count` CT images of a new series with storescu; their (class, instance) UIDs."""
    directory.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    paths, references = [], []
    for number in range(count):
        dataset = dcmread(PYDICOM_TEST_FILES / "CT_small.dcm")
        uid = generate_uid()
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study, series
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = uid
        dataset.InstanceNumber = number + 1
        path = directory / f"ct{number}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        paths.append(path)
        references.append((CT_IMAGE_STORAGE, uid))
    sent = storescu(server, paths)
    assert sent.returncode == 0, sent.stderr[-4000:]
    return references


def job_state(server: RunningServer, transaction_uid: str) -> tuple[str, int] | None:
    """(state, attempts) of the request's job, read from the server's database."""
    engine = create_engine(server.database_url)
    try:
        with engine.connect() as connection:
            row = connection.execute(
                select(CommitmentRequest.state, CommitmentRequest.attempts).where(
                    CommitmentRequest.transaction_uid == transaction_uid
                )
            ).first()
    finally:
        engine.dispose()
    return None if row is None else (str(row.state), int(row.attempts))


def wait_for_job(
    server: RunningServer, transaction_uid: str, condition: Callable[[str, int], bool]
) -> tuple[str, int]:
    deadline = time.monotonic() + REPORT_TIMEOUT
    while time.monotonic() < deadline:
        state = job_state(server, transaction_uid)
        if state is not None and condition(*state):
            return state
        time.sleep(0.1)  # polling interval of a probe, not a wait for an outcome
    raise AssertionError(f"job {transaction_uid}: {job_state(server, transaction_uid)}")


def wait_for_log(server: RunningServer, text: str) -> None:
    """Until the server's log holds `text` (what an operator sees)."""
    deadline = time.monotonic() + REPORT_TIMEOUT
    while text not in server.log():
        assert time.monotonic() < deadline, f"not in the log: {text}"
        time.sleep(0.1)  # polling interval of a probe, not a wait for an outcome


def wait_for_reported(server: RunningServer, transaction_uid: str) -> tuple[str, int]:
    """Until pedipacs recorded the report as delivered: the modality then has it, and keeps
    listening until pedipacs released the association."""
    return wait_for_job(server, transaction_uid, lambda state, _: state == "reported")


def referenced(information: Dataset, keyword: str) -> list[tuple[str, str]]:
    return [
        (str(item.ReferencedSOPClassUID), str(item.ReferencedSOPInstanceUID))
        for item in information.get(keyword, [])
    ]


def test_some_failed_names_the_unknown_instance_with_no_such_object_instance(
    archive: Archive, tmp_path: Path
) -> None:
    server = archive.server
    stored = store_cts(server, tmp_path, 2)
    unknown = (CT_IMAGE_STORAGE, generate_uid())
    transaction_uid = generate_uid()

    with listening(archive.listen_port) as listener:
        status = n_action(server, MODALITY, action_information(transaction_uid, [*stored, unknown]))
        assert status == SUCCESS
        event_type, information, is_scu_by_role = listener.report_for(transaction_uid)
        assert wait_for_reported(server, transaction_uid) == ("reported", 1)

    assert event_type == SOME_FAILED
    assert is_scu_by_role
    assert information.RetrieveAETitle == server.ae_title
    assert referenced(information, "ReferencedSOPSequence") == stored
    assert referenced(information, "FailedSOPSequence") == [unknown]
    assert [int(item.FailureReason) for item in information.FailedSOPSequence] == [
        NO_SUCH_OBJECT_INSTANCE
    ]


def test_all_stored_is_reported_as_all_succeeded(archive: Archive, tmp_path: Path) -> None:
    server = archive.server
    stored = store_cts(server, tmp_path, 3)
    transaction_uid = generate_uid()

    with listening(archive.listen_port) as listener:
        assert n_action(server, MODALITY, action_information(transaction_uid, stored)) == SUCCESS
        event_type, information, _ = listener.report_for(transaction_uid)
        wait_for_reported(server, transaction_uid)

    assert event_type == ALL_SUCCEEDED
    assert referenced(information, "ReferencedSOPSequence") == stored
    assert "FailedSOPSequence" not in information


def test_instance_stored_with_another_class_is_a_class_instance_conflict(
    archive: Archive, tmp_path: Path
) -> None:
    server = archive.server
    [(_, instance_uid)] = store_cts(server, tmp_path, 1)
    transaction_uid = generate_uid()

    with listening(archive.listen_port) as listener:
        information = action_information(transaction_uid, [(MR_IMAGE_STORAGE, instance_uid)])
        assert n_action(server, MODALITY, information) == SUCCESS
        event_type, report, _ = listener.report_for(transaction_uid)
        wait_for_reported(server, transaction_uid)

    assert event_type == SOME_FAILED
    assert "ReferencedSOPSequence" not in report
    assert [int(item.FailureReason) for item in report.FailedSOPSequence] == [
        CLASS_INSTANCE_CONFLICT
    ]


def test_report_pending_when_the_server_is_killed_arrives_once_after_restart(
    archive: Archive, tmp_path: Path
) -> None:
    server = archive.server
    stored = store_cts(server, tmp_path, 2)
    transaction_uid = generate_uid()

    # Nobody listens: the acknowledged request waits for its peer, retried.
    assert n_action(server, MODALITY, action_information(transaction_uid, stored)) == SUCCESS
    wait_for_job(server, transaction_uid, lambda state, attempts: attempts >= 1)
    wait_for_log(
        server, f"storage commitment {transaction_uid}: report to {MODALITY} not delivered"
    )

    server.kill()
    archive.server = server = start_server(
        server.data_dir,
        server.database_url,
        dicom_port=server.dicom_port,
        http_port=server.http_port,
        extra_env=server.env,
    )
    with listening(archive.listen_port) as listener:
        event_type, information, _ = listener.report_for(transaction_uid)
        wait_for_reported(server, transaction_uid)
        later = [
            report
            for report in list(listener.reports.queue)
            if report[1].TransactionUID == transaction_uid
        ]

    assert event_type == ALL_SUCCEEDED
    assert referenced(information, "ReferencedSOPSequence") == stored
    assert later == []  # exactly once


@pytest.mark.parametrize(
    ("calling_ae", "action_type", "without", "expected"),
    [
        (FINDER, 1, None, NOT_AUTHORIZED),  # registered, but not granted store
        ("STRANGER", 1, None, NOT_AUTHORIZED),  # not in the registry: no address for a report
        (MODALITY, 2, None, NO_SUCH_ACTION),
        (MODALITY, 1, "TransactionUID", MISSING_ATTRIBUTE),
        (MODALITY, 1, "ReferencedSOPSequence", MISSING_ATTRIBUTE),
    ],
)
def test_refused_request_stores_no_job(
    archive: Archive, calling_ae: str, action_type: int, without: str | None, expected: int
) -> None:
    transaction_uid = generate_uid()
    information = action_information(transaction_uid, [(CT_IMAGE_STORAGE, generate_uid())])
    if without is not None:
        delattr(information, without)

    status = n_action(archive.server, calling_ae, information, action_type=action_type)

    assert status == expected
    assert job_state(archive.server, transaction_uid) is None
