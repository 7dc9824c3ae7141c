"""The mmengine hooks every task shares: :class:`SemaHook` (the averaging methods) and :class:`ResultsHook`.

Lifecycle of :class:`SemaHook` inside ``Runner.train()``::

    before_run            build the WeightAverager on the (unwrapped) model
    after_load_checkpoint restore the averaged weights and counters (resume continues exactly)
    after_train_iter      update the average after each optimizer step; maybe switch (iteration schedule)
    after_train_epoch     maybe switch (epoch schedule) -- before validation and before the checkpoint is saved
    before/after_val_epoch, before/after_test_epoch   evaluate the averaged weights, then swap back
    before_save_checkpoint  store the averaged weights and counters
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from typing import Any

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop

from sema_suite.averaging import DecayWarmup, WeightAverager, unwrap_model
from sema_suite.errors import NonFiniteLoss
from sema_suite.results import JobDir


@HOOKS.register_module()
class SemaHook(Hook):
    """EMA of the weights (``switch=False``) or Switch EMA (``switch=True``): one hook for both methods.

    Args:
        decay: EMA decay ``d`` close to 1 (not mmengine's ``momentum = 1 - d``).
        warmup: ``None`` or ``dict(epochs=E | iters=N, start_factor=0.9)``: linear decay warm-up.
        update_interval: average every this many optimizer steps.
        average_buffers: average float buffers (BatchNorm statistics) too, else copy them.
        switch: copy the average back into the trained weights (SEMA) at the switch points.
        switch_interval: switch at the end of every this many epochs ...
        switch_start: ... from this epoch on (1-based: ``switch_start=5`` first switches after epoch 5).
        switch_interval_iters: switch every this many iterations instead (``None``: by epochs), within
            epoch ``switch_start`` and later.

    The knobs mean the same in every loop kind: an iteration-based loop's "epoch" is one pass over the
    training data (``len(train_dataloader)`` iterations), so there the switches fall on iterations
    ``k * switch_interval * pass`` from the end of pass ``switch_start`` on, exactly where an epoch-based
    loop of the same data would switch.
    """

    priority = "NORMAL"  # before CheckpointHook (VERY_LOW): a checkpoint holds the switched weights

    def __init__(
        self,
        decay: float = 0.999,
        warmup: dict[str, Any] | None = None,
        update_interval: int = 1,
        average_buffers: bool = True,
        switch: bool = False,
        switch_interval: int = 1,
        switch_start: int = 1,
        switch_interval_iters: int | None = None,
    ) -> None:
        if switch_interval < 1:
            raise ValueError(f"switch_interval must be >= 1, got {switch_interval}")
        if switch_interval_iters is not None and switch_interval_iters < 1:
            raise ValueError(f"switch_interval_iters must be >= 1, got {switch_interval_iters}")
        if warmup is not None and not (set(warmup) <= {"epochs", "iters", "start_factor"}):
            raise ValueError(f"warmup takes epochs or iters, and start_factor; got {sorted(warmup)}")
        self.decay = decay
        self.warmup = warmup
        self.update_interval = update_interval
        self.average_buffers = average_buffers
        self.switch = switch
        self.switch_interval = switch_interval
        self.switch_start = switch_start
        self.switch_interval_iters = switch_interval_iters
        self.switches: list[dict[str, int]] = []  # where each switch happened: {"epoch": e, "iter": i}
        self._period_iters: int | None = None  # the switch schedule in iterations (None: at epoch ends)
        self._first_iter = 0  # no switch at or before this iteration
        self.averager: WeightAverager | None = None
        self._swap: contextlib.ExitStack | None = None

    # -- set-up -------------------------------------------------------------------------------------------

    def before_run(self, runner) -> None:
        if self.averager is not None:
            return  # runner.test() after train() runs before_run again: keep the average training built
        model = unwrap_model(runner.model)
        self.averager = WeightAverager(
            model,
            decay=self.decay,
            warmup=self._warmup(runner),
            average_buffers=self.average_buffers,
            update_interval=self.update_interval,
            exclude=getattr(model, "averaging_exclude", ()),
        )
        per_epoch = len(runner.train_dataloader)
        by_epoch = isinstance(runner.train_loop, EpochBasedTrainLoop)
        if self.switch_interval_iters is not None:
            self._period_iters = self.switch_interval_iters
        elif not by_epoch:
            self._period_iters = self.switch_interval * per_epoch
        self._first_iter = (self.switch_start - 1) * per_epoch

    def _warmup(self, runner) -> DecayWarmup | None:
        if not self.warmup:
            return None
        iters = self.warmup.get("iters")
        if iters is None:
            iters = self.warmup.get("epochs", 0) * len(runner.train_dataloader)
        return DecayWarmup(steps=math.ceil(iters / self.update_interval),
                           start_factor=self.warmup.get("start_factor", 0.9))

    # -- training -----------------------------------------------------------------------------------------

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not getattr(runner.optim_wrapper, "should_update", lambda: True)():
            return  # gradient accumulation: no optimizer step happened in this iteration
        self.averager.update(runner.model)
        done = runner.iter + 1
        if self._period_iters and done > self._first_iter and done % self._period_iters == 0:
            self._switch(runner, epoch=runner.epoch, iteration=done)

    def after_train_epoch(self, runner) -> None:
        done = runner.epoch + 1  # mmengine increments the epoch after this hook
        if self._period_iters is None and done >= self.switch_start and done % self.switch_interval == 0:
            self._switch(runner, epoch=done, iteration=runner.iter)

    def _switch(self, runner, epoch: int, iteration: int) -> None:
        if not self.switch:
            return
        self.averager.copy_to(runner.model)
        self.switches.append({"epoch": epoch, "iter": iteration})
        if (visualizer := getattr(runner, "visualizer", None)) is not None:  # to every tracker (suite run --log-to)
            visualizer.add_scalars({"sema/switch_epoch": epoch}, step=iteration)

    # -- evaluation: the averaged weights are what the method reports -------------------------------------

    def _swap_in(self, runner) -> None:
        self._swap = contextlib.ExitStack()
        self._swap.enter_context(self.averager.swapped(runner.model))

    def _swap_out(self, runner, metrics=None) -> None:
        if self._swap is not None:
            self._swap.close()
            self._swap = None

    before_val_epoch = before_test_epoch = _swap_in
    after_val_epoch = after_test_epoch = _swap_out

    # -- checkpoints --------------------------------------------------------------------------------------

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Store the averager's state and counters; and, as mmengine's EMAHook does, the weights the method
        reports in ``state_dict`` (where test tools load from) with the trained ones in ``ema_state_dict`` (see
        :mod:`sema_suite.checkpoints`)."""
        from sema_suite.checkpoints import PREFIX

        state = checkpoint["state_dict"]
        averaged = self.averager.averaged_state()
        reported = [name for name in averaged if name in state]  # non-persistent buffers are not in a state dict
        checkpoint["ema_state_dict"] = {PREFIX + name: state[name] for name in reported}
        for name in reported:
            state[name] = averaged[name].detach().to("cpu", state[name].dtype, copy=True)
        checkpoint["sema_hook"] = {"averager": self.averager.state_dict(), "switches": list(self.switches),
                                   "state_dict": "averaged"}

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Before mmengine loads ``state_dict`` into the model: put the trained weights back there, so training
        resumes from them; the average comes from the averager's own (float32) state."""
        from sema_suite.checkpoints import trained_state

        state = checkpoint.get("sema_hook")
        if state is None:  # e.g. fine-tuning from a checkpoint trained without averaging
            runner.logger.warning("checkpoint has no averaged weights; the average starts from the loaded weights")
            return
        checkpoint["state_dict"] = trained_state(checkpoint)
        state["state_dict"] = "trained"
        self.averager.load_state_dict(state["averager"])
        self.switches = list(state["switches"])

    def counts(self) -> dict[str, Any]:
        """What the hook did, so a user can check that a ``sema`` run really switched."""
        return {
            "updates": self.averager.num_updates if self.averager else 0,
            "switches": len(self.switches),
            "switch_points": self.switches,
        }


def _random_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def _set_random_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Makes a resumed run draw the same random numbers as an uninterrupted one.

    mmengine only re-seeds on resume, so the generators' state goes into every checkpoint. And evaluation
    is made neutral to the training's random stream (a DataLoader draws a seed from it, sampling draws
    noise): a resumed run that skips an evaluation already recorded, or a run that evaluates more often,
    trains on exactly the same random numbers.
    """

    def __init__(self) -> None:
        self._paused: dict[str, Any] | None = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint["random_state"] = _random_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if "random_state" in checkpoint:
            _set_random_state(checkpoint["random_state"])

    def _pause(self, runner) -> None:
        self._paused = _random_state()

    def _resume(self, runner, metrics=None) -> None:
        if self._paused is not None:
            _set_random_state(self._paused)
            self._paused = None

    before_val_epoch = before_test_epoch = _pause
    after_val_epoch = after_test_epoch = _resume


@HOOKS.register_module()
class ResultsHook(Hook):
    """Appends every evaluation's metrics to the job's ``metrics.csv`` and keeps ``status.json`` current.

    A model whose loss dict also reports ``tokens`` (the batch's token count, as the ``lm`` task's does) gets
    ``tokens_per_s`` in ``status.json``: tokens over the time of the training steps (forward, backward,
    update and hooks; data loading and evaluation excluded), in this process.

    Also stops a run whose loss is NaN/inf with a clear error, and on resume removes rows the interrupted
    run wrote past its last checkpoint and evaluates that checkpoint again (see :meth:`before_train`), so
    each evaluation appears exactly once and a resumed run equals an uninterrupted one.
    """

    priority = "LOW"  # after SemaHook has swapped the averaged weights in

    def __init__(self, results_dir: str, job_id: str, row: dict[str, Any], metrics: dict[str, bool],
                 by_epoch: bool = True, val_split: str = "val") -> None:
        self.job = JobDir(results_dir, job_id)
        self.val_split = val_split  # "test" when a final run's val loop evaluates the test split
        self.row = row  # the constant columns: job_id, task, preset, dataset, model, method, seed
        self.metrics = metrics  # metric name -> higher_is_better
        self.by_epoch = by_epoch
        self.elapsed_before = 0.0  # training wall time of earlier (interrupted) attempts
        self.started = time.monotonic()
        self._trained = False  # whether this process has run the training loop
        self._last_progress = 0.0
        self._step_started = 0.0
        self._tokens = self._token_seconds = 0.0

    def after_train(self, runner) -> None:
        self._trained = True
        if self._tokens:
            self.job.update_status(tokens_per_s=round(self._tokens / self._token_seconds, 1))

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._step_started = time.monotonic()

    def wall_time(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def before_train(self, runner) -> None:
        """On resume: drop the rows the run will compute again, and replay the checkpoint's evaluation.

        The interrupted run may have died between saving the checkpoint and writing that evaluation's rows;
        evaluating the checkpoint again (the same values: evaluation is RNG-neutral, see
        :class:`RandomStateHook`) records them exactly once either way.
        """
        self.started = time.monotonic()
        epoch, iteration = self._position(runner)
        replay = bool(iteration) and self._val_due(runner)
        self.job.drop_metrics(lambda r: r["split"] != self.val_split  # the test pass's rows stay
                              or (r["iter"] < iteration if replay else r["iter"] <= iteration))
        if replay:
            runner.logger.info(f"resumed: evaluating the checkpoint of epoch {epoch} again")
            runner.val_loop.run()

    def _position(self, runner) -> tuple[float, int]:
        if self.by_epoch:
            return runner.epoch, runner.iter
        return round(runner.iter / len(runner.train_dataloader), 4), runner.iter

    def _val_due(self, runner) -> bool:
        """Whether the loop evaluates at the checkpoint's position: on the interval, and always at the end
        (a run killed between its last checkpoint and that final evaluation must still record it)."""
        loop = runner.train_loop
        done, end = (runner.epoch, loop.max_epochs) if self.by_epoch else (runner.iter, loop.max_iters)
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
        self.job.update_status(progress={"epoch": epoch if self.by_epoch else None, "iter": iteration,
                                         "max_epochs": getattr(loop, "max_epochs", None),
                                         "max_iters": loop.max_iters})

    def after_val_epoch(self, runner, metrics: dict[str, float] | None = None) -> None:
        self._record(runner, self.val_split, metrics or {})

    def after_test_epoch(self, runner, metrics: dict[str, float] | None = None) -> None:
        _, iteration = self._position(runner)  # a re-run of a finished job tests again: keep one row each
        self.job.drop_metrics(lambda r: not (r["split"] == "test" and r["iter"] == iteration))
        rows = self._record(runner, "test", metrics or {})
        if rows and (visualizer := getattr(runner, "visualizer", None)) is not None:  # mmengine logs val, not test
            visualizer.add_scalars({f"test/{r['metric']}": r["value"] for r in rows}, step=iteration)

    def _record(self, runner, split: str, metrics: dict[str, float]) -> list[dict[str, Any]]:
        epoch, iteration = self._position(runner)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        rows = []
        for key, value in metrics.items():
            name = key.rsplit("/", 1)[-1]  # evaluators prefix their names, e.g. "coco/bbox_mAP"
            if name in self.metrics:
                rows.append({**self.row, "epoch": epoch, "iter": iteration, "split": split, "metric": name,
                             "value": float(value), "higher_is_better": self.metrics[name],
                             "wall_time_s": round(self.wall_time(), 3), "timestamp": stamp})
        self.job.append_metrics(rows)
        self._progress(runner, epoch, iteration)
        return rows

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint["results_hook"] = {"wall_time_s": self.wall_time()}

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._trained:
            return  # runner.test() after train() reloads the last checkpoint: this process's clock goes on
        self.elapsed_before = checkpoint.get("results_hook", {}).get("wall_time_s", 0.0)


@HOOKS.register_module()
class AnalysisHook(Hook):
    """Measures flatness and sharpness during training (``suite run --analyze every_eval=N``).

    At every N-th evaluation (counted from the job's recorded evaluations, so a resumed run measures at the
    same ones) the reported weights are measured as ``suite analyze`` measures the final ones, and the rows
    go into ``analysis.csv`` at that evaluation's epoch and iteration. The final evaluation is left to the
    end-of-run measurement. The training's random stream is restored afterwards: a run measured during
    training trains on exactly the same random numbers as one that is not.
    """

    priority = "VERY_LOW"  # after SemaHook has swapped the trained weights back and ResultsHook recorded the rows

    def __init__(self, results_dir: str, job_id: str, task: str, settings: dict[str, Any]) -> None:
        from sema_suite.analysis import Settings

        self.job = JobDir(results_dir, job_id)
        self.task = task
        self.settings = Settings(**settings)

    def after_val_epoch(self, runner, metrics: dict[str, float] | None = None) -> None:
        from sema_suite.analysis import record_measures
        from sema_suite.registry import get_task

        loop = runner.train_loop
        if runner.iter >= loop.max_iters:
            return  # the final weights are measured after training, with the landscape
        evaluations = len({r["iter"] for r in self.job.metrics()})
        if evaluations % self.settings.every_eval:
            return
        state = _random_state()
        try:
            record_measures(runner, get_task(self.task), self.job, self.settings, final=False)
        finally:
            _set_random_state(state)
