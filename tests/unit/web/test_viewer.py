"""The OHIF viewer under /viewer: a fake build in tmp_path, and the real one (`make viewer`)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import Message, Scope

from pedipacs.web.viewer import NOT_INSTALLED_MESSAGE, VERSION_STAMP, viewer_router, viewer_url

BASE_URL = "http://pedipacs.test"
REPO_ROOT = Path(__file__).resolve().parents[3]
INSTALLED_BUILD = REPO_ROOT / "var" / "viewer"
INSTALL_SCRIPT = REPO_ROOT / "scripts" / "install-viewer.sh"

APP_BUNDLE = "app.bundle.0123456789abcdef.js"
PLAIN_BUNDLE = "42.bundle.fedcba9876543210.js"
CODEC = "0123456789abcdef.wasm"
FONT = "a34f9d1faa5f3315.woff2"
SECRET = "not for the browser"

FAKE_INDEX = (
    '<!doctype html><html><head><meta name="msapplication-config" '
    'content="/assets/browserconfig.xml"><script>console.time("x"),window.PUBLIC_URL="/"</script>'
    '<link rel="manifest" href="/manifest.json"><link rel="icon" href="/assets/favicon.ico">'
    '<script rel="preload" as="script" src="/app-config.js"></script>'
    '<link href="https://example.org/font.css" rel="stylesheet">'
    f'<script defer src="/{APP_BUNDLE}"></script><link href="/app.bundle.css" rel="stylesheet">'
    '</head><body><div id="root"></div></body></html>'
)


def _request(
    app: FastAPI, path: str, *, method: str = "GET", headers: dict[str, str] | None = None
) -> httpx.Response:
    async def fetch() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            return await client.request(method, path, headers=headers)

    return asyncio.run(fetch())


def _raw_request(app: FastAPI, path: str) -> tuple[int, bytes]:
    """Send `path` exactly as given (httpx would remove `..` segments before sending)."""
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"pedipacs.test")],
        "client": ("127.0.0.1", 50000),
        "server": ("pedipacs.test", 80),
    }
    status = 0
    body = b""

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status, body
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body += message.get("body", b"")

    asyncio.run(app(scope, receive, send))
    return status, body


def _app(viewer_dir: Path, **options: str) -> FastAPI:
    app = FastAPI()
    app.include_router(viewer_router(viewer_dir, **options), prefix="/viewer")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _write_fake_build(folder: Path, index: str = FAKE_INDEX) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.html").write_text(index)
    (folder / "app-config.js").write_text("window.config = { name: 'PACKAGED' };\n")
    (folder / APP_BUNDLE).write_text(
        '(() => {\n__webpack_require__.p = "/";\n})();\n'
        "browserImportFunction('/dicom-microscopy-viewer/dicomMicroscopyViewer.min.js');\n"
    )
    (folder / PLAIN_BUNDLE).write_text("console.log('no public path here');\n")
    (folder / CODEC).write_bytes(b"\x00asm\x01\x00\x00\x00")
    (folder / FONT).write_bytes(b"wOF2")
    (folder / "app.bundle.css").write_text(
        f"@font-face{{src:url(/{FONT}) format('woff2')}}\n"
        "body{background:url('//cdn.test/x.png')}\n"
    )
    (folder / "1602.css").write_text("body { color: black; }\n")
    (folder / "assets").mkdir(exist_ok=True)
    (folder / "assets" / "logo.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    (folder / "assets" / "favicon.ico").write_bytes(b"\x00\x00\x01\x00")
    (folder / "manifest.json").write_text(
        json.dumps({"icons": [{"src": "/assets/android-chrome-36x36.png"}], "start_url": "./"})
    )
    (folder / VERSION_STAMP).write_text("@ohif/app@0.0.0 sha512-fake\n")
    return folder


@pytest.fixture
def fake_build(tmp_path: Path) -> Path:
    (tmp_path / "secret.txt").write_text(SECRET)
    return _write_fake_build(tmp_path / "viewer")


@pytest.fixture
def app(fake_build: Path) -> FastAPI:
    return _app(fake_build)


def _config(app: FastAPI) -> dict[str, Any]:
    response = _request(app, "/viewer/app-config.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.headers["cache-control"] == "no-cache"
    match = re.search(r"window\.config = (\{.*\});\s*$", response.text, re.DOTALL)
    assert match, response.text
    config: dict[str, Any] = json.loads(match[1])
    return config


def test_app_config_is_generated_for_pedipacs_dicomweb(app: FastAPI) -> None:
    config = _config(app)
    assert config["routerBasename"] == "/viewer"
    assert config["showStudyList"] is True
    assert "PACKAGED" not in json.dumps(config)
    (source,) = config["dataSources"]
    assert source["namespace"] == "@ohif/extension-default.dataSourcesModule.dicomweb"
    assert config["defaultDataSourceName"] == source["sourceName"]
    assert source["configuration"] == source["configuration"] | {
        "qidoRoot": "/dicomweb",
        "wadoRoot": "/dicomweb",
        "wadoUriRoot": "/wado",
        "imageRendering": "wadors",
        "thumbnailRendering": "wadors",
        "enableStudyLazyLoad": True,
        "supportsFuzzyMatching": True,
        "supportsWildcard": True,
        "staticWado": False,
        "bulkDataURI": {"enabled": True},
        "dicomUploadEnabled": False,
    }


def test_app_config_takes_another_dicomweb_root(fake_build: Path) -> None:
    config = _config(_app(fake_build, dicomweb_root="/pacs/dicomweb", wado_uri_root="/pacs/wado"))
    configuration = config["dataSources"][0]["configuration"]
    assert configuration["qidoRoot"] == configuration["wadoRoot"] == "/pacs/dicomweb"
    assert configuration["wadoUriRoot"] == "/pacs/wado"


def test_index_html_loads_its_assets_under_viewer(app: FastAPI) -> None:
    response = _request(app, "/viewer/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    html = response.text
    assert 'window.PUBLIC_URL="/viewer/"' in html
    assert f'src="/viewer/{APP_BUNDLE}"' in html
    assert 'src="/viewer/app-config.js"' in html
    assert 'href="/viewer/app.bundle.css"' in html
    assert 'content="/viewer/assets/browserconfig.xml"' in html
    assert 'href="https://example.org/font.css"' in html  # other sites' URLs untouched
    assert not re.search(r"""(?:href|src|content)=["']/(?!viewer/)""", html)


def test_client_side_routes_get_index_html(app: FastAPI) -> None:
    index = _request(app, "/viewer/").content
    for path in (
        "/viewer/viewer?StudyInstanceUIDs=1.2.3",
        "/viewer/notfound",
        "/viewer/viewer/dicomweb",
    ):
        response = _request(app, path)
        assert response.status_code == 200, path
        assert response.content == index, path


def test_viewer_url_opens_the_study_route(app: FastAPI) -> None:
    url = viewer_url("1.2.826.0.1.3680043.8.498.12345")
    assert url == "/viewer/viewer?StudyInstanceUIDs=1.2.826.0.1.3680043.8.498.12345"
    response = _request(app, url)
    assert response.status_code == 200
    assert 'window.PUBLIC_URL="/viewer/"' in response.text


def test_mount_point_without_slash_redirects_keeping_the_query(app: FastAPI) -> None:
    response = _request(app, "/viewer?StudyInstanceUIDs=1.2.3")
    assert response.status_code == 307
    assert response.headers["location"] == "/viewer/?StudyInstanceUIDs=1.2.3"


@pytest.mark.parametrize(
    "path",
    [
        "/viewer/missing.bundle.0123456789abcdef.js",
        "/viewer/assets/missing.png",
        "/viewer/missing.wasm",
        "/viewer/assets/missing/deeper.css",
    ],
)
def test_missing_assets_are_404_not_the_page(app: FastAPI, path: str) -> None:
    response = _request(app, path)
    assert response.status_code == 404
    assert "<html" not in response.text


@pytest.mark.parametrize(
    "path",
    [
        "/viewer/..%2fsecret.txt",
        "/viewer/%2e%2e/secret.txt",
        "/viewer/%2e%2e%2fsecret.txt",
        "/viewer/assets/..%2f..%2fsecret.txt",
        "/viewer/..%5csecret.txt",
        "/viewer/..%2f..%2fetc/passwd",
        "/viewer/%2e%2e/%2e%2e/etc/passwd",
        "/viewer/%2fetc/passwd",
        "/viewer/" + VERSION_STAMP,
    ],
)
def test_paths_leaving_the_folder_are_refused(app: FastAPI, path: str) -> None:
    response = _request(app, path)
    assert response.status_code == 404
    assert SECRET not in response.text
    assert "root:" not in response.text


@pytest.mark.parametrize("path", ["/viewer/../secret.txt", "/viewer/assets/../../secret.txt"])
def test_raw_dot_segments_are_refused(app: FastAPI, path: str) -> None:
    status, body = _raw_request(app, path)
    assert status == 404
    assert SECRET.encode() not in body


def test_symbolic_link_out_of_the_folder_is_refused(fake_build: Path) -> None:
    (fake_build / "link.txt").symlink_to(fake_build.parent / "secret.txt")
    response = _request(_app(fake_build), "/viewer/link.txt")
    assert response.status_code == 404
    assert SECRET not in response.text


@pytest.mark.parametrize(
    ("name", "media_type", "cache_control"),
    [
        (CODEC, "application/wasm", "public, max-age=31536000, immutable"),
        (PLAIN_BUNDLE, "text/javascript; charset=utf-8", "public, max-age=31536000, immutable"),
        (FONT, "font/woff2", "public, max-age=31536000, immutable"),
        ("app.bundle.css", "text/css; charset=utf-8", "no-cache"),
        ("assets/logo.svg", "image/svg+xml", "no-cache"),
        ("manifest.json", "application/json", "no-cache"),
    ],
)
def test_media_types_and_caching(
    app: FastAPI, name: str, media_type: str, cache_control: str
) -> None:
    response = _request(app, f"/viewer/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert response.headers["cache-control"] == cache_control
    assert response.headers["x-content-type-options"] == "nosniff"


def test_unchanged_files_are_served_as_they_are(app: FastAPI, fake_build: Path) -> None:
    for name in (PLAIN_BUNDLE, CODEC, "1602.css", "assets/favicon.ico"):
        assert _request(app, f"/viewer/{name}").content == (fake_build / name).read_bytes()


def test_bundles_get_the_public_path_under_viewer(app: FastAPI) -> None:
    response = _request(app, f"/viewer/{APP_BUNDLE}")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert '__webpack_require__.p = "/viewer/";' in response.text
    assert '__webpack_require__.p = "/";' not in response.text
    assert "'/viewer/dicom-microscopy-viewer/dicomMicroscopyViewer.min.js'" in response.text


def test_style_sheets_load_fonts_from_viewer(app: FastAPI) -> None:
    response = _request(app, "/viewer/app.bundle.css")
    assert response.headers["content-type"] == "text/css; charset=utf-8"
    assert f"url(/viewer/{FONT})" in response.text
    assert "url('//cdn.test/x.png')" in response.text  # protocol-relative: another site


def test_manifest_icons_under_viewer(app: FastAPI) -> None:
    manifest = _request(app, "/viewer/manifest.json").json()
    assert manifest["icons"][0]["src"] == "/viewer/assets/android-chrome-36x36.png"


@pytest.mark.parametrize("name", ["", APP_BUNDLE, PLAIN_BUNDLE, "app-config.js"])
def test_revalidation_answers_304(app: FastAPI, name: str) -> None:
    first = _request(app, f"/viewer/{name}")
    etag = first.headers["etag"]
    again = _request(app, f"/viewer/{name}", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag


def test_head_sends_headers_only(app: FastAPI) -> None:
    response = _request(app, f"/viewer/{CODEC}", method="HEAD")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/wasm"
    assert response.content == b""


def test_not_installed_answers_503_and_the_rest_still_works(tmp_path: Path) -> None:
    app = _app(tmp_path / "absent")
    for path in (
        "/viewer",
        "/viewer/",
        "/viewer/viewer?StudyInstanceUIDs=1.2.3",
        f"/viewer/{APP_BUNDLE}",
    ):
        response = _request(app, path)
        assert response.status_code == 503, path
        assert response.text == NOT_INSTALLED_MESSAGE
        assert "make viewer" in response.text
    assert _request(app, "/healthz").json() == {"status": "ok"}


def test_build_installed_or_replaced_while_running_is_picked_up(tmp_path: Path) -> None:
    folder = tmp_path / "viewer"
    app = _app(folder)
    assert _request(app, "/viewer/").status_code == 503
    _write_fake_build(folder)
    assert '<div id="root">' in _request(app, "/viewer/").text
    replaced = tmp_path / "replaced"
    _write_fake_build(replaced, index=FAKE_INDEX.replace('id="root"', 'id="root" data-v="2"'))
    folder.rename(tmp_path / "old")
    replaced.rename(folder)
    assert 'data-v="2"' in _request(app, "/viewer/").text


# The real build, as `make viewer` installs it.

needs_installed_build = pytest.mark.skipif(
    not (INSTALLED_BUILD / "index.html").is_file(),
    reason=f"the OHIF build is not installed in {INSTALLED_BUILD}: run `make viewer`",
)


@pytest.fixture(scope="module")
def installed_app() -> FastAPI:
    return _app(INSTALLED_BUILD)


@needs_installed_build
def test_installed_build_is_the_pinned_version() -> None:
    script = INSTALL_SCRIPT.read_text()
    version = re.search(r'^OHIF_VERSION="([^"]+)"', script, re.MULTILINE)
    integrity = re.search(r'^OHIF_INTEGRITY="([^"]+)"', script, re.MULTILINE)
    assert version and integrity
    stamp = (INSTALLED_BUILD / VERSION_STAMP).read_text().strip()
    assert stamp == f"@ohif/app@{version[1]} {integrity[1]}"


@needs_installed_build
def test_installed_index_loads_every_asset_under_viewer(installed_app: FastAPI) -> None:
    response = _request(installed_app, "/viewer/viewer?StudyInstanceUIDs=1.2.3")
    assert response.status_code == 200
    html = response.text
    assert 'window.PUBLIC_URL="/viewer/"' in html
    assert not re.search(r"""(?:href|src|content)=["']/(?!viewer/)""", html)
    assets = re.findall(r"""(?:href|src)=["'](/viewer/[^"']+)["']""", html)
    assert "/viewer/app-config.js" in assets
    assert any(re.fullmatch(r"/viewer/app\.bundle\.[0-9a-f]{16}\.js", asset) for asset in assets)
    for asset in assets:
        assert _request(installed_app, asset, method="HEAD").status_code == 200, asset


@needs_installed_build
def test_installed_app_config_points_at_pedipacs(installed_app: FastAPI) -> None:
    config = _config(installed_app)
    assert config["routerBasename"] == "/viewer"
    configuration = config["dataSources"][0]["configuration"]
    assert configuration["qidoRoot"] == configuration["wadoRoot"] == "/dicomweb"
    assert "cloudfront" not in json.dumps(config)


@needs_installed_build
def test_installed_bundles_load_chunks_and_codecs_from_viewer(installed_app: FastAPI) -> None:
    hard_coded = [
        path.name
        for path in sorted(INSTALLED_BUILD.glob("*.js"))
        if b'__webpack_require__.p = "/";' in path.read_bytes()
    ]
    assert any(name.startswith("app.bundle.") for name in hard_coded)
    for name in hard_coded:
        served = _request(installed_app, f"/viewer/{name}").text
        assert '__webpack_require__.p = "/viewer/";' in served, name
        assert '__webpack_require__.p = "/";' not in served, name


@needs_installed_build
def test_installed_style_sheets_load_fonts_from_viewer(installed_app: FastAPI) -> None:
    for sheet in sorted(INSTALLED_BUILD.glob("*.css")):
        served = _request(installed_app, f"/viewer/{sheet.name}").text
        assert not re.search(r"""url\(["']?/(?!/|viewer/)""", served), sheet.name
        for font in re.findall(r"""url\(["']?(/viewer/[^)"']+)""", served):
            assert _request(installed_app, font, method="HEAD").status_code == 200, font


@needs_installed_build
def test_installed_codecs_are_served_as_wasm(installed_app: FastAPI) -> None:
    codecs = sorted(INSTALLED_BUILD.glob("*.wasm"))
    assert codecs
    for codec in codecs:
        response = _request(installed_app, f"/viewer/{codec.name}", method="HEAD")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/wasm"
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"


@needs_installed_build
def test_installed_packaged_config_is_never_served(installed_app: FastAPI) -> None:
    packaged = (INSTALLED_BUILD / "app-config.js").read_text()
    assert _request(installed_app, "/viewer/app-config.js").text != packaged
    assert _request(installed_app, "/viewer/missing.bundle.0123456789abcdef.js").status_code == 404
