"""The landing page's HTML and assets, through the ASGI app (no browser)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from pedipacs.web.pages import landing_router
from pedipacs.web.pages.landing import STATIC_DIR

BASE_URL = "http://pedipacs.test"


def _get(app: FastAPI, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            return await client.get(path, headers=headers)

    return asyncio.run(fetch())


def _app(**options: Any) -> FastAPI:
    app = FastAPI()
    app.include_router(landing_router(**options))
    return app


def test_landing_page_renders_search_form_and_empty_table() -> None:
    response = _get(_app(), "/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    for field in ("name", "patientId", "dateFrom", "dateTo", "modality"):
        assert f'name="{field}"' in html
    assert 'data-qido-url="/dicomweb/studies"' in html
    assert 'data-viewer-url="/viewer/viewer"' in html
    assert '<script type="module" src="/static/landing.js"></script>' in html
    assert '<link rel="stylesheet" href="/static/pages.css">' in html
    assert "<tbody></tbody>" in html  # rows come from QIDO-RS in the browser, never here


def test_landing_page_has_no_inline_script_or_style_and_sends_a_strict_policy() -> None:
    response = _get(_app(), "/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "style-src 'self'" in policy
    assert "unsafe-inline" not in policy
    html = response.text
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
    assert "<style" not in html
    assert " style=" not in html
    assert re.findall(r"\son[a-z]+=", html) == []  # no onclick= and friends


def test_landing_router_takes_the_qido_and_viewer_paths() -> None:
    app = _app(qido_path="/pacs/dicomweb/studies", viewer_path="/ohif/viewer", page_size=10)
    html = _get(app, "/").text
    assert 'data-qido-url="/pacs/dicomweb/studies"' in html
    assert 'data-viewer-url="/ohif/viewer"' in html
    assert 'data-page-size="10"' in html


def test_landing_router_refuses_an_empty_page() -> None:
    with pytest.raises(ValueError, match="page_size"):
        landing_router(page_size=0)


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("landing.js", "text/javascript"),
        ("age.js", "text/javascript"),
        ("dicom-json.js", "text/javascript"),
        ("pages.css", "text/css"),
    ],
)
def test_static_assets_are_served_and_revalidated(name: str, content_type: str) -> None:
    response = _get(_app(), f"/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(content_type)
    assert response.headers["cache-control"] == "no-cache"
    assert response.content == (STATIC_DIR / name).read_bytes()
    again = _get(_app(), f"/static/{name}", {"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304


@pytest.mark.parametrize("path", ["/static/../landing.py", "/static/%2e%2e/landing.py"])
def test_static_assets_do_not_reach_outside_their_folder(path: str) -> None:
    assert _get(_app(), path).status_code == 404


def test_scripts_never_write_html_from_data() -> None:
    for script in STATIC_DIR.glob("*.js"):
        source = script.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in source, f"{script.name} uses {sink}"
