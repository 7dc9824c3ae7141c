"""SWA's hook: torch's ``swa_utils`` (``AveragedModel``, ``SWALR``, ``update_bn``) inside mmengine's lifecycle.

Lifecycle of :class:`SwaHook` inside ``Runner.train()``::

    before_run            the equal-weight average of the parameters (AveragedModel); the epoch SWA starts at
    after_train_iter      once SWA runs, SWALR's learning rate overrides the preset's schedulers (which step
                          before this hook); an iteration loop's epoch (pass) ends every len(train_dataloader) steps
    after_train_epoch     from epoch swa_start on: the weights join the average, SWALR steps
    before/after_val_epoch, before/after_test_epoch   the average, with BatchNorm recomputed, is evaluated
    before_save_checkpoint  the average, SWALR, and the reported weights in ``state_dict`` (as SemaHook does)
    after_load_checkpoint   restores them, and the trained weights for training to resume from

The BatchNorm recomputation is SWA's extra cost at test time: one pass over the training data (a loader of
its own, in order, loss-mode forwards) each time a new average is evaluated or saved; the random state is
restored after it, so evaluating never changes training. Its time counts as averaging.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import torch
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel

from sema_suite.method.averaging import unwrap_model
from sema_suite.method.batchnorm import recompute_bn
from sema_suite.method.hooks import MethodHook
from sema_suite.running.costs import ledger_of


@contextlib.contextmanager
def state_restored(module: nn.Module) -> Iterator[None]:
    """The module's state dict as it was before the block, whatever the block loads into it."""
    saved = {k: v.clone() for k, v in module.state_dict().items()}
    try:
        yield
    finally:
        module.load_state_dict(saved)


@HOOKS.register_module()
class SwaHook(MethodHook):
    """Stochastic weight averaging (:class:`sema_suite.method.builtin.Swa`).

    Args:
        swa_start: the first epoch (1-based) whose end joins the average, or a fraction (< 1) of the epochs.
        swa_lr: SWALR's learning rate.
        anneal_epochs: epochs over which SWALR anneals (cosine) from the scheduled rate to ``swa_lr``.
        name: the job id (its weights' name).
    """

    priority = 75  # after ParamSchedulerHook (LOW, 70): SWALR has the last word; before CheckpointHook (VERY_LOW, 90)

    def __init__(self, swa_start: float, swa_lr: float, anneal_epochs: int = 2, name: str = "swa") -> None:
        self.members = [{"name": name}]
        self.swa_start = swa_start
        self.swa_lr = swa_lr
        self.anneal_epochs = anneal_epochs
        self.average: AveragedModel | None = None
        self.scheduler: SWALR | None = None
        self.start_epoch = 0
        self.bn_passes = 0
        self._saved_scheduler: dict | None = None  # SWALR's state from a checkpoint, until the optimizer is back
        self._reported: tuple[int, dict[str, torch.Tensor]] | None = None  # (n_averaged, weights) last computed
        self._runner = None
        self._ledger = None
        self._per_epoch = 1
        self._by_epoch = True
        self._step_lrs: list[float] = []  # the learning rates of the last step: where SWALR's anneal starts

    def before_run(self, runner) -> None:
        if self.average is not None:
            return  # runner.test() after train()
        self._runner, self._ledger = runner, ledger_of(runner)
        self.average = AveragedModel(unwrap_model(runner.model), use_buffers=False)
        self._per_epoch = len(runner.train_dataloader)
        self._by_epoch = isinstance(runner.train_loop, EpochBasedTrainLoop)
        epochs = runner.max_epochs if self._by_epoch else runner.max_iters // self._per_epoch
        self.start_epoch = int(self.swa_start) if self.swa_start >= 1 else max(1, round(self.swa_start * epochs))
        if self.start_epoch > epochs:
            raise ValueError(f"swa_start={self.swa_start} is epoch {self.start_epoch}, after the last ({epochs}): "
                             "start SWA earlier")

    # -- training -----------------------------------------------------------------------------------------

    @staticmethod
    def _set_lrs(runner, lrs: list[float]) -> None:
        for group, lr in zip(runner.optim_wrapper.optimizer.param_groups, lrs):
            group["lr"] = lr

    def _new_swalr(self, runner) -> SWALR:
        return SWALR(runner.optim_wrapper.optimizer, self.swa_lr, self.anneal_epochs, "cos")

    def _swalr(self, runner) -> SWALR | None:
        if self.scheduler is None and self._saved_scheduler is not None:  # resumed: the optimizer is loaded now
            self.scheduler = self._new_swalr(runner)
            self.scheduler.load_state_dict(self._saved_scheduler)
            self._saved_scheduler = None
        return self.scheduler

    def _hold_lr(self, runner) -> None:
        """Undo what the preset's schedulers did to the learning rate once SWALR runs."""
        if (scheduler := self._swalr(runner)) is not None:
            self._set_lrs(runner, scheduler.get_last_lr())

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._step_lrs = [group["lr"] for group in runner.optim_wrapper.optimizer.param_groups]

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._hold_lr(runner)
        done = runner.iter + 1
        if not self._by_epoch and done % self._per_epoch == 0:
            self._epoch_end(runner, done // self._per_epoch)

    def after_train_epoch(self, runner) -> None:
        if self._by_epoch:
            self._hold_lr(runner)
            self._epoch_end(runner, runner.epoch + 1)

    def _epoch_end(self, runner, done: int) -> None:
        if done < self.start_epoch:
            return
        started = time.perf_counter()
        if self._swalr(runner) is None:  # SWA starts from the rate the last step used (torch's recipe steps
            self._set_lrs(runner, self._step_lrs)  # either the preset's schedule or SWALR, never both)
            self.scheduler = self._new_swalr(runner)
        self.average.update_parameters(unwrap_model(runner.model))
        self.scheduler.step()
        if self._ledger is not None:
            self._ledger.add("averaging", time.perf_counter() - started, self.names[0])

    # -- what it reports ----------------------------------------------------------------------------------

    def reported_state(self) -> dict[str, torch.Tensor] | None:
        """The averaged parameters with BatchNorm statistics recomputed for them (the model's other buffers as
        they are), or None before the first epoch averaged (the trained weights are reported then)."""
        averaged = int(self.average.n_averaged)
        if averaged == 0:
            return None
        if self._reported is None or self._reported[0] != averaged:
            started = time.perf_counter()
            model = unwrap_model(self._runner.model)
            with state_restored(model):
                with torch.no_grad():
                    for mine, theirs in zip(model.parameters(), self.average.module.parameters()):
                        mine.copy_(theirs)
                recompute_bn(model, self._runner.train_dataloader)
                self._reported = (averaged, {k: v.clone() for k, v in model.state_dict().items()})
            self.bn_passes += 1
            if self._ledger is not None:
                self._ledger.add("averaging", time.perf_counter() - started, self.names[0])
        return self._reported[1]

    @contextlib.contextmanager
    def reporting(self, model, name: str) -> Iterator[nn.Module]:
        reported = self.reported_state()
        if reported is None:
            yield model
            return
        module = unwrap_model(model)
        with state_restored(module):
            module.load_state_dict(reported)
            yield model

    def counts(self, name: str | None = None) -> dict[str, Any]:
        return {"updates": int(self.average.n_averaged) if self.average is not None else 0,
                "swa_start_epoch": self.start_epoch, "bn_passes": self.bn_passes}

    # -- checkpoints --------------------------------------------------------------------------------------

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """As SemaHook: ``state_dict`` holds the weights SWA reports, ``ema_state_dict`` the trained ones."""
        from sema_suite.method.checkpoints import store_reported

        reported = self.reported_state()
        if reported is not None:
            store_reported(checkpoint, reported)
        scheduler = self._swalr(runner)
        checkpoint["swa_hook"] = {"average": self.average.state_dict(), "bn_passes": self.bn_passes,
                                  "scheduler": scheduler.state_dict() if scheduler is not None else None,
                                  "state_dict": "averaged" if reported is not None else "trained"}

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        from sema_suite.method.checkpoints import trained_state

        saved = checkpoint.get("swa_hook")
        if saved is None:
            runner.logger.warning("checkpoint has no SWA state; the average starts empty")
            return
        checkpoint["state_dict"] = trained_state(checkpoint)
        saved["state_dict"] = "trained"
        self.average.load_state_dict(saved["average"])
        self.bn_passes = saved["bn_passes"]
        self._saved_scheduler = saved["scheduler"]
        self.scheduler = None
