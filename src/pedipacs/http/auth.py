"""Who is asking over HTTP: the authentication middleware every request passes, and the
`requires(permission)` dependency routes declare.

- A request carries a bearer token (`Authorization: Bearer ...`: programs, the viewer) or the
  page session cookie. Anything else, outside the few public paths, gets 401 (programs) or is
  sent to the sign-in page (a browser asking for a page).
- A state-changing request made with the session cookie must carry the session's CSRF token,
  in the `X-CSRF-Token` header or, for a form, its `csrf_token` field; bearer requests need not
  (a browser never adds an Authorization header by itself).
- Request bodies are limited to `max_body` bytes, except STOW-RS, which streams up to the
  object size limit itself.
- The authenticated Principal and the Origin it gives to services are put in `request.state`.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from pedipacs.errors import PedipacsError
from pedipacs.model.origin import Door, Origin
from pedipacs.security.access import AccessPolicy
from pedipacs.security.accounts import AccountService, Authenticated
from pedipacs.security.permissions import Permission, Principal

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SESSION_COOKIE = "pedipacs_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SIGN_IN_PATH = "/signin"
PASSWORD_PATH = "/account/password"  # noqa: S105 (a path, not a password)
SIGN_OUT_PATH = "/signout"
# Reachable without signing in: the sign-in pages, their static files, probes and metrics.
PUBLIC_PREFIXES = ("/signin", "/static/", "/healthz", "/readyz", "/metrics", "/favicon.ico")
# A session whose password must be changed may reach only these.
PASSWORD_CHANGE_PATHS = (PASSWORD_PATH, SIGN_OUT_PATH, "/static/")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORM_TYPE = b"application/x-www-form-urlencoded"


def is_public(path: str) -> bool:
    return path == "/signin" or any(path.startswith(prefix) for prefix in PUBLIC_PREFIXES)


def _is_stow(method: str, path: str) -> bool:
    return method == "POST" and path.startswith("/dicomweb/studies")


class AuthenticationMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        accounts: AccountService,
        access: AccessPolicy,
        max_body: int,
    ) -> None:
        self.app = app
        self._accounts = accounts
        self._access = access
        self._max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        headers = _headers(scope)
        if not _is_stow(method, path):
            if _declared_length(headers) > self._max_body:
                await _answer(send, 413, f"the request body is over {self._max_body} bytes")
                return
            receive = _limited(receive, self._max_body)
        if is_public(path):
            await self.app(scope, receive, send)
            return
        secret, by_cookie = _credentials(headers)
        authenticated = (
            await run_in_threadpool(self._accounts.authenticate, secret) if secret else None
        )
        if authenticated is None:
            await self._unauthenticated(scope, headers, send)
            return
        principal = authenticated.principal
        if by_cookie and method not in SAFE_METHODS:
            checked, receive = await _csrf_checked(headers, receive, principal, self._max_body)
            if not checked:
                await _answer(send, 403, "the CSRF token is missing or wrong; reload the page")
                return
        if authenticated.must_change_password and not path.startswith(PASSWORD_CHANGE_PATHS):
            await _password_change_first(method, headers, send)
            return
        client = scope.get("client")
        try:
            origin = await run_in_threadpool(
                self._access.origin_for, principal, Door.HTTP, client[0] if client else None
            )
        except PedipacsError as error:
            log.error("access scope of %s unavailable: %s", principal.name, error)
            await _answer(send, 503, "access rights cannot be read now; try again")
            return
        state = scope.setdefault("state", {})
        state["principal"] = principal
        state["origin"] = origin
        state["authenticated"] = authenticated
        await self.app(scope, receive, send)

    @staticmethod
    async def _unauthenticated(scope: Scope, headers: dict[str, str], send: Send) -> None:
        if scope["method"] == "GET" and "text/html" in headers.get("accept", ""):
            target = scope["path"] + (
                "?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else ""
            )
            await _redirect(send, f"{SIGN_IN_PATH}?next={quote(target, safe='')}")
            return
        await _answer(
            send,
            401,
            "sign in first: a bearer token or a session is required",
            extra=[(b"www-authenticate", b'Bearer realm="pedipacs"')],
        )


async def _password_change_first(method: str, headers: dict[str, str], send: Send) -> None:
    if method == "GET" and "text/html" in headers.get("accept", ""):
        await _redirect(send, PASSWORD_PATH)
    else:
        await _answer(send, 403, "the password of this account must be changed first")


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _declared_length(headers: dict[str, str]) -> int:
    try:
        return int(headers.get("content-length", "0") or 0)
    except ValueError:
        return 0  # the server refuses a malformed length before we see it


def _credentials(headers: dict[str, str]) -> tuple[str | None, bool]:
    """The secret offered, and whether it came in the session cookie."""
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), False
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == SESSION_COOKIE and value:
            return value, True
    return None, False


async def _csrf_checked(
    headers: dict[str, str], receive: Receive, principal: Principal, max_body: int
) -> tuple[bool, Receive]:
    """Whether the request carries the session's CSRF token; a form's body is read to look
    for it and then replayed to the application."""
    expected = principal.csrf_token or ""
    offered = headers.get(CSRF_HEADER)
    if offered is not None:
        return bool(expected) and hmac.compare_digest(offered, expected), receive
    if not headers.get("content-type", "").encode().startswith(FORM_TYPE):
        return False, receive
    body = b""
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return False, receive
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > max_body:
            return False, receive
    fields = parse_qs(body.decode("utf-8", errors="replace"))
    offered_field = (fields.get(CSRF_FIELD) or [""])[0]
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return bool(expected) and hmac.compare_digest(offered_field, expected), replay


def _limited(receive: Receive, max_body: int) -> Receive:
    """A receive that refuses a chunked body once it grows past `max_body`."""
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > max_body:
                raise BodyTooLarge(max_body)
        return message

    return counted


class BodyTooLarge(PedipacsError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is over {limit} bytes")


async def _answer(
    send: Send, status: int, detail: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                *(extra or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Send, location: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [
                (b"location", location.encode("latin-1")),
                (b"content-length", b"0"),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})


# -- what routes use ---------------------------------------------------------------------------


def request_principal(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


def request_origin(request: Request) -> Origin:
    origin: Origin = request.state.origin
    return origin


def request_session(request: Request) -> Authenticated:
    authenticated: Authenticated = request.state.authenticated
    return authenticated


CurrentPrincipal = Annotated[Principal, Depends(request_principal)]
CurrentOrigin = Annotated[Origin, Depends(request_origin)]
CurrentSession = Annotated[Authenticated, Depends(request_session)]


def requires(permission: Permission) -> Any:
    """A route dependency: the request's principal must hold `permission` (403 otherwise,
    audited by the access policy)."""

    def check(request: Request) -> None:
        access: AccessPolicy = request.app.state.access
        access.require(request.state.principal, permission, request.state.origin)

    return Depends(check)
