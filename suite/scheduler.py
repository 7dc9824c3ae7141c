"""Spread jobs over worker slots (one per GPU, or N CPU workers), one subprocess per job.

Finished jobs are skipped, interrupted or failed ones are started again and resume from their last
checkpoint. The console shows a bar over jobs and each worker's current epoch; each job's full log goes to
``results/<job_id>/job.log``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from suite.environment import environment
from suite.jobs import ResolvedJob
from suite.results import JobDir, write_json
from suite.worker import EXIT_LOCKED


@dataclass
class Outcome:
    job_id: str
    state: str  # done | skipped | failed | busy (running in another process)
    error: str | None = None
    seconds: float | None = None


def worker_slots(gpus: list[str] | None, workers: int) -> list[dict[str, str]]:
    """Environment of each worker slot: a pinned GPU each, or CPU workers sharing the cores evenly."""
    if gpus:
        return [{"CUDA_VISIBLE_DEVICES": gpu} for gpu in gpus]
    if workers <= 1:
        return [{}]  # one worker: whatever device is there (the GPU when there is one)
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    return [{"CUDA_VISIBLE_DEVICES": "", "SUITE_THREADS": threads} for _ in range(workers)]


def prepare(jobs: list[ResolvedJob], results_dir: Path, data_root: Path, download: bool) -> tuple[list[JobDir], list[Outcome]]:
    """Write job.json for jobs to run; report finished ones as skipped."""
    env = environment()
    todo, skipped = [], []
    for job in jobs:
        folder = JobDir(results_dir, job.job_id)
        if folder.status().get("state") == "done":
            skipped.append(Outcome(job.job_id, "skipped"))
            continue
        write_json(folder.job_json, {"job_id": job.job_id, "spec": job.as_dict(), "data_root": str(data_root),
                                     "download": download, "environment": env})
        if not folder.status_json.exists():
            folder.update_status(state="pending")
        todo.append(folder)
    return todo, skipped


class _Progress:
    """A bar over jobs on a terminal; one line per started/finished job otherwise (CI logs)."""

    def __init__(self, total: int) -> None:
        self.bar = None
        if sys.stderr.isatty() and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="job", dynamic_ncols=True)

    def started(self, job: JobDir, slot: int) -> None:
        if not self.bar:
            print(f"[worker {slot}] start {job.job_id}", file=sys.stderr, flush=True)

    def finished(self, outcome: Outcome) -> None:
        if self.bar:
            self.bar.update(1)
        else:
            extra = f": {outcome.error}" if outcome.error else ""
            print(f"  {outcome.state:6s} {outcome.job_id}{extra}", file=sys.stderr, flush=True)

    def running(self, active: dict[int, JobDir]) -> None:
        if not self.bar:
            return
        parts = []
        for slot, job in sorted(active.items()):
            progress = job.status().get("progress") or {}
            where = f"ep {progress.get('epoch')}/{progress.get('max_epochs')}" if progress.get("max_epochs") \
                else f"it {progress.get('iter', 0)}/{progress.get('max_iters', '?')}"
            parts.append(f"w{slot} {job.job_id.rsplit('-', 1)[0]} {where}")
        self.bar.set_postfix_str(" | ".join(parts), refresh=True)

    def close(self) -> None:
        if self.bar:
            self.bar.close()


def _outcome(job: JobDir, returncode: int) -> Outcome:
    if returncode == EXIT_LOCKED:
        return Outcome(job.job_id, "busy", "running in another process")
    status = job.status()
    if returncode == 0 and status.get("state") == "done":
        return Outcome(job.job_id, "done", seconds=status.get("seconds"))
    error = status.get("error") if status.get("state") == "failed" else None
    if error is None:  # killed before it could record anything (OOM killer, signal)
        error = f"worker exited with code {returncode}; see {job.log_file}"
        job.update_status(state="failed", error=error, finished=time.time())
    return Outcome(job.job_id, "failed", error)


def run_jobs(todo: list[JobDir], slots: list[dict[str, str]], poll_s: float = 0.5) -> list[Outcome]:
    queue = deque(todo)
    active: dict[int, tuple[subprocess.Popen, JobDir]] = {}
    outcomes: list[Outcome] = []
    progress = _Progress(len(todo))
    try:
        while queue or active:
            for slot in range(len(slots)):
                if slot not in active and queue:
                    job = queue.popleft()
                    log = job.log_file.open("a")
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "suite.worker", str(job.path.parent), job.job_id],
                        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **slots[slot]})
                    log.close()
                    active[slot] = (proc, job)
                    progress.started(job, slot)
            for slot, (proc, job) in list(active.items()):
                if proc.poll() is not None:
                    del active[slot]
                    outcome = _outcome(job, proc.returncode)
                    outcomes.append(outcome)
                    progress.finished(outcome)
            progress.running({slot: job for slot, (_, job) in active.items()})
            time.sleep(poll_s)
    finally:
        for proc, _ in active.values():  # Ctrl-C or an error here: stop the workers; they record "failed"
            proc.terminate()
        for proc, _ in active.values():
            proc.wait()
        progress.close()
    return outcomes
