"""End to end: ``suite dashboard`` serves the real page on a free local port; Playwright drives headless Chromium
(the system's: nothing is downloaded) to load it, switch views and open a shared address."""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install -e '.[test]')")
from playwright.sync_api import expect  # noqa: E402

from sema_dashboard import tables  # noqa: E402
from sema_suite.results import leaderboard  # noqa: E402

from results_fixture import make_results  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("screenshot", REPO / "scripts" / "screenshot.py")
screenshot = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(screenshot)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    screenshot.find_chromium() is None,
    reason="Chromium is not installed (Debian: `apt-get install chromium`, or run scripts/install_chromium.sh as root)")]
LOAD_MS = 120_000  # a cold Streamlit server on 2 busy cores


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A decay sweep with a test evaluation at the end of each done job, so the tuned rows and the first screen's
    grid exist; one running, one failed and one pending job."""
    return make_results(tmp_path / "results", sweep=(0.8,), test=True)


@pytest.fixture
def server(results: Path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sema_suite.cli", "dashboard", "--results-dir", str(results),
                             "--port", str(port)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.read() == b"ok":
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the dashboard server did not come up:\n{proc.stdout.read()}")
        time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def check_the_grid(page, results: Path) -> None:
    """The first screen's win/tie/loss grid, as Chromium shows it: one row per method, one cell per task, each the
    verdict on the tuned test row of the primary metric that `suite leaderboard` computes."""
    table = leaderboard.build(results)
    expected = {(r["method"], f"{r['task']}/{r['preset']}"): tables.verdict(r) for r in table
                if r["selection"] == "tuned" and r["split"] == "test" and r["method"] != "none"
                and r["metric"] == leaderboard.primary_metric(r["task"], r["preset"])}
    assert {method for method, _ in expected} == {"ema", "sema"} and len(expected) == 4
    grid = page.locator(".st-key-answer table")
    expect(grid).to_be_visible()
    columns = grid.locator("thead th").all_inner_texts()[1:]
    shown = {}
    for row in grid.locator("tbody tr").all():
        method, *cells = [text.strip() for text in row.locator("th, td").all_inner_texts()]
        shown |= {(method, column): cell for column, cell in zip(columns, cells)}
    assert shown == expected


def test_the_page_loads_in_chromium_and_shows_every_view(server: str, results: Path, tmp_path: Path) -> None:
    with screenshot.browser_page((1400, 1500)) as page:
        page.goto(server)
        page.locator('.st-key-leaderboard [data-testid="stDataFrame"]').first.wait_for(timeout=LOAD_MS)
        expect(page.get_by_text("Leaderboard: cls / tiny · top1 (higher is better)")).to_be_visible()
        expect(page.get_by_text("Convergence: top1 (higher is better)")).to_be_visible()
        # the sweep's curve is its own series, with its own seed count (the chart legend is drawn, not text)
        expect(page.locator(".st-key-curves")).to_contain_text("sema · decay=0.8: 3")
        expect(page.locator(".st-key-curves")).to_contain_text("sema · shipped: 4")  # 3 done, 1 running
        check_the_grid(page, results)
        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot))
        assert png_size(shot) == (1400, 1500)

        page.get_by_role("tab", name="Across tasks").click()  # a click moves the view into the address
        expect(page.get_by_text("Performance profile")).to_be_visible(timeout=LOAD_MS)
        expect(page).to_have_url(re.compile(r"view=Across(\+|%20)tasks"))

        page.goto(f"{server}/?view=Jobs&state=failed")  # a shared address opens the same view
        page.locator('.st-key-jobs [data-testid="stDataFrame"]').first.wait_for(timeout=LOAD_MS)
        expect(page.get_by_text("Errors of 1 failed job(s)")).to_be_visible()
