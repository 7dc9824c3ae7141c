"""End to end: ``suite dashboard`` serves the real page on a free local port; headless Chromium loads it."""

from __future__ import annotations

import importlib.util
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
pytest.importorskip("websockets")
from results_fixture import make_results  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("screenshot", REPO / "scripts" / "screenshot.py")
screenshot = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(screenshot)

pytestmark = pytest.mark.skipif(
    screenshot.find_chromium() is None,
    reason="Chromium is not installed (Debian: `apt-get install chromium`, or run scripts/install_chromium.sh as root)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tmp_path: Path):
    results = make_results(tmp_path / "results")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "suite.cli", "dashboard", "--results-dir", str(results),
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


def test_the_page_loads_in_chromium_and_shows_the_leaderboard(server: str, tmp_path: Path) -> None:
    shot = tmp_path / "dashboard.png"
    ready, text = screenshot.screenshot(server, shot, '.st-key-leaderboard [data-testid="stDataFrame"]',
                                        timeout=120, size=(1400, 1500))
    print(f"leaderboard rendered after {ready} s; screenshot: {shot}")
    assert ready is not None, text
    assert png_size(shot) == (1400, 1500)
    assert "Leaderboard: cls / tiny · top1 (higher is better)" in text
    assert "Convergence: top1 (higher is better)" in text

    jobs = tmp_path / "jobs.png"  # a shared address opens the same view
    ready, text = screenshot.screenshot(f"{server}/?view=Jobs&state=failed", jobs,
                                        '.st-key-jobs [data-testid="stDataFrame"]', timeout=120)
    assert ready is not None, text
    assert "Errors of 1 failed job(s)" in text
