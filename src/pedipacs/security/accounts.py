"""AccountService: local accounts and OpenID Connect identities, sign-in, sessions and tokens.

- Passwords are kept as argon2id hashes; a wrong password and an unknown name take the same
  time and get the same answer.
- After `max_failures` wrong passwords in a row an account is locked for `lockout`.
- A page session is a random secret in a cookie; it ends at sign-out, after `session_idle` of
  inactivity (automatic logoff) or `session_max` after sign-in. A bearer token is the same kind
  of secret for programs (`pedipacs token issue`) and for the viewer.
- Only the SHA-256 of a secret is stored: a copy of the database signs nobody in.
- Every sign-in, failure, lockout, sign-out, token and account change is audited (110114
  User Authentication, 110113 Security Alert, 110100 Application Activity).
"""

from __future__ import annotations

import hashlib
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pedipacs.db.engine import Database
from pedipacs.db.tables import UserAccount, UserSession
from pedipacs.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from pedipacs.model.origin import Origin
from pedipacs.security.audit import AuditEventId, AuditOutcome, AuditRecord, record
from pedipacs.security.permissions import Principal, Role

FIRST_ADMINISTRATOR = "admin"
MINIMUM_PASSWORD_LENGTH = 12
# Writing last_seen on every request would make each read a write; a minute is precise enough
# for a 15-minute idle limit.
LAST_SEEN_RESOLUTION = timedelta(seconds=60)
SESSION, TOKEN, VIEWER = "session", "token", "viewer"
FORGET_ENDED_SESSIONS = timedelta(days=1)
USERNAME_CHARACTERS = frozenset(string.ascii_lowercase + string.digits + "._-@")

_HASHER = PasswordHasher()
# Verified against when the username is unknown, so that case takes as long as a wrong password.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


class SignInFailed(PermissionDenied):
    """Wrong username or password (deliberately not saying which)."""


class AccountLocked(SignInFailed):
    """Too many failed sign-ins; the account is locked for a while."""


class UnknownAccountError(NotFound):
    """No account with that username."""


class AccountExistsError(Conflict):
    """An account with that username exists."""


@dataclass(frozen=True, slots=True)
class SessionRules:
    idle: timedelta = timedelta(minutes=15)
    maximum: timedelta = timedelta(hours=12)
    max_failures: int = 5
    lockout: timedelta = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class Account:
    username: str
    display_name: str
    roles: frozenset[Role]
    must_change_password: bool
    disabled: bool
    signs_in_with: str  # "password" or the OpenID Connect issuer
    locked_until: datetime | None


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A new page session: the secret for the cookie and the CSRF token for its forms."""

    token: str
    csrf_token: str
    principal: Principal
    must_change_password: bool


@dataclass(frozen=True, slots=True)
class Authenticated:
    principal: Principal
    session_id: int
    kind: str
    must_change_password: bool = False


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite gives DateTime columns back naive (they are stored in UTC).
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _roles(text: str) -> frozenset[Role]:
    # Role names this version does not know (a newer one wrote them) grant nothing.
    return frozenset(Role(n) for n in text.split(",") if n in Role._value2member_map_)


def check_username(username: str) -> str:
    name = username.strip().lower()
    if not 0 < len(name) <= 64 or not set(name) <= USERNAME_CHARACTERS:
        raise InvalidInput(
            "a username has 1 to 64 characters: lower-case letters, digits, '.', '_', '-', '@'"
        )
    return name


def check_password(password: str, username: str) -> None:
    if len(password) < MINIMUM_PASSWORD_LENGTH:
        raise InvalidInput(f"a password has at least {MINIMUM_PASSWORD_LENGTH} characters")
    if username.lower() in password.lower():
        raise InvalidInput("a password must not contain the username")


def one_time_password() -> str:
    return secrets.token_urlsafe(18)


class AccountService:
    def __init__(self, database: Database, rules: SessionRules | None = None) -> None:
        self._database = database
        self._rules = rules or SessionRules()

    # -- accounts -------------------------------------------------------------------------

    def create(
        self,
        username: str,
        roles: frozenset[Role],
        origin: Origin,
        *,
        password: str | None = None,
        display_name: str | None = None,
        must_change_password: bool = False,
        oidc: tuple[str, str] | None = None,
    ) -> Account:
        """A new account signing in with `password`, or with the OpenID identity `oidc`
        (issuer, subject)."""
        name = check_username(username)
        if not roles:
            raise InvalidInput("an account needs at least one role")
        if password is not None:
            check_password(password, name)
        row = UserAccount(
            username=name,
            display_name=(display_name or name).strip()[:128],
            roles=",".join(sorted(roles)),
            password_hash=_HASHER.hash(password) if password is not None else None,
            must_change_password=must_change_password,
            oidc_issuer=oidc[0] if oidc else None,
            oidc_subject=oidc[1] if oidc else None,
            failed_signins=0,
            disabled=False,
        )
        try:
            with self._database.unit_of_work() as session:
                session.add(row)
                session.flush()
                _audit_change(session, origin, f"account created: {name} ({row.roles})", "C")
                return _account(row)
        except IntegrityError as error:
            raise AccountExistsError(f"an account named {name!r} exists") from error

    def create_first_administrator(self, origin: Origin) -> str | None:
        """On a database with no account at all, create `admin` with a one-time password and
        return that password (to be shown once); otherwise None."""
        with self._database.reading() as session:
            if session.scalar(select(UserAccount.id).limit(1)) is not None:
                return None
        password = one_time_password()
        try:
            self.create(
                FIRST_ADMINISTRATOR,
                frozenset({Role.ADMINISTRATOR}),
                origin,
                password=password,
                display_name="Administrator",
                must_change_password=True,
            )
        except AccountExistsError:
            return None  # another node created it first
        return password

    def has_ready_administrator(self) -> bool:
        """Whether an enabled administrator has credentials of their own (a password they
        chose, or an identity provider): until then pedipacs stays on the loopback address."""
        with self._database.reading() as session:
            rows = session.execute(
                select(UserAccount.roles, UserAccount.must_change_password).where(
                    UserAccount.disabled.is_(False)
                )
            ).all()
        return any(
            Role.ADMINISTRATOR in _roles(r.roles) and not r.must_change_password for r in rows
        )

    def get(self, username: str) -> Account:
        with self._database.reading() as session:
            return _account(self._row(session, username))

    def list(self) -> list[Account]:
        with self._database.reading() as session:
            rows = session.scalars(select(UserAccount).order_by(UserAccount.username))
            return [_account(row) for row in rows]

    def set_roles(self, username: str, roles: frozenset[Role], origin: Origin) -> Account:
        if not roles:
            raise InvalidInput("an account needs at least one role")
        with self._database.unit_of_work() as session:
            row = self._row(session, username)
            before = row.roles
            row.roles = ",".join(sorted(roles))
            _audit_change(session, origin, f"roles of {row.username}: {before} -> {row.roles}")
            return _account(row)

    def set_disabled(self, username: str, disabled: bool, origin: Origin) -> Account:
        with self._database.unit_of_work() as session:
            row = self._row(session, username)
            row.disabled = disabled
            if disabled:
                self._end_all(session, row.id)
            verb = "disabled" if disabled else "enabled"
            _audit_change(session, origin, f"account {verb}: {row.username}")
            return _account(row)

    def reset_password(self, username: str, origin: Origin) -> str:
        """An administrator's reset: a one-time password to hand over, to be changed at the
        next sign-in; the account's sessions end and a lock is lifted."""
        password = one_time_password()
        with self._database.unit_of_work() as session:
            row = self._row(session, username)
            row.password_hash = _HASHER.hash(password)
            row.must_change_password = True
            row.failed_signins = 0
            row.locked_until = None
            self._end_all(session, row.id)
            _audit_change(session, origin, f"password reset: {row.username}")
        return password

    def change_password(self, principal: Principal, current: str, new: str, origin: Origin) -> None:
        with self._database.unit_of_work() as session:
            row = self._row(session, principal.name)
            if not _verify(row.password_hash, current):
                raise SignInFailed("the current password is not right")
            check_password(new, row.username)
            if current == new:
                raise InvalidInput("the new password must differ from the current one")
            row.password_hash = _HASHER.hash(new)
            row.must_change_password = False
            _audit_change(session, origin, f"password changed: {row.username}")

    # -- signing in -----------------------------------------------------------------------

    def sign_in(self, username: str, password: str, origin: Origin) -> SignedIn:
        """Check the password and open a page session; raise SignInFailed otherwise.

        The failure is committed (and audited) even though the caller gets an exception.
        """
        now = datetime.now(UTC)
        name = username.strip().lower()
        with self._database.unit_of_work() as session:
            row = session.scalar(
                select(UserAccount).where(UserAccount.username == name).with_for_update()
            )
            locked_before = row.locked_until if row is not None else None
            if row is None or row.password_hash is None:
                _verify(_DUMMY_HASH, password)
                failure: SignInFailed | None = SignInFailed("wrong username or password")
            else:
                failure = self._check_password(row, password, now)
            if failure is not None or row is None:
                _audit_sign_in(session, origin, name, str(failure), failed=True)
                if row is not None and row.locked_until != locked_before and row.locked_until:
                    _audit_alert(session, origin, f"account locked after failed sign-ins: {name}")
            else:
                signed_in = self._open_session(session, row, origin, now)
                _audit_sign_in(session, origin, name, "signed in", failed=False)
        if failure is not None:
            raise failure
        return signed_in

    def _check_password(
        self, row: UserAccount, password: str, now: datetime
    ) -> SignInFailed | None:
        locked_until = _aware(row.locked_until)
        if row.disabled:
            _verify(_DUMMY_HASH, password)
            return SignInFailed("wrong username or password")
        if locked_until is not None and locked_until > now:
            return AccountLocked(_locked_message(locked_until))
        if not _verify(row.password_hash, password):
            row.failed_signins += 1
            if row.failed_signins >= self._rules.max_failures:
                row.locked_until = now + self._rules.lockout
                return AccountLocked(_locked_message(row.locked_until))
            return SignInFailed("wrong username or password")
        row.failed_signins = 0
        row.locked_until = None
        if _HASHER.check_needs_rehash(row.password_hash or ""):
            row.password_hash = _HASHER.hash(password)
        return None

    def sign_in_federated(
        self,
        issuer: str,
        subject: str,
        *,
        username: str,
        display_name: str,
        roles: frozenset[Role],
        origin: Origin,
    ) -> SignedIn:
        """Open a page session for an identity the hospital's OpenID provider vouched for.

        The account is created on first sign-in and its roles follow the provider's claim
        each time (the provider is where a hospital manages them).
        """
        if not roles:
            with self._database.unit_of_work() as session:
                _audit_sign_in(session, origin, username, "no pedipacs role", failed=True)
            raise SignInFailed("the identity provider grants this person no pedipacs role")
        now = datetime.now(UTC)
        refusal: SignInFailed | None = None
        with self._database.unit_of_work() as session:
            row = session.scalar(
                select(UserAccount).where(
                    UserAccount.oidc_issuer == issuer, UserAccount.oidc_subject == subject
                )
            )
            if row is None:
                row = self._federated_account(session, issuer, subject, username, roles, origin)
            elif row.disabled:
                refusal = SignInFailed("this account is disabled")
                _audit_sign_in(session, origin, row.username, "account disabled", failed=True)
            elif (new_roles := ",".join(sorted(roles))) != row.roles:
                _audit_change(
                    session, origin, f"roles of {row.username}: {row.roles} -> {new_roles}"
                )
                row.roles = new_roles
            if refusal is None:
                row.display_name = display_name.strip()[:128] or row.username
                signed_in = self._open_session(session, row, origin, now)
                _audit_sign_in(session, origin, row.username, f"signed in via {issuer}", False)
        if refusal is not None:
            raise refusal
        return signed_in

    def record_failed_sign_in(self, username: str | None, reason: str, origin: Origin) -> None:
        """Audit a sign-in refused before any account was reached: an identity provider's
        answer that failed its checks (state, ID token), or an error it sent back."""
        with self._database.unit_of_work() as session:
            _audit_sign_in(session, origin, username, reason, failed=True)

    @staticmethod
    def _federated_account(
        session: Session,
        issuer: str,
        subject: str,
        username: str,
        roles: frozenset[Role],
        origin: Origin,
    ) -> UserAccount:
        row = UserAccount(
            username=check_username(username),
            display_name=username,
            roles=",".join(sorted(roles)),
            password_hash=None,
            must_change_password=False,
            oidc_issuer=issuer,
            oidc_subject=subject,
            failed_signins=0,
            disabled=False,
        )
        session.add(row)
        try:
            with session.begin_nested():
                session.flush()
        except IntegrityError as error:
            raise AccountExistsError(
                f"a local account named {row.username!r} exists; an administrator must rename "
                "it before this identity can sign in"
            ) from error
        _audit_change(session, origin, f"account created from {issuer}: {row.username}", "C")
        return row

    def _open_session(
        self, session: Session, row: UserAccount, origin: Origin, now: datetime
    ) -> SignedIn:
        # The account's sessions and viewer tokens that ended a day ago or more go now: the
        # table holds what is live, plus a day for an administrator's questions.
        forgotten = now - FORGET_ENDED_SESSIONS
        session.execute(
            delete(UserSession).where(
                UserSession.user_id == row.id,
                UserSession.kind != TOKEN,
                (UserSession.ended_at < forgotten) | (UserSession.expires_at < forgotten),
            )
        )
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        session.add(
            UserSession(
                token_hash=secret_hash(token),
                user_id=row.id,
                kind=SESSION,
                csrf_token=csrf,
                remote_host=origin.remote_host,
                created_at=now,
                last_seen_at=now,
                expires_at=now + self._rules.maximum,
                idle_minutes=self._rules.idle.total_seconds() / 60,
            )
        )
        principal = _principal(row, csrf_token=csrf)
        return SignedIn(token, csrf, principal, row.must_change_password)

    def authenticate(self, secret: str) -> Authenticated | None:
        """The account behind a session cookie or bearer token, if it is still valid.

        Expired and idle sessions end here; last_seen is refreshed at most once a minute.
        """
        now = datetime.now(UTC)
        digest = secret_hash(secret)
        with self._database.reading() as session:
            found = session.execute(
                select(UserSession, UserAccount)
                .join(UserAccount, UserAccount.id == UserSession.user_id)
                .where(UserSession.token_hash == digest)
            ).one_or_none()
        if found is None:
            return None
        user_session, account = found
        last_seen = _aware(user_session.last_seen_at) or now
        if (
            user_session.ended_at is not None
            or account.disabled
            or (_aware(user_session.expires_at) or now) <= now
            or (
                user_session.idle_minutes is not None
                and now - last_seen > timedelta(minutes=user_session.idle_minutes)
            )
        ):
            return None
        if now - last_seen >= LAST_SEEN_RESOLUTION:
            with self._database.unit_of_work() as session:
                session.execute(
                    update(UserSession)
                    .where(UserSession.id == user_session.id)
                    .values(last_seen_at=now)
                )
        csrf = user_session.csrf_token if user_session.kind == SESSION else None
        return Authenticated(
            _principal(account, csrf_token=csrf), user_session.id, user_session.kind
        )

    def sign_out(self, authenticated: Authenticated, origin: Origin) -> None:
        """End a page session and the viewer tokens opened from it."""
        now = datetime.now(UTC)
        with self._database.unit_of_work() as session:
            session.execute(
                update(UserSession)
                .where(
                    (UserSession.id == authenticated.session_id)
                    | (UserSession.label == _viewer_label(authenticated.session_id))
                )
                .where(UserSession.ended_at.is_(None))
                .values(ended_at=now)
            )
            _audit_sign_in(session, origin, authenticated.principal.name, "signed out", False)

    def viewer_token(self, authenticated: Authenticated) -> str:
        """A bearer token for the viewer opened from a page session, ending with it."""
        now = datetime.now(UTC)
        token = secrets.token_urlsafe(32)
        with self._database.unit_of_work() as session:
            parent = session.get(UserSession, authenticated.session_id)
            if parent is None or parent.kind != SESSION:
                raise PermissionDenied("a viewer token is opened from a signed-in page session")
            session.add(
                UserSession(
                    token_hash=secret_hash(token),
                    user_id=parent.user_id,
                    kind=VIEWER,
                    label=_viewer_label(parent.id),
                    csrf_token=secrets.token_urlsafe(24),
                    remote_host=parent.remote_host,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=parent.expires_at,
                    idle_minutes=parent.idle_minutes,
                )
            )
        return token

    def issue_token(self, username: str, label: str, days: float, origin: Origin) -> str:
        """A bearer token for a program acting as `username` (DICOMweb, API), valid `days`."""
        if not 0 < days <= 366:
            raise InvalidInput("a token is valid for 1 day to a year")
        now = datetime.now(UTC)
        token = secrets.token_urlsafe(32)
        with self._database.unit_of_work() as session:
            row = self._row(session, username)
            session.add(
                UserSession(
                    token_hash=secret_hash(token),
                    user_id=row.id,
                    kind=TOKEN,
                    label=label[:128],
                    csrf_token=secrets.token_urlsafe(24),
                    remote_host=origin.remote_host,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + timedelta(days=days),
                    idle_minutes=None,
                )
            )
            _audit_change(session, origin, f"token issued for {row.username}: {label}", "C")
        return token

    def revoke_tokens(self, username: str, origin: Origin) -> int:
        """End every session and token of `username`; the number ended."""
        with self._database.unit_of_work() as session:
            row = self._row(session, username)
            ended = self._end_all(session, row.id)
            _audit_change(session, origin, f"{ended} session(s)/token(s) revoked: {row.username}")
        return ended

    @staticmethod
    def _end_all(session: Session, user_id: int) -> int:
        result = session.execute(
            update(UserSession)
            .where(UserSession.user_id == user_id, UserSession.ended_at.is_(None))
            .values(ended_at=datetime.now(UTC))
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    @staticmethod
    def _row(session: Session, username: str) -> UserAccount:
        row = session.scalar(
            select(UserAccount).where(UserAccount.username == username.strip().lower())
        )
        if row is None:
            raise UnknownAccountError(f"no account named {username!r}")
        return row


def _viewer_label(session_id: int) -> str:
    return f"viewer of session {session_id}"


def _verify(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return bool(_HASHER.verify(password_hash, password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _locked_message(until: datetime) -> str:
    return f"too many failed sign-ins; the account is locked until {until:%H:%M} UTC"


def _account(row: UserAccount) -> Account:
    return Account(
        username=row.username,
        display_name=row.display_name,
        roles=_roles(row.roles),
        must_change_password=row.must_change_password,
        disabled=row.disabled,
        signs_in_with=row.oidc_issuer or "password",
        locked_until=_aware(row.locked_until),
    )


def _principal(row: UserAccount, *, csrf_token: str | None) -> Principal:
    return Principal.user(
        row.id,
        row.username,
        _roles(row.roles),
        display_name=row.display_name,
        csrf_token=csrf_token,
    )


def _audit_sign_in(
    session: Session, origin: Origin, username: str | None, what: str, failed: bool
) -> None:
    who = Origin(origin.door, user=username, remote_host=origin.remote_host)
    record(
        session,
        AuditRecord(
            AuditEventId.USER_AUTHENTICATION,
            "E",
            who,
            outcome=AuditOutcome.MINOR_FAILURE if failed else AuditOutcome.SUCCESS,
            detail=what,
        ),
    )


def _audit_alert(session: Session, origin: Origin, what: str) -> None:
    record(
        session,
        AuditRecord(
            AuditEventId.SECURITY_ALERT, "E", origin, outcome=AuditOutcome.MINOR_FAILURE,
            detail=what,
        ),
    )  # fmt: skip


def _audit_change(session: Session, origin: Origin, what: str, action: str = "U") -> None:
    """Account and permission changes are security events (110113) by PS3.15 A.5.3.11."""
    record(session, AuditRecord(AuditEventId.SECURITY_ALERT, action, origin, detail=what))
