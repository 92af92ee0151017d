"""Accounts on both databases: argon2 passwords, lockout, sessions that end, tokens, audit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from pedipacs.db.tables import AuditEvent, UserAccount, UserSession
from pedipacs.errors import InvalidInput
from pedipacs.model.origin import Origin
from pedipacs.node import Node
from pedipacs.security.accounts import (
    AccountExistsError,
    AccountLocked,
    AccountService,
    SessionRules,
    SignInFailed,
    secret_hash,
)
from pedipacs.security.permissions import Permission, Role

ADMIN = Origin.cli("admin")
WEB = Origin.http(None, "192.0.2.7")
PASSWORD = "a long enough passphrase"


@pytest.fixture
def accounts(node: Node) -> AccountService:
    return AccountService(
        node.database,
        SessionRules(
            idle=timedelta(minutes=15),
            maximum=timedelta(hours=12),
            max_failures=3,
            lockout=timedelta(minutes=15),
        ),
    )


def audit_details(node: Node, event_id: str) -> list[tuple[str | None, int, str | None]]:
    with node.database.reading() as session:
        rows = session.execute(
            select(AuditEvent.user, AuditEvent.outcome, AuditEvent.detail)
            .where(AuditEvent.event_id == event_id)
            .order_by(AuditEvent.sequence)
        ).all()
    return [(row.user, row.outcome, row.detail) for row in rows]


def test_passwords_are_stored_as_argon2id_hashes(accounts: AccountService, node: Node) -> None:
    accounts.create("dr.ruiz", frozenset({Role.RADIOLOGIST}), ADMIN, password=PASSWORD)

    with node.database.reading() as session:
        stored = session.scalar(select(UserAccount.password_hash))
    assert stored is not None
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


def test_sign_in_gives_a_session_with_the_roles_permissions(
    accounts: AccountService, node: Node
) -> None:
    accounts.create("dr.ruiz", frozenset({Role.RADIOLOGIST}), ADMIN, password=PASSWORD)

    signed_in = accounts.sign_in("Dr.Ruiz ", PASSWORD, WEB)
    authenticated = accounts.authenticate(signed_in.token)

    assert authenticated is not None
    assert authenticated.principal.name == "dr.ruiz"
    assert authenticated.principal.may(Permission.RETRIEVE)
    assert authenticated.principal.may(Permission.REPORT)
    assert not authenticated.principal.may(Permission.ADMINISTER)
    assert authenticated.principal.csrf_token == signed_in.csrf_token
    with node.database.reading() as session:
        hashes = session.scalars(select(UserSession.token_hash)).all()
    assert hashes == [secret_hash(signed_in.token)]  # the secret itself is not kept
    assert audit_details(node, "110114") == [("dr.ruiz", 0, "signed in")]


def test_wrong_password_and_unknown_user_get_the_same_answer(
    accounts: AccountService, node: Node
) -> None:
    accounts.create("dr.ruiz", frozenset({Role.RADIOLOGIST}), ADMIN, password=PASSWORD)

    with pytest.raises(SignInFailed) as wrong:
        accounts.sign_in("dr.ruiz", "not the right one", WEB)
    with pytest.raises(SignInFailed) as unknown:
        accounts.sign_in("nobody", PASSWORD, WEB)

    assert str(wrong.value) == str(unknown.value) == "wrong username or password"
    assert [(u, o) for u, o, _ in audit_details(node, "110114")] == [
        ("dr.ruiz", 4),
        ("nobody", 4),
    ]


def test_repeated_failures_lock_the_account_even_for_the_right_password(
    accounts: AccountService, node: Node
) -> None:
    accounts.create("dr.ruiz", frozenset({Role.RADIOLOGIST}), ADMIN, password=PASSWORD)
    for _ in range(2):
        with pytest.raises(SignInFailed):
            accounts.sign_in("dr.ruiz", "guess", WEB)

    with pytest.raises(AccountLocked):
        accounts.sign_in("dr.ruiz", "guess", WEB)
    with pytest.raises(AccountLocked):
        accounts.sign_in("dr.ruiz", PASSWORD, WEB)

    alerts = [d for _, _, d in audit_details(node, "110113") if d and "locked" in d]
    assert alerts == ["account locked after failed sign-ins: dr.ruiz"]
    # When the lock has run out, the right password works again.
    with node.database.unit_of_work() as session:
        session.execute(
            update(UserAccount).values(locked_until=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert accounts.sign_in("dr.ruiz", PASSWORD, WEB).principal.name == "dr.ruiz"


def test_idle_and_expired_sessions_end(accounts: AccountService, node: Node) -> None:
    accounts.create("dr.ruiz", frozenset({Role.RADIOLOGIST}), ADMIN, password=PASSWORD)
    idle = accounts.sign_in("dr.ruiz", PASSWORD, WEB)
    old = accounts.sign_in("dr.ruiz", PASSWORD, WEB)
    fresh = accounts.sign_in("dr.ruiz", PASSWORD, WEB)
    now = datetime.now(UTC)
    with node.database.unit_of_work() as session:
        session.execute(
            update(UserSession)
            .where(UserSession.token_hash == secret_hash(idle.token))
            .values(last_seen_at=now - timedelta(minutes=16))
        )
        session.execute(
            update(UserSession)
            .where(UserSession.token_hash == secret_hash(old.token))
            .values(expires_at=now - timedelta(seconds=1))
        )

    assert accounts.authenticate(idle.token) is None  # automatic logoff
    assert accounts.authenticate(old.token) is None
    assert accounts.authenticate(fresh.token) is not None
    assert accounts.authenticate("made-up") is None


def test_sign_out_ends_the_session_and_its_viewer_tokens(accounts: AccountService) -> None:
    accounts.create("dr.ruiz", frozenset({Role.RADIOLOGIST}), ADMIN, password=PASSWORD)
    signed_in = accounts.sign_in("dr.ruiz", PASSWORD, WEB)
    session = accounts.authenticate(signed_in.token)
    assert session is not None
    viewer = accounts.viewer_token(session)
    assert accounts.authenticate(viewer) is not None

    accounts.sign_out(session, WEB)

    assert accounts.authenticate(signed_in.token) is None
    assert accounts.authenticate(viewer) is None


def test_tokens_work_until_revoked_and_disabled_accounts_stop(
    accounts: AccountService, node: Node
) -> None:
    accounts.create("router", frozenset({Role.TECHNOLOGIST}), ADMIN, password=PASSWORD)
    token = accounts.issue_token("router", "nightly import", 30, ADMIN)
    authenticated = accounts.authenticate(token)
    assert authenticated is not None
    assert authenticated.principal.csrf_token is None  # bearer calls need no CSRF token

    accounts.set_disabled("router", True, ADMIN)
    assert accounts.authenticate(token) is None
    accounts.set_disabled("router", False, ADMIN)
    assert accounts.authenticate(token) is None  # ended, not suspended
    again = accounts.issue_token("router", "nightly import", 30, ADMIN)
    assert accounts.revoke_tokens("router", ADMIN) == 1
    assert accounts.authenticate(again) is None
    details = [d for _, _, d in audit_details(node, "110113")]
    assert "token issued for router: nightly import" in details
    assert "account disabled: router" in details


def test_first_administrator_gets_a_one_time_password_that_must_be_changed(
    accounts: AccountService,
) -> None:
    password = accounts.create_first_administrator(ADMIN)
    assert password is not None
    assert accounts.create_first_administrator(ADMIN) is None  # only on an empty database
    assert not accounts.has_ready_administrator()

    signed_in = accounts.sign_in("admin", password, WEB)
    assert signed_in.must_change_password
    accounts.change_password(signed_in.principal, password, "my very own passphrase", WEB)

    assert accounts.has_ready_administrator()
    assert not accounts.sign_in("admin", "my very own passphrase", WEB).must_change_password


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("ok", "short"),
        ("ok", "ok-is-inside-this-password"),
        ("Bad Name!", PASSWORD),
        ("", PASSWORD),
    ],
)
def test_weak_passwords_and_bad_usernames_are_refused(
    accounts: AccountService, username: str, password: str
) -> None:
    with pytest.raises(InvalidInput):
        accounts.create(username, frozenset({Role.AUDITOR}), ADMIN, password=password)
    assert accounts.list() == []


def test_usernames_are_unique_and_roles_change_on_record(
    accounts: AccountService, node: Node
) -> None:
    accounts.create("dr.ruiz", frozenset({Role.REFERRING_CLINICIAN}), ADMIN, password=PASSWORD)
    with pytest.raises(AccountExistsError):
        accounts.create("DR.RUIZ", frozenset({Role.AUDITOR}), ADMIN, password=PASSWORD)

    accounts.set_roles("dr.ruiz", frozenset({Role.RADIOLOGIST, Role.AUDITOR}), ADMIN)

    assert accounts.get("dr.ruiz").roles == {Role.RADIOLOGIST, Role.AUDITOR}
    assert "roles of dr.ruiz: referring-clinician -> auditor,radiologist" in [
        d for _, _, d in audit_details(node, "110113")
    ]


def test_federated_sign_in_creates_the_account_and_follows_the_providers_roles(
    accounts: AccountService,
) -> None:
    issuer = "https://login.hospital.example/realms/staff"
    first = accounts.sign_in_federated(
        issuer, "f3a1", username="amy.chen", display_name="Dr Amy Chen",
        roles=frozenset({Role.REFERRING_CLINICIAN}), origin=WEB,
    )  # fmt: skip
    later = accounts.sign_in_federated(
        issuer, "f3a1", username="amy.chen", display_name="Dr Amy Chen",
        roles=frozenset({Role.RADIOLOGIST}), origin=WEB,
    )  # fmt: skip

    assert first.principal.roles == {Role.REFERRING_CLINICIAN}
    assert later.principal.roles == {Role.RADIOLOGIST}
    assert accounts.get("amy.chen").signs_in_with == issuer
    with pytest.raises(SignInFailed):  # federated accounts have no local password
        accounts.sign_in("amy.chen", "", WEB)
    with pytest.raises(SignInFailed):
        accounts.sign_in_federated(
            issuer, "9b2c", username="no.role", display_name="No Role",
            roles=frozenset(), origin=WEB,
        )  # fmt: skip


def test_sessions_that_ended_a_day_ago_are_forgotten_at_the_next_sign_in(
    accounts: AccountService, node: Node
) -> None:
    accounts.create("dr.ruiz", frozenset({Role.RADIOLOGIST}), ADMIN, password=PASSWORD)
    old = accounts.sign_in("dr.ruiz", PASSWORD, WEB)
    session = accounts.authenticate(old.token)
    assert session is not None
    accounts.viewer_token(session)
    accounts.sign_out(session, WEB)
    token = accounts.issue_token("dr.ruiz", "script", 30, ADMIN)
    with node.database.unit_of_work() as db:
        db.execute(update(UserSession).values(ended_at=datetime.now(UTC) - timedelta(days=2)))

    accounts.sign_in("dr.ruiz", PASSWORD, WEB)

    with node.database.reading() as db:
        kinds = sorted(db.scalars(select(UserSession.kind)).all())
    assert kinds == ["session", "token"]  # the new session; the program's token is kept
    assert accounts.authenticate(token) is None  # (it was ended above, for the purge test)
