"""OpenID Connect sign-in against a test identity provider (tests/support/oidc_provider.py),
with a real `pedipacs serve` (SQLite) and an httpx client following the redirects by hand,
once with the real Chromium.

The provider is a real HTTP server that signs ID tokens with an RSA key made at its start;
it is told to misbehave (sign with another key, change a claim, deny, fail) test by test.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import httpx
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import create_engine, select

from pedipacs.db.tables import AuditEvent
from pedipacs.security.permissions import Role
from pedipacs.web.pages.oidc import (
    EXPIRED,
    FLOW_COOKIE,
    NOT_VERIFIED,
    UNREACHABLE,
    ClientRejected,
    InvalidIdToken,
    OpenIdProvider,
    ProviderRefused,
    ProviderUnavailable,
)
from support.oidc_provider import (
    DISCOVERY_PATH,
    KEYS_PATH,
    TestIdentityProvider,
    TestUser,
    s256,
)
from support.server import RunningServer, free_port, start_server

CLIENT_ID = "pedipacs"
CLIENT_SECRET = "a secret: with/odd+characters"
SESSION_COOKIE = "pedipacs_session"
USER_AUTHENTICATION, SECURITY_ALERT = "110114", "110113"


@dataclass(frozen=True)
class Audit:
    event_id: str
    outcome: int
    user: str | None
    detail: str | None


@dataclass
class Attempt:
    """One sign-in: the client holding the cookies, and the answer of the callback."""

    client: httpx.Client
    callback: httpx.Response

    @property
    def error(self) -> str:
        found = re.search(r'id="signin-error"[^>]*>([^<]*)<', self.callback.text)
        return found.group(1).replace("&#39;", "'") if found else ""


# --- Fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def idp() -> Iterator[TestIdentityProvider]:
    with TestIdentityProvider(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as provider:
        yield provider


@pytest.fixture(scope="module")
def sso_server(
    idp: TestIdentityProvider, tmp_path_factory: pytest.TempPathFactory, dcmtk: None
) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("oidc")
    running = start_server(
        folder / "server",
        f"sqlite:///{folder / 'index.sqlite3'}",
        extra_env={
            "PEDIPACS_OIDC_ISSUER": idp.issuer,
            "PEDIPACS_OIDC_CLIENT_ID": CLIENT_ID,
            "PEDIPACS_OIDC_CLIENT_SECRET": CLIENT_SECRET,
            # The refusals below come from one address faster than a person would fail.
            "PEDIPACS_SIGNIN_ATTEMPTS_PER_MINUTE": "100",
        },
    )
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def well_behaved(idp: TestIdentityProvider) -> Iterator[None]:
    """Every test starts with the default user and no misbehaviour."""
    with idp.switched(
        user=TestUser(),
        sign_with_wrong_key=False,
        tamper_with_token=False,
        deny=False,
        token_endpoint_down=False,
    ):
        yield


@contextmanager
def sign_in(
    server: RunningServer, next_path: str = "/", *, state: str | None = None
) -> Iterator[Attempt]:
    """The whole flow as a browser runs it: pedipacs -> provider -> pedipacs' callback."""
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        started = client.get("/signin/oidc", params={"next": next_path})
        assert started.status_code == 303, started.text
        answered = client.get(started.headers["location"])
        assert answered.status_code == 302, answered.text
        callback = answered.headers["location"]
        if state is not None:
            parts = urlparse(callback)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()} | {"state": state}
            callback = parts._replace(query=urlencode(query)).geturl()
        yield Attempt(client, client.get(callback))


def audit(server: RunningServer, event_id: str) -> list[Audit]:
    engine = create_engine(server.database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(AuditEvent.event_id, AuditEvent.outcome, AuditEvent.user, AuditEvent.detail)
                .where(AuditEvent.event_id == event_id)
                .order_by(AuditEvent.sequence)
            ).all()
    finally:
        engine.dispose()
    return [Audit(*row) for row in rows]


def assert_refused(attempt: Attempt, status: int, message: str) -> None:
    assert attempt.callback.status_code == status, attempt.callback.text
    assert attempt.error == message
    assert SESSION_COOKIE not in attempt.client.cookies
    assert attempt.client.get("/api/me").status_code == 401


# --- Signing in -------------------------------------------------------------------------


def test_a_hospital_account_signs_in_with_the_roles_the_provider_names(
    idp: TestIdentityProvider, sso_server: RunningServer
) -> None:
    idp.user = TestUser(roles=["radiologist", "Auditor", "cleaner", "default-roles-hospital"])

    with sign_in(sso_server, "/api/me?format=json") as attempt:
        assert attempt.callback.status_code == 303, attempt.callback.text
        assert attempt.callback.headers["location"] == "/api/me?format=json"
        set_cookies = attempt.callback.headers.get_list("set-cookie")
        session = next(c for c in set_cookies if c.startswith(f"{SESSION_COOKIE}="))
        assert "HttpOnly" in session and "SameSite=lax" in session
        assert any(c.startswith(f'{FLOW_COOKIE}=""') for c in set_cookies)  # used once
        me = attempt.client.get("/api/me").json()
    assert me["username"] == "dr.ada.jones"
    assert me["displayName"] == "Dr Ada Jones"
    assert me["roles"] == ["auditor", "radiologist"]
    # The provider was asked for the code flow with PKCE S256, a nonce and the three scopes,
    # and the code was exchanged with the client secret (HTTP Basic) and the PKCE verifier.
    asked = idp.authorization_requests[-1]
    assert asked["scope"] == "openid profile email"
    assert asked["redirect_uri"] == f"{sso_server.http_url}/signin/oidc/callback"
    assert asked["code_challenge_method"] == "S256" and asked["nonce"] and asked["state"]
    exchanged = idp.token_requests[-1]
    assert exchanged["authorization"].startswith("Basic ") and "client_secret" not in exchanged
    assert s256(exchanged["code_verifier"]) == asked["code_challenge"]
    signed_in = audit(sso_server, USER_AUTHENTICATION)[-1]
    assert signed_in == Audit(USER_AUTHENTICATION, 0, "dr.ada.jones", f"signed in via {idp.issuer}")
    created = [a.detail for a in audit(sso_server, SECURITY_ALERT)]
    assert f"account created from {idp.issuer}: dr.ada.jones" in created


def test_the_flow_cookie_is_short_lived_http_only_and_scoped_to_the_flow(
    sso_server: RunningServer,
) -> None:
    with httpx.Client(base_url=sso_server.http_url, timeout=30) as client:
        started = client.get("/signin/oidc", params={"next": "/"})
    flow_cookie = started.headers["set-cookie"]
    assert flow_cookie.startswith(f"{FLOW_COOKIE}=")
    for attribute in ("HttpOnly", "Max-Age=600", "Path=/signin/oidc", "SameSite=lax"):
        assert attribute in flow_cookie
    assert started.headers["cache-control"] == "no-store"


def test_roles_follow_the_provider_at_each_sign_in(
    idp: TestIdentityProvider, sso_server: RunningServer
) -> None:
    idp.user = TestUser(
        subject="c9d2-roles", username="tech.sam", name="Sam", roles=["technologist"]
    )
    with sign_in(sso_server) as first:
        assert first.client.get("/api/me").json()["roles"] == ["technologist"]

    idp.user.roles = ["administrator"]
    with sign_in(sso_server) as second:
        me = second.client.get("/api/me").json()

    assert (me["username"], me["roles"]) == ("tech.sam", ["administrator"])
    changes = [a.detail for a in audit(sso_server, SECURITY_ALERT)]
    assert "roles of tech.sam: technologist -> administrator" in changes


def test_keycloak_realm_roles_are_read_when_the_roles_claim_is_absent(
    idp: TestIdentityProvider, sso_server: RunningServer
) -> None:
    idp.user = TestUser(
        subject="kc-realm-1",
        username=None,  # no preferred_username: the e-mail address names the account
        email="Lee.Realm@hospital.test",
        name="Lee Realm",
        roles=["referring-clinician"],
        roles_in="realm_access",
    )
    with sign_in(sso_server) as attempt:
        me = attempt.client.get("/api/me").json()
    assert (me["username"], me["roles"]) == ("lee.realm@hospital.test", ["referring-clinician"])


def test_a_next_page_on_another_site_is_replaced_by_the_start_page(
    sso_server: RunningServer,
) -> None:
    for target in ("//evil.example", "https://evil.example/", "/\\evil.example"):
        with sign_in(sso_server, target) as attempt:
            assert attempt.callback.status_code == 303
            assert attempt.callback.headers["location"] == "/"


# --- Refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize("switch", ["sign_with_wrong_key", "tamper_with_token"])
def test_an_id_token_without_the_providers_signature_is_refused(
    idp: TestIdentityProvider, sso_server: RunningServer, switch: str
) -> None:
    idp.user = TestUser(subject=f"forged-{switch}", username=f"forged.{switch[:4]}")
    setattr(idp, switch, True)

    with sign_in(sso_server) as attempt:
        assert_refused(attempt, 401, NOT_VERIFIED)
    refused = audit(sso_server, USER_AUTHENTICATION)[-1]
    assert refused.outcome == 4 and refused.user is None
    assert (refused.detail or "").startswith("OpenID Connect: invalid ID token: BadSignature")


def test_a_callback_with_another_state_is_refused(sso_server: RunningServer) -> None:
    with sign_in(sso_server, state="not-the-state-this-browser-was-given") as attempt:
        assert_refused(attempt, 400, EXPIRED)
    refused = audit(sso_server, USER_AUTHENTICATION)[-1]
    assert refused.outcome == 4
    assert refused.detail == "OpenID Connect: the state does not match this browser's sign-in"

    # A callback reaching a browser that never started a sign-in (login CSRF) likewise.
    with httpx.Client(base_url=sso_server.http_url, timeout=30) as stranger:
        planted = stranger.get("/signin/oidc/callback", params={"code": "x", "state": "y"})
    assert planted.status_code == 400
    assert SESSION_COOKIE not in planted.cookies


def test_a_person_without_a_pedipacs_role_is_refused(
    idp: TestIdentityProvider, sso_server: RunningServer
) -> None:
    idp.user = TestUser(subject="no-role-1", username="ward.clerk", roles=["nurse", "clerk"])

    with sign_in(sso_server) as attempt:
        assert_refused(attempt, 403, "The identity provider grants this person no pedipacs role.")
    refused = audit(sso_server, USER_AUTHENTICATION)[-1]
    assert refused == Audit(USER_AUTHENTICATION, 4, "ward.clerk", "no pedipacs role")


def test_a_sign_in_cancelled_at_the_provider_is_refused(
    idp: TestIdentityProvider, sso_server: RunningServer
) -> None:
    idp.deny = True
    with sign_in(sso_server) as attempt:
        assert_refused(attempt, 401, "The hospital sign-in was cancelled.")
    refused = audit(sso_server, USER_AUTHENTICATION)[-1]
    assert refused.detail == "OpenID Connect: the provider answered access_denied: the user said no"


def test_a_token_endpoint_that_fails_gives_a_clear_page(
    idp: TestIdentityProvider, sso_server: RunningServer
) -> None:
    idp.token_endpoint_down = True
    with sign_in(sso_server) as attempt:
        assert_refused(attempt, 502, UNREACHABLE)
        assert "Traceback" not in attempt.callback.text


def test_an_unreachable_provider_gives_a_clear_page_and_leaves_the_local_form(
    tmp_path: Path, dcmtk: None
) -> None:
    gone = f"http://127.0.0.1:{free_port()}/realms/hospital"  # nothing listens there
    server = start_server(
        tmp_path / "server",
        f"sqlite:///{tmp_path / 'index.sqlite3'}",
        extra_env={
            "PEDIPACS_OIDC_ISSUER": gone,
            "PEDIPACS_OIDC_CLIENT_ID": CLIENT_ID,
            "PEDIPACS_SIGNIN_ATTEMPTS_PER_MINUTE": "2",
        },
    )
    try:
        with httpx.Client(base_url=server.http_url, timeout=60) as client:
            page = client.get("/signin/oidc", params={"next": "/studies"})
            forged = [
                client.get("/signin/oidc/callback", params={"code": "c", "state": f"s{n}"})
                for n in range(3)
            ]
        audited = audit(server, USER_AUTHENTICATION)
    finally:
        server.stop()
    assert page.status_code == 502
    assert UNREACHABLE in page.text
    assert 'action="/signin"' in page.text  # the local sign-in form is still there
    assert 'href="/signin/oidc?next=/studies"' in page.text
    assert "Traceback" not in page.text
    # Failed callbacks past the per-minute limit get 429 and no longer reach the audit trail.
    assert [r.status_code for r in forged] == [400, 400, 429]
    assert forged[2].headers["retry-after"] == "60"
    assert len([a for a in audited if a.outcome == 4]) == 2


# --- Discovery and keys ------------------------------------------------------------------


def test_discovery_and_keys_are_cached_and_a_rotated_key_is_fetched(
    idp: TestIdentityProvider, sso_server: RunningServer
) -> None:
    with sign_in(sso_server):  # the document and keys are read by now
        pass
    discovery, keys = idp.count(DISCOVERY_PATH), idp.count(KEYS_PATH)

    with sign_in(sso_server):
        pass
    assert (idp.count(DISCOVERY_PATH), idp.count(KEYS_PATH)) == (discovery, keys)

    idp.rotate_key()
    with sign_in(sso_server) as attempt:
        assert attempt.callback.status_code == 303, attempt.error
    assert (idp.count(DISCOVERY_PATH), idp.count(KEYS_PATH)) == (discovery, keys + 1)


def test_a_discovery_document_naming_another_issuer_is_not_trusted(
    idp: TestIdentityProvider,
) -> None:
    # The same document, read for an issuer spelled with a trailing slash: not the same issuer.
    provider = OpenIdProvider(f"{idp.issuer}/", CLIENT_ID, CLIENT_SECRET)
    with pytest.raises(ProviderUnavailable, match="names the issuer"):
        provider.metadata()


def test_the_relying_party_posts_the_secret_when_the_provider_asks_and_checks_the_nonce() -> None:
    callback = "http://127.0.0.1:9/signin/oidc/callback"  # never called: the test reads the code
    with TestIdentityProvider(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, auth_method="client_secret_post"
    ) as post_idp:
        provider = OpenIdProvider(post_idp.issuer, CLIENT_ID, CLIENT_SECRET)

        def code(nonce: str, verifier: str) -> str:
            answer = httpx.get(provider.authorization_url(callback, "st", nonce, verifier))
            return parse_qs(urlparse(answer.headers["location"]).query)["code"][0]

        verifier = "v" * 64
        first = code("nonce-1", verifier)
        tokens = provider.exchange(first, callback, verifier)
        identity = provider.verify(
            tokens["id_token"], nonce="nonce-1", access_token=tokens["access_token"]
        )
        with pytest.raises(ProviderRefused, match="invalid_grant"):
            provider.exchange(first, callback, verifier)  # a code is good once
        with pytest.raises(ProviderRefused, match="invalid_grant"):
            provider.exchange(code("nonce-2", verifier), callback, "w" * 64)  # PKCE
        third = provider.exchange(code("nonce-3", verifier), callback, verifier)
        with pytest.raises(InvalidIdToken, match="nonce"):
            provider.verify(third["id_token"], nonce="nonce-4", access_token=None)
        impostor = OpenIdProvider(post_idp.issuer, CLIENT_ID, "not the secret")
        with pytest.raises(ClientRejected, match="invalid_client"):
            impostor.exchange(code("nonce-5", verifier), callback, verifier)

    assert post_idp.token_requests[0]["client_secret"] == CLIENT_SECRET
    assert post_idp.token_requests[0]["authorization"] == ""
    assert (identity.username, identity.roles) == ("dr.ada.jones", frozenset({Role.RADIOLOGIST}))


# --- In the browser ----------------------------------------------------------------------


def test_the_hospital_account_button_signs_in_in_the_browser(
    page: Page, idp: TestIdentityProvider, sso_server: RunningServer
) -> None:
    idp.user = TestUser(subject="browser-1", username="dr.browser", name="Dr Bea Browser")
    page.goto(f"{sso_server.http_url}/signin")
    page.get_by_role("link", name="Sign in with the hospital account").click()
    page.wait_for_url(f"{sso_server.http_url}/")
    expect(page.locator(".topbar .who")).to_have_text("Dr Bea Browser")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies[SESSION_COOKIE]["httpOnly"] and FLOW_COOKIE not in cookies
