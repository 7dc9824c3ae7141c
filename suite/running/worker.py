"""Run one training run in its own process: ``python -m sema_suite.running.worker RESULTS_DIR RUN_ID``.

A run is one job, or a shared run of several (:mod:`sema_suite.running.runs`); its id is the job's id, or the shared
run's folder. One process per run keeps a crash, a NaN or a leak inside that run, frees its memory when it
ends, and lets the scheduler pin it to one GPU through ``CUDA_VISIBLE_DEVICES`` before torch is imported.
Every backend (local, Ray, Slurm) runs this same entry point on the same folders. A finished job given as
the run is measured instead, when its job.json asks for an analysis (``suite analyze``).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from sema_suite.analysis.measure import pending, requested, run_analysis
from sema_suite.errors import SuiteError
from sema_suite.results.store import JobDir, read_json, write_json
from sema_suite.running.jobs import JobSpec, ResolvedJob
from sema_suite.running.runs import Run, members

EXIT_LOCKED = 3  # another process is running this job
LAUNCHED = "SUITE_LAUNCHED"  # when the scheduler started this process (time.time()): start-up is measured from it


def load_job(doc: dict[str, Any]) -> ResolvedJob:
    spec = doc["spec"]
    return JobSpec(spec["task"], spec["preset"], spec["method"], int(spec["seed"]),
                   tuple(sorted(spec["overrides"].items())), int(spec.get("world_size", 1))).resolve()


def build_runner(run: Run | ResolvedJob, job: JobDir, data_root: Path, download: bool,
                 analysis: dict[str, Any] | None = None, log_to: list[str] | None = None, single_process: bool = False,
                 checkpoint_every: dict[str, float] | None = None):
    """The mmengine Runner for a run (or one job) whose folder is ``job``, with the suite's hooks and
    checkpoint loader registered (and the analysis hook when ``analysis`` measures during training, the
    trackers of ``log_to``, and the periodic checkpoints of ``checkpoint_every``)."""
    from mmengine.runner import Runner

    from sema_suite.running.config import build_config

    run = run if isinstance(run, Run) else Run((run,))
    ctx = run.lead.context(data_root, job.work_dir, download=download)
    run.lead.task.check_data(run.lead.preset, ctx)
    return Runner.from_cfg(build_config(run, ctx, job.path.parent, analysis, log_to, single_process,
                                     checkpoint_every))


@contextlib.contextmanager
def _one_tracker_run(runner) -> Iterator[None]:
    """Keep the visualizer open from training through the test pass, and close it once at the end.

    mmengine's LoggerHook closes the visualizer when ``train()`` ends; the test pass would then open a second,
    untagged run in MLflow or W&B (``suite run --log-to``). One job is one run in every tracker.
    """
    visualizer = runner.visualizer
    close = visualizer.close
    visualizer.close = lambda: None
    try:
        yield
    finally:
        visualizer.close = close
        close()


def _hook_counts(runner, job_id: str) -> dict[str, Any] | None:
    from sema_suite.method.hooks import MethodHook

    hook = next((h for h in getattr(runner, "hooks", ()) if isinstance(h, MethodHook)), None)
    return hook.counts(job_id) if hook and job_id in hook.names else None


def _costs(runner, started: float, built: float, member: str | None = None) -> dict[str, float] | None:
    """The run's cost breakdown (:mod:`sema_suite.running.costs`), or one member's share of it."""
    from sema_suite.running.costs import CostHook

    hook = next((h for h in getattr(runner, "hooks", ()) if isinstance(h, CostHook)), None)
    if hook is None:
        return None
    launched = float(os.environ.get(LAUNCHED) or started)
    begun = hook.train_started or time.time()
    costs = hook.ledger.summary(member, startup=built - launched, build=begun - built)
    return {**costs, "wall_s": round(time.time() - launched, 3)}


def _terminated(signum, frame) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signum}")


def _stop_with_parent() -> None:
    """Get SIGTERM when the process that started this worker dies (Linux), and stop now if it already has.

    A Ray task or Slurm step killed by node trouble or preemption, or a scheduler killed with SIGKILL,
    cannot stop its worker itself; left running, the worker would hold the job's lock and race the retry.
    """
    parent = os.environ.get("SUITE_PARENT_PID")
    prctl = getattr(ctypes.CDLL(None), "prctl", None)
    if not parent or prctl is None:
        return
    prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if "LOCAL_RANK" in os.environ:  # under torchrun, which is the parent: watch the scheduler itself
        threading.Thread(target=_watch, args=(int(parent),), daemon=True).start()
    elif os.getppid() != int(parent):
        sys.exit("the process that started this worker is gone")


def _watch(pid: int, every_s: float = 2.0) -> None:
    """Stop this process (as the scheduler would, with SIGTERM) once process ``pid`` is gone."""
    while True:
        time.sleep(every_s)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os.kill(os.getpid(), signal.SIGTERM)
            return


RANK = int(os.environ.get("RANK", "0"))  # this process's place in a multi-process run (torchrun sets it)


@contextlib.contextmanager
def process_group() -> Iterator[None]:
    """Join the run's process group when it has several (torchrun's env), and leave it after training.

    The worker joins itself -- NCCL with one GPU per process, gloo on CPUs -- because mmengine's launcher would
    call ``torch.cuda.set_device`` on machines without one; mmengine then finds the group joined. Leaving it
    lets rank 0 measure the job afterwards (``--analyze``) as one process.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        yield
        return
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def _train(runner) -> None:
    with _one_tracker_run(runner):
        runner.train()
        if runner.cfg.get("test_dataloader"):
            runner.test()


def _load_run(jobs: list[JobDir]) -> tuple[Run, list[dict[str, Any]]]:
    """The run of ``jobs`` (their job.json), and those documents.

    Each job is resolved again with the code installed here; when that is not what was planned (a preset that
    changed between planning and this start: a queued cluster job, a retry after a code update), the run
    refuses, naming both ids, rather than train something else under the planned job's name.
    """
    docs = [read_json(job.job_json) for job in jobs]
    resolved = [load_job(doc) for doc in docs]
    for job, now in zip(jobs, resolved):
        if now.job_id != job.job_id:
            raise SuiteError(f"job {job.job_id} was planned by other code: here its spec resolves to "
                             f"{now.job_id} (its preset changed since). Plan it again with `suite run` (which "
                             f"trains {now.job_id}), or run it with the code that planned it")
    return Run(tuple(resolved)), docs


def _other_rank(unit: JobDir, jobs: list[JobDir]) -> int:
    """Ranks 1.. of a multi-process run train and evaluate with rank 0, which keeps every record."""
    _threads()
    run, docs = _load_run(jobs)
    with process_group():
        _train(build_runner(run, unit, Path(docs[0]["data_root"]), docs[0].get("download", False),
                            checkpoint_every=docs[0].get("checkpoint_every")))
    return 0


def lock_jobs(folders: list[JobDir]) -> list[IO] | None:
    """Take the lock of each folder (a run's own and each of its jobs'), held until this process ends; None, with
    every lock released, when another process holds one: a job trains in one process at a time, whichever matrix
    or shared run asks for it."""
    held = []
    for folder in dict.fromkeys(folder.path for folder in folders):
        handle = open(folder / ".lock", "w")  # noqa: SIM115  (held for the whole process)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            for other in held:
                other.close()
            return None
        held.append(handle)
    return held


def locked_elsewhere(folder: JobDir) -> bool:
    """Whether another process holds ``folder``'s lock now (is training or measuring that job)."""
    held = lock_jobs([folder]) if (folder.path / ".lock").exists() else []
    for handle in held or ():
        handle.close()
    return held is None


def run_job(results_dir: Path, run_id: str) -> int:
    signal.signal(signal.SIGTERM, _terminated)  # the scheduler stops workers with SIGTERM: record it
    _stop_with_parent()
    unit = JobDir(results_dir, run_id)
    if RANK:
        return _other_rank(unit, members(unit))
    jobs = members(unit)
    locks = lock_jobs([unit, *jobs])
    if locks is None:
        print(f"run {run_id} (or one of its jobs) is running in another process", file=sys.stderr)
        return EXIT_LOCKED
    if all(job.status().get("state") == "done" for job in jobs):  # `suite analyze`, or a retried task whose run
        for job in jobs:                                             # finished meanwhile
            doc = read_json(job.job_json)
            if (settings := requested(doc)) and pending(job, doc, settings):
                _threads()
                run_analysis(job, settings)
            else:
                print(f"job {job.job_id} is already done", file=sys.stderr)
        if unit not in jobs:
            unit.update_status(state="done")
        return 0

    _threads()
    from sema_suite.running.environment import device_info

    started = time.time()
    if riders := [job.job_id for job in jobs if job.status().get("state") == "done"]:  # trained meanwhile elsewhere
        print(f"{', '.join(riders)} finished in another process: this run trains the trajectory again for its other "
              "jobs and leaves their rows as they are", file=sys.stderr)
    folders = [unit, *(job for job in jobs if job.path != unit.path and job.job_id not in riders)]  # run's, members'
    attempts = unit.status().get("attempts", 0) + 1
    unit.repair_checkpoint_marker()
    resumed_from = unit.last_checkpoint()
    for folder in folders:
        folder.update_status(state="running", pid=os.getpid(), started=started, attempts=attempts, error=None,
                             progress=None, resumed_from=str(resumed_from) if resumed_from else None,
                             run_id=run_id)
    runner = None
    built = time.time()
    try:
        run, docs = _load_run(jobs)
        device = device_info()
        for job, doc in zip(jobs, docs):
            if job.job_id not in riders:  # this process trains it: it is the one that says where (run, device)
                write_json(job.job_json, {**doc, "run_id": run_id, "environment": {**doc["environment"], "device": device}})
        doc = docs[0]
        import mmengine.runner  # noqa: F401  (imports count as start-up, the runner as building)

        import sema_suite.running.config  # noqa: F401  (and the hooks it registers)
        built = time.time()
        with process_group():
            runner = build_runner(run, unit, Path(doc["data_root"]), doc.get("download", False),
                                  doc.get("analysis"), doc.get("log_to"), checkpoint_every=doc.get("checkpoint_every"))
            _train(runner)
    except BaseException as err:  # noqa: BLE001  (record every failure, including Ctrl-C, then re-raise)
        traceback.print_exc()
        for folder in folders:
            folder.update_status(state="failed", error=f"{type(err).__name__}: {err}", finished=time.time(),
                                 averaging=_hook_counts(runner, folder.job_id))
        if isinstance(err, KeyboardInterrupt):
            raise
        return 1
    shared = len(jobs) > 1
    for folder in reversed(folders):  # the members first: a run is done once all its jobs are
        folder.update_status(state="done", finished=time.time(), seconds=round(time.time() - started, 2),
                             averaging=_hook_counts(runner, folder.job_id),
                             costs=_costs(runner, started, built, folder.job_id if shared and folder in jobs else None),
                             **({"run_members": [job.job_id for job in jobs]} if shared else {}))
    for job, doc in zip(jobs, docs):
        if (settings := requested(doc)) and pending(job, doc, settings, pairs=False):  # suite run --analyze
            run_analysis(job, settings, pairs=False)  # the partners may still be training: cmd_run pairs them after
    return 0


def _threads() -> None:
    if threads := os.environ.get("SUITE_THREADS"):
        import torch

        torch.set_num_threads(int(threads))


if __name__ == "__main__":
    sys.exit(run_job(Path(sys.argv[1]), sys.argv[2]))
