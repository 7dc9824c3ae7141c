"""SWA and Lookahead inside a real mmengine Runner on the real (tiny) classification task, each checked against a
direct use of its reference implementation (torch's ``swa_utils``, timm's ``Lookahead``); and the methods'
registry (``suite.methods`` entry points; the plugin example's method runs in tests/test_plugin.py)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.registry import OPTIMIZERS
from mmengine.runner import Runner
from timm.optim import Lookahead
from torch.optim.swa_utils import SWALR, AveragedModel, update_bn

from sema_suite.errors import BadOverride, UnknownChoice
from sema_suite.method.hooks import MethodHook, SemaHook
from sema_suite.method.methods import get_method, method_names
from sema_suite.method.swa import SwaHook
from sema_suite.running.config import build_config
from sema_suite.running.jobs import JobSpec
from sema_suite.running.runs import plan

FAST = (("depths", [1]), ("width", 4), ("image_size", 8), ("batch_size", 256))


class EpochEnds(Hook):
    """Records, after the method's hook, the trained weights at each epoch end and the learning rate its last
    step used."""

    priority = 80  # after SwaHook (75), before CheckpointHook

    def __init__(self) -> None:
        self.weights: list[dict[str, torch.Tensor]] = []
        self.lrs: list[float] = []
        self._lr = 0.0

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._lr = runner.optim_wrapper.optimizer.param_groups[0]["lr"]

    def after_train_epoch(self, runner) -> None:
        self.weights.append({k: v.clone() for k, v in runner.model.state_dict().items()})
        self.lrs.append(self._lr)


def runner_for(tmp_path: Path, method: str, epochs: int, by_iters: bool = False, **overrides) -> Runner:
    """cls tiny, small; ``by_iters``: through mmengine's IterBasedTrainLoop (as gen's and lm's loops), a pass per
    epoch."""
    job = JobSpec("cls", "tiny", method, 0, (*FAST, ("epochs", epochs), *overrides.items())).resolve()
    cfg = build_config(job, job.context(tmp_path / "data", tmp_path / job.job_id / "work"), tmp_path)
    if by_iters:
        per_pass = len(Runner.build_dataloader(cfg.train_dataloader))
        cfg.train_cfg = {"type": "IterBasedTrainLoop", "max_iters": epochs * per_pass, "val_interval": per_pass}
        cfg.default_hooks.checkpoint.by_epoch = False
        cfg.log_processor.by_epoch = False
        next(h for h in cfg.custom_hooks if h["type"] == "ResultsHook")["by_epoch"] = False
    return Runner.from_cfg(cfg)


def method_hook(runner: Runner) -> MethodHook:
    return next(h for h in runner.hooks if isinstance(h, MethodHook))


@pytest.mark.slow
def test_swa_averages_and_recomputes_batchnorm_as_torch_swa_utils_does(tmp_path: Path) -> None:
    runner = runner_for(tmp_path, "swa", epochs=4, swa_start=2, swa_anneal_epochs=2, swa_lr=0.01)
    ends = EpochEnds()
    runner.register_hook(ends)
    runner.train()
    swa = method_hook(runner)
    assert isinstance(swa, SwaHook) and swa.counts()["updates"] == 3  # the ends of epochs 2, 3 and 4

    model = runner.model
    reference = AveragedModel(copy.deepcopy(model), use_buffers=False)
    for weights in ends.weights[1:]:
        trained = copy.deepcopy(model)
        trained.load_state_dict(weights)
        reference.update_parameters(trained)
    inputs = [model.data_preprocessor(batch, True)["inputs"] for batch in torch.utils.data.DataLoader(
        runner.train_dataloader.dataset, batch_size=256, collate_fn=runner.train_dataloader.collate_fn)]
    update_bn(inputs, reference.module)  # the network's plain forward, as torch's recipe runs it
    reported = swa.reported_state()
    expected = reference.module.state_dict()
    bn = [name for name in expected if name.endswith("running_mean")]
    assert bn, "the tiny ResNet has BatchNorm"
    for name, tensor in expected.items():
        torch.testing.assert_close(reported[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.equal(reported[bn[0]], ends.weights[-1][bn[0]])  # recomputed, not the trained statistics

    # after swa_start, SWALR (cosine from the rate of epoch 2's last step to swa_lr over 2 epochs) sets the rate
    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=ends.lrs[1])
    swalr = SWALR(probe, swa_lr=0.01, anneal_epochs=2, anneal_strategy="cos")
    expected_lrs = []
    for _ in range(2):
        probe.step()
        swalr.step()
        expected_lrs.append(probe.param_groups[0]["lr"])
    assert ends.lrs[2:] == pytest.approx(expected_lrs) and expected_lrs[-1] == pytest.approx(0.01)
    assert ends.lrs[1] != pytest.approx(0.01)  # the anneal has somewhere to go


@OPTIMIZERS.register_module()
def TimmLookaheadSGD(params, alpha: float, k: int, **sgd) -> Lookahead:  # noqa: N802  (an mmengine type name)
    """timm's Lookahead around the preset's SGD: the reference the ``lookahead`` method is checked against."""
    return Lookahead(torch.optim.SGD(params, **sgd), alpha=alpha, k=k)


@pytest.mark.slow
def test_lookahead_follows_timm_lookahead_step_for_step(tmp_path: Path) -> None:
    ours = runner_for(tmp_path / "ours", "lookahead", epochs=2, lookahead_k=4, lookahead_alpha=0.6)
    ours.train()
    hook = method_hook(ours)
    assert isinstance(hook, SemaHook) and hook.counts()["switches"] == 10 // 4  # 2 epochs of 5 steps

    # plain training whose optimizer is timm's Lookahead around the same SGD (its other keys merge in)
    timm = runner_for(tmp_path / "timm", "none", epochs=2,
                      **{"cfg.optim_wrapper.optimizer": {"type": "TimmLookaheadSGD", "alpha": 0.6, "k": 4}})
    timm.train()
    optimizer = timm.optim_wrapper.optimizer
    for (name, fast), theirs in zip(ours.model.named_parameters(), timm.model.parameters()):
        torch.testing.assert_close(fast, theirs, rtol=1e-5, atol=1e-6, msg=name)  # the fast weights, at every step
    slow = hook.averager.averaged_state()
    for (name, _), theirs in zip(ours.model.named_parameters(), timm.model.parameters()):
        torch.testing.assert_close(slow[name], optimizer._base_optimizer.state[theirs]["lookahead_slow_buff"],
                                   rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.slow
def test_swa_in_an_iteration_loop_averages_at_the_end_of_each_pass(tmp_path: Path) -> None:
    runner = runner_for(tmp_path, "swa", epochs=4, by_iters=True, swa_start=0.5, swa_lr=0.01, swa_anneal_epochs=0)
    runner.train()
    swa = method_hook(runner)
    assert swa.counts() == {"updates": 3, "swa_start_epoch": 2, "bn_passes": 3}  # passes 2-4; a BN pass per eval
    assert runner.optim_wrapper.optimizer.param_groups[0]["lr"] == pytest.approx(0.01)  # SWALR at once, held


def test_methods_say_whether_they_share_a_run() -> None:
    jobs = [JobSpec("cls", "tiny", method, 0).resolve() for method in method_names()]
    runs = plan(jobs)
    shared = [run for run in runs if run.shared]
    assert [[job.spec.method for job in run.members] for run in shared] == [["none", "ema"]]
    assert {get_method(m).changes_trajectory for m in ("swa", "lookahead", "sema")} == {True}


@pytest.mark.parametrize("override, message", [
    (("lookahead_k", 0), "lookahead_k=0"), (("lookahead_alpha", 1.5), "lookahead_alpha=1.5"),
    (("swa_start", 2.5), "swa_start=2.5"), (("swa_lr", -1), "swa_lr=-1.0: swa_lr takes a number > 0")])
def test_bad_method_knobs_are_named(override: tuple, message: str) -> None:
    method = "lookahead" if override[0].startswith("lookahead") else "swa"
    with pytest.raises(BadOverride, match=message):
        JobSpec("cls", "tiny", method, 0, (override,)).resolve()


def test_a_knob_of_another_method_is_dropped_and_an_unknown_method_named() -> None:
    plain = JobSpec("cls", "tiny", "swa", 0).resolve()
    assert JobSpec("cls", "tiny", "swa", 0, (("lookahead_k", 10),)).resolve().job_id == plain.job_id
    with pytest.raises(UnknownChoice, match="lookahead"):
        JobSpec("cls", "tiny", "lookahed", 0).resolve()


@pytest.mark.parametrize("task", ["cls", "det", "gen", "video", "reg", "ssl", "lm"])
def test_every_tiny_preset_takes_every_method_under_sgd_and_adamw(tmp_path: Path, task: str) -> None:
    """`suite run --method none,ema,sema,swa,lookahead --set optimizer=sgd,adamw` resolves and configures on every
    tiny preset: each job's optimizer is the one its variant names, with the preset's table's learning rate, and
    its method's hook (tiny runs of swa and lookahead under both optimizers: the closing note of issue 24)."""
    from sema_suite.running.jobs import expand_matrix

    matrix = expand_matrix([task], method_names(), [0], "tiny", {"optimizer": ["sgd", "adamw"]})
    assert len(matrix.jobs) == len(method_names()) * 2
    hooks = {"none": None, "ema": "SemaHook", "sema": "SemaHook", "swa": "SwaHook", "lookahead": "SemaHook"}
    for job in matrix.jobs:
        cfg = build_config(job, job.context(tmp_path / "data", tmp_path / job.job_id, dry_run=True), tmp_path)
        optimizer = cfg.optim_wrapper["optimizer"]
        assert optimizer["type"].lower() == job.params["optimizer"] and optimizer["lr"] == job.params["lr"]
        table = job.preset.optimizers.get(job.params["optimizer"], {})
        assert optimizer["lr"] == table.get("lr", job.preset.params["lr"])
        types = {h["type"] for h in cfg.custom_hooks} & {"SemaHook", "SwaHook"}
        assert types == ({hooks[job.spec.method]} - {None})


def test_a_broken_or_misnamed_plugin_is_named() -> None:
    from sema_suite.errors import SuiteError
    from sema_suite.method.methods import Method, _load
    from sema_suite.registry import load_target

    with pytest.raises(SuiteError, match="the method no_such_package:METHOD does not import .ModuleNotFoundError"):
        load_target("no_such_package:METHOD", "method", Method)
    with pytest.raises(SuiteError, match="is not a sema_suite.method.methods.Method"):
        load_target("sema_suite.method.builtin:AVERAGE_KNOBS", "method", Method)
    with pytest.raises(SuiteError, match="registered as method 'lookahead' but is named 'swa'"):
        _load("lookahead", "sema_suite.method.builtin:Swa")


def test_only_averages_of_a_shared_trajectory_are_said_to_train_it_again(tmp_path: Path) -> None:
    """A sema (or swa, lookahead) job trains its own trajectory: a finished job of another decay is no reason for
    the "trained again" note, which is about ema jobs joining a none trajectory already trained."""
    from sema_suite.results.store import JobDir
    from sema_suite.running.runs import retrained_notes

    def job(method: str, **knobs) -> object:
        return JobSpec("cls", "tiny", method, 0, tuple(knobs.items())).resolve()

    done = [job("none"), job("ema", decay=0.9), job("sema", decay=0.9), job("lookahead", lookahead_k=5)]
    todo = [job("ema", decay=0.95), job("sema", decay=0.95), job("lookahead", lookahead_k=10)]
    for finished in done:
        JobDir(tmp_path, finished.job_id).path.mkdir()
        JobDir(tmp_path, finished.job_id).update_status(state="done")
    (note,) = retrained_notes(plan(todo), done + todo, tmp_path)
    assert note.startswith(f"note: {todo[0].job_id} average(s) a trajectory already trained")  # the ema job only
