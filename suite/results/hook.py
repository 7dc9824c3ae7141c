"""The hook that records every evaluation of a job (or of each job of a shared run) in its folder."""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from sema_suite.errors import NonFiniteLoss, SuiteError
from sema_suite.method.hooks import evaluated_member
from sema_suite.results.store import JobDir, utc_stamp
from sema_suite.running.costs import ledger_of


@HOOKS.register_module()
class ResultsHook(Hook):
    """Appends every evaluation's metrics to the job's ``metrics.csv`` and keeps ``status.json`` current.

    A model whose loss dict also reports ``tokens`` (the batch's token count, as the ``lm`` task's does) gets
    ``tokens_per_s`` in ``status.json``: tokens over the time of the training steps (forward, backward,
    update and hooks; data loading and evaluation excluded), in this process.

    Also stops a run whose loss is NaN/inf with a clear error, and on resume removes rows the interrupted
    run wrote past its last checkpoint and evaluates that checkpoint again (see :meth:`before_train`), so
    each evaluation appears exactly once and a resumed run equals an uninterrupted one.

    A shared run (:mod:`sema_suite.running.runs`) writes each member's rows into that member's job folder; a row's
    ``wall_time_s`` leaves out the time the run spent evaluating and averaging for the other members, so it
    reads as the clock of a run of the member's own. Rows an earlier run wrote into a member's folder (another
    ``run_id``: the matrix was planned differently then) are dropped when the run starts. A member that is already
    done when the run starts (another process trained it while this run waited for its lock) rides along: the run
    trains the trajectory again for its other members, and that member's rows and status stay as they are.

    An evaluation that reports none of the task's metrics (a plugin whose evaluator names them otherwise) stops
    the run with an error naming both lists, rather than finishing a job with no rows.
    """

    priority = "LOW"  # after SemaHook has swapped the averaged weights in

    def __init__(self, results_dir: str, run_id: str, rows: list[dict[str, Any]], metrics: dict[str, bool],
                 by_epoch: bool = True, val_split: str = "val") -> None:
        self.run = JobDir(results_dir, run_id)  # where progress goes (the job's own folder, or a shared run's)
        self.run_id = run_id
        self.val_split = val_split  # "test" when a final run's val loop evaluates the test split
        # per member job: the constant columns (job_id, run_id, task, preset, dataset, model, method, seed, variant)
        self.rows = {row["job_id"]: row for row in rows}
        members = {job_id: JobDir(results_dir, job_id) for job_id in self.rows}
        # the members this run records: all but those already done (riders), on the process that keeps records
        self.jobs = {job_id: job for job_id, job in members.items()
                     if is_main_process() and job.status().get("state") != "done"}
        self.metrics = metrics  # metric name -> higher_is_better
        self.by_epoch = by_epoch
        self.elapsed_before = 0.0  # training wall time of earlier (interrupted) attempts
        self.started = time.monotonic()
        self._trained = False  # whether this process has run the training loop
        self._last_progress = 0.0
        self._step_started = 0.0
        self._tokens = self._token_seconds = 0.0

    def _statuses(self) -> list[JobDir]:
        if not is_main_process():  # a multi-process run: rank 0 keeps the records
            return []
        return [self.run, *(job for job in self.jobs.values() if job.path != self.run.path)]

    def after_train(self, runner) -> None:
        self._trained = True
        if self._tokens:
            for folder in self._statuses():
                folder.update_status(tokens_per_s=round(self._tokens / self._token_seconds, 1))

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._step_started = time.monotonic()

    def wall_time(self, runner=None, member: str | None = None) -> float:
        """The run's wall time so far (over attempts); for ``member``, less the other members' own work."""
        total = self.elapsed_before + time.monotonic() - self.started
        ledger = ledger_of(runner) if member is not None and len(self.rows) > 1 else None
        return total - ledger.others(member) if ledger is not None else total

    def before_train(self, runner) -> None:
        """On resume: drop the rows the run will compute again, and replay the checkpoint's evaluation.

        The interrupted run may have died between saving the checkpoint and writing that evaluation's rows;
        evaluating the checkpoint again (the same values: evaluation is RNG-neutral, see
        :class:`RandomStateHook`) records them exactly once either way.
        """
        self.started = time.monotonic()
        epoch, iteration = self._position(runner)
        replay = bool(iteration) and self._val_due(runner)
        for job in self.jobs.values():
            job.drop_metrics(lambda r: r["run_id"] == self.run_id and (
                r["split"] != self.val_split  # the test pass's rows stay
                or (r["iter"] < iteration if replay else r["iter"] <= iteration)))
        if replay:
            runner.logger.info(f"resumed: evaluating the checkpoint of epoch {epoch} again")
            runner.val_loop.run()

    def _position(self, runner) -> tuple[float, int]:
        if self.by_epoch:
            return runner.epoch, runner.iter
        return round(runner.iter / len(runner.train_dataloader), 4), runner.iter

    def _val_due(self, runner) -> bool:
        """Whether the loop evaluates at the checkpoint's position: on the interval, and always at the end
        (a run killed between its last checkpoint and that final evaluation must still record it). Never in
        the middle of an epoch (``suite run --checkpoint-every``)."""
        loop = runner.train_loop
        done, end = (runner.epoch, loop.max_epochs) if self.by_epoch else (runner.iter, loop.max_iters)
        if self.by_epoch and runner.iter != runner.epoch * len(runner.train_dataloader):
            return False
        return runner.val_loop is not None and done >= loop.val_begin and (done % loop.val_interval == 0
                                                                            or done == end)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if (tokens := (outputs or {}).get("tokens")) is not None:
            self._tokens += float(tokens)
            self._token_seconds += time.monotonic() - self._step_started
        loss = (outputs or {}).get("loss")
        if loss is not None and not math.isfinite(loss := float(torch.as_tensor(loss).detach())):
            raise NonFiniteLoss(
                f"loss became {loss} at epoch {runner.epoch + 1}, iteration {runner.iter + 1}. "
                "Lower the learning rate (--set lr=...) or check the data; the job is marked failed."
            )
        now = time.monotonic()
        if now - self._last_progress > 2.0:
            self._last_progress = now
            self._progress(runner, runner.epoch + 1, runner.iter + 1)

    def _progress(self, runner, epoch: float, iteration: int) -> None:
        """The current (1-based) epoch and iteration, for the console and the dashboard."""
        loop = runner.train_loop
        progress = {"epoch": epoch if self.by_epoch else None, "iter": iteration,
                    "max_epochs": getattr(loop, "max_epochs", None), "max_iters": loop.max_iters}
        for folder in self._statuses():
            folder.update_status(progress=progress)

    def after_val_epoch(self, runner, metrics: dict[str, float] | None = None) -> None:
        self._record(runner, self.val_split, metrics or {})

    def after_test_epoch(self, runner, metrics: dict[str, float] | None = None) -> None:
        _, iteration = self._position(runner)  # a re-run of a finished job tests again: keep one row each
        if (job := self.jobs.get(self._member(runner))) is not None:
            job.drop_metrics(lambda r: not (r["split"] == "test" and r["iter"] == iteration))
        rows = self._record(runner, "test", metrics or {})
        if rows and (visualizer := getattr(runner, "visualizer", None)) is not None:  # mmengine logs val, not test
            visualizer.add_scalars({f"test/{r['metric']}": r["value"] for r in rows}, step=iteration)

    def _member(self, runner) -> str:
        """The job whose weights are being evaluated."""
        member = evaluated_member(runner)
        return member if member in self.rows else next(iter(self.rows))

    def _record(self, runner, split: str, metrics: dict[str, float]) -> list[dict[str, Any]]:
        epoch, iteration = self._position(runner)
        stamp = utc_stamp()
        member = self._member(runner)
        wall = round(self.wall_time(runner, member), 3)
        rows = []
        for key, value in metrics.items():
            name = key.rsplit("/", 1)[-1]  # evaluators prefix their names, e.g. "coco/bbox_mAP"
            if name in self.metrics:
                rows.append({**self.rows[member], "epoch": epoch, "iter": iteration, "split": split, "metric": name,
                             "value": float(value), "higher_is_better": self.metrics[name],
                             "wall_time_s": wall, "timestamp": stamp})
        if metrics and not rows:
            reported = ", ".join(sorted(key.rsplit("/", 1)[-1] for key in metrics))
            raise SuiteError(f"the {split} evaluation reported {reported}, none of which the task declares "
                             f"({', '.join(self.metrics)}): name the task's Metric()s as its evaluator reports them "
                             "(or the evaluator's keys as the metrics), else no row can be recorded")
        if member in self.jobs:
            self.jobs[member].append_metrics(rows)
        self._progress(runner, epoch, iteration)
        return rows

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint["results_hook"] = {"wall_time_s": self.wall_time()}

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._trained:
            return  # runner.test() after train() reloads the last checkpoint: this process's clock goes on
        self.elapsed_before = checkpoint.get("results_hook", {}).get("wall_time_s", 0.0)
