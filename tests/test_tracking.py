"""`suite run --log-to`: one real tiny job logged to TensorBoard, MLflow (local file store) and W&B (offline),
each read back; and the errors for an unknown tracker or a missing package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sema_suite.errors import SuiteError
from sema_suite.results.store import JobDir
from sema_suite.running import tracking

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")
pytest.importorskip("wandb")

FAST = ["epochs=2", "depths=[1]", "width=4", "image_size=8", "batch_size=128", "switch_start=1"]


def suite(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "sema_suite.cli", *args], capture_output=True, text=True, env=env, cwd=cwd)


@pytest.mark.slow
def test_a_job_logs_to_every_tracker_and_reads_back(tmp_path: Path, monkeypatch) -> None:
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    results = tmp_path / "results"
    done = suite("run", "--task", "cls", "--method", "sema", "--results-dir", str(results),
                 "--log-to", "tensorboard,mlflow,wandb", *[x for kv in FAST for x in ("--set", kv)], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (folder,) = [p for p in results.iterdir() if p.is_dir() and p.name != "mlruns"]
    job = JobDir(results, folder.name)
    val = [r["value"] for r in job.metrics() if r["split"] == "val" and r["metric"] == "top1"]
    (test,) = [r["value"] for r in job.metrics() if r["split"] == "test" and r["metric"] == "top1"]
    switches = [s["epoch"] for s in job.status()["averaging"]["switch_points"]]
    assert switches == [1, 2]

    (events,) = list(job.work_dir.glob("*/vis_data"))
    board = EventAccumulator(str(events))
    board.Reload()
    assert [e.value for e in board.Scalars("top1")] == pytest.approx(val)
    assert [e.value for e in board.Scalars("test/top1")] == pytest.approx([test])
    assert [e.value for e in board.Scalars("sema/switch_epoch")] == switches

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads its file store only when asked to
    client = MlflowClient(tracking_uri=(results / "mlruns").as_uri())
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])  # one run per job
    assert run.info.run_name == job.job_id
    assert {k: run.data.tags[k] for k in ("task", "preset", "method", "variant", "seed")} == {
        "task": "cls", "preset": "tiny", "method": "sema", "variant": job.metrics()[0]["variant"], "seed": "0"}
    assert [m.value for m in client.get_metric_history(run.info.run_id, "top1")] == pytest.approx(val)
    assert run.data.metrics["test/top1"] == pytest.approx(test)

    # W&B 0.31 has no Python reader for offline runs: its record file holds the run's strings as written
    (record,) = list((folder / "wandb").glob(f"offline-run-*-{job.job_id}/run-{job.job_id}.wandb"))
    data = record.read_bytes()
    for text in ("task=cls", "method=sema", "cls/tiny", "sema/switch_epoch", "test/top1"):
        assert text.encode() in data, text


def test_unknown_trackers_and_missing_packages_are_named_before_anything_is_written(tmp_path: Path, monkeypatch) -> None:
    results = tmp_path / "results"
    bad = suite("run", "--task", "cls", "--results-dir", str(results), "--log-to", "tensorbord", cwd=tmp_path)
    assert bad.returncode != 0 and "tensorbord" in bad.stderr and "tensorboard, mlflow, wandb" in bad.stderr
    assert not results.exists()
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(SuiteError, match=r"sema-bench\[track\]"):
        tracking.check(["mlflow", "wandb"])
    assert tracking.check(["mlflow", "mlflow"]) == ["mlflow"]
