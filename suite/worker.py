"""Run one job in its own process: ``python -m sema_suite.worker RESULTS_DIR JOB_ID``.

One process per job keeps a crash, a NaN or a leak inside that job, frees its memory when it ends, and
lets the scheduler pin it to one GPU through ``CUDA_VISIBLE_DEVICES`` before torch is imported. Every
backend (local, Ray, Slurm) runs this same entry point on the same job folders.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sema_suite.analysis import pending, requested, run_analysis
from sema_suite.jobs import JobSpec, ResolvedJob
from sema_suite.results import JobDir, read_json, write_json

EXIT_LOCKED = 3  # another process is running this job


def load_job(doc: dict[str, Any]) -> ResolvedJob:
    spec = doc["spec"]
    return JobSpec(spec["task"], spec["preset"], spec["method"], int(spec["seed"]),
                   tuple(sorted(spec["overrides"].items()))).resolve()


def build_runner(resolved: ResolvedJob, job: JobDir, data_root: Path, download: bool,
                 analysis: dict[str, Any] | None = None, log_to: list[str] | None = None):
    """The mmengine Runner for a job, with the suite's hooks and checkpoint loader registered (and the
    analysis hook when ``analysis`` measures during training, and the trackers of ``log_to``)."""
    from mmengine.runner import Runner

    import sema_suite.hooks  # noqa: F401  (registers SemaHook and ResultsHook)
    from sema_suite.compat import trust_checkpoints_under
    from sema_suite.config import build_config

    ctx = resolved.context(data_root, job.work_dir, download=download)
    resolved.task.check_data(resolved.preset, ctx)
    trust_checkpoints_under(job.work_dir)
    return Runner.from_cfg(build_config(resolved, ctx, job.path.parent, analysis, log_to))


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


def _hook_counts(runner) -> dict[str, Any] | None:
    from sema_suite.hooks import SemaHook

    hook = next((h for h in getattr(runner, "hooks", ()) if isinstance(h, SemaHook)), None)
    return hook.counts() if hook else None


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
    if os.getppid() != int(parent):
        sys.exit("the process that started this worker is gone")


def run_job(results_dir: Path, job_id: str) -> int:
    signal.signal(signal.SIGTERM, _terminated)  # the scheduler stops workers with SIGTERM: record it
    _stop_with_parent()
    job = JobDir(results_dir, job_id)
    lock = open(job.path / ".lock", "w")  # noqa: SIM115  (held for the whole process)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"job {job_id} is running in another process", file=sys.stderr)
        return EXIT_LOCKED
    if job.status().get("state") == "done":  # `suite analyze`, or a retried task whose job finished meanwhile
        doc = read_json(job.job_json)
        if (settings := requested(doc)) and pending(job, doc, settings):
            _threads()
            run_analysis(job, settings)
        else:
            print(f"job {job_id} is already done", file=sys.stderr)
        return 0

    _threads()
    from sema_suite.environment import device_info

    started = time.time()
    attempts = job.status().get("attempts", 0) + 1
    job.repair_checkpoint_marker()
    resumed_from = job.last_checkpoint()
    job.update_status(state="running", pid=os.getpid(), started=started, attempts=attempts, error=None,
                      progress=None, resumed_from=str(resumed_from) if resumed_from else None)
    runner = None
    try:
        doc = read_json(job.job_json)
        doc["environment"]["device"] = device_info()
        write_json(job.job_json, doc)
        resolved = load_job(doc)
        runner = build_runner(resolved, job, Path(doc["data_root"]), doc.get("download", False),
                              doc.get("analysis"), doc.get("log_to"))
        with _one_tracker_run(runner):
            runner.train()
            if runner.cfg.get("test_dataloader"):
                runner.test()
    except BaseException as err:  # noqa: BLE001  (record every failure, including Ctrl-C, then re-raise)
        traceback.print_exc()
        job.update_status(state="failed", error=f"{type(err).__name__}: {err}", finished=time.time(),
                          averaging=_hook_counts(runner))
        if isinstance(err, KeyboardInterrupt):
            raise
        return 1
    job.update_status(state="done", finished=time.time(), seconds=round(time.time() - started, 2),
                      averaging=_hook_counts(runner))
    if (settings := requested(doc)) and pending(job, doc, settings, pairs=False):  # suite run --analyze
        run_analysis(job, settings, pairs=False)  # the partners may still be training: cmd_run pairs them after
    return 0


def _threads() -> None:
    if threads := os.environ.get("SUITE_THREADS"):
        import torch

        torch.set_num_threads(int(threads))


if __name__ == "__main__":
    sys.exit(run_job(Path(sys.argv[1]), sys.argv[2]))
