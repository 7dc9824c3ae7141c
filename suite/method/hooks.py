"""The method in mmengine: :class:`MethodHook` (what every method's hook tells the suite), :class:`SemaHook` (ema,
sema and lookahead, and shared runs of none and ema, on any runner) and :class:`MembersLoop` (a shared run's
evaluation of each job's weights in turn). SWA's hook is :mod:`sema_suite.method.swa`.

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
import time
from typing import Any

from mmengine.hooks import Hook
from mmengine.registry import HOOKS, LOOPS
from mmengine.runner import EpochBasedTrainLoop
from mmengine.runner.base_loop import BaseLoop

from sema_suite.method.averaging import DecayWarmup, WeightAverager, unwrap_model
from sema_suite.running.costs import ledger_of


class MethodHook(Hook):
    """What every method's hook tells the rest of the suite: the jobs it keeps weights for (``names``), whose
    weights are evaluated now, a block with a member's reported weights in the model, and what it did."""

    members: list[dict[str, Any]]
    current: str | None = None  # the member being evaluated (set by MembersLoop; None: the only one)

    @property
    def names(self) -> list[str]:
        return [m["name"] for m in self.members]

    def evaluated(self) -> str:
        """The member whose weights are evaluated now."""
        return self.current if self.current is not None else self.names[0]

    def reporting(self, model, name: str) -> contextlib.AbstractContextManager:
        """``model`` holds member ``name``'s reported weights for the block (the trained ones restored after)."""
        raise NotImplementedError

    def counts(self, name: str | None = None) -> dict[str, Any]:
        """What the method did for member ``name`` (status.json's ``averaging``)."""
        raise NotImplementedError

    # every evaluation evaluates the reported weights of the member under evaluation
    _swap: contextlib.ExitStack | None = None

    def _swap_in(self, runner) -> None:
        self._swap = contextlib.ExitStack()
        self._swap.enter_context(self.reporting(runner.model, self.evaluated()))

    def _swap_out(self, runner, metrics=None) -> None:
        if self._swap is not None:
            self._swap.close()
            self._swap = None

    before_val_epoch = before_test_epoch = _swap_in
    after_val_epoch = after_test_epoch = _swap_out


@HOOKS.register_module()
class SemaHook(MethodHook):
    """EMA of the weights (``switch=False``) or Switch EMA (``switch=True``): one hook for ``ema`` and ``sema``,
    and for ``lookahead`` (an average updated every ``k`` steps, switched every ``k`` steps).

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
        name: the name of that one average (a job id; it keys the average in checkpoints).
        members: instead of one average, a shared run's jobs (see :mod:`sema_suite.running.runs`): each
            ``{"name": job id, "average": None}`` (the trained weights, a ``none`` job) or ``{"name": ...,
            "average": {"decay", "warmup", "update_interval", "average_buffers"}}`` (an ``ema`` job). Every
            average follows the same trajectory, each with its own warm-up position; every evaluation
            evaluates each member in turn (:class:`MembersLoop`). No switch: a switch would change the trajectory.

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
        name: str = "average",
        members: list[dict[str, Any]] | None = None,
    ) -> None:
        if switch_interval < 1:
            raise ValueError(f"switch_interval must be >= 1, got {switch_interval}")
        if switch_interval_iters is not None and switch_interval_iters < 1:
            raise ValueError(f"switch_interval_iters must be >= 1, got {switch_interval_iters}")
        if members is None:
            members = [{"name": name, "average": {"decay": decay, "warmup": warmup, "update_interval": update_interval,
                                                  "average_buffers": average_buffers}}]
        for member in members:
            if (member.get("average") or {}).get("warmup") is not None and not (
                    set(member["average"]["warmup"]) <= {"epochs", "iters", "start_factor"}):
                raise ValueError(f"warmup takes epochs or iters, and start_factor; got {sorted(member['average']['warmup'])}")
        if switch and (len(members) != 1 or members[0].get("average") is None):
            raise ValueError("a switch feeds one average back into training: it takes exactly one averaged member")
        if len({m["name"] for m in members}) != len(members):
            raise ValueError(f"member names repeat: {[m['name'] for m in members]}")
        self.members = members
        self.switch = switch
        self.switch_interval = switch_interval
        self.switch_start = switch_start
        self.switch_interval_iters = switch_interval_iters
        self.switches: list[dict[str, int]] = []  # where each switch happened: {"epoch": e, "iter": i}
        self._period_iters: int | None = None  # the switch schedule in iterations (None: at epoch ends)
        self._first_iter = 0  # no switch at or before this iteration
        self.averagers: dict[str, WeightAverager] = {}
        self.current: str | None = None  # the member being evaluated (set by MembersLoop; None: the only one)
        self._ledger = None  # the run's CostLedger (sema_suite.running.costs), when the run keeps one

    @property
    def averager(self) -> WeightAverager:
        """The average of a one-average hook (``ema``/``sema``)."""
        if len(self.averagers) != 1:
            raise AttributeError(f"this hook keeps {len(self.averagers)} averages; use .averagers[name]")
        return next(iter(self.averagers.values()))

    # -- set-up -------------------------------------------------------------------------------------------

    def before_run(self, runner) -> None:
        if self.averagers:
            return  # runner.test() after train() runs before_run again: keep the averages training built
        self._ledger = ledger_of(runner)
        model = unwrap_model(runner.model)
        for member in self.members:
            if (knobs := member.get("average")) is not None:
                self.averagers[member["name"]] = WeightAverager(
                    model,
                    decay=knobs["decay"],
                    warmup=self._warmup(runner, knobs),
                    average_buffers=knobs["average_buffers"],
                    update_interval=knobs["update_interval"],
                    exclude=getattr(model, "averaging_exclude", ()),
                )
        per_epoch = len(runner.train_dataloader)
        by_epoch = isinstance(runner.train_loop, EpochBasedTrainLoop)
        if self.switch_interval_iters is not None:
            self._period_iters = self.switch_interval_iters
        elif not by_epoch:
            self._period_iters = self.switch_interval * per_epoch
        self._first_iter = (self.switch_start - 1) * per_epoch

    @staticmethod
    def _warmup(runner, knobs: dict[str, Any]) -> DecayWarmup | None:
        warmup = knobs.get("warmup")
        if not warmup:
            return None
        iters = warmup.get("iters")
        if iters is None:
            iters = warmup.get("epochs", 0) * len(runner.train_dataloader)
        return DecayWarmup(steps=math.ceil(iters / knobs["update_interval"]),
                           start_factor=warmup.get("start_factor", 0.9))

    # -- training -----------------------------------------------------------------------------------------

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not getattr(runner.optim_wrapper, "should_update", lambda: True)():
            return  # gradient accumulation: no optimizer step happened in this iteration
        for name, averager in self.averagers.items():
            started = time.perf_counter()
            averager.update(runner.model)
            if self._ledger is not None:  # host time: on CUDA the kernels run on, overlapping the next step
                self._ledger.add("averaging", time.perf_counter() - started, name)
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
        started = time.perf_counter()
        self.averager.copy_to(runner.model)
        if self._ledger is not None:
            self._ledger.add("averaging", time.perf_counter() - started, self.names[0])
        self.switches.append({"epoch": epoch, "iter": iteration})
        if (visualizer := getattr(runner, "visualizer", None)) is not None:  # to every tracker (suite run --log-to)
            visualizer.add_scalars({"sema/switch_epoch": epoch}, step=iteration)

    # -- evaluation: each member's weights are what it reports --------------------------------------------

    def reporting(self, model, name: str) -> contextlib.AbstractContextManager:
        averager = self.averagers.get(name)
        return averager.swapped(model) if averager is not None else contextlib.nullcontext(model)

    # -- checkpoints --------------------------------------------------------------------------------------

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Store every average's state and counters. With one member, as mmengine's EMAHook does: the weights
        it reports in ``state_dict`` (where test tools load from), the trained ones in ``ema_state_dict``; a
        shared run's ``state_dict`` keeps the trained weights (see :mod:`sema_suite.method.checkpoints`)."""
        from sema_suite.method.checkpoints import store_reported

        averaged_in_state_dict = len(self.members) == 1
        if averaged_in_state_dict:
            store_reported(checkpoint, self.averager.averaged_state())
        checkpoint["sema_hook"] = {"averagers": {name: a.state_dict() for name, a in self.averagers.items()},
                                   "switches": list(self.switches),
                                   "state_dict": "averaged" if averaged_in_state_dict else "trained"}

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Before mmengine loads ``state_dict`` into the model: put the trained weights back there, so training
        resumes from them; the averages come from their own (float32) state, by member name."""
        from sema_suite.method.checkpoints import averager_states, trained_state

        if checkpoint.get("sema_hook") is None:  # e.g. fine-tuning from a checkpoint trained without averaging
            runner.logger.warning("checkpoint has no averaged weights; the average starts from the loaded weights")
            return
        checkpoint["state_dict"] = trained_state(checkpoint)
        states = averager_states(checkpoint)
        for name, averager in self.averagers.items():
            if name not in states:
                if len(states) != 1 or len(self.averagers) != 1:
                    raise KeyError(f"the checkpoint keeps no average of {name} (it has {sorted(states)})")
                name = next(iter(states))  # a one-average checkpoint written under another name
            averager.load_state_dict(states[name])
        checkpoint["sema_hook"]["state_dict"] = "trained"
        self.switches = list(checkpoint["sema_hook"]["switches"])

    def counts(self, name: str | None = None) -> dict[str, Any]:
        """What the hook did for member ``name`` (default: the first), so a user can check that a ``sema`` run
        really switched."""
        averager = self.averagers.get(name or self.names[0])
        return {
            "updates": averager.num_updates if averager else 0,
            "switches": len(self.switches),
            "switch_points": self.switches,
        }


@LOOPS.register_module()
class MembersLoop(BaseLoop):
    """A shared run's val or test loop: the wrapped loop (``loop``, mmengine's ``ValLoop`` by default) runs once
    per member, with that member's weights in the model (:class:`SemaHook`'s ``current``).

    Each pass is a complete evaluation with its hooks, so each member's rows, its share of evaluation time and
    the restored trained weights are exactly as in a run of its own. Metric names reach the loggers prefixed with
    the member's name (one tracker run holds every member); the results hook keeps the last part, as for
    MMDetection's ``coco/`` prefix. Attributes other than ``run`` are the wrapped loop's (``dataloader``...).
    """

    def __init__(self, runner, dataloader, evaluator, loop: dict[str, Any], kind: str = "val") -> None:
        from mmengine.runner import TestLoop, ValLoop

        default = ValLoop if kind == "val" else TestLoop
        args = {"runner": runner, "dataloader": dataloader, "evaluator": evaluator}
        self.inner = LOOPS.build(dict(loop), default_args=args) if "type" in loop else default(**loop, **args)
        self._runner = runner  # BaseLoop's own __init__ would build the dataloader a second time
        evaluate = self.inner.evaluator.evaluate
        self.inner.evaluator.evaluate = lambda size: {f"{self._hook().evaluated()}/{key}": value
                                                      for key, value in evaluate(size).items()}

    def _hook(self) -> MethodHook:
        return next(h for h in self.runner.hooks if isinstance(h, MethodHook))

    def __getattr__(self, name: str) -> Any:
        if "inner" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["inner"], name)

    def run(self) -> dict:
        hook = self._hook()
        metrics: dict = {}
        try:
            for name in hook.names:
                hook.current = name
                metrics = self.inner.run()
        finally:
            hook.current = None
        return metrics


def evaluated_member(runner) -> str | None:
    """The job whose weights the runner's model holds for the evaluation under way (None: no averaging hook)."""
    hook = next((h for h in getattr(runner, "hooks", ()) if isinstance(h, MethodHook)), None)
    return hook.evaluated() if hook is not None else None
