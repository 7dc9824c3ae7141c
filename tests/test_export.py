"""Checkpoints of ema/sema jobs hold the reported weights where test tools look (mmengine's EMAHook convention),
resume from the trained ones, and `suite export` writes either as a plain state dict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sema_suite.analysis.interpolation import evaluate
from sema_suite.method.checkpoints import load, trained_state
from sema_suite.results.store import JobDir, read_json
from sema_suite.running.worker import build_runner, load_job

from cls_jobs import jobs_by_method

# the shared cls jobs (tests/cls_jobs.py): each trained alone, so each has its own checkpoint (a shared run's: see
# README); one xdist worker trains them for all their tests
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cls_jobs")]


def suite(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sema_suite.cli", *args], capture_output=True, text=True)


@pytest.fixture
def jobs(cls_jobs: Path) -> dict[str, JobDir]:
    """method -> the shared cls job of seed 0."""
    return jobs_by_method(cls_jobs)


def final_val(job: JobDir) -> float:
    return max((r for r in job.metrics() if r["split"] == "val"), key=lambda r: r["iter"])["value"]


@pytest.mark.parametrize("method", ["ema", "sema"])
def test_the_checkpoint_holds_the_reported_weights_where_test_tools_load_them(jobs, method: str) -> None:
    from mmengine.runner.checkpoint import load_checkpoint

    sema = jobs[method]
    checkpoint = load(sema)
    averaged = checkpoint["sema_hook"]["averagers"][sema.job_id]["averaged"]
    assert all(torch.equal(checkpoint["state_dict"][k], v) for k, v in averaged.items() if k in checkpoint["state_dict"])
    assert set(checkpoint["ema_state_dict"]) == {f"module.{k}" for k in averaged if k in checkpoint["state_dict"]}
    same = all(torch.equal(trained_state(checkpoint)[k], checkpoint["state_dict"][k]) for k in averaged
               if k in checkpoint["state_dict"])
    assert same == (method == "sema")  # sema's last switch (end of the run) made them equal; ema's differ

    # what a test tool does: build the model, load the checkpoint's state_dict without the suite's hooks, evaluate
    runner = build_runner(load_job(read_json(sema.job_json)), sema, Path(read_json(sema.job_json)["data_root"]), False)
    load_checkpoint(runner.model, str(sema.last_checkpoint()), map_location="cpu")
    assert evaluate(runner) == {"top1": pytest.approx(final_val(sema), abs=1e-9)}


def test_export_writes_plain_state_dicts_of_either_weights(jobs, tmp_path: Path) -> None:
    sema, none = jobs["sema"], jobs["none"]
    checkpoint = load(sema)
    out = suite("export", sema.job_id, "--results-dir", str(sema.path.parent), "-o", str(tmp_path / "avg.pth"))
    assert out.returncode == 0 and "averaged weights" in out.stdout, out.stderr
    exported = torch.load(tmp_path / "avg.pth", weights_only=True)  # tensors only
    assert exported.keys() == checkpoint["state_dict"].keys()
    assert all(torch.equal(exported[k], v) for k, v in checkpoint["state_dict"].items())

    out = suite("export", sema.job_id, "--results-dir", str(sema.path.parent), "--weights", "trained",
                "-o", str(tmp_path / "trained.pth"))
    assert out.returncode == 0, out.stderr
    trained = torch.load(tmp_path / "trained.pth", weights_only=True)
    assert all(torch.equal(trained[k], v) for k, v in trained_state(checkpoint).items())

    # a user evaluating the exported average gets the number the job reported
    runner = build_runner(load_job(read_json(sema.job_json)), sema, Path(read_json(sema.job_json)["data_root"]), False)
    runner.model.load_state_dict(exported)
    assert evaluate(runner)["top1"] == pytest.approx(final_val(sema), abs=1e-9)

    refused = suite("export", none.job_id, "--results-dir", str(none.path.parent), "--weights", "averaged",
                    "-o", str(tmp_path / "none.pth"))
    assert refused.returncode == 2 and "keeps no average" in refused.stderr and not (tmp_path / "none.pth").exists()
    plain = suite("export", none.job_id, "--results-dir", str(none.path.parent), "-o", str(tmp_path / "none.pth"))
    assert plain.returncode == 0 and "trained weights" in plain.stdout, plain.stderr
    missing = suite("export", "cls-tiny-sema-s9-nothere", "--results-dir", str(none.path.parent), "-o",
                    str(tmp_path / "x.pth"))
    assert missing.returncode == 2 and "no job cls-tiny-sema-s9-nothere" in missing.stderr
