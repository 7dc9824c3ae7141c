"""Spread runs over worker slots (one per GPU, or N CPU workers), one subprocess per run: the local backend.

Jobs are grouped into training runs first (:mod:`sema_suite.running.runs`: one run serves ``none`` and every ``ema``
job of a trajectory). Finished jobs are skipped, interrupted or failed runs are started again and resume
from their last checkpoint. The console shows a bar over jobs and each worker's current epoch; each job's full log goes to
``results/<job_id>/job.log``. The other backends (:mod:`sema_suite.running.backends`) start the same worker process
through :func:`run_worker` and report through the same :class:`Progress` and :func:`job_outcome`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from sema_suite.results.store import JobDir, read_json, write_json
from sema_suite.running.environment import environment
from sema_suite.running.jobs import ResolvedJob
from sema_suite.running.runs import Run, members, run_json, write_run
from sema_suite.running.worker import EXIT_LOCKED, LAUNCHED, locked_elsewhere


@dataclass
class Outcome:
    job_id: str
    state: str  # done | skipped | failed
    error: str | None = None
    seconds: float | None = None


def worker_slots(gpus: list[str] | None, workers: int, jobs_per_gpu: int = 1,
                 gpus_per_job: int = 1) -> list[dict[str, str]]:
    """Environment of each worker slot: pinned GPUs (``gpus_per_job`` of them per slot, or ``jobs_per_gpu`` slots
    per GPU, sharing its memory and the host's cores), or CPU workers sharing the cores evenly (a job on several
    processes without GPUs splits its worker's share between them)."""
    if gpus:
        groups = [",".join(gpus[i:i + gpus_per_job]) for i in range(0, len(gpus), gpus_per_job)]
        cpus = str(max(1, (os.cpu_count() or 1) // (len(groups) * jobs_per_gpu * gpus_per_job)))  # per process
        return [{"CUDA_VISIBLE_DEVICES": group, "SUITE_CPUS": cpus,
                 **({"SUITE_THREADS": cpus} if jobs_per_gpu > 1 else {})}
                for group in groups for _ in range(jobs_per_gpu)]
    if workers <= 1:
        return [{}]  # one worker: whatever devices are there (torchrun gives each process its own GPU)
    share = int(os.environ.get("SUITE_THREADS") or max(1, (os.cpu_count() or 1) // workers))
    threads = str(max(1, share // gpus_per_job))
    return [{"CUDA_VISIBLE_DEVICES": "", "SUITE_THREADS": threads} for _ in range(workers)]


def pending(jobs: list[ResolvedJob], results_dir: Path) -> tuple[list[ResolvedJob], list[Outcome]]:
    """The jobs still to run, and the finished ones as skipped outcomes."""
    done = [job for job in jobs if JobDir(results_dir, job.job_id).status().get("state") == "done"]
    return [job for job in jobs if job not in done], [Outcome(job.job_id, "skipped") for job in done]


def prepare(runs: list[Run], results_dir: Path, data_root: Path, download: bool,
            analysis: dict | None = None, log_to: list[str] | None = None,
            checkpoint_every: dict[str, float] | None = None) -> list[JobDir]:
    """Write each run's jobs' job.json (and a shared run's run.json); returns the folders of the runs to start
    (a job's own, or a shared run's).

    The data root is stored absolute: a worker on a cluster node runs in another directory. ``analysis``:
    the flatness settings to measure each job with when it finishes (``suite run --analyze``); ``log_to``: the
    trackers each job also logs to (``suite run --log-to``); ``checkpoint_every``: how often a job checkpoints
    (``suite run --checkpoint-every``; :func:`sema_suite.running.resumable.make_resumable`), None for the default.
    """
    doc = {"data_root": str(Path(data_root).expanduser().resolve()), "download": download,
           "environment": environment(), **({"analysis": analysis} if analysis else {}),
           **({"log_to": log_to} if log_to else {}),
           **({"checkpoint_every": checkpoint_every} if checkpoint_every else {})}
    units = []
    for run in runs:
        doc["world_size"] = run.lead.spec.world_size  # processes the worker starts (torchrun when > 1)
        for job in run.members:
            folder = JobDir(results_dir, job.job_id)
            if locked_elsewhere(folder):  # another command's worker trains it and says where: it waits for that one
                continue
            write_json(folder.job_json, {"job_id": job.job_id, "run_id": run.run_id, "spec": job.as_dict(), **doc})
            if not folder.status_json.exists():
                folder.update_status(state="pending")
        unit = write_run(results_dir, run, doc) if run.shared else JobDir(results_dir, run.run_id)
        if not unit.status_json.exists():
            unit.update_status(state="pending")
        units.append(unit)
    return units


def job_outcomes(outcomes: list[Outcome], results_dir: Path) -> list[Outcome]:
    """The outcome of each job of the runs whose ``outcomes`` these are (a shared run's, for each member)."""
    found = []
    for outcome in outcomes:
        for job in members(JobDir(results_dir, outcome.job_id)):
            if job.job_id == outcome.job_id:
                found.append(outcome)
            elif outcome.state == "done" and job.status().get("state") != "done":
                found.append(Outcome(job.job_id, "failed", f"its run {outcome.job_id} ended without it"))
            else:
                found.append(Outcome(job.job_id, outcome.state, outcome.error, job.status().get("seconds")))
    return found


class Progress:
    """A bar over jobs on a terminal; one line per started/finished job otherwise (CI logs)."""

    def __init__(self, total: int) -> None:
        self.bar = None
        self._waited: set[str] = set()
        if sys.stderr.isatty() and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="job", dynamic_ncols=True)

    def started(self, job: JobDir, where: str) -> None:
        if not self.bar:
            print(f"[{where}] start {job.job_id}", file=sys.stderr, flush=True)

    def finished(self, outcome: Outcome) -> None:
        if self.bar:
            self.bar.update(1)
        else:
            extra = f": {outcome.error}" if outcome.error else ""
            print(f"  {outcome.state:6s} {outcome.job_id}{extra}", file=sys.stderr, flush=True)

    def waiting(self, job: JobDir) -> None:
        """A unit whose job another process is training: said once, then it waits its turn."""
        if job.job_id not in self._waited:
            self._waited.add(job.job_id)
            print(f"  wait   {job.job_id}: another process is training it (or one of its jobs); this command "
                  "waits for it", file=sys.stderr, flush=True)

    def running(self, active: dict[str, JobDir]) -> None:
        """``active``: where each running job runs (a worker slot, a cluster) -> the job."""
        if not self.bar:
            return
        parts = []
        for slot, job in sorted(active.items()):
            progress = job.status().get("progress") or {}
            where = f"ep {progress.get('epoch')}/{progress.get('max_epochs')}" if progress.get("max_epochs") \
                else f"it {progress.get('iter', 0)}/{progress.get('max_iters', '?')}"
            parts.append(f"{slot} {job.job_id.rsplit('-', 1)[0]} {where}")
        self.bar.set_postfix_str(" | ".join(parts), refresh=True)

    def close(self) -> None:
        if self.bar:
            self.bar.close()


def job_outcome(job: JobDir, returncode: int | None, lost: str | None = None) -> Outcome:
    """What a finished worker (exit code) or a job a backend gave up on (``lost``: why) leaves behind."""
    status = job.status()
    if returncode in (0, None) and status.get("state") == "done":
        return Outcome(job.job_id, "done", seconds=status.get("seconds"))
    if status.get("state") == "done":  # killed while `suite analyze` measured it: the training results stand
        error = lost or f"worker exited with code {returncode} while measuring it; see {job.log_file}"
        for key in ("analysis", "interpolation"):
            if (status.get(key) or {}).get("state") == "running":
                job.update_status(**{key: {**status[key], "state": "failed", "error": error}})
        return Outcome(job.job_id, "failed", error)
    error = lost or (status.get("error") if status.get("state") == "failed" else None)
    if lost or error is None:  # killed before it could record anything (OOM killer, signal, lost node)
        error = error or f"worker exited with code {returncode}; see {job.log_file}"
        job.update_status(state="failed", error=error, finished=time.time())
    return Outcome(job.job_id, "failed", error)


def world_size(unit: JobDir) -> int:
    """How many processes a run trains on (its job.json, or a shared run's run.json, says); one for a finished
    job, which the worker only measures (``suite analyze``)."""
    doc = run_json(unit) or unit.job_json
    if not doc.exists() or all(job.status().get("state") == "done" for job in members(unit)):
        return 1
    return int(read_json(doc).get("world_size", 1))


def start_worker(job: JobDir, env: dict[str, str]) -> subprocess.Popen:
    """``python -m sema_suite.running.worker RESULTS_DIR RUN_ID``, its output appended to the run's log; a run on N
    processes starts N workers through torchrun (``torch.distributed.run --standalone``: a free port on this
    node), which stops them all if one fails.

    ``SUITE_PARENT_PID`` makes the worker stop when this process dies (see :mod:`sema_suite.running.worker`), so a killed
    scheduler, Ray task or Slurm step never leaves a worker running on, holding the job's lock.
    """
    worker = ["-m", "sema_suite.running.worker", str(job.path.parent.resolve()), job.job_id]
    processes = world_size(job)
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"] if processes > 1 else []
    with job.log_file.open("a") as log:
        return subprocess.Popen(
            [sys.executable, *launcher, *worker], stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, **env, "SUITE_PARENT_PID": str(os.getpid()), LAUNCHED: repr(time.time())})


def run_worker(job: JobDir, env: dict[str, str], stop_wait_s: float = 60.0, busy_wait_s: float = 5.0) -> int:
    """Run a job's worker to its end, for backends whose tasks each run one job.

    If this process is interrupted (preempted, cancelled: an exception raised here by a signal handler), the
    worker is stopped and waited for (up to ``stop_wait_s``) before the exception goes on, so the job's lock is
    free for whatever runs the job next. While another process holds the lock of the job or of one of its
    members (the worker of an attempt this one replaces, still recording that it was stopped; another matrix
    training the same job), the worker is tried again every ``busy_wait_s``, as the local backend does: a job
    trains once, and this task then finds it done.
    """
    while True:
        proc = start_worker(job, env)
        try:
            returncode = proc.wait()
        finally:
            if proc.poll() is None:
                proc.terminate()  # the worker records that it was stopped, keeping its last checkpoint
                try:
                    proc.wait(timeout=stop_wait_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if returncode != EXIT_LOCKED:
            return returncode
        time.sleep(busy_wait_s)


def run_jobs(todo: list[JobDir], slots: list[dict[str, str]], poll_s: float = 0.5,
             busy_wait_s: float = 5.0) -> list[Outcome]:
    """Run every unit of ``todo`` on the worker ``slots``. A unit whose job another process is training (another
    `suite run` on the same folder) waits for it and is tried again every ``busy_wait_s``: the job trains once,
    and this command then finds it done."""
    queue = deque(todo)
    active: dict[int, tuple[subprocess.Popen, JobDir]] = {}
    waiting: list[tuple[float, JobDir]] = []  # (when to try again, unit)
    outcomes: list[Outcome] = []
    progress = Progress(len(todo))
    try:
        while queue or active or waiting:
            now = time.monotonic()
            queue.extend(job for due, job in waiting if due <= now)
            waiting = [(due, job) for due, job in waiting if due > now]
            for slot in range(len(slots)):
                if slot not in active and queue:
                    job = queue.popleft()
                    active[slot] = (start_worker(job, slots[slot]), job)
                    progress.started(job, f"worker {slot}")
            for slot, (proc, job) in list(active.items()):
                if proc.poll() is not None:
                    del active[slot]
                    if proc.returncode == EXIT_LOCKED:
                        progress.waiting(job)
                        waiting.append((time.monotonic() + busy_wait_s, job))
                        continue
                    outcome = job_outcome(job, proc.returncode)
                    outcomes.append(outcome)
                    progress.finished(outcome)
            progress.running({f"w{slot}": job for slot, (_, job) in active.items()})
            time.sleep(poll_s)
    finally:
        for proc, _ in active.values():  # Ctrl-C or an error here: stop the workers; they record "failed"
            proc.terminate()
        for proc, _ in active.values():
            proc.wait()
        progress.close()
    return outcomes
