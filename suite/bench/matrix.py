"""``suite bench matrix``: a none + ema + sema matrix with a decay sweep, run shared and not, in one command.

Both ways run through the real ``suite run`` (one after the other, each in a fresh results folder), so the
ratio includes everything a user pays: process start-up, building, training, evaluation, checkpoints. The
result is the ratio of trainings and of wall time (shared / one run per job), and where each way's time
went (the sum of the runs' ``costs`` in status.json, see :mod:`sema_suite.running.costs`).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sema_suite.results.store import read_json
from sema_suite.running.costs import PHASES

COLUMNS = ("startup", "build", *PHASES)


def _run(results: Path, args: list[str]) -> tuple[float, dict[str, float], int]:
    """Run ``suite run ARGS`` into ``results``: wall seconds, the runs' summed costs, the number of runs."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "sema_suite.cli", "run", *args, "--results-dir", str(results)],
                          check=False, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"suite run {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    runs = [p.parent for p in results.glob("*/status.json")  # a shared run's folder, or a job trained on its own
            if (p.parent / "run.json").exists() or read_json(p.parent / "job.json").get("run_id") == p.parent.name]
    totals = dict.fromkeys(COLUMNS, 0.0)
    for folder in runs:
        costs = read_json(folder / "status.json").get("costs") or {}
        for phase in COLUMNS:
            totals[phase] += costs.get(f"{phase}_s", 0.0)
    return wall, totals, len(runs)


def bench_matrix(task: str, decays: list[str], seeds: str, workers: int, settings: list[str]) -> dict[str, float]:
    """Run the matrix both ways; print and return the ratios (shared / separate)."""
    args = ["--task", task, "--method", "none,ema,sema", "--seeds", seeds, "--set", f"decay={','.join(decays)}",
            "--workers", str(workers), *[x for s in settings for x in ("--set", s)]]
    with tempfile.TemporaryDirectory(prefix="sema-bench-matrix-") as tmp:
        separate = _run(Path(tmp) / "separate", [*args, "--no-share"])
        shared = _run(Path(tmp) / "shared", args)
    print(f"suite run {' '.join(args)}")
    print(f"{'':10s} {'runs':>5s} {'wall s':>8s} " + " ".join(f"{c + ' s':>12s}" for c in COLUMNS))
    for label, (wall, totals, runs) in (("separate", separate), ("shared", shared)):
        print(f"{label:10s} {runs:5d} {wall:8.1f} " + " ".join(f"{totals[c]:12.1f}" for c in COLUMNS))
    ratios = {"trainings": shared[2] / separate[2], "wall": shared[0] / separate[0]}
    print(f"ratio (shared / separate): {ratios['trainings']:.2f}x the trainings, {ratios['wall']:.2f}x the wall time")
    return ratios
