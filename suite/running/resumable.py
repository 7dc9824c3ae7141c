"""A run stopped anywhere continues as if it had not stopped: random state in every checkpoint, checkpoints
at most every minute of training by default or as ``suite run --checkpoint-every`` says (every N iterations or
seconds, or at each evaluation), and training loops that resume from one in the middle of a pass over the data.

mmengine resumes an epoch-based loop at the start of the checkpoint's epoch and an iteration-based one by
loading every batch trained so far. :class:`ResumableEpochLoop` and :class:`ResumableIterLoop` instead start
the interrupted pass at its next batch: :class:`SkippingSampler` drops the indices already trained (nothing is
loaded for them) when the loader batches plainly, and otherwise the pass's batches are drawn and discarded.
Either way the random state is then the checkpoint's, so a job whose loader runs in the training process
(``num_workers`` 0, the offline presets) resumes bit for bit. With loader workers (the paper presets) the data
order is the same, but the workers' augmentation draws start afresh, and GPU kernels are not deterministic
anyway: a resumed paper-preset job is equivalent, not bit-identical.
"""

from __future__ import annotations

import itertools
import random
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.dataset import DefaultSampler, InfiniteSampler
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.registry import DATA_SAMPLERS, HOOKS, LOOPS
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop
from torch.utils.data import BatchSampler, DataLoader

from sema_suite.results.store import mark_checkpoint, marked_checkpoint

KEEP = 2  # periodic checkpoints kept: a kill while the newest is written leaves the one before


def random_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_random_state(state: dict[str, Any]) -> None:
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
        checkpoint["random_state"] = random_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if "random_state" in checkpoint:
            set_random_state(checkpoint["random_state"])

    def _pause(self, runner) -> None:
        self._paused = random_state()

    def _resume(self, runner, metrics=None) -> None:
        if self._paused is not None:
            set_random_state(self._paused)
            self._paused = None

    before_val_epoch = before_test_epoch = _pause
    after_val_epoch = after_test_epoch = _resume


@DATA_SAMPLERS.register_module()
class SkippingSampler(DefaultSampler):
    """mmengine's ``DefaultSampler`` (same indices for the same seed and epoch) that can leave out the first
    ``skip`` indices of its next pass -- the samples a resumed run has already trained on."""

    skip = 0

    def __iter__(self) -> Iterator[int]:
        skip, self.skip = self.skip, 0
        return itertools.islice(super().__iter__(), skip, None)


def resume_pass(dataloader: DataLoader, drawn: int) -> Iterator:
    """An iterator over the current pass of ``dataloader`` (its sampler's epoch already set) from batch
    ``drawn`` on, leaving the random state as it was (the checkpoint's): making the iterator draws a seed."""
    state = random_state()
    sampler = getattr(dataloader, "sampler", None)
    if isinstance(sampler, SkippingSampler) and type(dataloader.batch_sampler) is BatchSampler:
        sampler.skip = drawn * dataloader.batch_size
        batches = iter(dataloader)
    else:  # batches grouped some other way (e.g. by aspect ratio): draw them as the interrupted run did
        batches = iter(dataloader)
        for _ in range(drawn):
            next(batches)
    set_random_state(state)
    return batches


@LOOPS.register_module()
class ResumableEpochLoop(EpochBasedTrainLoop):
    """mmengine's epoch loop that resumes a checkpoint written mid-epoch at the epoch's next batch."""

    def run_epoch(self) -> None:
        self.runner.call_hook("before_train_epoch")
        self.runner.model.train()
        drawn = self._iter - self._epoch * len(self.dataloader)
        batches: Iterable = resume_pass(self.dataloader, drawn) if drawn else self.dataloader
        for idx, data_batch in enumerate(batches, start=drawn):
            self.run_iter(idx, data_batch)
        self.runner.call_hook("after_train_epoch")
        self._epoch += 1


class Passes:
    """Batches of one pass over a dataloader after another, each pass with its sampler's epoch set: mmengine's
    endless iterator without the 2 s pause it takes at every pass boundary (a guard against a loader deadlock
    that its maintainers could not reproduce; the suite's loaders keep their workers between passes), which
    over DDPM's 800k CIFAR-10 iterations would add some 2,000 pauses. It can start at any batch of a pass."""

    def __init__(self, dataloader: DataLoader, first: Iterator) -> None:
        self.dataloader, self.index, self._batches = dataloader, 0, first

    def __iter__(self) -> Passes:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._batches)
        except StopIteration:
            self.start(self.index + 1)
            return next(self._batches)

    def start(self, index: int, drawn: int = 0) -> None:
        """Begin pass ``index`` at its batch ``drawn`` (see :func:`resume_pass`); at 0, the pass's iterator is
        made, drawing its seed, just where an uninterrupted run makes it."""
        self.index = index
        if hasattr(sampler := index_sampler(self.dataloader), "set_epoch"):
            sampler.set_epoch(index)
        self._batches = resume_pass(self.dataloader, drawn) if drawn else iter(self.dataloader)

    def position(self, iteration: int) -> tuple[int, int]:
        """The pass and batch after ``iteration`` batches: every pass is full (nothing breaks one off), and
        an endless sampler's one pass never ends."""
        if isinstance(index_sampler(self.dataloader), InfiniteSampler):
            return 0, iteration
        return divmod(iteration, len(self.dataloader))


def index_sampler(dataloader: DataLoader) -> Any:
    """The sampler that orders the indices: the loader's own, or its batch sampler's (e.g. MMDetection's
    aspect-ratio batches wrap one)."""
    sampler = getattr(dataloader, "sampler", None)
    if hasattr(sampler, "set_epoch") or isinstance(sampler, InfiniteSampler):
        return sampler
    return getattr(getattr(dataloader, "batch_sampler", None), "sampler", sampler)


@LOOPS.register_module()
class ResumableIterLoop(IterBasedTrainLoop):
    """mmengine's iteration loop over :class:`Passes`, resuming at the checkpoint's pass and batch instead of
    loading every batch trained before it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # keep the first pass's iterator mmengine made (its seed is drawn; making another would draw again)
        self.dataloader_iterator = Passes(self.dataloader, self.dataloader_iterator._iterator)

    def run(self) -> None:
        self.runner.call_hook("before_train")
        self.runner.call_hook("before_train_epoch")
        if self._iter:  # resumed
            self.dataloader_iterator.start(*self.dataloader_iterator.position(self._iter))
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            self.run_iter(next(self.dataloader_iterator))
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None and self._iter >= self.val_begin
                    and (self._iter % self.val_interval == 0 or self._iter == self._max_iters)):
                self.runner.val_loop.run()
        self.runner.call_hook("after_train_epoch")
        self.runner.call_hook("after_train")
        return self.runner.model


DEFAULT_EVERY = {"seconds": 60.0}  # a checkpoint at most every minute of training, and one at the end


class _Clock:
    """The time since the run's last checkpoint, whichever hook wrote it."""

    seconds: float | None = None  # None: no clock (every chance is taken)
    now = staticmethod(time.monotonic)  # what the clock reads (a test may read training progress instead)
    _last = 0.0

    def before_train(self, runner) -> None:
        self._last = self.now()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        self._last = self.now()  # any checkpoint restarts the clock

    def _due_by_clock(self) -> bool:
        return self.seconds is None or self.now() - self._last >= self.seconds


@HOOKS.register_module()
class PeriodicCheckpointHook(_Clock, Hook):
    """A checkpoint every ``iters`` training iterations, or once ``seconds`` of wall time have passed since the
    last one, in the middle of a pass too, so a preempted job loses at most that much.

    It writes ``iter_<N>.pth`` with the run's full state (the other hooks add theirs: averages, random state,
    results), points ``last_checkpoint`` at it, keeps the newest :data:`KEEP` of its own, and removes them when
    training ends (the final checkpoint is newer). It leaves an epoch's last batch and an iteration loop's
    evaluation points to :class:`CheckpointInFolderHook` (an epoch's switch and evaluation follow them), so its
    files are told apart by name.
    """

    priority = "VERY_LOW"  # after the update, the switch and the other hooks' per-iteration work

    def __init__(self, iters: int | None = None, seconds: float | None = None) -> None:
        if (iters is None) == (seconds is None):
            raise ValueError("PeriodicCheckpointHook needs exactly one of iters, seconds")
        self.iters, self.seconds = iters, seconds

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        done = runner.iter + 1
        if not self._due(done) or _saved_anyway(runner, done):
            return
        runner.save_checkpoint(runner.work_dir, f"iter_{done}.pth", by_epoch=False)
        runner.logger.info(f"periodic checkpoint after iteration {done}")
        if is_main_process():
            mark_checkpoint(Path(runner.work_dir), Path(f"iter_{done}.pth"))
            self._remove(runner, keep=KEEP)

    def after_train(self, runner) -> None:
        if is_main_process():
            self._remove(runner, keep=0)

    def _due(self, done: int) -> bool:
        return done % self.iters == 0 if self.iters is not None else self._due_by_clock()

    @staticmethod
    def _remove(runner, keep: int) -> None:
        """Delete this hook's checkpoints but the newest ``keep`` (never the one ``last_checkpoint`` names)."""
        work = Path(runner.work_dir)
        newest = marked_checkpoint(work)
        ours = sorted((int(m[1]), path) for path in work.glob("iter_*.pth")
                      if (m := re.fullmatch(r"iter_(\d+)\.pth", path.name)) and not _saved_anyway(runner, int(m[1])))
        for _, path in ours[:max(0, len(ours) - keep)]:
            if path != newest:
                path.unlink()


@HOOKS.register_module()
class CheckpointInFolderHook(_Clock, CheckpointHook):
    """mmengine's CheckpointHook at each evaluation interval (an epoch's end, after its switch), and at the end of
    training; with ``seconds``, only where that long has passed since the last checkpoint (the end always).

    Its ``last_checkpoint`` marker names the checkpoint relative to the work dir (mmengine writes an absolute
    path): a copied or moved results folder resumes, exports and measures its own checkpoints, and nothing read
    from a results folder leads outside it."""

    def __init__(self, *args: Any, seconds: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seconds = seconds

    def before_train(self, runner) -> None:
        super().before_train(runner)
        CheckpointHook.before_train(self, runner)

    def every_n_epochs(self, runner, n: int, start: int = 0) -> bool:
        return super().every_n_epochs(runner, n, start) and self._due_by_clock()

    def every_n_train_iters(self, runner, n: int, start: int = 0) -> bool:
        return super().every_n_train_iters(runner, n, start) and self._due_by_clock()

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        super()._save_checkpoint_with_step(runner, step, meta)
        if is_main_process():
            mark_checkpoint(Path(runner.work_dir), Path(self.last_ckpt))


def _saved_anyway(runner, done: int) -> bool:
    """Whether mmengine's CheckpointHook saves after iteration ``done`` (or the epoch's end follows it)."""
    loop = runner.train_loop
    if isinstance(loop, EpochBasedTrainLoop):
        return done % len(loop.dataloader) == 0
    interval = next((h.interval for h in runner.hooks if isinstance(h, CheckpointHook)), None)  # ours included
    return done == loop.max_iters or (interval is not None and done % interval == 0)


def make_resumable(cfg, by_epoch: bool, checkpoint_every: dict[str, float] | None) -> None:
    """Give an mmengine config (in place) the loop and sampler above, and its checkpoints: ``checkpoint_every``
    ``{"seconds": S}`` (the default, :data:`DEFAULT_EVERY`) checkpoints once S seconds have passed since the last
    checkpoint, at an evaluation point or in the middle of a pass, and at the end; ``{"iters": N}`` every N
    iterations and at each evaluation interval; ``{"eval": True}`` at each evaluation interval only. A loop of
    another type is left alone."""
    loop = cfg.train_cfg.get("type")
    if loop in (None, "EpochBasedTrainLoop", "mmengine.EpochBasedTrainLoop", "IterBasedTrainLoop",
                "mmengine.IterBasedTrainLoop"):
        rest = {k: v for k, v in cfg.train_cfg.items() if k not in ("type", "by_epoch")}
        cfg.train_cfg = {"type": "ResumableEpochLoop" if by_epoch else "ResumableIterLoop", **rest}
    sampler = cfg.train_dataloader.get("sampler") or {}
    if sampler.get("type") in ("DefaultSampler", "mmengine.DefaultSampler"):
        cfg.train_dataloader.sampler = {**sampler, "type": "SkippingSampler"}
    every = dict(checkpoint_every or DEFAULT_EVERY)
    if "minutes" in every:  # a job planned by an older version
        every = {"seconds": every["minutes"] * 60}
    if "seconds" in every:
        cfg.default_hooks.checkpoint = {**cfg.default_hooks.checkpoint, "seconds": every["seconds"]}
    if not every.get("eval"):
        cfg.custom_hooks = [*cfg.get("custom_hooks", []), {"type": "PeriodicCheckpointHook", **every}]
