"""Workers killed at random points of a matrix, which is then re-run: the same results as if nothing happened."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from sema_suite.results.store import JobDir

from matrix import assert_complete, jobs, recorded, run_matrix, start_matrix, training, worker_processes

TRIALS = 2


def kill_at_random_points(results: Path, rng: random.Random) -> list[str]:
    """Run the matrix (2 workers) and SIGKILL each worker at a point drawn for it: during start-up, or a
    random moment after its job has recorded 0, 1 or 2 of its 3 evaluations (training, checkpointing,
    evaluating). Returns what was killed where."""
    proc = start_matrix(results, "--workers", "2")
    plans: dict[int, tuple] = {}  # pid -> (job id, rows to wait for or None, delay, when the wait ended)
    killed = []
    while proc.poll() is None:
        for pid, (job_id, _) in worker_processes(results).items():
            if pid not in plans:
                plans[pid] = (job_id, rng.choice([None, 0, 1, 2]), rng.uniform(0.0, 0.4), None)
            job_id, rows, delay, since = plans[pid]
            run = JobDir(results, job_id)
            if since is None and (rows is None or (training(run, pid) and recorded(run) >= rows)):
                since = time.monotonic() + (rng.uniform(0.0, 3.0) if rows is None else 0.0)
                plans[pid] = (job_id, rows, delay, since)
            if since is not None and time.monotonic() >= since + delay:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                killed.append(f"{job_id} at {'start-up' if rows is None else f'{rows} rows'} +{delay:.2f}s")
                plans[pid] = (job_id, rows, delay, float("inf"))
        time.sleep(0.02)
    return killed


@pytest.mark.slow
@pytest.mark.xdist_group("matrix")  # one worker runs the reference matrix (conftest.py) for all
def test_random_kills_then_rerun_give_the_uninterrupted_results(tmp_path: Path, reference: str) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    results = tmp_path / "results"
    killed = [k for _ in range(TRIALS) for k in kill_at_random_points(results, rng)]
    assert killed, f"seed {seed}: no worker was killed"

    # a kill while mmengine rewrites work/last_checkpoint leaves it empty: the re-run must still resume
    torn = next((j for j in jobs(results) if j.last_checkpoint() and j.status()["state"] != "done"), None)
    if torn:
        (torn.work_dir / "last_checkpoint").write_text("")

    final = run_matrix(results, "--workers", "2")
    assert final.returncode == 0, f"seed {seed}, killed {killed}:\n{final.stderr}"
    assert_complete(results, reference)
    if torn:
        assert torn.status()["resumed_from"], torn.status()
