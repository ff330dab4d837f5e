"""Headless Chromium for the live-page tests: launch, a tab that fails on page errors, login."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 20_000

#: Marks for a module of browser tests: skipped, with the fix, where Chromium is missing.
NEEDS_CHROMIUM = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)",
    ),
]


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium, closed at the end."""
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - optional

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


@contextlib.contextmanager
def tab(browser: Any) -> Iterator[Any]:
    """A page in a fresh context; fails if a script on it raised."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == []


def open_live_page(page: Any, server: Any, fragment: str = "") -> None:
    """Log in with a one-time link, then open the live page (at ``fragment``)."""
    page.goto(server.login_url())
    if fragment:
        page.goto(server.url + fragment)
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")


def expect(locator: Any) -> Any:
    """Playwright's ``expect`` (imported only where the browser tests run)."""
    from playwright.sync_api import expect as playwright_expect  # noqa: PLC0415 - optional

    return playwright_expect(locator)
