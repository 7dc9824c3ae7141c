"""`suite analyze` and `suite run --analyze`: flatness of real tiny jobs, deterministic, skipped once measured,
measured again after a kill, and read by the leaderboard like any metric."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sema_suite.analysis.measure import Settings
from sema_suite.errors import BadOverride
from sema_suite.results import leaderboard
from sema_suite.results.store import JobDir

from cls_jobs import CLS_FAST, copy_jobs, jobs_by_method

QUICK = ["batches=1", "trace_samples=2", "steps=1", "average_samples=2", "directions=1", "points=3"]
# each task's tiny preset, cut to a few steps (and, for the slowest evaluations, fewer samples); cls's is analysed
# at the end of its run (and during it) in test_a_partner_trained_later_is_interpolated_...
TRAIN = {
    "reg": ["epochs=1"],
    "ssl": ["epochs=2"],
    "video": ["epochs=1", "train_sequences=128", "val_sequences=32", "test_sequences=32", "batch_size=16"],
    "det": ["epochs=1", "num_train=64", "num_val=16", "num_test=16"],
    "gen": ["iters=30", "val_interval=30", "lr_warmup_iters=5", "batch_size=16", "sample_steps=2", "fid_samples=64",
            "eval_batch_size=64"],
    "lm": ["iters=30", "val_interval=30", "lr_warmup_iters=5", "layers=1", "dim=32", "ffn=64", "context=32"],
}


def suite(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sema_suite.cli", *args], capture_output=True, text=True)


def sets(pairs: list[str]) -> list[str]:
    return [x for pair in pairs for x in ("--set", pair)]


def jobs(results: Path) -> dict[str, JobDir]:
    return {JobDir(results, p.name).job_id.split("-")[2]: JobDir(results, p.name) for p in results.iterdir() if p.is_dir()}


@pytest.fixture(scope="module")
def trained(cls_jobs: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Copies of two of the shared cls jobs (none, sema; no ema job yet), measured; and what the measuring printed."""
    results = tmp_path_factory.mktemp("results")
    shared = jobs_by_method(cls_jobs)
    copy_jobs([shared["none"], shared["sema"]], results)
    measured = suite("analyze", "--results-dir", str(results), *sets(QUICK))
    assert measured.returncode == 0, measured.stderr
    return results, measured.stdout


def test_settings_refuse_unknown_or_bad_knobs() -> None:
    assert Settings.parse(["batches=8", "rho=0.1"]) == Settings(batches=8, rho=0.1)
    with pytest.raises(BadOverride, match="key one of batches"):
        Settings.parse(["batch=8"])
    with pytest.raises(BadOverride, match="batches takes a int"):
        Settings.parse(["batches=many"])
    with pytest.raises(BadOverride, match="must be positive"):
        Settings.parse(["trace_samples=0"])
    with pytest.raises(BadOverride, match="a line needs both ends"):
        Settings.parse(["interpolation_points=1"])
    assert Settings.parse(["interpolation_points=0", "every_eval=0"]).interpolation_points == 0


@pytest.mark.slow
@pytest.mark.xdist_group("cls_jobs")
def test_measurements_are_deterministic_skipped_once_done_and_read_by_the_leaderboard(trained) -> None:
    trained, printed = trained
    assert "2 measured, 0 failed" in printed
    by_method = jobs(trained)
    rows = {m: {r["metric"]: r["value"] for r in job.analysis()} for m, job in by_method.items()}
    assert set(rows["sema"]) == {"train_loss", "hessian_eig1", "hessian_trace", "hessian_trace_stderr",
                                 "sharpness_adaptive", "sharpness_l2", "sharpness_average",
                                 "sharpness_average_stderr"}
    assert rows["sema"] != rows["none"] and rows["sema"]["sharpness_adaptive"] >= 0
    landscape = by_method["sema"].landscape_csv.read_text().splitlines()
    assert len(landscape) == 1 + 3  # one direction, three points

    again = suite("analyze", "--results-dir", str(trained), "--selection", "shipped,tuned", "--seeds", "0", *sets(QUICK))
    assert "2 finished job(s): 0 to measure, 2 already measured" in again.stderr
    nothing = suite("analyze", "--results-dir", str(trained), "--selection", "shipped", "--seeds", "1")
    assert nothing.returncode != 0 and "no finished jobs of --seeds 1 --selection shipped" in nothing.stderr
    bad = suite("analyze", "--results-dir", str(trained), "--selection", "best")
    assert bad.returncode != 0 and "unknown selection best" in bad.stderr
    # other settings measure again, and the same settings give the same numbers
    analysis = by_method["sema"].analysis_csv.read_text()
    suite("analyze", "--results-dir", str(trained), "--jobs", by_method["sema"].job_id, *sets([*QUICK, "seed=1"]))
    assert by_method["sema"].analysis_csv.read_text() != analysis
    suite("analyze", "--results-dir", str(trained), "--jobs", by_method["sema"].job_id, *sets(QUICK))
    values = lambda text: [line.split(",")[13] for line in text.splitlines()]  # noqa: E731
    assert values(by_method["sema"].analysis_csv.read_text()) == values(analysis)

    table = leaderboard.build(trained)
    flat = {r["method"]: r for r in table if r["split"] == "train" and r["metric"] == "hessian_trace"}
    assert set(flat) == {"none", "sema"} and flat["sema"]["higher_is_better"] is False
    assert flat["sema"]["delta_vs_none"] == pytest.approx(rows["sema"]["hessian_trace"] - rows["none"]["hessian_trace"])


def final(job: JobDir, split: str, metric: str) -> float:
    return max((r for r in job.metrics() if r["split"] == split and r["metric"] == metric), key=lambda r: r["iter"])["value"]


@pytest.mark.slow
@pytest.mark.xdist_group("cls_jobs")
def test_a_sema_job_is_interpolated_with_its_partners(trained) -> None:
    trained, _ = trained
    by_method = jobs(trained)
    sema = by_method["sema"]
    curves = {}
    for line in sema.interpolation_csv.read_text().splitlines()[1:]:
        _, partner, method, t, split, metric, value = line.split(",")
        assert partner == by_method["none"].job_id and method == "none"
        curves.setdefault(f"{split} {metric}", {})[float(t)] = float(value)
    assert set(curves) == {"train train_loss", "val top1"} and len(curves["val top1"]) == 11
    # each end is exactly the weights its job reports: the val metric its run recorded, the loss analysed
    assert curves["val top1"][0.0] == pytest.approx(final(by_method["none"], "val", "top1"), abs=1e-9)
    assert curves["val top1"][1.0] == pytest.approx(final(sema, "val", "top1"), abs=1e-9)
    analysed = {m: {r["metric"]: r["value"] for r in job.analysis()} for m, job in by_method.items()}
    assert curves["train train_loss"][0.0] == pytest.approx(analysed["none"]["train_loss"], rel=1e-5)
    assert curves["train train_loss"][1.0] == pytest.approx(analysed["sema"]["train_loss"], rel=1e-5)
    barriers = {r["metric"]: r for r in sema.barriers()}
    assert set(barriers) == {"barrier_train_loss_vs_none", "barrier_top1_vs_none"}  # no ema job: no ema line
    assert all(r["value"] >= 0 and r["higher_is_better"] is False for r in barriers.values())
    ts = sorted(curves["train train_loss"])
    chord = lambda t: (1 - t) * curves["train train_loss"][0.0] + t * curves["train train_loss"][1.0]  # noqa: E731
    assert barriers["barrier_train_loss_vs_none"]["value"] == pytest.approx(max(curves["train train_loss"][t] - chord(t) for t in ts))
    assert {r["metric"] for r in leaderboard.load(trained) if r["method"] == "sema"} >= set(barriers)


@pytest.mark.slow
@pytest.mark.xdist_group("cls_jobs")
def test_a_partner_trained_later_is_interpolated_and_evaluations_are_measured_during_training(
        trained, cls_jobs: Path, tmp_path: Path) -> None:
    trained, _ = trained
    results = tmp_path / "results"
    copy_jobs(list(jobs(trained).values()), results)
    done = suite("run", "--task", "cls", "--method", "ema", "--results-dir", str(results), *sets(CLS_FAST),
                 "--analyze", *QUICK, "every_eval=1")
    assert done.returncode == 0, done.stderr
    assert "analysing 1 finished job(s)" in done.stderr  # sema's line to the new ema job
    by_method = jobs(results)
    assert {r["metric"] for r in by_method["sema"].barriers()} == {
        f"barrier_{m}_vs_{p}" for m in ("train_loss", "top1") for p in ("none", "ema")}
    # every_eval=1: measured at both evaluations of the two-epoch run, the final one with the landscape ...
    ema = by_method["ema"]
    assert ema.status()["analysis"]["state"] == "done", ema.status()["analysis"].get("error")
    assert sorted({r["epoch"] for r in ema.analysis()}) == [1.0, 2.0]
    assert {r["metric"] for r in ema.analysis() if r["epoch"] == 1.0} == {r["metric"] for r in jobs(trained)["sema"].analysis()}
    # ... without changing the training: ema follows none's trajectory, so its trained weights are none's,
    # and the analysis' random draws between evaluations must not move the training's random stream (the shared
    # ema job is this job, trained alone without --analyze)
    plain = jobs_by_method(cls_jobs)["ema"]
    assert plain.job_id == ema.job_id and [r["value"] for r in plain.metrics()] == [r["value"] for r in ema.metrics()]

    refused = suite("analyze", "--results-dir", str(results), *sets(["every_eval=1"]))
    assert refused.returncode != 0 and "suite run --analyze every_eval" in refused.stderr


@pytest.mark.slow
@pytest.mark.xdist_group("cls_jobs")
def test_a_killed_analysis_is_measured_again(trained, tmp_path: Path) -> None:
    trained, _ = trained
    results = tmp_path / "results"
    copy_jobs(list(jobs(trained).values()), results)
    for job in jobs(results).values():
        job.analysis_csv.unlink(missing_ok=True)
        job.update_status(analysis=None)
    proc = subprocess.Popen([sys.executable, "-m", "sema_suite.cli", "analyze", "--results-dir", str(results), *sets(QUICK)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not any((j.status().get("analysis") or {}).get("state") == "running"
                                             for j in jobs(results).values()):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    again = suite("analyze", "--results-dir", str(results), *sets(QUICK))
    assert again.returncode == 0, again.stderr
    for method, job in jobs(results).items():
        assert job.status()["analysis"]["state"] == "done"
        assert [r["value"] for r in job.analysis()] == [r["value"] for r in jobs(trained)[method].analysis()]


def test_published_results_without_weights_are_named_not_measured(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    missing = suite("analyze", "--results-dir", str(results))
    assert missing.returncode != 0 and "no finished jobs" in missing.stderr
    unknown = suite("analyze", "--results-dir", str(results), "--jobs", "cls-tiny-none-s0-nothere")
    assert unknown.returncode != 0 and "cls-tiny-none-s0-nothere" in unknown.stderr


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(TRAIN))
def test_every_tiny_preset_can_be_analysed_at_the_end_of_its_run(task: str, tmp_path: Path) -> None:
    done = suite("run", "--task", task, "--method", "sema", "--results-dir", str(tmp_path), "--analyze", *QUICK,
                 *sets(TRAIN[task]))
    assert done.returncode == 0, done.stderr
    (job,) = jobs(tmp_path).values()
    status = job.status()["analysis"]
    assert status["state"] == "done", status.get("error")
    assert {r["metric"] for r in job.analysis()} >= {"hessian_eig1", "hessian_trace", "sharpness_adaptive"}


def test_the_batch_size_comes_from_a_batch_sampler_too() -> None:
    """MMDetection's COCO loaders batch through a batch sampler: ``loader.batch_size`` is None there."""
    from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

    from sema_suite.analysis.measure import batch_size

    data = list(range(10))
    assert batch_size(DataLoader(data, batch_size=4)) == 4
    loader = DataLoader(data, batch_sampler=BatchSampler(SequentialSampler(data), 3, drop_last=False))
    assert loader.batch_size is None and batch_size(loader) == 3


def test_a_failed_measurement_during_training_is_recorded_not_fatal(tmp_path: Path, monkeypatch) -> None:
    from types import SimpleNamespace

    from sema_suite.analysis import hook as analysis_hook
    from sema_suite.analysis import measure
    from sema_suite.results.store import JobDir

    job = JobDir(tmp_path, "j")
    job.append_metrics([{"job_id": "j", "run_id": "j", "task": "cls", "preset": "tiny", "dataset": "d", "model": "m",
                         "method": "none", "seed": 0, "variant": "", "epoch": 1, "iter": 5, "split": "val",
                         "metric": "top1", "value": 1.0, "higher_is_better": True, "wall_time_s": 1.0,
                         "timestamp": "2026-01-01T00:00:00Z"}])
    job.update_status(state="running")

    def broken(*args, **kwargs) -> None:
        raise RuntimeError("batch_size is None")

    monkeypatch.setattr(measure, "record_measures", broken)
    hook = analysis_hook.AnalysisHook(str(tmp_path), ["j"], "cls", {"every_eval": 1})
    warnings = []
    runner = SimpleNamespace(iter=5, train_loop=SimpleNamespace(max_iters=10), hooks=[],
                             logger=SimpleNamespace(warning=warnings.append))
    hook.after_val_epoch(runner)  # no exception: training goes on
    assert job.status()["analysis_failures"] == [{"iter": 5, "error": "RuntimeError: batch_size is None"}]
    assert "batch_size is None" in warnings[0]


@pytest.mark.slow
@pytest.mark.xdist_group("cls_jobs")
def test_interpolation_can_recompute_batchnorm_at_each_point(trained, cls_jobs: Path, tmp_path: Path) -> None:
    """``interpolation_bn=1`` (REPAIR's re-estimation) measures other curves than lerped statistics give, and says
    so in the job's status; the default's settings (and so the published measurements) are unchanged."""
    lerped, _ = trained
    results = tmp_path / "results"
    shared = jobs_by_method(cls_jobs)
    copy_jobs([shared["none"], shared["sema"]], results)
    measured = suite("analyze", "--results-dir", str(results), *sets([*QUICK, "interpolation_bn=1"]))
    assert measured.returncode == 0, measured.stderr

    def curve(job: JobDir) -> dict[float, float]:
        rows = [line.split(",") for line in job.interpolation_csv.read_text().splitlines()[1:]]
        return {float(r[3]): float(r[6]) for r in rows if r[5] == "train_loss"}

    recomputed, plain = jobs(results)["sema"], jobs(lerped)["sema"]
    assert recomputed.status()["interpolation"]["settings"]["interpolation_bn"] == 1
    assert "interpolation_bn" not in plain.status()["interpolation"]["settings"]
    assert curve(recomputed).keys() == curve(plain).keys()
    assert curve(recomputed)[0.5] != pytest.approx(curve(plain)[0.5], rel=1e-6)
