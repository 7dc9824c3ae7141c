"""Aggregation over seeds, higher- and lower-is-better, and corrupt input, on files from the real writer."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from suite import leaderboard
from suite.results import JobDir


def write_job(results: Path, method: str, seed: int, values: list[float], higher: bool = True,
              metric: str = "top1", state: str = "done") -> JobDir:
    job = JobDir(results, f"t-{metric}-{method}-s{seed}")
    job.append_metrics([
        {"job_id": job.job_id, "task": "t", "preset": "tiny", "dataset": "d", "model": "m", "method": method,
         "seed": seed, "epoch": epoch, "iter": 10 * epoch, "split": "val", "metric": metric, "value": v,
         "higher_is_better": higher, "wall_time_s": epoch, "timestamp": "2026-01-01T00:00:00"}
        for epoch, v in enumerate(values, start=1)
    ])
    job.update_status(state=state)
    return job


def rows_by_method(results: Path) -> dict[str, dict]:
    return {r["method"]: r for r in leaderboard.build(results)}


def test_higher_is_better(tmp_path: Path) -> None:
    write_job(tmp_path, "none", 0, [50, 60, 70])
    write_job(tmp_path, "none", 1, [52, 64, 72])
    write_job(tmp_path, "sema", 0, [55, 72, 74])
    write_job(tmp_path, "sema", 1, [61, 70, 76])
    write_job(tmp_path, "ema", 0, [10, 20, 90], state="failed")  # only finished jobs count
    rows = rows_by_method(tmp_path)
    assert set(rows) == {"none", "sema"}
    none, sema = rows["none"], rows["sema"]
    assert (none["seeds"], none["final_mean"], none["final_std"]) == (2, 71, pytest.approx(1.41421356))
    assert sema["final_mean"] == 75 and sema["best_mean"] == 75
    assert sema["delta_vs_none"] == 4 and sema["delta_vs_none_pct"] == pytest.approx(400 / 71)
    assert sema["epoch_reach_none_final"] == 2  # mean curve 58, 71, 75 reaches none's final 71 at epoch 2
    assert none["epoch_reach_none_final"] == 3


def test_lower_is_better(tmp_path: Path) -> None:
    write_job(tmp_path, "none", 0, [9, 5, 4, 6], higher=False, metric="mae")
    write_job(tmp_path, "ema", 0, [8, 6, 5, 5], higher=False, metric="mae")
    write_job(tmp_path, "sema", 0, [7, 4, 3, 3], higher=False, metric="mae")
    rows = rows_by_method(tmp_path)
    assert rows["none"]["best_mean"] == 4  # the minimum, not the maximum
    assert rows["none"]["epoch_reach_none_final"] == 2  # first epoch at or below 6
    assert rows["ema"]["delta_vs_none"] == -1 and rows["ema"]["epoch_reach_none_final"] == 2
    assert rows["sema"]["epoch_reach_none_final"] == 2 and rows["sema"]["delta_vs_none"] == -3
    assert [r["method"] for r in leaderboard.build(tmp_path)] == ["none", "ema", "sema"]


def test_never_reaching_and_no_baseline(tmp_path: Path) -> None:
    write_job(tmp_path, "none", 0, [50, 80])
    write_job(tmp_path, "ema", 0, [40, 70])
    write_job(tmp_path, "sema", 0, [1, 2], metric="other")
    rows = {(r["metric"], r["method"]): r for r in leaderboard.build(tmp_path)}
    assert rows[("top1", "ema")]["epoch_reach_none_final"] is None
    assert rows[("other", "sema")]["delta_vs_none"] is None


def test_cli_writes_csv_and_refuses_corrupt_input(tmp_path: Path) -> None:
    results, out = tmp_path / "results", tmp_path / "leaderboard.csv"
    write_job(results, "none", 0, [50, 60])
    job = write_job(results, "sema", 0, [55, 66])
    cli = [sys.executable, "-m", "suite.cli", "leaderboard", "--results-dir", str(results), "--out", str(out)]
    assert subprocess.run(cli, capture_output=True).returncode == 0
    with out.open() as handle:
        table = list(csv.DictReader(handle))
    assert tuple(table[0]) == leaderboard.COLUMNS
    assert [(r["method"], r["final_mean"], r["delta_vs_none"]) for r in table] == [("none", "60", "0"), ("sema", "66", "6")]

    before = out.read_text()
    with job.metrics_csv.open("a") as handle:
        handle.write("half a row,\n")
    result = subprocess.run(cli, capture_output=True, text=True)
    assert result.returncode == 2
    assert f"corrupt results file {job.metrics_csv}" in result.stderr and "re-run" in result.stderr
    assert out.read_text() == before  # nothing already written is lost


def test_results_files_are_readable_by_others(tmp_path: Path) -> None:
    """A shared results directory (cluster, Docker dashboard) gets the usual umask modes, not owner-only ones."""
    umask = os.umask(0o022)
    os.umask(umask)
    job = write_job(tmp_path, "none", 0, [1.0])
    for path in (job.metrics_csv, job.status_json):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path
