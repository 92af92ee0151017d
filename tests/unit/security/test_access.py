"""The access policy: roles' permissions, a clinician's patients, break-the-glass."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from pedipacs.db.tables import AuditEvent, BreakGlassAccess
from pedipacs.errors import InvalidInput
from pedipacs.model.origin import Door, Origin
from pedipacs.node import Node
from pedipacs.security.access import NotPermittedError
from pedipacs.security.permissions import (
    ROLE_PERMISSIONS,
    Permission,
    Principal,
    Role,
)

ADMIN = Origin.cli("admin")
PASSWORD = "a long enough passphrase"


def principal(node: Node, username: str, role: Role) -> Principal:
    node.accounts.create(username, frozenset({role}), ADMIN, password=PASSWORD)
    return node.accounts.sign_in(username, PASSWORD, Origin.http(None, "10.0.0.9")).principal


def test_every_role_has_its_permissions_and_nothing_else() -> None:
    assert ROLE_PERMISSIONS[Role.AUDITOR] == {Permission.READ_AUDIT}
    assert Permission.REPORT in ROLE_PERMISSIONS[Role.RADIOLOGIST]
    assert Permission.STORE in ROLE_PERMISSIONS[Role.TECHNOLOGIST]
    assert Permission.REPORT not in ROLE_PERMISSIONS[Role.TECHNOLOGIST]
    assert Permission.STORE not in ROLE_PERMISSIONS[Role.REFERRING_CLINICIAN]
    assert Permission.ADMINISTER in ROLE_PERMISSIONS[Role.ADMINISTRATOR]
    assert all(
        Permission.BREAK_GLASS not in permissions
        for role, permissions in ROLE_PERMISSIONS.items()
        if role is not Role.REFERRING_CLINICIAN
    )


def test_a_refusal_is_audited_as_a_security_alert(node: Node) -> None:
    auditor = principal(node, "auditor", Role.AUDITOR)
    origin = node.access.origin_for(auditor, Door.HTTP, "10.0.0.9")

    with pytest.raises(NotPermittedError):
        node.access.require(auditor, Permission.RETRIEVE, origin)
    node.access.require(auditor, Permission.READ_AUDIT, origin)

    with node.database.reading() as session:
        alerts = session.execute(
            select(AuditEvent.user, AuditEvent.outcome, AuditEvent.detail).where(
                AuditEvent.event_id == "110113", AuditEvent.detail.like("refused%")
            )
        ).all()
    assert [tuple(a) for a in alerts] == [("auditor", 4, "refused: retrieve by auditor (user)")]


def test_a_clinician_sees_the_patients_in_their_care_only(node: Node) -> None:
    clinician = principal(node, "dr.okafor", Role.REFERRING_CLINICIAN)
    radiologist = principal(node, "dr.ruiz", Role.RADIOLOGIST)
    node.access.add_to_care_team("dr.okafor", "P-100", ADMIN)
    node.access.add_to_care_team("dr.okafor", "P-100", ADMIN)  # twice is once

    assert node.access.patient_scope(clinician) == {"P-100"}
    assert node.access.patient_scope(radiologist) is None
    node.access.remove_from_care_team("dr.okafor", "P-100", ADMIN)
    assert node.access.patient_scope(clinician) == frozenset()


def test_break_the_glass_opens_one_patient_for_a_while_and_waits_for_review(node: Node) -> None:
    clinician = principal(node, "dr.okafor", Role.REFERRING_CLINICIAN)
    admin = principal(node, "root", Role.ADMINISTRATOR)
    origin = node.access.origin_for(clinician, Door.HTTP, "10.0.0.9")

    opened = node.access.break_glass(
        clinician, "P-200", "Unconscious child in resus, mother unreachable", origin
    )

    assert node.access.patient_scope(clinician) == {"P-200"}
    assert opened.expires_at - opened.started_at == timedelta(hours=1)
    [waiting] = node.access.break_glass_report()
    assert (waiting.username, waiting.patient_id, waiting.remote_host) == (
        "dr.okafor",
        "P-200",
        "10.0.0.9",
    )
    with node.database.reading() as session:
        detail = session.scalar(
            select(AuditEvent.detail).where(
                AuditEvent.event_id == "110113", AuditEvent.patient_id == "P-200"
            )
        )
    assert detail is not None and "(110127, DCM, Emergency Override Started)" in detail
    assert "mother unreachable" in detail

    node.access.review_break_glass(waiting.id, admin, ADMIN)
    assert node.access.break_glass_report() == []
    # When the time is up the patient is out of reach again.
    with node.database.unit_of_work() as session:
        session.execute(
            update(BreakGlassAccess).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert node.access.patient_scope(clinician) == frozenset()


def test_break_the_glass_needs_a_reason_and_the_permission(node: Node) -> None:
    clinician = principal(node, "dr.okafor", Role.REFERRING_CLINICIAN)
    technologist = principal(node, "tech", Role.TECHNOLOGIST)

    with pytest.raises(InvalidInput):
        node.access.break_glass(clinician, "P-200", "because", ADMIN)
    with pytest.raises(NotPermittedError):
        node.access.break_glass(technologist, "P-200", "I would like to see it", ADMIN)
    with pytest.raises(NotPermittedError):
        node.access.review_break_glass(1, clinician, ADMIN)

    assert node.access.break_glass_report(unreviewed_only=False) == []
