"""Headless Chromium for end-to-end console tests: Debian's ``chromium`` driven by
Playwright's Python package. Nothing is downloaded at run time (no ``playwright install``);
without /usr/bin/chromium the tests are skipped locally and fail under CI, where .ci/run
installs it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("ORCH_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
LAPTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


def launch() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is missing under CI (.ci/run installs Debian's chromium)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


class Tab:
    """A browser page that records every console error and uncaught exception."""

    def __init__(self, browser: Any, base_url: str, viewport: dict[str, int] = LAPTOP) -> None:
        self.context = browser.new_context(base_url=base_url, viewport=viewport)
        self.context.set_default_timeout(5000)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()
        assert not self.errors, f"browser console errors: {self.errors}"
