"""For the browser tests (Playwright): open a page signed in, and check what a page must do on a
tablet: nothing scrolls sideways, and every visible control is large enough to touch."""

from __future__ import annotations

from playwright.sync_api import Page, ViewportSize

from support.server import TESTER, TESTER_PASSWORD, RunningServer

TABLET: ViewportSize = {"width": 768, "height": 1024}
MIN_TOUCH_PX = 44


def open_signed_in(page: Page, server: RunningServer, path: str = "/") -> None:
    """Open a page, signing in as `tester` on the sign-in form the server sends first."""
    page.goto(f"{server.http_url}{path}")
    if "/signin" in page.url:
        page.get_by_label("Username").fill(TESTER)
        page.get_by_label("Password").fill(TESTER_PASSWORD)
        page.get_by_role("button", name="Sign in", exact=True).click()
        page.wait_for_url(f"{server.http_url}{path}")


def assert_no_sideways_scroll(page: Page) -> None:
    width = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert width[0] <= width[1], f"horizontal scroll: content {width[0]}px in {width[1]}px"


def assert_touch_targets(page: Page, selector: str) -> None:
    """Every visible element matching `selector` is at least MIN_TOUCH_PX high."""
    too_small = page.evaluate(
        """([selector, minimum]) => [...document.querySelectorAll(selector)]
            .filter((element) => element.offsetParent !== null)
            .map((element) => [element.id || element.textContent.trim(),
                               element.getBoundingClientRect().height])
            .filter(([, height]) => height < minimum)""",
        [selector, MIN_TOUCH_PX],
    )
    assert too_small == [], f"touch targets under {MIN_TOUCH_PX}px: {too_small}"
