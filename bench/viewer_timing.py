"""Time from opening the OHIF viewer on a study to its first image drawn, in headless Chromium.

Chromium is the Debian package, driven by Playwright. WebGL runs on SwiftShader, the CPU
renderer, as the benchmark machine has no GPU, so the figure includes software rendering. An
image is "drawn" when a cornerstone viewport canvas shows many grey levels (not one flat
colour); the page is checked every `POLL_MS`, so the figure is late by up to that much.

Each run opens a new browser context (an empty HTTP cache: a first visit, the viewer's
bundles are downloaded) and then opens the same URL again in that context (a return visit:
hashed bundles come from the cache). DICOMweb requests that fail are reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from playwright.sync_api import Browser, Page, Playwright, Request, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
# As root in a container Chromium needs --no-sandbox; /dev/shm is often tiny there. WebGL
# (cornerstone3D) runs on SwiftShader, as no GPU is present. The same flags as the browser tests.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--ignore-gpu-blocklist",
    "--hide-scrollbars",
]
VIEWPORT = {"width": 1280, "height": 900}
TIMEOUT_MS = 180_000
POLL_MS = 100

# The browser tests' test (tests/integration/web/test_browser.py): a cornerstone canvas with
# many grey levels and some lit pixels. The on-screen canvas is 2D, so it reads back.
DRAWN_CANVAS_JS = """() => {
    const canvases = document.querySelectorAll('canvas.cornerstone-canvas');
    for (const canvas of canvases) {
        if (canvas.width < 32 || canvas.height < 32) continue;
        const context = canvas.getContext('2d', { willReadFrequently: true });
        if (!context) continue;
        const { data } = context.getImageData(0, 0, canvas.width, canvas.height);
        const levels = new Set();
        let lit = 0;
        for (let index = 0; index < data.length; index += 4 * 7) {
            const grey = (data[index] + data[index + 1] + data[index + 2]) / 3;
            levels.add(Math.round(grey));
            if (grey > 16) lit += 1;
        }
        if (levels.size >= 16 && lit * 4 * 7 > data.length * 0.01) return true;
    }
    return false;
}"""


@dataclass
class ViewerVisit:
    """One opening of the viewer."""

    seconds: float
    requests: int = 0  # every request the page made until the image was drawn
    dicomweb_requests: int = 0
    failures: list[str] = field(default_factory=list)  # DICOMweb requests that failed
    aborted: int = 0  # DICOMweb requests the page cancelled itself (net::ERR_ABORTED)


class _Traffic:
    def __init__(self) -> None:
        self.requests = 0
        self.dicomweb = 0
        self.failures: list[str] = []
        self.aborted = 0

    def finished(self, request: Request) -> None:
        self.requests += 1
        if "/dicomweb/" not in request.url:
            return
        self.dicomweb += 1
        response = request.response()
        if response is not None and response.status >= 400:
            self.failures.append(f"{request.method} {request.url}: {response.status}")

    def failed(self, request: Request) -> None:
        self.requests += 1
        if "/dicomweb/" not in request.url:
            return
        self.dicomweb += 1
        if request.failure == "net::ERR_ABORTED":
            self.aborted += 1  # the viewer cancels prefetches it no longer needs
        else:
            self.failures.append(f"{request.method} {request.url}: {request.failure}")


class ViewerTimer:
    """A headless Chromium kept open across visits."""

    def __init__(self) -> None:
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None

    def __enter__(self) -> Self:
        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000
            )
        except BaseException:
            self._playwright.stop()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._browser is not None:
            self._browser.close()
        if self._playwright is not None:
            self._playwright.stop()

    def first_and_return_visit(
        self, url: str, cookies: list[dict[str, str]] | None = None
    ) -> tuple[ViewerVisit, ViewerVisit]:
        """Open `url` in a new context (empty cache, with `cookies`: a signed-in session),
        then again in the same context."""
        assert self._browser is not None
        context = self._browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
        if cookies:
            context.add_cookies(cookies)  # type: ignore[arg-type]
        try:
            page = context.new_page()
            return _visit(page, url), _visit(page, url)
        finally:
            context.close()


def _visit(page: Page, url: str) -> ViewerVisit:
    if page.url != "about:blank":
        page.goto("about:blank")  # leaving the viewer aborts its prefetches: not counted
    traffic = _Traffic()
    page.on("requestfinished", traffic.finished)
    page.on("requestfailed", traffic.failed)
    try:
        started = time.perf_counter()
        page.goto(url, wait_until="commit", timeout=TIMEOUT_MS)
        page.wait_for_function(DRAWN_CANVAS_JS, timeout=TIMEOUT_MS, polling=POLL_MS)
        seconds = time.perf_counter() - started
    finally:
        page.remove_listener("requestfinished", traffic.finished)
        page.remove_listener("requestfailed", traffic.failed)
    return ViewerVisit(
        seconds, traffic.requests, traffic.dicomweb, traffic.failures, traffic.aborted
    )
