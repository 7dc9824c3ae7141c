"""``suite bench dashboard``: how long each dashboard view takes to settle over N synthetic finished jobs.

Each size gets a fresh results folder from :func:`sema_suite.bench.synthetic.make_matrix` (the files a real run
writes, long-tier sizes). Every view is rendered through Streamlit's AppTest, in this process: *cold* right
after the dashboard's caches are cleared (every file parsed, the leaderboard computed), *warm* as the same
session's next rerun with nothing changed (what a widget click or a live refresh costs), *changed* after one
job's status.json is rewritten. Each is also given as a ratio to reading every job's raw files once with the
suite's own readers, measured here too, so the numbers carry over from a loaded machine to an idle one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sema_suite.bench.synthetic import make_matrix
from sema_suite.results.store import read_json, read_metrics, write_json

if TYPE_CHECKING:
    from streamlit.testing.v1 import AppTest

VIEWS = ("Task", "Across tasks", "Flatness", "Jobs", "Samples")  # the dashboard's tabs
WARM_RERUNS = 3
TIMEOUT_S = 600.0
# warns ("missing ScriptRunContext") each time an AppTest starts outside a server: true, and noise in the table
BARE_MODE_LOGGER = "streamlit.runtime.scriptrunner_utils.script_run_context"


def read_once(results: Path) -> float:
    """Seconds to parse every job's job.json, status.json and metrics.csv once: the floor a view is compared to."""
    started = time.perf_counter()
    for folder in sorted(p for p in results.iterdir() if p.is_dir()):
        read_json(folder / "job.json")
        read_json(folder / "status.json")
        read_metrics(folder / "metrics.csv")
    return time.perf_counter() - started


def _errors_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


@contextlib.contextmanager
def _app_for(results: Path) -> Iterator[None]:
    """Point the app at ``results`` (it reads ``SUITE_RESULTS_DIR``) with Streamlit's bare-mode warnings off, and
    restore both afterwards."""
    before = os.environ.get("SUITE_RESULTS_DIR")
    logger = logging.getLogger(BARE_MODE_LOGGER)
    os.environ["SUITE_RESULTS_DIR"] = str(results)
    logger.addFilter(_errors_only)  # a filter, not a level: Streamlit sets its loggers' levels again as it loads
    try:
        yield
    finally:
        logger.removeFilter(_errors_only)
        if before is None:
            os.environ.pop("SUITE_RESULTS_DIR", None)
        else:
            os.environ["SUITE_RESULTS_DIR"] = before


def _timed_run(app: AppTest) -> float:
    started = time.perf_counter()
    app.run(timeout=TIMEOUT_S)
    elapsed = time.perf_counter() - started
    if app.exception:
        raise RuntimeError(f"the dashboard raised: {[e.value for e in app.exception]}")
    return elapsed


def _cold_app(view: str) -> AppTest:
    """A new session of the app on ``view``, with the dashboard's caches emptied: its first run parses every file."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    st.cache_resource.clear()  # the results store and the adapters' primary metrics (the app's only caches)
    app = AppTest.from_file(str(Path(importlib.util.find_spec("sema_dashboard").origin).parent / "app.py"),
                            default_timeout=TIMEOUT_S)
    app.query_params["view"] = view
    return app


def time_view(results: Path, view: str) -> dict[str, float]:
    """Seconds for ``view`` to render cold, warm (median of the reruns) and after one job's file changed."""
    with _app_for(results):
        app = _cold_app(view)
        cold = _timed_run(app)
        warm = statistics.median(_timed_run(app) for _ in range(WARM_RERUNS))
        status = next(p for p in sorted(results.iterdir()) if p.is_dir()) / "status.json"
        write_json(status, read_json(status))  # the same content, a new modification time
        changed = _timed_run(app)
    return {"cold": cold, "warm": warm, "changed": changed}


def bench_dashboard(sizes: list[int], epochs: int = 100) -> dict[int, dict[str, dict[str, float]]]:
    """Time every view at each number of jobs; print one table and return seconds per size, view and case
    (``read`` holds the reference)."""
    out: dict[int, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="sema-bench-dashboard-") as tmp:
        with _app_for(make_matrix(Path(tmp) / "warm-up", 20, epochs=2)):
            for view in VIEWS:  # import what each view imports, so cold times measure the caches, not imports
                _timed_run(_cold_app(view))
        for n in sizes:
            results = make_matrix(Path(tmp) / f"jobs-{n}", n, epochs)
            reference = min(read_once(results) for _ in range(2))
            out[n] = {"read": {"once": reference}, **{view: time_view(results, view) for view in VIEWS}}
    print(report(out, epochs))
    return out


def report(times: dict[int, dict[str, dict[str, float]]], epochs: int) -> str:
    """A Markdown table: seconds per view and case, and each as a multiple of reading the raw files once."""
    lines = [f"synthetic finished jobs, {epochs} evaluations each; read: every job's job.json, status.json and "
             "metrics.csv parsed once", "",
             "| jobs | view | cold s | warm s | changed s | read s | cold / read | warm / read | changed / read |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for n, views in times.items():
        read = views["read"]["once"]
        for view in VIEWS:
            t = views[view]
            lines.append(f"| {n:,} | {view} | {t['cold']:.2f} | {t['warm']:.2f} | {t['changed']:.2f} | {read:.2f} | "
                         f"{t['cold'] / read:.1f}x | {t['warm'] / read:.2f}x | {t['changed'] / read:.1f}x |")
    return "\n".join(lines)
