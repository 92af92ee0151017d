"""Signing in and out, changing one's password, breaking the glass and its review.

Server-rendered forms: they work without scripts on a ward PC or a tablet. The sign-in form is
protected against cross-site posting by a double-submit cookie (no session exists yet); every
other form carries the session's CSRF token, which the authentication middleware checks.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from pedipacs import __version__
from pedipacs.errors import InvalidInput
from pedipacs.http.auth import (
    PASSWORD_PATH,
    SESSION_COOKIE,
    SIGN_IN_PATH,
    CurrentOrigin,
    CurrentPrincipal,
    CurrentSession,
    requires,
)
from pedipacs.model.origin import Origin
from pedipacs.security.access import AccessPolicy
from pedipacs.security.accounts import (
    MINIMUM_PASSWORD_LENGTH,
    AccountService,
    SignedIn,
    SignInFailed,
)
from pedipacs.security.permissions import Permission
from pedipacs.web.pages.landing import SECURITY_HEADERS, STATIC_ROUTE_NAME, TEMPLATES

SIGN_IN_CSRF_COOKIE = "pedipacs_signin"
# How long the sign-in form stays valid; also the window of the rate limit.
SIGN_IN_FORM_SECONDS = 3600
RATE_WINDOW_SECONDS = 60.0


class SignInRateLimit:
    """At most `per_minute` sign-in attempts a minute from one client address (in this
    process; the account lockout, kept in the database, covers the rest)."""

    MAX_CLIENTS = 10_000

    def __init__(self, per_minute: int) -> None:
        self._per_minute = per_minute
        self._attempts: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if len(self._attempts) > self.MAX_CLIENTS:
                self._attempts.clear()
            attempts = self._attempts.setdefault(client, deque())
            while attempts and now - attempts[0] > RATE_WINDOW_SECONDS:
                attempts.popleft()
            if len(attempts) >= self._per_minute:
                return False
            attempts.append(now)
            return True


def safe_next(target: str | None) -> str:
    """Only a path on this site: `//evil.example` or `https://...` would be an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def session_cookie(response: Response, request: Request, signed_in: SignedIn) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        signed_in.token,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    def static_url(name: str) -> str:
        return request.url_for(STATIC_ROUTE_NAME, path=name).path

    return TEMPLATES.TemplateResponse(
        request,
        template,
        {
            "static_url": static_url,
            "version": __version__,
            "principal": getattr(request.state, "principal", None),
            **context,
        },
        status_code=status_code,
        headers={**SECURITY_HEADERS, "Cache-Control": "no-store"},
    )


def render_sign_in(
    request: Request,
    *,
    next_path: str,
    oidc_enabled: bool,
    idle_minutes: float,
    error: str = "",
    username: str = "",
    status: int = 200,
) -> HTMLResponse:
    """The sign-in page, with a fresh double-submit cookie for its form."""
    csrf = secrets.token_urlsafe(24)
    response = render(
        request,
        "signin.html",
        status_code=status,
        csrf_token=csrf,
        next=next_path,
        error=error,
        username=username,
        oidc_enabled=oidc_enabled,
        idle_minutes=f"{idle_minutes:g}",
    )
    response.set_cookie(
        SIGN_IN_CSRF_COOKIE,
        csrf,
        max_age=SIGN_IN_FORM_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=SIGN_IN_PATH,
    )
    return response


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


def account_router(
    accounts: AccountService,
    *,
    attempts_per_minute: int,
    idle_minutes: float,
    oidc_enabled: bool,
) -> APIRouter:
    """Sign-in and sign-out."""
    router = APIRouter(include_in_schema=False)
    rate_limit = SignInRateLimit(attempts_per_minute)

    def sign_in_page(
        request: Request, *, next_path: str, error: str = "", username: str = "", status: int = 200
    ) -> HTMLResponse:
        return render_sign_in(
            request,
            next_path=next_path,
            error=error,
            username=username,
            status=status,
            oidc_enabled=oidc_enabled,
            idle_minutes=idle_minutes,
        )

    @router.get(SIGN_IN_PATH, response_class=HTMLResponse)
    def sign_in_form(request: Request, next: str = "/") -> HTMLResponse:
        return sign_in_page(request, next_path=safe_next(next))

    @router.post(SIGN_IN_PATH)
    async def sign_in(
        request: Request,
        username: Annotated[str, Form(max_length=64)],
        password: Annotated[str, Form(max_length=1024)],
        csrf_token: Annotated[str, Form(max_length=64)] = "",
        next: Annotated[str, Form(max_length=2048)] = "/",
    ) -> Response:
        next_path = safe_next(next)
        expected = request.cookies.get(SIGN_IN_CSRF_COOKIE, "")
        if not expected or not secrets.compare_digest(expected, csrf_token):
            return sign_in_page(
                request, next_path=next_path, error="The form expired; sign in again.", status=403
            )
        client = _client(request) or "unknown"
        if not rate_limit.allow(client):
            page = sign_in_page(
                request,
                next_path=next_path,
                error="Too many sign-in attempts; wait a minute.",
                username=username,
                status=429,
            )
            page.headers["Retry-After"] = str(int(RATE_WINDOW_SECONDS))
            return page
        origin = Origin.http(None, client)
        try:
            signed_in = await run_in_threadpool(accounts.sign_in, username, password, origin)
        except SignInFailed as error:
            return sign_in_page(
                request, next_path=next_path, error=str(error), username=username, status=401
            )
        target = PASSWORD_PATH if signed_in.must_change_password else next_path
        response = RedirectResponse(target, status_code=303)
        session_cookie(response, request, signed_in)
        response.delete_cookie(SIGN_IN_CSRF_COOKIE, path=SIGN_IN_PATH)
        return response

    @router.post("/signout")
    def sign_out(session: CurrentSession, origin: CurrentOrigin) -> Response:
        accounts.sign_out(session, origin)
        response = RedirectResponse(SIGN_IN_PATH, status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    return router


def password_router(accounts: AccountService) -> APIRouter:
    """Changing one's password, and `/api/me`."""
    router = APIRouter(include_in_schema=False)

    @router.get(PASSWORD_PATH, response_class=HTMLResponse)
    def password_form(request: Request, session: CurrentSession) -> HTMLResponse:
        return render(
            request,
            "password.html",
            must_change=session.must_change_password,
            minimum=MINIMUM_PASSWORD_LENGTH,
        )

    @router.post(PASSWORD_PATH, response_class=HTMLResponse)
    def change_password(
        request: Request,
        session: CurrentSession,
        origin: CurrentOrigin,
        current: Annotated[str, Form(max_length=1024)],
        new: Annotated[str, Form(max_length=1024)],
    ) -> Response:
        try:
            accounts.change_password(session.principal, current, new, origin)
        except (InvalidInput, SignInFailed) as error:
            return render(
                request,
                "password.html",
                status_code=400,
                error=str(error),
                must_change=session.must_change_password,
                minimum=MINIMUM_PASSWORD_LENGTH,
            )
        if session.must_change_password:
            return RedirectResponse("/", status_code=303)
        return render(request, "password.html", done=True, minimum=MINIMUM_PASSWORD_LENGTH)

    @router.get("/api/me")
    def who_am_i(principal: CurrentPrincipal, origin: CurrentOrigin) -> dict[str, Any]:
        """The signed-in account, its roles and permissions."""
        return {
            "username": principal.name,
            "displayName": principal.display_name,
            "roles": sorted(principal.roles),
            "permissions": sorted(principal.permissions),
            "seesEveryPatient": origin.patient_scope is None,
        }

    return router


def break_glass_router(access: AccessPolicy, *, break_glass_minutes: float) -> APIRouter:
    """Breaking the glass (form and API) and the administrators' review of it."""
    router = APIRouter(include_in_schema=False)

    @router.get("/break-glass", response_class=HTMLResponse)
    def break_glass_form(
        request: Request, principal: CurrentPrincipal, origin: CurrentOrigin, patient: str = ""
    ) -> HTMLResponse:
        access.require(principal, Permission.BREAK_GLASS, origin)
        return render(
            request, "break_glass.html", patient_id=patient, minutes=f"{break_glass_minutes:g}"
        )

    @router.post("/break-glass", response_class=HTMLResponse)
    def break_glass(
        request: Request,
        principal: CurrentPrincipal,
        origin: CurrentOrigin,
        patient_id: Annotated[str, Form(max_length=64)],
        reason: Annotated[str, Form(max_length=2000)],
    ) -> HTMLResponse:
        try:
            opened = access.break_glass(principal, patient_id, reason, origin)
        except InvalidInput as error:
            return render(
                request,
                "break_glass.html",
                status_code=400,
                error=str(error),
                patient_id=patient_id,
                minutes=f"{break_glass_minutes:g}",
            )
        return render(
            request,
            "break_glass.html",
            opened=opened,
            patient_id=patient_id,
            minutes=f"{break_glass_minutes:g}",
        )

    @router.post("/api/break-glass", status_code=201)
    def break_glass_api(
        principal: CurrentPrincipal, origin: CurrentOrigin, body: dict[str, str]
    ) -> dict[str, str]:
        """Open a patient outside one's care: `{"patientId": ..., "reason": ...}`."""
        opened = access.break_glass(
            principal, body.get("patientId", ""), body.get("reason", ""), origin
        )
        return {"patientId": opened.patient_id, "expiresAt": opened.expires_at.isoformat()}

    @router.get(
        "/admin/break-glass",
        response_class=HTMLResponse,
        dependencies=[requires(Permission.ADMINISTER)],
    )
    def break_glass_review(request: Request) -> HTMLResponse:
        return render(request, "break_glass_review.html", accesses=access.break_glass_report())

    @router.post("/admin/break-glass/{access_id}/review")
    def review(access_id: int, principal: CurrentPrincipal, origin: CurrentOrigin) -> Response:
        access.review_break_glass(access_id, principal, origin)
        return RedirectResponse("/admin/break-glass", status_code=303)

    @router.get("/api/break-glass", dependencies=[requires(Permission.ADMINISTER)])
    def break_glass_report(unreviewed: bool = True) -> list[dict[str, Any]]:
        return [
            {
                "id": item.id,
                "username": item.username,
                "patientId": item.patient_id,
                "reason": item.reason,
                "remoteHost": item.remote_host,
                "startedAt": item.started_at.isoformat(),
                "expiresAt": item.expires_at.isoformat(),
                "reviewedBy": item.reviewed_by,
            }
            for item in access.break_glass_report(unreviewed_only=unreviewed)
        ]

    return router
