"""A small OpenID Connect provider for tests, standing in for a hospital's Keycloak or Entra ID.

A real HTTP server (FastAPI under uvicorn, in a thread of the test process) on 127.0.0.1 and a
free port, with Keycloak's paths under `/realms/hospital`: discovery, the key set, an
authorization endpoint that signs in `provider.user` without asking, and a token endpoint that
checks what a strict provider checks (client secret, single-use code, redirect URI, PKCE S256).

Tests change `user` and the switches below between sign-ins to make the provider misbehave.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlencode

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from joserfc import jwt
from joserfc.jwk import RSAKey

from support.server import free_port

REALM_PATH = "/realms/hospital"
DISCOVERY_PATH = f"{REALM_PATH}/.well-known/openid-configuration"
KEYS_PATH = f"{REALM_PATH}/protocol/openid-connect/certs"
AUTHORIZE_PATH = f"{REALM_PATH}/protocol/openid-connect/auth"
TOKEN_PATH = f"{REALM_PATH}/protocol/openid-connect/token"
ID_TOKEN_SECONDS = 300
START_TIMEOUT = 30.0


@dataclass
class TestUser:
    """The person the provider signs in. `roles_in` is the claim carrying the roles:
    "roles" (a top-level list) or "realm_access" (where Keycloak puts realm roles)."""

    __test__ = False  # not a pytest test class

    subject: str = "0b6e2c8a-4f1d-4c55-9a57-0d2c1f3e9a01"
    username: str | None = "dr.ada.jones"
    name: str = "Dr Ada Jones"
    email: str | None = "ada.jones@hospital.test"
    roles: list[str] = field(default_factory=lambda: ["radiologist"])
    roles_in: str = "roles"

    def claims(self) -> dict[str, Any]:
        claims: dict[str, Any] = {"sub": self.subject, "name": self.name}
        if self.username is not None:
            claims["preferred_username"] = self.username
        if self.email is not None:
            claims["email"] = self.email
        if self.roles_in == "realm_access":
            claims["realm_access"] = {"roles": [*self.roles, "offline_access"]}
        else:
            claims[self.roles_in] = list(self.roles)
        return claims


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    nonce: str | None
    code_challenge: str
    claims: dict[str, Any]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def s256(verifier: str) -> str:
    return _b64(hashlib.sha256(verifier.encode("ascii")).digest())


class TestIdentityProvider:
    """Start with `with TestIdentityProvider(...) as provider:`; `provider.issuer` is the URL to
    configure in pedipacs."""

    __test__ = False

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        auth_method: str = "client_secret_basic",
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.auth_method = auth_method
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}{REALM_PATH}"
        self.user = TestUser()
        # Switches for negative tests.
        self.sign_with_wrong_key = False  # an impostor's key under the provider's key id
        self.tamper_with_token = False  # change a claim after signing
        self.deny = False  # answer the authorization request with error=access_denied
        self.token_endpoint_down = False  # the token endpoint answers 503
        # What was asked of the provider: paths served, authorization and token requests.
        self.served: list[str] = []
        self.authorization_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
        self._key = self._new_key()
        self._grants: dict[str, Grant] = {}
        self._server = uvicorn.Server(
            uvicorn.Config(
                self._app(),
                host="127.0.0.1",
                port=self.port,
                loop="asyncio",
                ws="none",
                lifespan="off",
                log_config=None,
                log_level="warning",
                access_log=False,
            )
        )
        self._thread = threading.Thread(target=self._server.run, name="test-idp", daemon=True)

    # -- running ------------------------------------------------------------------------------

    def __enter__(self) -> TestIdentityProvider:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test identity provider did not start")
            time.sleep(0.01)  # polling a readiness flag, not waiting for an outcome
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=START_TIMEOUT)

    # -- what tests change --------------------------------------------------------------------

    def rotate_key(self) -> None:
        """A new signing key under a new key id, as a provider does from time to time."""
        self._key = self._new_key()

    def count(self, path: str) -> int:
        return self.served.count(path)

    @contextmanager
    def switched(self, **switches: Any) -> Iterator[None]:
        """Some switches or `user` changed for the time of a `with` block."""
        before = {name: getattr(self, name) for name in switches}
        for name, value in switches.items():
            setattr(self, name, value)
        try:
            yield
        finally:
            for name, value in before.items():
                setattr(self, name, value)

    @staticmethod
    def _new_key() -> RSAKey:
        return RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(8), "use": "sig"})

    # -- the provider -------------------------------------------------------------------------

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def remember(request: Request, call_next: Any) -> Response:
            self.served.append(request.url.path)
            response: Response = await call_next(request)
            return response

        @app.get(DISCOVERY_PATH)
        def discovery() -> dict[str, Any]:
            base = f"http://127.0.0.1:{self.port}"
            return {
                "issuer": self.issuer,
                "authorization_endpoint": base + AUTHORIZE_PATH,
                "token_endpoint": base + TOKEN_PATH,
                "jwks_uri": base + KEYS_PATH,
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": [self.auth_method],
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["openid", "profile", "email"],
            }

        @app.get(KEYS_PATH)
        def keys() -> dict[str, Any]:
            public = self._key.as_dict(private=False)
            return {"keys": [{**public, "alg": "RS256"}]}

        @app.get(AUTHORIZE_PATH)
        def authorize(request: Request) -> Response:
            return self._authorize(dict(request.query_params))

        @app.post(TOKEN_PATH)
        async def token(request: Request) -> Response:
            form = {key: str(value) for key, value in (await request.form()).items()}
            return self._token(form, request.headers.get("authorization", ""))

        return app

    def _authorize(self, params: dict[str, str]) -> Response:
        self.authorization_requests.append(params)
        redirect_uri = params.get("redirect_uri", "")
        problems = [
            params.get("client_id") != self.client_id and "unknown client",
            params.get("response_type") != "code" and "only the code flow",
            not redirect_uri.startswith("http://127.0.0.1:") and "unregistered redirect_uri",
            "openid" not in params.get("scope", "").split() and "scope lacks openid",
            params.get("code_challenge_method") != "S256" and "PKCE S256 required",
            not params.get("code_challenge") and "no code_challenge",
        ]
        if any(problems):
            return PlainTextResponse("; ".join(p for p in problems if p), status_code=400)
        answer = {"state": params.get("state", "")}
        if self.deny:
            answer |= {"error": "access_denied", "error_description": "the user said no"}
        else:
            code = secrets.token_urlsafe(24)
            self._grants[code] = Grant(
                client_id=self.client_id,
                redirect_uri=redirect_uri,
                nonce=params.get("nonce"),
                code_challenge=params["code_challenge"],
                claims=self.user.claims(),
            )
            answer["code"] = code
        return RedirectResponse(f"{redirect_uri}?{urlencode(answer)}", status_code=302)

    def _token(self, form: dict[str, str], authorization: str) -> Response:
        self.token_requests.append({**form, "authorization": authorization})
        if self.token_endpoint_down:
            return PlainTextResponse("maintenance", status_code=503)
        if not self._client_authenticated(form, authorization):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = self._grants.pop(form.get("code", ""), None)  # a code is good once
        if (
            form.get("grant_type") != "authorization_code"
            or grant is None
            or form.get("redirect_uri") != grant.redirect_uri
            or s256(form.get("code_verifier", "")) != grant.code_challenge
        ):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        access_token = secrets.token_urlsafe(32)
        return JSONResponse(
            {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": ID_TOKEN_SECONDS,
                "scope": "openid profile email",
                "id_token": self._id_token(grant, access_token),
            },
            headers={"Cache-Control": "no-store"},
        )

    def _client_authenticated(self, form: dict[str, str], authorization: str) -> bool:
        if self.auth_method == "client_secret_post":
            offered = (form.get("client_id"), form.get("client_secret"))
        else:
            scheme, _, encoded = authorization.partition(" ")
            if scheme.lower() != "basic":
                return False
            client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
            offered = (unquote(client_id), unquote(secret))
        return offered == (self.client_id, self.client_secret)

    def _id_token(self, grant: Grant, access_token: str) -> str:
        now = int(time.time())
        claims = {
            **grant.claims,
            "iss": self.issuer,
            "aud": grant.client_id,
            "azp": grant.client_id,
            "iat": now,
            "auth_time": now,
            "exp": now + ID_TOKEN_SECONDS,
            "at_hash": _b64(hashlib.sha256(access_token.encode()).digest()[:16]),
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        key = self._key
        if self.sign_with_wrong_key:
            key = RSAKey.generate_key(2048, parameters={"kid": self._key.kid or ""})
        token = jwt.encode({"alg": "RS256", "kid": self._key.kid, "typ": "JWT"}, claims, key)
        if self.tamper_with_token:
            header, _, rest = token.partition(".")
            _, _, signature = rest.partition(".")
            forged = {**claims, "roles": ["administrator"], "realm_access": {}}
            token = f"{header}.{_b64(json.dumps(forged).encode())}.{signature}"
        return token
