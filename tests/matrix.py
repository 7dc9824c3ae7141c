"""A tiny cls matrix (3 methods x 1 seed, 3 epochs) for the reliability and backend tests, and the tools to
interrupt it: finding the worker processes of a results directory, and checking a finished matrix. Its
none and ema jobs share one training run (the default), its sema job has its own: two worker processes.

The settings are the smallest that still learn (top-1 moves every epoch, and differs between methods), so a
resume that skipped or repeated any step would change the leaderboard. Every run uses one torch thread per
job, whatever the backend, so CPU results are bit-identical between runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from sema_suite.results import leaderboard
from sema_suite.results.store import JobDir
from sema_suite.running.runs import members

SETTINGS = ["epochs=3", "depths=[1]", "width=8", "image_size=8", "batch_size=64"]
MATRIX = ["run", "--task", "cls", "--method", "none,ema,sema", "--seeds", "0", "--checkpoint-every", "eval",
          *[x for s in SETTINGS for x in ("--set", s)]]  # a checkpoint each epoch: a kill resumes from one


def env() -> dict[str, str]:
    """This process's environment (as it is now: e.g. with Ray's auth settings), one torch thread per job."""
    return {**os.environ, "SUITE_THREADS": "1"}


def suite_cmd(results: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sema_suite.cli", *MATRIX, "--results-dir", str(results), *extra]


def run_matrix(results: Path, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(suite_cmd(results, *extra), capture_output=True, text=True, env=env(), timeout=timeout)


def start_matrix(results: Path, *extra: str) -> subprocess.Popen:
    """The matrix in the background, in its own session (so a test can kill all of it), output to a log."""
    log = (results.parent / f"{results.name}.log").open("a")
    return subprocess.Popen(suite_cmd(results, *extra), stdout=log, stderr=subprocess.STDOUT, env=env(),
                            start_new_session=True)


def jobs(results: Path) -> list[JobDir]:
    return sorted((JobDir(results, p.parent.name) for p in results.glob("*/job.json")), key=lambda j: j.job_id)


def board(results: Path) -> str:
    """The leaderboard without its wall-clock columns (a resumed job's clock differs; its numbers must not)."""
    clock = [c for c in leaderboard.COLUMNS if c.startswith(("reach90_s", "reach99_s", "auc_s"))]
    return leaderboard.to_csv([{**row, **dict.fromkeys(clock)} for row in leaderboard.build(results)])


def worker_processes(results: Path) -> dict[int, tuple[str, int]]:
    """pid -> (job id, parent pid) of every live ``python -m sema_suite.running.worker RESULTS JOB_ID`` under ``results``."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            stat = (proc / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if b"sema_suite.running.worker" in argv and str(results.resolve()).encode() in argv and state != "Z":
            found[int(proc.name)] = (argv[argv.index(b"sema_suite.running.worker") + 2].decode(), int(ppid))
    return found


def training(run: JobDir, pid: int) -> bool:
    """Worker ``pid`` has built its runner and runs iterations (it reports progress from the first one)."""
    status = run.status()
    return status.get("state") == "running" and status.get("pid") == pid and bool(status.get("progress"))


def recorded(run: JobDir) -> int:
    """How many rows a run (a job, or the shared run of none and ema) has recorded for its first job."""
    return len(members(run)[0].metrics())


def assert_complete(results: Path, reference: str) -> None:
    """Every job done, each evaluation recorded exactly once, and the leaderboard of an uninterrupted run."""
    assert len(jobs(results)) == 3
    for job in jobs(results):
        assert job.status()["state"] == "done", (job.job_id, job.status())
        rows = Counter((r["epoch"], r["split"], r["metric"]) for r in job.metrics())
        assert sorted(rows) == [(1.0, "val", "top1"), (2.0, "val", "top1"), (3.0, "test", "top1"),
                                (3.0, "val", "top1")], rows
        assert set(rows.values()) == {1}, rows
        assert all(r["timestamp"].endswith("Z") for r in job.metrics())  # UTC, with its zone
    assert board(results) == reference
