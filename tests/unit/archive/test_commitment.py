"""CommitmentService on both databases: requests as durable jobs, what counts as committed, and
delivery attempts with back-off until reported or given up. `deliver` stands in for the DIMSE
sender (tested against a real peer in tests/integration/dimse/test_storage_commitment.py)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from io import BytesIO

import pytest
from pydicom import dcmread
from sqlalchemy import select

from pedipacs.archive.commitment import (
    CommitmentFailureReason,
    CommitmentReport,
    CommitmentReportNotDeliveredError,
    CommitmentService,
    CommitmentState,
    SopReference,
    UnknownCommitmentRequesterError,
    retry_delay,
)
from pedipacs.db.tables import AuditEvent, CommitmentRequest
from pedipacs.errors import InvalidUidError, MissingAttributeError
from pedipacs.model.origin import Origin
from pedipacs.model.records import Peer
from pedipacs.node import Node
from support.files import PYDICOM_TEST_FILES

MODALITY = "US_ED_1"
ORIGIN = Origin.dimse(MODALITY, "PEDIPACS", "127.0.0.1")
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
STORED_1 = "1.2.826.0.1.3680043.8.498.101"
STORED_2 = "1.2.826.0.1.3680043.8.498.102"
UNKNOWN = "1.2.826.0.1.3680043.8.498.199"
TRANSACTION = "1.2.826.0.1.3680043.8.498.900"


def store_ct(node: Node, sop_instance_uid: str) -> None:
    dataset = dcmread(PYDICOM_TEST_FILES / "CT_small.dcm")
    dataset.SOPInstanceUID = sop_instance_uid
    dataset.file_meta.MediaStorageSOPInstanceUID = sop_instance_uid
    buffer = BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    node.ingest.ingest(buffer.getvalue(), ORIGIN)


@pytest.fixture
def commitments(node: Node) -> CommitmentService:
    node.peers.add(Peer("ed-ultrasound", MODALITY, "127.0.0.1", 11113), Origin.cli("tests"))
    return CommitmentService(node.database, retry_seconds=5.0, max_attempts=3)


class Recipient:
    """Records the reports it is given; fails while `failing` is set."""

    def __init__(self, *, failing: bool = False) -> None:
        self.failing = failing
        self.reports: list[CommitmentReport] = []

    def __call__(self, report: CommitmentReport) -> None:
        if self.failing:
            raise CommitmentReportNotDeliveredError("connection refused")
        self.reports.append(report)


def jobs(node: Node) -> list[CommitmentRequest]:
    with node.database.reading() as session:
        return list(session.scalars(select(CommitmentRequest).order_by(CommitmentRequest.id)))


def audit_details(node: Node) -> list[tuple[str, str, int, str]]:
    with node.database.reading() as session:
        return [
            (row.event_id, row.event_action, row.outcome, row.detail or "")
            for row in session.scalars(select(AuditEvent).order_by(AuditEvent.sequence))
            if "storage commitment" in (row.detail or "")
        ]


def as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def test_request_is_stored_as_a_pending_job_due_now_and_audited(
    node: Node, commitments: CommitmentService
) -> None:
    before = datetime.now(UTC)
    job = commitments.request(
        TRANSACTION, MODALITY, [(CT_IMAGE_STORAGE, STORED_1), (CT_IMAGE_STORAGE, UNKNOWN)], ORIGIN
    )

    assert job.state is CommitmentState.PENDING
    assert job.references == (
        SopReference(CT_IMAGE_STORAGE, STORED_1),
        SopReference(CT_IMAGE_STORAGE, UNKNOWN),
    )
    [row] = jobs(node)
    assert (row.transaction_uid, row.requester_ae_title, row.attempts) == (TRANSACTION, MODALITY, 0)
    assert as_utc(row.due_at) >= before
    assert [job.id for job in commitments.due_jobs()] == [row.id]
    assert audit_details(node) == [
        (
            "110104",
            "E",
            0,
            f"storage commitment requested: transaction {TRANSACTION}, 2 instance(s)",
        )
    ]


def test_requester_missing_from_the_peer_registry_is_refused_and_nothing_is_stored(
    node: Node, commitments: CommitmentService
) -> None:
    with pytest.raises(UnknownCommitmentRequesterError):
        commitments.request(TRANSACTION, "STRANGER", [(CT_IMAGE_STORAGE, STORED_1)], ORIGIN)

    assert jobs(node) == []
    assert audit_details(node) == []


@pytest.mark.parametrize(
    ("transaction_uid", "references", "error"),
    [
        ("", [(CT_IMAGE_STORAGE, STORED_1)], MissingAttributeError),
        ("1.02.3", [(CT_IMAGE_STORAGE, STORED_1)], InvalidUidError),
        (TRANSACTION, [], MissingAttributeError),
        (TRANSACTION, [(CT_IMAGE_STORAGE, "")], MissingAttributeError),
        (TRANSACTION, [("CT", STORED_1)], InvalidUidError),
    ],
)
def test_request_with_a_missing_or_invalid_value_is_refused(
    node: Node,
    commitments: CommitmentService,
    transaction_uid: str,
    references: list[tuple[str, str]],
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        commitments.request(transaction_uid, MODALITY, references, ORIGIN)
    assert jobs(node) == []


def test_repeated_transaction_uid_gets_a_report_of_its_own(
    node: Node, commitments: CommitmentService
) -> None:
    commitments.request(TRANSACTION, MODALITY, [(CT_IMAGE_STORAGE, STORED_1)], ORIGIN)
    commitments.request(
        TRANSACTION, MODALITY, [(CT_IMAGE_STORAGE, STORED_1), (CT_IMAGE_STORAGE, STORED_2)], ORIGIN
    )
    recipient = Recipient()

    commitments.process_due(recipient)

    assert [len(report.result.failed) for report in recipient.reports] == [1, 2]
    assert [row.state for row in jobs(node)] == ["reported", "reported"]


def test_committed_are_stored_instances_of_the_named_class_in_the_order_requested(
    node: Node, commitments: CommitmentService
) -> None:
    store_ct(node, STORED_1)
    store_ct(node, STORED_2)
    references = [
        SopReference(CT_IMAGE_STORAGE, STORED_2),
        SopReference(CT_IMAGE_STORAGE, UNKNOWN),
        SopReference(MR_IMAGE_STORAGE, STORED_1),  # stored, but as a CT image
    ]

    result = commitments.committed(references)

    assert result.committed == (SopReference(CT_IMAGE_STORAGE, STORED_2),)
    assert [(f.reference.sop_instance_uid, f.reason) for f in result.failed] == [
        (UNKNOWN, CommitmentFailureReason.NO_SUCH_OBJECT_INSTANCE),
        (STORED_1, CommitmentFailureReason.CLASS_INSTANCE_CONFLICT),
    ]
    assert not result.is_complete
    assert len(result.patient_ids) == 1
    assert len(result.study_instance_uids) == 1


def test_report_is_computed_when_sent_and_goes_to_the_registered_address(
    node: Node, commitments: CommitmentService
) -> None:
    store_ct(node, STORED_1)
    commitments.request(
        TRANSACTION, MODALITY, [(CT_IMAGE_STORAGE, STORED_1), (CT_IMAGE_STORAGE, STORED_2)], ORIGIN
    )
    store_ct(node, STORED_2)  # arrives after the request, before the report
    recipient = Recipient()

    [outcome] = commitments.process_due(recipient)

    [report] = recipient.reports
    assert (report.host, report.port, report.requester_ae_title) == ("127.0.0.1", 11113, MODALITY)
    assert (report.transaction_uid, report.attempt) == (TRANSACTION, 1)
    assert report.result.is_complete
    assert [ref.sop_instance_uid for ref in report.result.committed] == [STORED_1, STORED_2]
    assert (outcome.state, outcome.attempts) == (CommitmentState.REPORTED, 1)
    [row] = jobs(node)
    assert (row.state, row.attempts, row.last_error) == ("reported", 1, None)
    assert row.reported_at is not None
    assert commitments.due_jobs() == []
    assert commitments.process_due(recipient) == []  # reported once only
    assert audit_details(node)[-1] == (
        "110104",
        "R",
        0,
        f"storage commitment reported: transaction {TRANSACTION}, 2 committed, 0 failed",
    )


def test_report_with_failures_is_audited_as_a_minor_failure(
    node: Node, commitments: CommitmentService
) -> None:
    commitments.request(TRANSACTION, MODALITY, [(CT_IMAGE_STORAGE, UNKNOWN)], ORIGIN)

    [outcome] = commitments.process_due(Recipient())

    assert outcome.result is not None
    assert [f.reason for f in outcome.result.failed] == [
        CommitmentFailureReason.NO_SUCH_OBJECT_INSTANCE
    ]
    assert audit_details(node)[-1][1:] == (
        "R",
        4,
        f"storage commitment reported: transaction {TRANSACTION}, 0 committed, 1 failed",
    )


def test_undelivered_report_is_retried_with_doubling_delays_then_given_up(
    node: Node, commitments: CommitmentService
) -> None:
    commitments.request(TRANSACTION, MODALITY, [(CT_IMAGE_STORAGE, STORED_1)], ORIGIN)
    recipient = Recipient(failing=True)
    start = datetime.now(UTC) + timedelta(seconds=1)

    [first] = commitments.process_due(recipient, now=start)
    assert (first.state, first.attempts) == (CommitmentState.PENDING, 1)
    assert first.next_attempt_in == timedelta(seconds=5)
    [row] = jobs(node)
    assert as_utc(row.due_at) == start + timedelta(seconds=5)
    assert row.last_error == "connection refused"
    # Not due before its time.
    assert commitments.process_due(recipient, now=start + timedelta(seconds=4)) == []

    [second] = commitments.process_due(recipient, now=start + timedelta(seconds=5))
    assert (second.attempts, second.next_attempt_in) == (2, timedelta(seconds=10))

    [third] = commitments.process_due(recipient, now=start + timedelta(seconds=15))
    assert (third.state, third.attempts) == (CommitmentState.FAILED, 3)
    [row] = jobs(node)
    assert (row.state, row.attempts, row.reported_at) == ("failed", 3, None)
    assert commitments.process_due(recipient, now=start + timedelta(days=1)) == []
    assert audit_details(node)[-1][1:3] == ("R", 8)
    assert "given up after 3 attempts: connection refused" in audit_details(node)[-1][3]


def test_delivery_succeeds_after_failed_attempts(
    node: Node, commitments: CommitmentService
) -> None:
    commitments.request(TRANSACTION, MODALITY, [(CT_IMAGE_STORAGE, STORED_1)], ORIGIN)
    recipient = Recipient(failing=True)
    start = datetime.now(UTC) + timedelta(seconds=1)
    commitments.process_due(recipient, now=start)

    recipient.failing = False
    [outcome] = commitments.process_due(recipient, now=start + timedelta(seconds=5))

    assert (outcome.state, outcome.attempts) == (CommitmentState.REPORTED, 2)
    assert [report.attempt for report in recipient.reports] == [2]


def test_requester_removed_from_the_registry_counts_as_a_failed_attempt(
    node: Node, commitments: CommitmentService
) -> None:
    commitments.request(TRANSACTION, MODALITY, [(CT_IMAGE_STORAGE, STORED_1)], ORIGIN)
    node.peers.remove("ed-ultrasound", Origin.cli("tests"))
    recipient = Recipient()

    [outcome] = commitments.process_due(recipient)

    assert recipient.reports == []
    assert (outcome.state, outcome.attempts) == (CommitmentState.PENDING, 1)
    assert "no longer a registered peer" in (outcome.error or "")


def test_a_request_wakes_a_waiting_worker(commitments: CommitmentService) -> None:
    woken: list[bool] = []
    waiting = threading.Thread(target=lambda: woken.append(commitments.wait_for_request(30)))
    waiting.start()
    commitments.request(TRANSACTION, MODALITY, [(CT_IMAGE_STORAGE, STORED_1)], ORIGIN)
    waiting.join(30)

    assert woken == [True]


def test_a_job_another_node_is_delivering_is_skipped(
    node: Node, commitments: CommitmentService
) -> None:
    if node.database.is_sqlite:
        pytest.skip("SQLite has one node and one worker: nothing to skip")
    commitments.request(TRANSACTION, MODALITY, [(CT_IMAGE_STORAGE, STORED_1)], ORIGIN)
    recipient = Recipient()
    with node.database.unit_of_work() as other_node:
        other_node.scalars(select(CommitmentRequest).with_for_update()).all()
        assert commitments.process_due(recipient) == []
    assert recipient.reports == []
    assert len(commitments.process_due(recipient)) == 1


def test_retry_delay_doubles_from_the_first_and_stops_at_ten_minutes() -> None:
    first = timedelta(seconds=5)
    delays = [retry_delay(attempt, first).total_seconds() for attempt in range(1, 10)]

    assert delays == [5, 10, 20, 40, 80, 160, 320, 600, 600]
