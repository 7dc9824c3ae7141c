"""Load a page in headless Chromium, wait until a CSS selector is on it, and save a PNG screenshot.

    python scripts/screenshot.py URL OUT.png [--wait-for SELECTOR] [--timeout 90] [--size 1400x1500]

It drives Chromium over the DevTools protocol on a websocket (the ``websockets`` client, which Streamlit
already requires), so no Selenium or driver binary is needed. It prints the seconds from navigation until the
selector appeared, and the page's visible text after ``--- text ---`` (what a test can assert on).
Exit status 1 when the selector does not appear in time (a screenshot of what was there is still saved).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from websockets.asyncio.client import connect

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-port=0"]


def find_chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class DevTools:
    """A minimal DevTools-protocol client: send a command, wait for the reply with the same id."""

    def __init__(self, connection) -> None:
        self.connection = connection
        self.ids = itertools.count(1)
        self.session: str | None = None

    async def call(self, method: str, **params):
        message = {"id": next(self.ids), "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        await self.connection.send(json.dumps(message))
        while True:
            reply = json.loads(await self.connection.recv())
            if reply.get("id") == message["id"]:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})


def _browser_endpoint(proc: subprocess.Popen, deadline: float) -> str:
    """Chromium prints ``DevTools listening on ws://...`` on stderr once it is up."""
    for line in proc.stderr:
        match = re.search(r"DevTools listening on (ws://\S+)", line)
        if match:
            # keep reading what Chromium logs, or it blocks once the pipe is full
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return match.group(1)
        if time.monotonic() > deadline:
            break
    raise RuntimeError("Chromium did not start its DevTools endpoint")


async def _shoot(endpoint: str, url: str, out: Path, selector: str, timeout: float, size: tuple[int, int]
                 ) -> tuple[float | None, str]:
    async with connect(endpoint, max_size=None) as connection:
        return await _drive(DevTools(connection), url, out, selector, timeout, size)


async def _drive(tools: DevTools, url: str, out: Path, selector: str, timeout: float, size: tuple[int, int]
                 ) -> tuple[float | None, str]:
    target = await tools.call("Target.createTarget", url="about:blank")
    tools.session = (await tools.call("Target.attachToTarget", targetId=target["targetId"], flatten=True))["sessionId"]
    await tools.call("Emulation.setDeviceMetricsOverride", width=size[0], height=size[1], deviceScaleFactor=1,
                     mobile=False)
    started = time.monotonic()
    await tools.call("Page.navigate", url=url)
    ready = None
    while time.monotonic() - started < timeout:
        found = await tools.call("Runtime.evaluate", expression=f"!!document.querySelector({json.dumps(selector)})",
                                 returnByValue=True)
        if found.get("result", {}).get("value"):
            ready = time.monotonic() - started
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.5)  # let the charts and grids finish drawing
    text = await tools.call("Runtime.evaluate", expression="document.body.innerText", returnByValue=True)
    shot = await tools.call("Page.captureScreenshot", format="png")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(base64.b64decode(shot["data"]))
    tools.session = None
    await tools.call("Browser.close")
    return ready, text.get("result", {}).get("value", "")


def screenshot(url: str, out: Path, selector: str = "body", timeout: float = 90.0,
               size: tuple[int, int] = (1400, 1500)) -> tuple[float | None, str]:
    """(seconds until ``selector`` appeared or None, the page's text); the PNG is written to ``out``."""
    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("Chromium not found (Debian: apt-get install chromium, or set CHROMIUM=/path)")
    profile = tempfile.mkdtemp(prefix="sema-chromium-")
    proc = subprocess.Popen([chromium, *FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
                             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        endpoint = _browser_endpoint(proc, time.monotonic() + 60)
        return asyncio.run(_shoot(endpoint, url, out, selector, timeout, size))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


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
