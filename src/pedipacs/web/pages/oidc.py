"""Signing in with the hospital's OpenID Connect provider (Keycloak, Entra ID, ...).

The authorization code flow with PKCE (S256), state and nonce:

1. `GET /signin/oidc?next=` reads the provider's discovery document (cached), keeps a new
   state, nonce and PKCE verifier in a short-lived cookie scoped to `/signin/oidc`, and sends
   the browser to the provider's authorization endpoint.
2. The provider signs the person in and sends the browser back to `/signin/oidc/callback` with
   a code and the state. The state must match the cookie; the code is exchanged (with the
   verifier) at the token endpoint; the ID token's signature is checked against the provider's
   published keys and its claims (issuer, audience, expiry, nonce) by authlib's OpenID Connect
   claim rules.
3. `AccountService.sign_in_federated` opens a page session for the (issuer, subject) identity,
   with the roles the provider names; the browser gets the session cookie and goes to `next`.

Every failure leads back to the sign-in page with a sentence saying what happened; failures
after the provider answered are audited as failed sign-ins (110114).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from pedipacs.config import Settings
from pedipacs.errors import InvalidInput
from pedipacs.model.origin import Origin
from pedipacs.security.accounts import AccountExistsError, AccountService, SignInFailed
from pedipacs.security.permissions import Role
from pedipacs.web.pages.account import (
    RATE_WINDOW_SECONDS,
    SignInRateLimit,
    render_sign_in,
    safe_next,
    session_cookie,
)

log = logging.getLogger(__name__)

FLOW_PATH = "/signin/oidc"
CALLBACK_PATH = "/signin/oidc/callback"
CALLBACK_ROUTE_NAME = "oidc_callback"
FLOW_COOKIE = "pedipacs_oidc"
# The time a person has to sign in at the provider before the flow must start again.
FLOW_SECONDS = 600
SCOPE = "openid profile email"
HTTP_TIMEOUT = httpx.Timeout(10.0)
# The discovery document is read again after this; keys are read again when a token names a
# key id they lack (the provider rotated its keys).
METADATA_SECONDS = 3600.0
# Clock difference tolerated between the provider and us, for exp and iat.
LEEWAY_SECONDS = 60
# Public-key signatures only: "none" and shared-secret (HS*) ID tokens are refused.
SIGNING_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)  # fmt: skip
KEYCLOAK_REALM_ROLES = ("realm_access", "roles")

UNREACHABLE = (
    "The hospital sign-in service cannot be reached now. Try again in a moment, or sign in "
    "with a pedipacs account."
)
MISCONFIGURED = (
    "The hospital sign-in service does not accept pedipacs' registration (client ID or secret); "
    "tell the administrator, or sign in with a pedipacs account."
)
EXPIRED = "The hospital sign-in took too long or was started elsewhere; sign in again."
TOO_MANY = "Too many failed sign-ins; wait a minute."
NOT_VERIFIED = "The answer of the hospital sign-in service could not be verified; sign in again."


class ProviderUnavailable(Exception):
    """The identity provider cannot be reached, or answered something unusable."""


class ClientRejected(ProviderUnavailable):
    """The provider does not accept pedipacs' client ID or secret (an expired secret)."""


class ProviderRefused(Exception):
    """The provider refused the code exchange (expired or reused code, wrong client)."""


class InvalidIdToken(Exception):
    """The ID token's signature or claims do not hold."""


@dataclass(frozen=True, slots=True)
class Identity:
    """What a verified ID token says about the person."""

    issuer: str
    subject: str
    username: str
    display_name: str
    role_names: frozenset[str]

    @property
    def roles(self) -> frozenset[Role]:
        return frozenset(Role(name) for name in self.role_names if name in Role._value2member_map_)


class OpenIdProvider:
    """The relying party's view of one provider: its discovery document, its keys, the token
    endpoint. Thread-safe; one instance serves every request of the process."""

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str | None,
        *,
        roles_claim: str = "roles",
        timeout: httpx.Timeout = HTTP_TIMEOUT,
    ) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self._client_secret = client_secret
        self._roles_claim = roles_claim
        self._timeout = timeout
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._metadata_read_at = 0.0
        self._keys: KeySet | None = None

    # -- discovery and keys -------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """The provider's discovery document, read at most once an hour."""
        with self._lock:
            fresh = time.monotonic() - self._metadata_read_at < METADATA_SECONDS
            if self._metadata is not None and fresh:
                return self._metadata
            url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
            document = self._get_json(url, "discovery document")
            if document.get("issuer") != self.issuer:
                raise ProviderUnavailable(
                    f"the discovery document at {url} names the issuer "
                    f"{document.get('issuer')!r}, not the configured {self.issuer!r}"
                )
            for endpoint in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(document.get(endpoint), str):
                    raise ProviderUnavailable(f"the discovery document at {url} has no {endpoint}")
            if self._metadata is None or self._metadata["jwks_uri"] != document["jwks_uri"]:
                self._keys = None
            self._metadata, self._metadata_read_at = document, time.monotonic()
            return document

    def _key_set(self, *, refresh: bool) -> KeySet:
        metadata = self.metadata()
        with self._lock:
            if self._keys is None or refresh:
                document = self._get_json(metadata["jwks_uri"], "key set")
                try:
                    self._keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
                except (JoseError, KeyError, TypeError, ValueError) as error:
                    raise ProviderUnavailable(
                        f"the provider's key set is unusable: {error}"
                    ) from error
            return self._keys

    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            response = httpx.get(url, timeout=self._timeout, headers={"Accept": "application/json"})
            response.raise_for_status()
            document = response.json()
        except httpx.HTTPError as error:
            raise ProviderUnavailable(f"the {what} at {url} cannot be read: {error}") from error
        except ValueError as error:
            raise ProviderUnavailable(f"the {what} at {url} is not JSON") from error
        if not isinstance(document, dict):
            raise ProviderUnavailable(f"the {what} at {url} is not a JSON object")
        return document

    # -- the flow -----------------------------------------------------------------------------

    def authorization_url(self, redirect_uri: str, state: str, nonce: str, verifier: str) -> str:
        url: str = prepare_grant_uri(
            self.metadata()["authorization_endpoint"],
            self.client_id,
            "code",
            redirect_uri=redirect_uri,
            scope=SCOPE,
            state=state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(verifier),
            code_challenge_method="S256",
        )
        return url

    def exchange(self, code: str, redirect_uri: str, verifier: str) -> dict[str, Any]:
        """The token endpoint's answer to the authorization code."""
        metadata = self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        headers = {"Accept": "application/json"}
        methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        if self._client_secret is None:
            form["client_id"] = self.client_id  # a public client: PKCE is its only proof
        elif "client_secret_basic" in methods or "client_secret_post" not in methods:
            # RFC 6749 2.3.1: both parts form-encoded before they are joined and base64ed.
            pair = f"{quote(self.client_id, safe='')}:{quote(self._client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form["client_id"], form["client_secret"] = self.client_id, self._client_secret
        url = metadata["token_endpoint"]
        try:
            response = httpx.post(url, data=form, headers=headers, timeout=self._timeout)
        except httpx.HTTPError as error:
            raise ProviderUnavailable(
                f"the token endpoint {url} cannot be reached: {error}"
            ) from error
        try:
            answer = response.json()
        except ValueError:
            answer = None
        code_name = answer.get("error") if isinstance(answer, dict) else None
        if response.status_code == 401 or code_name in ("invalid_client", "unauthorized_client"):
            raise ClientRejected(
                f"the token endpoint {url} refused the client {self.client_id!r}: "
                f"{response.status_code} {code_name or ''}".rstrip()
            )
        if 400 <= response.status_code < 500:
            raise ProviderRefused(
                f"{response.status_code} {code_name or 'from the token endpoint'}"
            )
        if response.status_code != 200 or not isinstance(answer, dict):
            raise ProviderUnavailable(f"the token endpoint {url} answered {response.status_code}")
        if not isinstance(answer.get("id_token"), str):
            raise ProviderUnavailable(f"the token endpoint {url} sent no ID token")
        return answer

    def verify(self, id_token: str, *, nonce: str, access_token: str | None) -> Identity:
        """Check the ID token's signature and claims; the person it names."""
        algorithms = [
            name
            for name in self.metadata().get("id_token_signing_alg_values_supported") or ["RS256"]
            if name in SIGNING_ALGORITHMS
        ]
        if not algorithms:
            raise InvalidIdToken("the provider offers no public-key signature algorithm")
        registry = JWSRegistry(algorithms=algorithms, strict_check_header=False)
        try:
            try:
                token = jwt.decode(id_token, self._key_set(refresh=False), registry=registry)
            except InvalidKeyIdError:  # the provider may have rotated its keys since
                token = jwt.decode(id_token, self._key_set(refresh=True), registry=registry)
            claims = CodeIDToken(
                token.claims,
                token.header,
                {
                    "iss": {"essential": True, "value": self.issuer},
                    "aud": {"essential": True, "value": self.client_id},
                    "sub": {"essential": True},
                },
                {"nonce": nonce, "client_id": self.client_id, "access_token": access_token},
            )
            claims.validate(leeway=LEEWAY_SECONDS)
        except (JoseError, ValueError) as error:
            detail = str(error).strip().rstrip(":")
            raise InvalidIdToken(f"{type(error).__name__}: {detail}") from error
        return self._identity(token.claims)

    def _identity(self, claims: Mapping[str, Any]) -> Identity:
        subject = str(claims["sub"])
        username = next(
            (
                claims[name]
                for name in ("preferred_username", "email")
                if isinstance(claims.get(name), str) and claims[name].strip()
            ),
            subject,
        )
        name = claims.get("name")
        return Identity(
            issuer=self.issuer,
            subject=subject,
            username=username.strip(),
            display_name=name.strip() if isinstance(name, str) and name.strip() else username,
            role_names=self._role_names(claims),
        )

    def _role_names(self, claims: Mapping[str, Any]) -> frozenset[str]:
        """The configured claim (a dotted name reaches into objects, e.g.
        `resource_access.pedipacs.roles`); without it, Keycloak's client roles, then its
        realm roles. Names are compared without case."""
        configured = (
            claims[self._roles_claim]
            if self._roles_claim in claims
            else _dig(claims, self._roles_claim.split("."))
        )
        for value in (
            configured,
            _dig(claims, ("resource_access", self.client_id, "roles")),
            _dig(claims, KEYCLOAK_REALM_ROLES),
        ):
            if isinstance(value, str):  # some providers send "a b" or "a,b"
                value = value.replace(",", " ").split()
            if isinstance(value, list):
                return frozenset(item.strip().lower() for item in value if isinstance(item, str))
        return frozenset()


def _dig(claims: Mapping[str, Any], path: Sequence[str]) -> Any:
    value: Any = claims
    for part in path:
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


# -- the flow cookie ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Flow:
    """What the callback needs from the start of the flow; kept in the browser."""

    state: str
    nonce: str
    verifier: str
    next: str

    def encode(self) -> str:
        text = json.dumps([self.state, self.nonce, self.verifier, self.next])
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str | None) -> Flow | None:
        if not value or len(value) > 4096:
            return None
        try:
            parts = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        if (
            not isinstance(parts, list)
            or len(parts) != 4
            or not all(isinstance(p, str) for p in parts)
        ):
            return None
        return cls(*parts)


def _pkce_verifier() -> str:
    # RFC 7636 4.1: 43 to 128 characters of [A-Za-z0-9-._~]; 64 random bytes give 86.
    return secrets.token_urlsafe(64)


# -- the router --------------------------------------------------------------------------------


def oidc_router(accounts: AccountService, settings: Settings) -> APIRouter:
    """`/signin/oidc` and its callback, for the provider `settings.oidc_issuer`."""
    if not settings.oidc_issuer or not settings.oidc_client_id:
        raise InvalidInput(
            "OpenID Connect needs both PEDIPACS_OIDC_ISSUER and PEDIPACS_OIDC_CLIENT_ID"
        )
    provider = OpenIdProvider(
        settings.oidc_issuer,
        settings.oidc_client_id,
        settings.oidc_client_secret,
        roles_claim=settings.oidc_roles_claim,
    )
    pages = _SignInPages(
        accounts,
        provider,
        idle_minutes=settings.session_idle_minutes,
        attempts_per_minute=settings.signin_attempts_per_minute,
    )
    router = APIRouter(include_in_schema=False)

    @router.get(FLOW_PATH)
    def start(request: Request, next: str = "/") -> Response:
        return pages.start(request, safe_next(next))

    @router.get(CALLBACK_PATH, name=CALLBACK_ROUTE_NAME)
    def callback(
        request: Request,
        code: str = "",
        state: str = "",
        error: str = "",
        error_description: str = "",
    ) -> Response:
        return pages.callback(request, code, state, error, error_description)

    return router


class _SignInPages:
    """The two steps of the flow; every refusal leads back to the sign-in page."""

    def __init__(
        self,
        accounts: AccountService,
        provider: OpenIdProvider,
        *,
        idle_minutes: float,
        attempts_per_minute: int,
    ) -> None:
        self._accounts = accounts
        self._provider = provider
        self._idle_minutes = idle_minutes
        self._failures = SignInRateLimit(attempts_per_minute)

    def start(self, request: Request, next_path: str) -> Response:
        flow = Flow(
            secrets.token_urlsafe(32), secrets.token_urlsafe(32), _pkce_verifier(), next_path
        )
        redirect_uri = str(request.url_for(CALLBACK_ROUTE_NAME))
        try:
            target = self._provider.authorization_url(
                redirect_uri, flow.state, flow.nonce, flow.verifier
            )
        except ProviderUnavailable as error:
            log.error("OpenID Connect provider %s unavailable: %s", self._provider.issuer, error)
            return self._failure(request, 502, UNREACHABLE, next_path)
        response = RedirectResponse(target, status_code=303)
        response.headers["Cache-Control"] = "no-store"
        response.set_cookie(
            FLOW_COOKIE, flow.encode(), max_age=FLOW_SECONDS, httponly=True, samesite="lax",
            secure=request.url.scheme == "https", path=FLOW_PATH,
        )  # fmt: skip
        return response

    def callback(
        self, request: Request, code: str, state: str, error: str, error_description: str
    ) -> Response:
        flow = Flow.decode(request.cookies.get(FLOW_COOKIE))
        next_path = flow.next if flow is not None else "/"
        origin = Origin.http(None, request.client.host if request.client else None)
        if error:
            message = (
                "The hospital sign-in was cancelled."
                if error == "access_denied"
                else f"The hospital sign-in service refused the sign-in ({error[:64]})."
            )
            reason = f"the provider answered {error[:64]}: {error_description[:200]}"
            return self._refused(request, origin, next_path, 401, message, reason)
        if flow is None or not state or not secrets.compare_digest(flow.state, state):
            reason = "the state does not match this browser's sign-in"
            return self._refused(request, origin, next_path, 400, EXPIRED, reason)
        if not code:
            reason = "the provider sent no code"
            return self._refused(request, origin, next_path, 400, EXPIRED, reason)
        identity = self._identity(request, origin, flow, code)
        if isinstance(identity, Response):
            return identity
        return self._sign_in(request, origin, next_path, identity)

    def _identity(
        self, request: Request, origin: Origin, flow: Flow, code: str
    ) -> Identity | Response:
        """The person the provider vouches for, or the page saying why not."""
        redirect_uri = str(request.url_for(CALLBACK_ROUTE_NAME))
        try:
            tokens = self._provider.exchange(code, redirect_uri, flow.verifier)
            access_token = tokens.get("access_token")
            return self._provider.verify(
                tokens["id_token"],
                nonce=flow.nonce,
                access_token=access_token if isinstance(access_token, str) else None,
            )
        except ClientRejected as problem:
            status, message, reason = 502, MISCONFIGURED, f"client rejected: {problem}"
        except ProviderUnavailable as problem:
            status, message, reason = 502, UNREACHABLE, f"provider unavailable: {problem}"
        except ProviderRefused as problem:
            status, message, reason = 401, EXPIRED, f"the token endpoint refused: {problem}"
        except InvalidIdToken as problem:
            status, message, reason = 401, NOT_VERIFIED, f"invalid ID token: {problem}"
        return self._refused(request, origin, flow.next, status, message, reason)

    def _sign_in(
        self, request: Request, origin: Origin, next_path: str, identity: Identity
    ) -> Response:
        try:
            signed_in = self._accounts.sign_in_federated(
                identity.issuer,
                identity.subject,
                username=identity.username,
                display_name=identity.display_name,
                roles=identity.roles,
                origin=origin,
            )
        except SignInFailed as problem:  # audited by the account service
            log.warning("OpenID Connect sign-in of %s refused: %s", identity.username, problem)
            return self._failure(request, 403, _sentence(str(problem)), next_path)
        except AccountExistsError as problem:
            return self._refused(
                request, origin, next_path, 409, _sentence(str(problem)), str(problem),
                identity.username,
            )  # fmt: skip
        except InvalidInput as problem:
            message = f"The hospital account name {identity.username!r} cannot be used: {problem}."
            return self._refused(request, origin, next_path, 400, message, str(problem))
        response = RedirectResponse(safe_next(next_path), status_code=303)
        session_cookie(response, request, signed_in)
        _forget_flow(response, request)
        return response

    def _refused(
        self,
        request: Request,
        origin: Origin,
        next_path: str,
        status: int,
        message: str,
        reason: str,
        username: str | None = None,
    ) -> HTMLResponse:
        """Audit a failed sign-in (110114) and show the sign-in page with `message`.

        Past `attempts_per_minute` failures from one address the answer is 429, unaudited,
        as on the password form: a flood of forged callbacks must not flood the audit trail.
        """
        if not self._failures.allow(origin.remote_host or "unknown"):
            page = self._failure(request, 429, TOO_MANY, next_path)
            page.headers["Retry-After"] = str(int(RATE_WINDOW_SECONDS))
            return page
        log.log(
            logging.ERROR if status == 502 else logging.WARNING,
            "OpenID Connect sign-in refused (%s): %s",
            self._provider.issuer,
            reason,
        )
        self._accounts.record_failed_sign_in(username, f"OpenID Connect: {reason}", origin)
        return self._failure(request, status, message, next_path)

    def _failure(self, request: Request, status: int, message: str, next_path: str) -> HTMLResponse:
        """The sign-in page again, with the message; its local form stays usable."""
        page = render_sign_in(
            request,
            next_path=safe_next(next_path),
            oidc_enabled=True,
            idle_minutes=self._idle_minutes,
            error=message,
            status=status,
        )
        _forget_flow(page, request)
        return page


def _forget_flow(response: Response, request: Request) -> None:
    response.delete_cookie(
        FLOW_COOKIE, path=FLOW_PATH, httponly=True, samesite="lax",
        secure=request.url.scheme == "https",
    )  # fmt: skip


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
