"""Where a run's wall time goes: start-up, building, training, evaluation, averaging and checkpoints.

``status.json`` holds the breakdown as ``costs`` (seconds): ``startup_s`` (from the scheduler starting the
worker process to the config being built: the interpreter, torch, mmengine and the task's imports),
``build_s`` (the runner, model, data and resumed checkpoint, up to the first training step), ``train_s``
(the training loop: steps, data loading, logging), ``eval_s`` (every val and test pass), ``averaging_s``
(the averaging updates and switches, and SWA's BatchNorm recomputation before it evaluates or saves the average), ``checkpoint_s`` (writing checkpoints) and ``wall_s``. A shared run's
members each get the run's shared phases and their own evaluation and averaging (``eval_s``,
``averaging_s``), so a job's cost reads as that of a run of its own; the run's folder holds the totals.

Times are host wall-clock: on CUDA the averaging kernels are queued and overlap the next step, so
``averaging_s`` there is their launch cost (the step timing in ``suite bench step`` measures them with
synchronisation). The training, evaluation, averaging and checkpoint totals cover the work a run kept: a
resumed run continues them from its checkpoint; start-up and building are those of the last attempt.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

PHASES = ("train", "eval", "averaging", "checkpoint")
OWN = ("eval", "averaging")  # what each member of a shared run pays itself (the other phases are paid once)


class CostLedger:
    """Seconds per phase, and per member for the phases a member pays itself."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.by_member: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def add(self, phase: str, seconds: float, member: str | None = None) -> None:
        self.seconds[phase] += seconds
        if member is not None:
            self.by_member[phase][member] += seconds

    def others(self, member: str) -> float:
        """What the run spent on the other members' evaluation and averaging: not part of ``member``'s cost."""
        return sum(s for phase in OWN for name, s in self.by_member[phase].items() if name != member)

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": dict(self.seconds), "by_member": {k: dict(v) for k, v in self.by_member.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seconds.clear()
        self.seconds.update(state["seconds"])
        self.by_member.clear()
        for phase, members in state["by_member"].items():
            self.by_member[phase].update(members)

    def summary(self, member: str | None = None, **extra: float) -> dict[str, float]:
        """The breakdown in seconds, of the whole run or (``member``) of one member; ``extra``: start-up and
        building, which the worker measures."""
        phases = {**extra, **{p: self.seconds[p] for p in PHASES}}
        if member is not None:
            phases |= {p: self.by_member[p].get(member, 0.0) for p in OWN}
        return {f"{phase}_s": round(value, 3) for phase, value in phases.items()}


def ledger_of(runner) -> CostLedger | None:
    """The ledger of the runner's :class:`CostHook` (None when the run keeps none, e.g. outside the suite)."""
    hook = next((h for h in getattr(runner, "hooks", ()) if isinstance(h, CostHook)), None)
    return hook.ledger if hook is not None else None


@HOOKS.register_module()
class CostHook(Hook):
    """Keeps the run's :class:`CostLedger`: training time is what the loop spends outside evaluation, averaging
    (which :class:`sema_suite.method.hooks.SemaHook` adds) and checkpoints. mmengine has no hook after a checkpoint
    is written, so the runner's ``save_checkpoint`` is timed by wrapping it."""

    priority = "VERY_HIGH"  # its before_* marks come first, so the others' work falls inside the spans

    def __init__(self) -> None:
        self.ledger = CostLedger()
        self.train_started: float | None = None  # when the first training step began (the end of building)
        self._mark: float | None = None  # start of the training span not yet settled
        self._averaging_at_mark = 0.0
        self._eval_started = 0.0
        self._averaging_at_eval = 0.0
        self._trained = False

    def before_run(self, runner) -> None:
        if getattr(runner.save_checkpoint, "_timed", False):
            return
        save = runner.save_checkpoint

        def timed(*args, **kwargs):
            self._settle()
            started, averaging = time.perf_counter(), self.ledger.seconds["averaging"]
            try:
                return save(*args, **kwargs)
            finally:
                self.ledger.add("checkpoint", self._less_averaging(started, averaging))
                self._restart()

        timed._timed = True
        runner.save_checkpoint = timed

    def _restart(self) -> None:
        if self._mark is not None:
            self._mark = time.perf_counter()
            self._averaging_at_mark = self.ledger.seconds["averaging"]

    def _settle(self) -> None:
        """Add the training time since the mark (less the averaging inside it) and move the mark."""
        if self._mark is None:
            return
        averaging = self.ledger.seconds["averaging"] - self._averaging_at_mark
        self.ledger.add("train", time.perf_counter() - self._mark - averaging)
        self._restart()

    def before_train(self, runner) -> None:
        self.train_started = time.time()
        self._mark = time.perf_counter()
        self._averaging_at_mark = self.ledger.seconds["averaging"]

    def after_train(self, runner) -> None:
        self._settle()
        self._mark = None
        self._trained = True

    def _less_averaging(self, started: float, averaging_then: float) -> float:
        """Seconds since ``started``, less the averaging work inside them (SWA's BatchNorm pass before an
        evaluation or a checkpoint is the method's cost, counted once, under averaging)."""
        return time.perf_counter() - started - (self.ledger.seconds["averaging"] - averaging_then)

    def _eval_start(self, runner) -> None:
        self._settle()
        self._eval_started = time.perf_counter()
        self._averaging_at_eval = self.ledger.seconds["averaging"]

    def _eval_end(self, runner) -> None:
        from sema_suite.method.hooks import evaluated_member

        self.ledger.add("eval", self._less_averaging(self._eval_started, self._averaging_at_eval),
                        evaluated_member(runner))
        self._restart()

    before_val = before_test = _eval_start
    after_val = after_test = _eval_end

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint["costs"] = self.ledger.state_dict()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not self._trained and "costs" in checkpoint:  # runner.test() after train() reloads: keep this run's
            self.ledger.load_state_dict(checkpoint["costs"])
