"""`suite run` end to end: real tiny jobs in worker processes, resume after a kill, failures, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sema_suite.method.checkpoints import read_checkpoint, trained_state
from sema_suite.results.store import JobDir, read_json, write_json
from sema_suite.running.jobs import JobSpec
from sema_suite.running.runs import plan
from sema_suite.running.scheduler import prepare, run_jobs, worker_slots

FAST = ["depths=[1]", "width=4", "image_size=8", "batch_size=128"]


def suite(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sema_suite.cli", *args], capture_output=True, text=True, **kwargs)


def run_args(results: Path, epochs: int, method: str = "sema") -> list[str]:
    sets = [x for s in [*FAST, f"epochs={epochs}", "switch_start=1"] for x in ("--set", s)]
    return ["run", "--task", "cls", "--method", method, "--results-dir", str(results), *sets]


def curve(results: Path) -> list[tuple[float, float]]:
    (job,) = [JobDir(results, p.name) for p in results.iterdir() if p.is_dir()]
    return [(r["epoch"], r["value"]) for r in job.metrics() if r["split"] == "val"]


@pytest.mark.slow
def test_kill_and_rerun_resumes_exactly(tmp_path: Path) -> None:
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    first = suite(*run_args(clean, epochs=4))
    assert first.returncode == 0, first.stderr
    reference = curve(clean)
    assert [e for e, _ in reference] == [1, 2, 3, 4]

    periodic = ["--checkpoint-every", "4"]  # also mid-epoch (9 steps each): the kill may fall after one of those
    proc = subprocess.Popen([sys.executable, "-m", "sema_suite.cli", *run_args(killed, epochs=4), *periodic],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and (not list(killed.glob("*/metrics.csv")) or len(curve(killed)) < 2):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the scheduler and its worker die mid-run, as in a crash
    proc.wait()
    assert 2 <= len(curve(killed)) < 4

    again = suite(*run_args(killed, epochs=4), *periodic)
    assert again.returncode == 0, again.stderr
    assert curve(killed) == reference  # each evaluation exactly once, and the same numbers
    (job,) = [JobDir(killed, p.name) for p in killed.iterdir() if p.is_dir()]
    assert "periodic checkpoint after iteration 4" in job.log_file.read_text()
    status = job.status()
    assert status["attempts"] == 2 and status["resumed_from"]
    assert status["averaging"]["switches"] == 4

    skipped = suite(*run_args(clean, epochs=4))
    assert skipped.returncode == 0 and "0 to run, 1 already done" in skipped.stderr


@pytest.mark.slow
def test_nan_loss_fails_that_job_and_the_others_go_on(tmp_path: Path) -> None:
    overrides = (("depths", [1]), ("width", 4), ("image_size", 8), ("batch_size", 128), ("epochs", 1))
    bad = JobSpec("cls", "tiny", "ema", 0, (*overrides, ("cfg.optim_wrapper.optimizer.lr", float("nan")))).resolve()
    good = JobSpec("cls", "tiny", "ema", 0, overrides).resolve()
    todo = prepare(plan([bad, good]), tmp_path, tmp_path / "data", download=False)
    outcomes = {o.job_id: o for o in run_jobs(todo, worker_slots(None, 1), poll_s=0.1)}
    assert outcomes[bad.job_id].state == "failed"
    assert "loss became nan" in outcomes[bad.job_id].error
    assert outcomes[good.job_id].state == "done"
    assert JobDir(tmp_path, bad.job_id).status()["state"] == "failed"

    result = suite("run", "--task", "cls", "--method", "ema", "--results-dir", str(tmp_path),
                   *[x for s in [*FAST, "epochs=1", "cfg.optim_wrapper.optimizer.lr=nan"] for x in ("--set", s)])
    assert result.returncode == 1
    assert "loss became nan" in result.stdout


@pytest.mark.slow
def test_a_job_planned_by_other_code_is_refused_never_marked_done(tmp_path: Path) -> None:
    """The preset changed between planning and the worker's start: the worker names both ids and the job fails
    (a re-run plans and trains the new one), where it used to train elsewhere and mark the planned job done."""
    job = JobSpec("cls", "tiny", "none", 0, (("depths", [1]), ("width", 4), ("epochs", 1))).resolve()
    (todo,) = prepare(plan([job]), tmp_path, tmp_path / "data", download=False)
    doc = read_json(todo.job_json)
    doc["spec"]["overrides"]["width"] = 8  # what the job resolves to with the code found at its start
    write_json(todo.job_json, doc)
    (outcome,) = run_jobs([todo], worker_slots(None, 1), poll_s=0.1)
    now = JobSpec("cls", "tiny", "none", 0, (("depths", [1]), ("epochs", 1), ("width", 8))).resolve().job_id
    assert outcome.state == "failed" and job.job_id in outcome.error and now in outcome.error
    assert not (tmp_path / now).exists() and not JobDir(tmp_path, job.job_id).metrics()


@pytest.mark.parametrize(("args", "message"), [
    (["--task", "nope"], "unknown task 'nope'; valid tasks: cls"),
    (["--method", "swap"], "unknown method 'swap'; valid methods: ema, lookahead, none, sema, swa"),
    (["--preset", "huge"], "valid preset of task 'cls's: cifar10, cifar100, long, tiny"),
    (["--set", "epoch=3"], "unknown override key for cls/tiny 'epoch'"),
    (["--set", "epochs"], "write it as key=value"),
    (["--set", "epochs=many"], "epochs='many': epochs takes a whole number >= 1"),
    (["--preset", "cifar100", "--data-root", "/nonexistent"], "/nonexistent/cifar-100-python/"),
    (["--jobs-per-gpu", "2"], "without --gpus there is none to share"),
    (["--jobs-per-gpu", "2", "--backend", "slurm"], "a Slurm array task holds whole GPUs"),
    (["--checkpoint-every", "0s"], "give iterations (500), seconds, minutes or hours of training"),
])
def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    results = tmp_path / "results"
    result = suite("run", "--results-dir", str(results), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not results.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine where CUDA sees no GPU")
def test_asking_for_a_gpu_that_is_not_there_is_an_error(tmp_path: Path) -> None:
    results = tmp_path / "results"
    result = suite("run", "--results-dir", str(results), "--gpus", "0")
    assert result.returncode == 2 and "CUDA sees no device on this machine, so 0 is not there" in result.stderr
    assert not results.exists()


def test_dry_run_builds_paper_preset_without_data(tmp_path: Path) -> None:
    result = suite("run", "--preset", "cifar100", "--method", "sema", "--dry-run", "--data-root", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "type='SemaHook'" in result.stdout and "switch=True" in result.stdout
    assert "# model: ImageClassifier, 11.2" in result.stdout  # ResNet-18 with 100 classes


@pytest.mark.slow
def test_final_evaluation_is_recorded_after_a_kill_before_it(tmp_path: Path) -> None:
    """With evaluations every 2 of 3 epochs, the last checkpoint (epoch 3) is written before the final
    evaluation; a job killed in between resumes at the end of training and must still record it."""
    args = ["--set", "cfg.train_cfg.val_interval=2"]
    assert suite(*run_args(tmp_path, epochs=3), *args).returncode == 0
    (job,) = [JobDir(tmp_path, p.name) for p in tmp_path.iterdir() if p.is_dir()]
    reference = [(r["split"], r["epoch"], r["value"]) for r in job.metrics()]
    assert [r[:2] for r in reference] == [("val", 2), ("val", 3), ("test", 3)]

    job.drop_metrics(lambda r: r["epoch"] < 3)  # as if killed right after the epoch-3 checkpoint
    job.update_status(state="failed", error="killed")
    again = suite(*run_args(tmp_path, epochs=3), *args)
    assert again.returncode == 0, again.stderr
    assert [(r["split"], r["epoch"], r["value"]) for r in job.metrics()] == reference
    assert job.status()["resumed_from"].endswith("epoch_3.pth")


@pytest.mark.slow
@pytest.mark.xdist_group("cls_jobs")
def test_a_seed_gives_every_method_the_same_start_and_data_order(cls_jobs: Path) -> None:
    """The seeds are pairs: none, ema and sema of one seed start from the same weights and draw the same
    batches, so after epoch 1 (before sema's first switch at epoch 2) all three trained the same weights,
    and ema -- which never feeds back -- ends on exactly none's weights (what lets shared runs serve both). Another
    seed trains other weights. Each job trains alone (--no-share: tests/cls_jobs.py), to check that premise."""

    def weights(method: str, seed: int, epoch: int) -> dict[str, torch.Tensor]:
        (folder,) = cls_jobs.glob(f"cls-tiny-{method}-s{seed}-*")
        return trained_state(read_checkpoint(folder / "work" / f"epoch_{epoch}.pth"))

    def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    none = weights("none", 0, 1)
    assert same(none, weights("ema", 0, 1)) and same(none, weights("sema", 0, 1))
    assert same(weights("none", 0, 2), weights("ema", 0, 2))
    assert not same(weights("none", 0, 2), weights("sema", 0, 2))
    assert not same(none, weights("none", 1, 1))


def test_jobs_per_gpu_gives_each_gpu_that_many_worker_slots() -> None:
    slots = worker_slots(["0", "1"], workers=1, jobs_per_gpu=3)
    assert [slot["CUDA_VISIBLE_DEVICES"] for slot in slots] == ["0"] * 3 + ["1"] * 3
    assert len({slot["SUITE_THREADS"] for slot in slots}) == 1  # the host's cores shared between the six
    (alone,) = worker_slots(["0"], workers=1)
    assert alone["CUDA_VISIBLE_DEVICES"] == "0" and "SUITE_THREADS" not in alone
