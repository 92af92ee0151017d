"""The OHIF viewer under `/viewer`, configured to pedipacs' own DICOMweb.

The folder (`settings.viewer_dir`, filled by `make viewer`) holds the published build of the npm
package `@ohif/app` exactly as released. That build expects to live at the root of a site, so
this router adapts it while serving, never on disk:

- `app-config.js` is generated (the packaged one points at a public demo server): one DICOMweb
  data source whose roots are same-origin paths, so the viewer works under any host name;
- `index.html` gets its absolute asset paths and `window.PUBLIC_URL` moved under the mount path;
- the few bundles that hard-code webpack's public path (`__webpack_require__.p = "/"`, the main
  bundle and the web workers that load the codecs) are served with it rewritten, and so are the
  style sheets' root-absolute `url(/...)` (the fonts).

The adapted files are built once per installed build and kept in memory. Any other path that
names no file and has no extension is a client-side route and gets `index.html`; a missing file
with an extension is a 404. No path built from the request leaves the folder.

Pages link to a study with `viewer_url(study_instance_uid)`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, PlainTextResponse, RedirectResponse, Response

logger = logging.getLogger(__name__)

VIEWER_PATH = "/viewer"
"""Where the app mounts the router; links and the generated configuration use it."""

VERSION_STAMP = ".pedipacs-viewer-version"
"""Written by scripts/install-viewer.sh: the package, version and integrity installed."""

NOT_INSTALLED_MESSAGE = (
    "the viewer is not installed: run `make viewer` "
    "(it fetches the OHIF build into the folder set by PEDIPACS_VIEWER_DIR, default var/viewer)\n"
)

# Hashed names (`app.bundle.0f6159c501addfe9.js`, `0ddf166f7a343eda.wasm`) never change content.
_HASHED_NAME = re.compile(r"(?:^|\.)[0-9a-f]{16,}\.[a-z0-9]+$")
CACHE_IMMUTABLE = "public, max-age=31536000, immutable"
CACHE_REVALIDATE = "no-cache"

_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".jsonc": "application/json",
    ".map": "application/json",
    ".webapp": "application/manifest+json",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".ttf": "font/ttf",
    ".xml": "application/xml",
    ".txt": "text/plain; charset=utf-8",
}

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "SAMEORIGIN",
}

# index.html: `window.PUBLIC_URL="/"` and root-absolute href/src/content attributes.
_PUBLIC_URL = re.compile(r"""window\.PUBLIC_URL\s*=\s*(["'])/\1""")
_ROOT_ATTRIBUTE = re.compile(r"""(\s(?:href|src|content)=)(["'])/(?!/)""")

# Scripts: literal replacements, each with "{base}" standing for the mount path.
_SCRIPT_REWRITES: tuple[tuple[bytes, str], ...] = (
    (b'__webpack_require__.p = "/";', '__webpack_require__.p = "{base}/";'),
    (b"'/dicom-microscopy-viewer/", "'{base}/dicom-microscopy-viewer/"),
)
# Style sheets: root-absolute `url(/...)` (the fonts).
_STYLE_ROOT_URL = re.compile(rb"""url\((["']?)/(?!/)""")


def viewer_url(study_instance_uid: str) -> str:
    """The viewer's URL that opens one study (OHIF's `viewer?StudyInstanceUIDs=` route).

    >>> viewer_url("1.2.826.0.1.3680043.8.498.1")
    '/viewer/viewer?StudyInstanceUIDs=1.2.826.0.1.3680043.8.498.1'
    """
    return f"{VIEWER_PATH}/viewer?{urlencode({'StudyInstanceUIDs': study_instance_uid})}"


def media_type_for(name: str) -> str:
    """The Content-Type for a file of the build, by its extension.

    >>> media_type_for("0ddf166f7a343eda.wasm")
    'application/wasm'
    """
    suffix = PurePosixPath(name).suffix.lower()
    known = _MEDIA_TYPES.get(suffix)
    if known is not None:
        return known
    guessed, _ = mimetypes.guess_type(name)
    return guessed or "application/octet-stream"


def cache_control_for(name: str) -> str:
    """Long-lived for content-hashed names, revalidated for everything else.

    >>> cache_control_for("app.bundle.0f6159c501addfe9.js")
    'public, max-age=31536000, immutable'
    >>> cache_control_for("app.bundle.css")
    'no-cache'
    """
    return CACHE_IMMUTABLE if _HASHED_NAME.search(name) else CACHE_REVALIDATE


def app_config(
    *, base_path: str = VIEWER_PATH, dicomweb_root: str = "/dicomweb", wado_uri_root: str = "/wado"
) -> dict[str, Any]:
    """OHIF's `window.config`: one DICOMweb data source, pedipacs' own.

    Compared with the packaged default (config/default.js of @ohif/app 3.13): the data source
    points at pedipacs, is not a static WADO server, renders thumbnails from the frames it
    already fetches (no `/thumbnail` or `/rendered` requests) and offers no upload.
    """
    data_source = {
        "friendlyName": "pedipacs",
        "name": "pedipacs",
        "qidoRoot": dicomweb_root,
        "wadoRoot": dicomweb_root,
        "wadoUriRoot": wado_uri_root,
        "qidoSupportsIncludeField": True,
        "imageRendering": "wadors",
        "thumbnailRendering": "wadors",
        "enableStudyLazyLoad": True,
        "supportsFuzzyMatching": True,
        "supportsWildcard": True,
        "staticWado": False,
        "singlepart": False,
        "bulkDataURI": {"enabled": True},
        "omitQuotationForMultipartRequest": True,
        "dicomUploadEnabled": False,
        "supportsReject": False,
    }
    return {
        "name": "pedipacs",
        "routerBasename": base_path,
        "extensions": [],
        "modes": [],
        "customizationService": {},
        "showStudyList": True,
        "maxNumberOfWebWorkers": 3,
        "showLoadingIndicator": True,
        "showCPUFallbackMessage": True,
        "showWarningMessageForCrossOrigin": False,
        "experimentalStudyBrowserSort": False,
        "strictZSpacingForVolumeViewport": True,
        "groupEnabledModesFirst": True,
        "allowMultiSelectExport": False,
        "maxNumRequests": {"interaction": 100, "thumbnail": 5, "prefetch": 25},
        "showErrorDetails": "always",
        "defaultDataSourceName": "pedipacs",
        "dataSources": [
            {
                "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
                "sourceName": "pedipacs",
                "configuration": data_source,
            }
        ],
    }


def app_config_js(**options: str) -> str:
    """`app-config.js` as served: the configuration as a JavaScript object literal (JSON)."""
    body = json.dumps(app_config(**options), indent=2)
    header = "/* Generated by pedipacs (web/viewer.py); the packaged app-config.js is not used. */"
    return f"{header}\nwindow.config = {body};\n"


def rewrite_index_html(html: str, base_path: str) -> str:
    """Move the build's root-absolute asset paths and `window.PUBLIC_URL` under `base_path`.

    >>> rewrite_index_html('<script>window.PUBLIC_URL="/"</script><link href="/a.css">', "/viewer")
    '<script>window.PUBLIC_URL="/viewer/"</script><link href="/viewer/a.css">'
    """
    html = _PUBLIC_URL.sub(f'window.PUBLIC_URL="{base_path}/"', html)
    return _ROOT_ATTRIBUTE.sub(lambda match: f"{match[1]}{match[2]}{base_path}/", html)


def rewrite_manifest(text: str, base_path: str) -> str:
    """The web app manifest's icon paths under `base_path` (left alone if it is not JSON)."""
    try:
        manifest = json.loads(text)
    except ValueError:
        return text
    if not isinstance(manifest, dict):
        return text
    for icon in manifest.get("icons") or []:
        if isinstance(icon, dict) and str(icon.get("src", "")).startswith("/"):
            icon["src"] = base_path + icon["src"]
    return json.dumps(manifest, indent=2)


def rewrite_bundle(content: bytes, base_path: str, suffix: str = ".js") -> bytes | None:
    """A script or style sheet with root-absolute paths moved under `base_path`, None if none.

    >>> rewrite_bundle(b'__webpack_require__.p = "/";', "/viewer")
    b'__webpack_require__.p = "/viewer/";'
    >>> rewrite_bundle(b"src:url(/a34f9d1faa5f3315.woff2)", "/viewer", ".css")
    b'src:url(/viewer/a34f9d1faa5f3315.woff2)'
    """
    rewritten = content
    if suffix == ".css":
        rewritten = _STYLE_ROOT_URL.sub(rb"url(\1" + base_path.encode() + b"/", content)
    else:
        for old, new in _SCRIPT_REWRITES:
            rewritten = rewritten.replace(old, new.format(base=base_path).encode())
    return None if rewritten == content else rewritten


@dataclass(frozen=True)
class _Generated:
    """A file built in memory: body, media type, caching, validator."""

    body: bytes
    media_type: str
    cache_control: str
    etag: str


def _generated(body: bytes, media_type: str, cache_control: str) -> _Generated:
    return _Generated(body, media_type, cache_control, f'"{hashlib.sha256(body).hexdigest()[:32]}"')


class _Build:
    """One installed build: its folder, the generated files and the rewritten bundles."""

    def __init__(
        self, root: Path, identity: tuple[int, int, int], base_path: str, config_js: str
    ) -> None:
        self.root = root
        self.identity = identity
        self.base_path = base_path
        index = (root / "index.html").read_text(encoding="utf-8")
        self.generated: dict[str, _Generated] = {
            "index.html": _generated(
                rewrite_index_html(index, base_path).encode(),
                _MEDIA_TYPES[".html"],
                CACHE_REVALIDATE,
            ),
            "app-config.js": _generated(config_js.encode(), _MEDIA_TYPES[".js"], CACHE_REVALIDATE),
        }
        manifest = root / "manifest.json"
        if manifest.is_file():
            self.generated["manifest.json"] = _generated(
                rewrite_manifest(manifest.read_text(encoding="utf-8"), base_path).encode(),
                _MEDIA_TYPES[".json"],
                CACHE_REVALIDATE,
            )
        stamp = root / VERSION_STAMP
        self.version = stamp.read_text(encoding="utf-8").strip() if stamp.is_file() else "unknown"
        # Bundle path -> rewritten bundle, or None when served unchanged from disk.
        self._bundles: dict[str, _Generated | None] = {}
        self._lock = threading.Lock()

    def bundle(self, relative: str, path: Path) -> _Generated | None:
        """The rewritten script or style sheet, read and rewritten on its first request only."""
        with self._lock:
            if relative in self._bundles:
                return self._bundles[relative]
        rewritten = rewrite_bundle(path.read_bytes(), self.base_path, path.suffix)
        generated = (
            None
            if rewritten is None
            else _generated(rewritten, media_type_for(relative), cache_control_for(relative))
        )
        with self._lock:
            self._bundles[relative] = generated
        return generated


class _Viewer:
    """The viewer folder as served: the current build, reloaded when `make viewer` replaces it."""

    def __init__(self, viewer_dir: Path, base_path: str, config_js: str) -> None:
        self.viewer_dir = viewer_dir
        self.base_path = base_path
        self.config_js = config_js
        self._build: _Build | None = None
        self._lock = threading.Lock()

    def current(self) -> _Build | None:
        try:
            root = self.viewer_dir.resolve(strict=True)
            index_stat = (root / "index.html").stat()
        except OSError:
            return None
        identity = (index_stat.st_ino, index_stat.st_mtime_ns, index_stat.st_size)
        with self._lock:
            build = self._build
            if build is None or build.root != root or build.identity != identity:
                try:
                    build = _Build(root, identity, self.base_path, self.config_js)
                except OSError:
                    return None
                logger.info("viewer: serving %s from %s", build.version, root)
                self._build = build
            return build


def _is_refused(relative: str) -> bool:
    """True for a path that tries to leave the folder or reach a hidden file (or is absolute).

    >>> _is_refused("../../etc/passwd"), _is_refused(".pedipacs-viewer-version")
    (True, True)
    >>> _is_refused("assets/favicon.ico")
    False
    """
    if relative.startswith("/") or "\\" in relative or "\x00" in relative:
        return True
    return any(part in ("..", ".") or part.startswith(".") for part in relative.split("/") if part)


def _resolve_inside(root: Path, relative: str) -> Path | None:
    """The file `relative` names inside `root` (resolved, symbolic links included), or None."""
    try:
        candidate = (root / relative).resolve()
    except (OSError, ValueError):
        return None
    if candidate == root or not candidate.is_relative_to(root):
        return None
    return candidate if candidate.is_file() else None


def _headers(cache_control: str, etag: str | None = None) -> dict[str, str]:
    headers = {**_SECURITY_HEADERS, "Cache-Control": cache_control}
    if etag is not None:
        headers["ETag"] = etag
    return headers


def _not_modified(request: Request, etag: str) -> bool:
    candidates = request.headers.get("if-none-match", "")
    return any(tag.strip().removeprefix("W/") == etag for tag in candidates.split(",")) or (
        candidates.strip() == "*"
    )


def _send_generated(request: Request, generated: _Generated) -> Response:
    headers = _headers(generated.cache_control, generated.etag)
    if _not_modified(request, generated.etag):
        return Response(status_code=304, headers=headers)
    return Response(generated.body, media_type=generated.media_type, headers=headers)


def _send_file(request: Request, path: Path, relative: str) -> Response:
    stat = path.stat()
    etag = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'
    headers = _headers(cache_control_for(relative), etag)
    if _not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    return FileResponse(
        path, media_type=media_type_for(relative), headers=headers, stat_result=stat
    )


def _not_found() -> Response:
    return PlainTextResponse("not found\n", status_code=404, headers=_headers("no-store"))


def viewer_router(
    viewer_dir: Path,
    *,
    dicomweb_root: str = "/dicomweb",
    wado_uri_root: str = "/wado",
    base_path: str = VIEWER_PATH,
    issue_token: Callable[[Request], str | None] | None = None,
) -> APIRouter:
    """Routes serving the OHIF build in `viewer_dir`; include them with `prefix=base_path`.

    `dicomweb_root` and `wado_uri_root` go into the generated configuration as they are: keep them
    same-origin paths so the viewer works whatever host name the browser used. When the folder
    holds no build, every path answers 503 with the command that installs it.
    """
    base_path = base_path.rstrip("/")
    config_js = app_config_js(
        base_path=base_path, dicomweb_root=dicomweb_root, wado_uri_root=wado_uri_root
    )
    viewer = _Viewer(viewer_dir, base_path, config_js)
    router = APIRouter(include_in_schema=False)

    def not_installed() -> Response:
        return PlainTextResponse(
            NOT_INSTALLED_MESSAGE, status_code=503, headers=_headers("no-store")
        )

    @router.api_route("", methods=["GET", "HEAD"])
    def viewer_root(request: Request) -> Response:
        if viewer.current() is None:
            return not_installed()
        query = request.url.query
        return RedirectResponse(f"{base_path}/" + (f"?{query}" if query else ""), status_code=307)

    @router.api_route("/{relative:path}", methods=["GET", "HEAD"])
    def viewer_file(relative: str, request: Request) -> Response:
        build = viewer.current()
        if build is None:
            return not_installed()
        if issue_token is not None and _is_page(relative) and "token" not in request.query_params:
            token = issue_token(request)
            if token is not None:
                query = urlencode([*request.query_params.multi_items(), ("token", token)])
                return RedirectResponse(f"{base_path}/{relative}?{query}", status_code=303)
        return _serve(build, relative, request)

    return router


def _is_page(relative: str) -> bool:
    """A client-side route of the viewer (`viewer`, `viewer/dicomweb`, ...), not a file."""
    relative = relative.strip("/")
    return relative != "" and not PurePosixPath(relative).suffix and not _is_refused(relative)


def _serve(build: _Build, relative: str, request: Request) -> Response:
    if _is_refused(relative):
        return _not_found()
    relative = relative.strip("/")
    generated = build.generated.get(relative or "index.html")
    if generated is not None:
        return _send_generated(request, generated)
    path = _resolve_inside(build.root, relative)
    if path is None:
        if PurePosixPath(relative).suffix:
            return _not_found()  # a missing asset, never the page in its place
        return _send_generated(request, build.generated["index.html"])  # a client-side route
    if path.suffix in (".js", ".css"):
        bundle = build.bundle(relative, path)
        if bundle is not None:
            return _send_generated(request, bundle)
    return _send_file(request, path, relative)
