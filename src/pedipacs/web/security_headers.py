"""Headers every HTTP answer carries, whatever route produced it (pages set stricter ones).

A plain ASGI middleware: it adds headers to the response start and leaves the body alone, so
streamed studies pass through untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    # No guessing of media types: a DICOM part must never be run as a script.
    (b"x-content-type-options", b"nosniff"),
    # UIDs and patient IDs are in URLs: never send them to another site.
    (b"referrer-policy", b"same-origin"),
    # pedipacs' pages and the viewer may not be framed by another site (clickjacking).
    (b"x-frame-options", b"SAMEORIGIN"),
)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(n, v) for n, v in DEFAULT_HEADERS if n not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
