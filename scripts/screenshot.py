"""Load a page in headless Chromium, wait until a CSS selector is on it, and save a PNG screenshot.

    python scripts/screenshot.py URL OUT.png [--wait-for SELECTOR] [--timeout 90] [--size 1400x1500]

Playwright (the ``test`` extra) drives the system's Chromium, found on the PATH or named by ``CHROMIUM``
(Debian: ``apt-get install chromium``, or scripts/install_chromium.sh as root). Nothing is downloaded:
``playwright install`` is never needed, and the flags below keep Chromium itself off the network. It prints
the seconds from navigation until the selector appeared, and the page's visible text after ``--- text ---``.
Exit status 1 when the selector does not appear in time (a screenshot of what was there is still saved).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run", "--hide-scrollbars"]
SETTLE_MS = 1500  # after the selector appears, let the charts and grids finish drawing


def find_chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@contextmanager
def browser_page(size: tuple[int, int] = (1400, 1500)) -> Iterator[Page]:
    """A fresh page of a headless system Chromium with a ``size`` viewport; the browser closes on exit."""
    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("Chromium not found (Debian: apt-get install chromium, or set CHROMIUM=/path)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=FLAGS)
        try:
            yield browser.new_page(viewport={"width": size[0], "height": size[1]})
        finally:
            browser.close()


def screenshot(url: str, out: Path, selector: str = "body", timeout: float = 90.0,
               size: tuple[int, int] = (1400, 1500)) -> tuple[float | None, str]:
    """(seconds until ``selector`` appeared or None, the page's text); the PNG is written to ``out``."""
    with browser_page(size) as page:
        started = time.monotonic()
        page.goto(url, timeout=timeout * 1000)
        try:
            page.locator(selector).first.wait_for(timeout=max(0.0, timeout - (time.monotonic() - started)) * 1000)
            ready: float | None = time.monotonic() - started
        except PlaywrightTimeout:
            ready = None
        page.wait_for_timeout(SETTLE_MS)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
        return ready, page.inner_text("body")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("out", type=Path)
    parser.add_argument("--wait-for", default="body", help="CSS selector to wait for")
    parser.add_argument("--timeout", type=float, default=90.0)
    parser.add_argument("--size", default="1400x1500", help="viewport WIDTHxHEIGHT")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    ready, text = screenshot(args.url, args.out, args.wait_for, args.timeout, (width, height))
    if ready is None:
        print(f"{args.wait_for!r} did not appear in {args.timeout} s")
    else:
        print(f"ready after {ready:.2f} s")
    print(f"screenshot: {args.out}\n--- text ---\n{text}")
    return 0 if ready is not None else 1


if __name__ == "__main__":
    sys.exit(main())
