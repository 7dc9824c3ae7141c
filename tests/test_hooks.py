"""The SEMA hook inside a real mmengine Runner on the real (tiny) classification task."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

from sema_suite.method.hooks import SemaHook
from sema_suite.running.config import build_config
from sema_suite.running.jobs import JobSpec

FAST = (("depths", [1]), ("width", 4), ("image_size", 8), ("batch_size", 256))


class Probe(Hook):
    """Runs after SemaHook at each epoch end: are the trained weights equal to the averaged ones?"""

    priority = "LOW"

    def __init__(self) -> None:
        self.equal_after_epoch: list[bool] = []

    def after_train_epoch(self, runner) -> None:
        sema = next(h for h in runner.hooks if isinstance(h, SemaHook))
        averaged = sema.averager.averaged_state()
        self.equal_after_epoch.append(all(
            torch.equal(t, averaged[n]) for n, t in runner.model.state_dict().items()))


def train(tmp_path: Path, method: str, epochs: int, by_iters: bool = False, **overrides) -> tuple[Runner, Probe, SemaHook]:
    """Train cls tiny; ``by_iters``: the same run through mmengine's IterBasedTrainLoop (as gen's loop)."""
    job = JobSpec("cls", "tiny", method, 0, (*FAST, ("epochs", epochs), *overrides.items())).resolve()
    cfg = build_config(job, job.context(tmp_path / "data", tmp_path / job.job_id / "work"), tmp_path)
    if by_iters:
        per_epoch = len(Runner.build_dataloader(cfg.train_dataloader))
        cfg.train_cfg = {"type": "IterBasedTrainLoop", "max_iters": epochs * per_epoch, "val_interval": per_epoch}
        cfg.param_scheduler = []
        cfg.default_hooks.checkpoint.by_epoch = False
        cfg.log_processor.by_epoch = False
        next(h for h in cfg.custom_hooks if h["type"] == "ResultsHook")["by_epoch"] = False
    runner = Runner.from_cfg(cfg)
    probe = Probe()
    runner.register_hook(probe)
    runner.train()
    return runner, probe, next(h for h in runner.hooks if isinstance(h, SemaHook))


def test_sema_switches_at_the_end_of_every_epoch(tmp_path: Path) -> None:
    _, probe, sema = train(tmp_path, "sema", epochs=3, switch_start=1, switch_interval=1)
    assert [s["epoch"] for s in sema.switches] == [1, 2, 3]
    assert probe.equal_after_epoch == [True, True, True]
    steps_per_epoch = sema.switches[0]["iter"]
    assert sema.counts()["updates"] == 3 * steps_per_epoch


def test_switch_interval_and_start(tmp_path: Path) -> None:
    _, probe, sema = train(tmp_path, "sema", epochs=5, switch_start=2, switch_interval=2)
    assert [s["epoch"] for s in sema.switches] == [2, 4]
    assert probe.equal_after_epoch == [False, True, False, True, False]


def test_ema_never_switches(tmp_path: Path) -> None:
    _, probe, sema = train(tmp_path, "ema", epochs=3, switch_start=1)
    assert sema.switches == []
    assert probe.equal_after_epoch == [False, False, False]


def test_none_has_no_averaging_hook(tmp_path: Path) -> None:
    job = JobSpec("cls", "tiny", "none", 0, FAST).resolve()
    cfg = build_config(job, job.context(tmp_path, tmp_path / "work"), tmp_path)
    assert [h["type"] for h in cfg.custom_hooks] == ["CostHook", "RandomStateHook", "PlainCheckpointHook",
                                                      "ResultsHook", "PeriodicCheckpointHook"]


def test_iteration_switches(tmp_path: Path) -> None:
    _, _, sema = train(tmp_path, "sema", epochs=2, switch_interval_iters=2, switch_start=1)
    iters = [s["iter"] for s in sema.switches]
    assert iters and all(i % 2 == 0 for i in iters) and iters == sorted(iters)
    assert len(iters) == sema.counts()["updates"] // 2


def test_switch_knobs_mean_epochs_in_iteration_loops_too(tmp_path: Path) -> None:
    """An iteration-based loop switches where an epoch-based loop over the same data does: switch_start and
    switch_interval count passes over the training data in both."""
    knobs = {"switch_start": 2, "switch_interval": 2}
    _, _, by_epoch = train(tmp_path / "epochs", "sema", epochs=5, **knobs)
    _, _, by_iter = train(tmp_path / "iters", "sema", epochs=5, by_iters=True, **knobs)
    per_epoch = by_epoch.switches[0]["iter"] // 2
    assert [s["iter"] for s in by_epoch.switches] == [2 * per_epoch, 4 * per_epoch]
    assert [s["iter"] for s in by_iter.switches] == [s["iter"] for s in by_epoch.switches]


@pytest.mark.parametrize("bad", [{"switch_interval": 0}, {"warmup": {"steps": 3}}])
def test_hook_rejects_bad_config(bad: dict) -> None:
    with pytest.raises(ValueError):
        SemaHook(**bad)
