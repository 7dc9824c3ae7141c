"""The SSL adapter: losses against their definitions, the k-NN, BYOL's target kept out of the averaging,
the end-of-run test pass (k-NN and linear probe on the test digits) on the averaged weights, and a short
real run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sema_suite.cli import main
from sema_suite.errors import DatasetMissing
from sema_suite.method.hooks import SemaHook
from sema_suite.results.store import JobDir
from sema_suite.running.jobs import JobSpec
from sema_suite.running.runs import plan
from sema_suite.running.scheduler import prepare
from sema_suite.running.worker import build_runner
from sema_tasks.ssl import TASK
from sema_tasks.ssl.losses import byol_loss, knn_predict, moco_v3_loss, nt_xent
from sema_tasks.ssl.modules import SelfSupervised


def test_nt_xent_matches_its_definition():
    torch.manual_seed(0)
    z1, z2, t = torch.randn(5, 8), torch.randn(5, 8), 0.3
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z)
    expected = 0.0
    for i in range(n):
        j = (i + n // 2) % n
        others = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(n) if k != i)
        expected += -math.log(math.exp(float(z[i] @ z[j]) / t) / others)
    assert nt_xent(z1, z2, t).item() == pytest.approx(expected / n, rel=1e-5)


def test_byol_loss_matches_its_definition_and_stops_the_target_gradient():
    torch.manual_seed(0)
    p, z = torch.randn(4, 6, requires_grad=True), torch.randn(4, 6, requires_grad=True)
    expected = sum(2 - 2 * F.cosine_similarity(p[i], z[i], dim=0) for i in range(4)) / 4
    loss = byol_loss(p, z)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert p.grad is not None and z.grad is None


def test_moco_v3_loss_matches_its_definition():
    torch.manual_seed(0)
    q, k, t = torch.randn(4, 6, requires_grad=True), torch.randn(4, 6, requires_grad=True), 0.2
    qn, kn = F.normalize(q.detach(), dim=1), F.normalize(k.detach(), dim=1)
    expected = 0.0
    for i in range(4):
        others = sum(math.exp(float(qn[i] @ kn[j]) / t) for j in range(4))
        expected += -math.log(math.exp(float(qn[i] @ kn[i]) / t) / others)
    loss = moco_v3_loss(q, k, t)
    assert loss.item() == pytest.approx(2 * t * expected / 4, rel=1e-5)
    loss.backward()
    assert q.grad is not None and k.grad is None


def test_weighted_knn_votes_by_similarity():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    queries = torch.tensor([[1.0, 0.05], [0.1, 1.0]])
    assert knn_predict(bank, labels, queries, k=1, temperature=0.07, num_classes=2).tolist() == [0, 1]
    # k = 3: two class-0 neighbours, but the query sits on the class-1 one, whose weight dominates
    assert knn_predict(bank, labels, torch.tensor([[0.0, 1.0]]), k=3, temperature=0.07, num_classes=2).tolist() == [1]


def _runner(results: Path, preset: str, method: str, **overrides):
    job = JobSpec("ssl", preset, method, 0, tuple(sorted(overrides.items()))).resolve()
    prepare(plan([job]), results, Path("data"), False)
    runner = build_runner(job, JobDir(results, job.job_id), Path("data"), False)
    return runner, job


def _sema_hook(runner) -> SemaHook:
    return next(h for h in runner.hooks if isinstance(h, SemaHook))


@pytest.mark.slow
def test_momentum_target_is_neither_averaged_nor_switched(tmp_path):
    runner, _ = _runner(tmp_path, "tiny-mocov3", "sema", epochs=2, switch_start=1)
    runner.train()
    hook, model = _sema_hook(runner), runner.model
    assert hook.counts()["switches"] == 2
    assert not any(name.startswith("target.") for name in hook.averager.averaged_state())
    with torch.no_grad():  # move every weight away from the average, then switch
        for p in model.parameters():
            p.add_(1.0)
    target = {k: v.clone() for k, v in model.target.state_dict().items()}
    online = model.backbone.state_dict()
    assert any(not torch.equal(target[f"backbone.{k}"], v) for k, v in online.items())  # a real, separate target
    hook._switch(runner, epoch=3, iteration=0)
    averaged = hook.averager.averaged_state()
    assert torch.equal(model.backbone[0].weight, averaged["backbone.0.weight"].to(model.backbone[0].weight.dtype))
    for key, value in model.target.state_dict().items():
        assert torch.equal(value, target[key]), key
    with hook.averager.swapped(model):
        assert all(torch.equal(v, target[k]) for k, v in model.target.state_dict().items())


@pytest.mark.slow
def test_end_of_run_probe_uses_the_average_after_a_resume(tmp_path):
    runner, job = _runner(tmp_path, "tiny", "ema", epochs=2, lr_warmup_epochs=0)
    runner.train()
    # a second process picking the finished job up (e.g. after a crash before `done`) resumes, then tests
    again, _ = _runner(tmp_path, "tiny", "ema", epochs=2, lr_warmup_epochs=0)
    again.train()
    hook = _sema_hook(again)
    before = {k: v.clone() for k, v in hook.averager.averaged_state().items()}
    steps = 2 * len(again.train_dataloader)
    assert hook.averager.num_updates == steps
    again.test()
    assert hook.averager.num_updates == steps
    assert all(torch.equal(v, before[k]) for k, v in hook.averager.averaged_state().items())
    rows = JobDir(tmp_path, job.job_id).metrics()
    assert [r["metric"] for r in rows if r["split"] == "test"] == ["knn", "linear_probe"]


@pytest.mark.slow
def test_tiny_run_learns_and_records_knn_each_epoch_then_knn_and_probe_on_test(tmp_path, capsys):
    assert main(["run", "--task", "ssl", "--method", "none", "--set", "epochs=3",
                 "--results-dir", str(tmp_path)]) == 0
    (job_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    rows = JobDir(tmp_path, job_dir.name).metrics()
    knn = [r for r in rows if r["metric"] == "knn" and r["split"] == "val"]
    test = {r["metric"]: r for r in rows if r["split"] == "test"}
    assert [r["epoch"] for r in knn] == [1, 2, 3] and len(rows) == 5
    assert set(test) == {"knn", "linear_probe"} and all(r["epoch"] == 3 for r in test.values())
    # chance is 10 %; an untrained backbone scores ~25 % on the distorted digits
    assert knn[-1]["value"] > 35 and test["knn"]["value"] > 35 and test["linear_probe"]["value"] > 35


@pytest.mark.parametrize("preset", sorted(TASK.presets))
def test_dry_run_builds_every_preset(preset, tmp_path, capsys):
    assert main(["run", "--task", "ssl", "--preset", preset, "--method", "sema", "--dry-run",
                 "--results-dir", str(tmp_path), "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "SelfSupervised" in out and "LinearProbe" in out
    assert ("MomentumTargetHook" in out) == preset.endswith(("byol", "mocov3"))


def test_momentum_models_exclude_their_target_and_simclr_has_none():
    backbone = {"arch": "cifar", "depths": [1], "width": 4, "in_channels": 1}
    for method in ("byol", "mocov3"):
        assert SelfSupervised(method, backbone, 8, 4, pred_hidden=8).averaging_exclude == ("target.",)
    assert not hasattr(SelfSupervised("simclr", backbone, 8, 4), "target")


def test_paper_preset_without_data_names_the_layout(tmp_path):
    job = JobSpec("ssl", "stl10-byol", "none", 0).resolve()
    with pytest.raises(DatasetMissing, match="stl10_binary"):
        TASK.check_data(job.preset, job.context(tmp_path, tmp_path / "work"))
