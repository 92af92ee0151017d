"""Storage Commitment Push Model SCP (PS3.4 Annex J): N-ACTION in, N-EVENT-REPORT out.

The N-ACTION handler turns the Action Information into a `CommitmentService.request` call and
answers success only once the request is stored. The report goes back on a NEW association
that pedipacs opens to the requester's host and port from the peer registry, proposing the
SCP role for Storage Commitment (SCP/SCU Role Selection, PS3.7 D.3.3.4), from a worker thread
that delivers due jobs, retries with back-off, and picks up after a restart what was pending.

The N-ACTION statuses and the report's Failure Reasons are the Storage Commitment tables of
`status.py`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from enum import IntEnum
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation
from pynetdicom.status import STATUS_SUCCESS, STATUS_WARNING, code_to_category

from pedipacs import metrics
from pedipacs.archive.commitment import (
    CommitmentReport,
    CommitmentReportNotDeliveredError,
    CommitmentResult,
    CommitmentService,
    CommitmentState,
    Deliver,
    DeliveryOutcome,
)
from pedipacs.archive.peers import PeerService
from pedipacs.dimse.access import require
from pedipacs.dimse.origin import origin_from_event
from pedipacs.dimse.sending import nodelay_handler, pause_reactor
from pedipacs.dimse.status import (
    COMMITMENT_FAILURE_REASONS,
    CommitmentStatus,
    error_comment,
    n_action_status_from_error,
    status_class,
    status_dataset,
)
from pedipacs.errors import (
    MissingAttributeError,
    NotDicomError,
    NotTheWellKnownInstanceError,
    PedipacsError,
    UnsupportedActionTypeError,
)
from pedipacs.model.records import DimseOperation

log = logging.getLogger(__name__)

STORAGE_COMMITMENT_PUSH_MODEL = "1.2.840.10008.1.20.1"
# The well-known SOP Instance every N-ACTION and N-EVENT-REPORT names (PS3.4 J.3.5).
STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE = "1.2.840.10008.1.20.1.1"
REQUEST_STORAGE_COMMITMENT = 1  # Action Type ID (PS3.4 Table J.3-1)


class CommitmentEventType(IntEnum):
    """Event Type ID of the N-EVENT-REPORT (PS3.4 Table J.3-2)."""

    ALL_SUCCEEDED = 1
    SOME_FAILED = 2


# -- N-ACTION --------------------------------------------------------------------------------


def handle_n_action(
    event: Any, commitments: CommitmentService, peers: PeerService
) -> tuple[int | Dataset, Dataset | None]:
    """Store the request, then answer: a success is only sent for a request that is durable."""
    origin = origin_from_event(event)
    try:
        require(event, DimseOperation.STORE, peers)
        if event.action_type != REQUEST_STORAGE_COMMITMENT:
            raise UnsupportedActionTypeError(
                f"Action Type ID {event.action_type} is not Request Storage Commitment (1)"
            )
        if (
            str(event.request.RequestedSOPClassUID) != STORAGE_COMMITMENT_PUSH_MODEL
            or str(event.request.RequestedSOPInstanceUID) != STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE
        ):
            raise NotTheWellKnownInstanceError(
                f"Requested SOP Instance UID must be {STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE}"
            )
        transaction_uid, references = request_from_action_information(event)
        job = commitments.request(transaction_uid, origin.remote_ae or "", references, origin)
    except PedipacsError as error:
        status = n_action_status_from_error(error)
        log.warning(
            "N-ACTION (storage commitment) from %s@%s refused with 0x%04X: %s",
            origin.remote_ae,
            origin.remote_host,
            status,
            error,
        )
        metrics.DIMSE_REQUESTS.labels("N-ACTION", status_class(status)).inc()
        return status_dataset(int(status), error_comment(error)), None
    log.info(
        "storage commitment %s requested by %s for %d instance(s)",
        job.transaction_uid,
        job.requester_ae_title,
        len(job.references),
    )
    metrics.DIMSE_REQUESTS.labels("N-ACTION", "success").inc()
    return int(CommitmentStatus.SUCCESS), None


def request_from_action_information(event: Any) -> tuple[str, list[tuple[str, str]]]:
    """The Transaction UID and the (SOP Class UID, SOP Instance UID) pairs of the request."""
    try:
        information: Dataset | None = event.action_information
        if information is None or "TransactionUID" not in information:
            raise MissingAttributeError("TransactionUID (0008,1195) is missing")
        if "ReferencedSOPSequence" not in information:
            raise MissingAttributeError("ReferencedSOPSequence (0008,1199) is missing")
        references = []
        for number, item in enumerate(information.ReferencedSOPSequence, 1):
            for keyword in ("ReferencedSOPClassUID", "ReferencedSOPInstanceUID"):
                if keyword not in item:
                    raise MissingAttributeError(
                        f"ReferencedSOPSequence item {number}: no {keyword}"
                    )
            references.append(
                (_text(item.ReferencedSOPClassUID), _text(item.ReferencedSOPInstanceUID))
            )
        return _text(information.TransactionUID), references
    except PedipacsError:
        raise
    except Exception as error:  # pydicom raises many types on garbage; none may pass
        raise NotDicomError(f"the Action Information cannot be decoded: {error}") from error


def _text(value: object) -> str:
    # An empty element reads as None; str() would make that "None".
    return "" if value is None else str(value)


# -- N-EVENT-REPORT --------------------------------------------------------------------------


def event_report_from_result(
    transaction_uid: str, result: CommitmentResult, retrieve_ae_title: str
) -> tuple[CommitmentEventType, Dataset]:
    """The Event Type ID and Event Information of the report (PS3.4 Table J.3-2)."""
    information = Dataset()
    information.TransactionUID = transaction_uid
    information.RetrieveAETitle = retrieve_ae_title
    if result.committed:
        information.ReferencedSOPSequence = [
            _reference_item(ref.sop_class_uid, ref.sop_instance_uid) for ref in result.committed
        ]
    if result.is_complete:
        return CommitmentEventType.ALL_SUCCEEDED, information
    failed = []
    for failure in result.failed:
        item = _reference_item(failure.reference.sop_class_uid, failure.reference.sop_instance_uid)
        item.FailureReason = int(COMMITMENT_FAILURE_REASONS[failure.reason])
        failed.append(item)
    information.FailedSOPSequence = failed
    return CommitmentEventType.SOME_FAILED, information


def _reference_item(sop_class_uid: str, sop_instance_uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class_uid
    item.ReferencedSOPInstanceUID = sop_instance_uid
    return item


# A peer that does not answer a connection attempt would otherwise hold the worker for the
# operating system's connect timeout (about two minutes).
CONNECT_TIMEOUT_SECONDS = 15.0
RELEASE_TIMEOUT_SECONDS = 5.0


class CommitmentReportSender:
    """Delivers a report as an N-EVENT-REPORT on a new association to the requester; raises
    CommitmentReportNotDeliveredError unless the peer acknowledged it."""

    def __init__(self, ae_title: str, *, network_timeout: float, max_pdu_size: int) -> None:
        self._ae_title = ae_title
        self._network_timeout = network_timeout
        self._max_pdu_size = max_pdu_size

    def __call__(self, report: CommitmentReport) -> None:
        try:
            self._deliver(report)
        except CommitmentReportNotDeliveredError:
            raise
        except Exception as error:  # whatever went wrong, the job must stay pending
            raise CommitmentReportNotDeliveredError(f"{type(error).__name__}: {error}") from error

    def _deliver(self, report: CommitmentReport) -> None:
        event_type, information = event_report_from_result(
            report.transaction_uid, report.result, self._ae_title
        )
        peer = f"{report.requester_ae_title}@{report.host}:{report.port}"
        assoc = self._application_entity().associate(
            report.host,
            report.port,
            ae_title=report.requester_ae_title,
            ext_neg=[_scp_role()],
            evt_handlers=[(evt.EVT_CONN_OPEN, nodelay_handler)],
        )
        if not assoc.is_established:
            raise CommitmentReportNotDeliveredError(f"{peer}: {_why_not_established(assoc)}")
        try:
            if not any(
                cx.abstract_syntax == STORAGE_COMMITMENT_PUSH_MODEL
                for cx in assoc.accepted_contexts
            ):
                raise CommitmentReportNotDeliveredError(
                    f"{peer} did not accept Storage Commitment Push Model as SCU"
                )
            pause_reactor(assoc)  # see dimse/sending.py: pynetdicom may take our answer
            status, _reply = assoc.send_n_event_report(
                information,
                int(event_type),
                STORAGE_COMMITMENT_PUSH_MODEL,
                STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE,
            )
        finally:
            if assoc.is_established:
                # The report has its answer (or never will): a peer slow to release must not
                # hold up the reports to every other peer for a whole network timeout.
                assoc.acse_timeout = min(self._network_timeout, RELEASE_TIMEOUT_SECONDS)
                assoc.release()
        code = status.get("Status")  # absent: no answer, pynetdicom aborted
        if code is None:
            raise CommitmentReportNotDeliveredError(
                f"{peer} did not answer the N-EVENT-REPORT (association ended or timed out)"
            )
        if code_to_category(int(code)) not in (STATUS_SUCCESS, STATUS_WARNING):
            raise CommitmentReportNotDeliveredError(
                f"{peer} answered the N-EVENT-REPORT with 0x{int(code):04X}"
            )

    def _application_entity(self) -> AE:
        ae = AE(ae_title=self._ae_title)
        ae.maximum_pdu_size = self._max_pdu_size
        ae.network_timeout = self._network_timeout
        ae.dimse_timeout = self._network_timeout
        ae.acse_timeout = self._network_timeout
        ae.connection_timeout = min(self._network_timeout, CONNECT_TIMEOUT_SECONDS)
        ae.add_requested_context(
            STORAGE_COMMITMENT_PUSH_MODEL, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
        )
        return ae


def _scp_role() -> SCP_SCU_RoleSelectionNegotiation:
    """Propose pedipacs as the SCP of Storage Commitment on an association it requests."""
    role = SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid = STORAGE_COMMITMENT_PUSH_MODEL
    role.scu_role = False
    role.scp_role = True
    return role


def _why_not_established(assoc: Any) -> str:
    if assoc.is_rejected:
        answer = getattr(assoc.acceptor, "primitive", None)
        reason = getattr(answer, "reason_str", None)
        return f"association rejected ({reason})" if reason else "association rejected"
    # pynetdicom marks a refused or timed-out connection as aborted too, and logs which.
    return "no association (connection refused or timed out, or aborted)"


# -- the worker ------------------------------------------------------------------------------

BATCH = 20
MAX_IDLE_BACKOFF_SECONDS = 60.0


class CommitmentReportWorker:
    """The thread delivering due reports; one per node (in `pedipacs serve`'s supervisor).

    A request taken by this process wakes it at once; one taken by another DIMSE worker
    process, and a retry that became due, are found by polling every `poll_seconds`.
    """

    def __init__(self, commitments: CommitmentService, deliver: Deliver, *, poll_seconds: float):
        self._commitments = commitments
        self._deliver = deliver
        self._poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.run, name="storage-commitment", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        self._commitments.wake()
        self._thread.join(timeout)

    def run(self) -> None:
        """Deliver what is due, then wait for a request or the next poll, until stopped.

        While the database itself fails, the wait doubles up to a minute; that outage is
        logged once when it starts and once when it ends.
        """
        failures = 0
        while not self._stop.is_set():
            outcomes: Sequence[DeliveryOutcome] = ()
            try:
                outcomes = self._commitments.process_due(self._deliver, limit=BATCH)
            except Exception:
                failures += 1
                if failures == 1:
                    log.exception("storage commitment worker failed; retrying")
            else:
                if failures:
                    log.info("storage commitment worker resumed after %d failures", failures)
                failures = 0
                for outcome in outcomes:
                    log_outcome(outcome)
            if len(outcomes) == BATCH:
                continue  # more may be due right now
            self._commitments.wait_for_request(self._delay(failures))

    def _delay(self, failures: int) -> float:
        if failures == 0:
            return self._poll_seconds
        return float(min(self._poll_seconds * 2 ** min(failures, 16), MAX_IDLE_BACKOFF_SECONDS))


def log_outcome(outcome: DeliveryOutcome) -> None:
    """One line per attempt, saying what the peer got or why it got nothing."""
    if outcome.state is CommitmentState.REPORTED and outcome.result is not None:
        result = outcome.result
        log.info(
            "storage commitment %s reported to %s (event type %d): %d committed, %d failed",
            outcome.transaction_uid,
            outcome.requester_ae_title,
            CommitmentEventType.ALL_SUCCEEDED
            if result.is_complete
            else CommitmentEventType.SOME_FAILED,
            len(result.committed),
            len(result.failed),
        )
    elif outcome.state is CommitmentState.FAILED:
        log.error(
            "storage commitment %s: report to %s given up after %d attempts: %s",
            outcome.transaction_uid,
            outcome.requester_ae_title,
            outcome.attempts,
            outcome.error,
        )
    else:
        wait = outcome.next_attempt_in.total_seconds() if outcome.next_attempt_in else 0.0
        log.warning(
            "storage commitment %s: report to %s not delivered (attempt %d): %s; "
            "next attempt in %.1f s",
            outcome.transaction_uid,
            outcome.requester_ae_title,
            outcome.attempts,
            outcome.error,
            wait,
        )


def start_commitment_reports(
    commitments: CommitmentService,
    *,
    ae_title: str,
    network_timeout: float,
    max_pdu_size: int,
    poll_seconds: float,
) -> CommitmentReportWorker:
    """Start the worker thread that sends this node's Storage Commitment reports."""
    sender = CommitmentReportSender(
        ae_title, network_timeout=network_timeout, max_pdu_size=max_pdu_size
    )
    worker = CommitmentReportWorker(commitments, sender, poll_seconds=poll_seconds)
    worker.start()
    return worker
