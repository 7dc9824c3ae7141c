"""Checkpoints in the middle of a pass over the data (``suite run --checkpoint-every``), and resuming from one
exactly: an epoch loop (cls) and an iteration loop (lm), trained in this process and stopped at a chosen step;
for sema, and for swa (its average and SWALR running when stopped) and lookahead (slow weights mid-period)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

from sema_suite.method.checkpoints import read_checkpoint, trained_state
from sema_suite.results.store import JobDir
from sema_suite.running.config import build_config
from sema_suite.running.jobs import JobSpec

CLS = (("depths", [1]), ("width", 4), ("image_size", 8), ("batch_size", 128), ("epochs", 2), ("switch_start", 1))
LM = (("iters", 30), ("val_interval", 15), ("lr_warmup_iters", 5), ("layers", 1), ("dim", 32), ("ffn", 64),
      ("context", 32))
pytestmark = pytest.mark.slow  # each case trains three runs in this process


class Preempted(Exception):
    pass


class StopAfter(Hook):
    """Stops training after an iteration, once everything else of that iteration ran (its checkpoint too)."""

    priority = "VERY_LOW"

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if runner.iter + 1 == self.iteration:
            raise Preempted


def train(task: str, overrides: tuple, results: Path, every: dict[str, Any] | None = None,
          stop_after: int | None = None, method: str = "sema") -> tuple[Runner, JobDir]:
    job = JobSpec(task, "tiny", method, 0, overrides).resolve()
    folder = JobDir(results, job.job_id)
    cfg = build_config(job, job.context(results / "data", folder.work_dir), results, checkpoint_every=every)
    cfg.experiment_name = f"{results.name}-{time.time_ns()}"  # one mmengine logger and visualizer per runner
    runner = Runner.from_cfg(cfg)
    if stop_after:
        runner.register_hook(StopAfter(stop_after))
    with contextlib.suppress(Preempted):
        runner.train()
    return runner, folder


def rows(job: JobDir) -> list[tuple]:
    return [(r["split"], r["epoch"], r["iter"], r["metric"], r["value"]) for r in job.metrics()]


def final_weights(job: JobDir) -> dict[str, torch.Tensor]:
    return trained_state(read_checkpoint(job.last_checkpoint()))


@pytest.mark.parametrize("task, method, overrides, every", [
    ("cls", "sema", CLS, {"seconds": 1e-9}),  # every iteration: the newest two are kept
    ("lm", "sema", LM, {"iters": 4}),
    ("cls", "swa", (*CLS, ("swa_start", 1)), {"seconds": 1e-9}),
    ("cls", "lookahead", (*CLS, ("lookahead_k", 3)), {"seconds": 1e-9}),
])
def test_a_job_stopped_mid_pass_resumes_from_its_periodic_checkpoint_exactly(
        tmp_path: Path, task: str, method: str, overrides: tuple, every: dict[str, Any]) -> None:
    reference, clean = train(task, overrides, tmp_path / "clean", method=method)
    per_pass = len(reference.train_dataloader)
    stop = per_pass + per_pass // 2 + 2 if task == "cls" else 22  # the middle of the second pass / between evals
    assert stop % per_pass and stop < reference.train_loop.max_iters

    _, stopped = train(task, overrides, tmp_path / "stopped", every, stop_after=stop, method=method)
    newest = stop if "seconds" in every else stop - stop % every["iters"]
    assert stopped.last_checkpoint().name == f"iter_{newest}.pth"
    own = {"iter_15.pth", "iter_30.pth"} if task == "lm" else set()  # mmengine's, at the evaluations
    periodic = sorted(p.name for p in stopped.work_dir.glob("iter_*.pth") if p.name not in own)
    assert len(periodic) == 2 and f"iter_{newest}.pth" in periodic
    assert len(rows(stopped)) < len(rows(clean))

    train(task, overrides, tmp_path / "stopped", every, method=method)
    assert rows(stopped) == rows(clean)  # the same evaluations, each once, with the same values
    resumed, uninterrupted = final_weights(stopped), final_weights(clean)
    assert resumed.keys() == uninterrupted.keys()
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)
    left = {p.name for p in stopped.work_dir.glob("iter_*.pth")}
    assert left == own  # the periodic ones are gone once the job is done


class IterationClock(Hook):
    """A clock that reads the iterations done (one "second" each), so the test times nothing; it ticks first."""

    priority = "HIGHEST"
    done = 0

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self.done += 1

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        self.saved = [*getattr(self, "saved", []), self.done]


@pytest.mark.parametrize("seconds", [4, 7])
def test_a_kill_loses_at_most_the_configured_interval_of_work(tmp_path: Path, seconds: int) -> None:
    """By default a job checkpoints once ``seconds`` of training have passed since its last checkpoint -- at an
    epoch's end or in the middle of a pass -- and at the end, never more often: a run stopped at any iteration has
    a checkpoint at most that far behind it."""
    from sema_suite.running.resumable import CheckpointInFolderHook, PeriodicCheckpointHook

    job = JobSpec("cls", "tiny", "sema", 0, CLS).resolve()
    folder = JobDir(tmp_path, job.job_id)
    cfg = build_config(job, job.context(tmp_path / "data", folder.work_dir), tmp_path,
                       checkpoint_every={"seconds": seconds})
    runner = Runner.from_cfg(cfg)
    clock = IterationClock()
    runner.register_hook(clock)
    for hook in runner.hooks:
        if isinstance(hook, (CheckpointInFolderHook, PeriodicCheckpointHook)):
            hook.now = lambda: float(clock.done)
    per_pass = len(runner.train_dataloader)
    runner.register_hook(StopAfter(stop := 2 * per_pass - 1))  # the middle of the last pass: no final checkpoint
    with contextlib.suppress(Preempted):
        runner.train()
    assert clock.saved and stop - clock.saved[-1] <= seconds, (clock.saved, stop)
    assert all(b - a >= seconds for a, b in zip([0, *clock.saved], clock.saved)), clock.saved
