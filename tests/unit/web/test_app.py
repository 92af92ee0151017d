"""The assembled application: CORS is off unless origins are configured."""

from __future__ import annotations

import asyncio

import httpx

from pedipacs.config import Settings
from pedipacs.node import Node
from pedipacs.web.app import create_app


def _preflight(node: Node) -> httpx.Response:
    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(node))
        async with httpx.AsyncClient(transport=transport, base_url="http://pacs.test") as client:
            return await client.options(
                "/dicomweb/studies",
                headers={
                    "Origin": "https://viewer.hospital.example",
                    "Access-Control-Request-Method": "GET",
                },
            )

    return asyncio.run(fetch())


def test_cors_is_refused_by_default(node: Node) -> None:
    response = _preflight(node)

    assert "access-control-allow-origin" not in response.headers


def test_cors_allows_a_configured_origin(settings: Settings) -> None:
    configured = settings.model_copy(update={"cors_origins": ["https://viewer.hospital.example"]})
    node = Node.from_settings(configured)
    try:
        response = _preflight(node)
    finally:
        node.stop()

    assert response.headers["access-control-allow-origin"] == "https://viewer.hospital.example"


def _get(node: Node, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(node))
        async with httpx.AsyncClient(transport=transport, base_url="http://pacs.test") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(fetch())


def test_every_answer_carries_the_security_headers(
    node: Node, tester_headers: dict[str, str]
) -> None:
    paths = ("/healthz", "/dicomweb/studies", "/dicomweb/studies/1.2.3/metadata", "/")
    for path, headers in [(p, None) for p in paths] + [(p, tester_headers) for p in paths]:
        response = _get(node, path, headers)

        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["referrer-policy"] == "same-origin", path
        assert response.headers["x-frame-options"] == "SAMEORIGIN", path


def test_a_page_keeps_its_own_stricter_policy(node: Node, tester_headers: dict[str, str]) -> None:
    response = _get(node, "/", tester_headers)

    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert (
        response.headers.count("x-content-type-options")
        if hasattr(response.headers, "count")
        else True
    )
