"""The audit chain: every record linked to the one before by hash; any change is found."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import delete, func, select, update

from pedipacs.db.tables import AuditChainHead, AuditEvent
from pedipacs.model.origin import Origin
from pedipacs.node import Node
from pedipacs.security.audit import AuditEventId, AuditRecord, record
from support.files import PYDICOM_TEST_FILES

ORIGIN = Origin.cli("auditor")


def write_records(node: Node, count: int, origin: Origin = ORIGIN) -> None:
    for number in range(count):
        with node.database.unit_of_work() as session:
            record(
                session,
                AuditRecord(AuditEventId.QUERY, "E", origin, patient_id=f"P{number}",
                            detail=f"query {number}"),
            )  # fmt: skip


def sequence_of_last(node: Node) -> int:
    with node.database.reading() as session:
        return int(session.execute(select(func.max(AuditEvent.sequence))).scalar_one())


def test_records_of_real_actions_form_an_intact_chain(node: Node) -> None:
    node.ingest.ingest((PYDICOM_TEST_FILES / "CT_small.dcm").read_bytes(), ORIGIN)
    write_records(node, 5)

    report = node.audit.verify(ORIGIN)

    assert report.is_intact, report
    assert report.records_checked == 6
    assert sequence_of_last(node) == 7  # the verification itself is on record


@pytest.mark.parametrize(
    ("tamper", "broken_at"),
    [
        (update(AuditEvent).where(AuditEvent.sequence == 3).values(detail="nothing to see"), 3),
        (update(AuditEvent).where(AuditEvent.sequence == 2).values(user="someone-else"), 2),
        (update(AuditEvent).where(AuditEvent.sequence == 4).values(patient_id="P999"), 4),
        (delete(AuditEvent).where(AuditEvent.sequence == 3), 3),
        (delete(AuditEvent).where(AuditEvent.sequence == 5), 5),  # the last one
    ],
    ids=["detail-changed", "user-changed", "patient-changed", "record-removed", "last-removed"],
)
def test_a_changed_or_removed_record_breaks_the_chain_where_it_happened(
    node: Node, tamper: object, broken_at: int
) -> None:
    write_records(node, 5)
    with node.database.unit_of_work() as session:
        session.execute(tamper)  # type: ignore[call-overload]

    report = node.audit.verify(ORIGIN)

    assert not report.is_intact
    assert report.broken_at == broken_at
    assert report.reason


def test_rewriting_a_record_and_its_hash_is_still_found_at_the_next_link(node: Node) -> None:
    write_records(node, 4)
    with node.database.reading() as session:
        second = session.execute(select(AuditEvent).where(AuditEvent.sequence == 2)).scalar_one()
        forged_hash = "f" * 64
    with node.database.unit_of_work() as session:
        session.execute(
            update(AuditEvent)
            .where(AuditEvent.id == second.id)
            .values(detail="forged", record_hash=forged_hash)
        )

    report = node.audit.verify(ORIGIN)

    assert report.broken_at == 2  # its own hash no longer matches its content


def test_concurrent_writers_append_one_after_the_other(node: Node) -> None:
    writers = [
        threading.Thread(target=write_records, args=(node, 10, Origin.http(None, f"10.0.0.{n}")))
        for n in range(4)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()

    report = node.audit.verify(ORIGIN)

    assert report.is_intact, report
    assert report.records_checked == 40
    with node.database.reading() as session:
        head = session.execute(select(AuditChainHead.sequence)).scalar_one()
    assert head == 41
