"""A job trains once, whatever asks for it, and a job that cannot record its metrics fails instead of finishing
without rows."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from mmengine.runner import Runner

from sema_suite import registry
from sema_suite.errors import SuiteError
from sema_suite.results.store import JobDir
from sema_suite.running.config import build_config
from sema_suite.running.jobs import JobSpec, parse_value
from sema_suite.task import Metric
from sema_tasks.cls import Classification

from cls_jobs import CLS_FAST, sets
from matrix import env

pytestmark = pytest.mark.slow


def test_overlapping_matrices_train_a_shared_job_once(tmp_path: Path) -> None:
    """``--method none,ema`` (one shared run) and ``--method none`` started together on one folder: whichever takes
    the none job first trains it, the other waits for it; both end 0, and each evaluation is recorded once."""
    results = tmp_path / "results"
    command = [sys.executable, "-m", "sema_suite.cli", "run", "--task", "cls", "--seeds", "0", "--results-dir",
               str(results), *sets(CLS_FAST)]
    runs = [subprocess.Popen([*command, "--method", methods], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env()) for methods in ("none,ema", "none")]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    none, ema = (JobDir(results, next(results.glob(f"cls-tiny-{m}-s0-*")).name) for m in ("none", "ema"))
    for job in (none, ema):
        rows = job.metrics()
        assert job.status()["state"] == "done"
        assert Counter((r["split"], r["iter"], r["metric"]) for r in rows).most_common(1)[0][1] == 1, rows
        assert len({r["run_id"] for r in rows}) == 1
        assert {(r["split"], r["epoch"]) for r in rows} == {("val", 1.0), ("val", 2.0), ("test", 2.0)}


class Renamed(Classification):
    """A plugin's task whose metric is named otherwise than its evaluator reports it (``top1``)."""

    name = "cls_renamed"
    metrics = (Metric("accuracy", higher_is_better=True, primary=True),)


def test_a_task_whose_metric_names_do_not_match_fails_naming_both(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(registry._registered, Renamed.name, Renamed())
    overrides = tuple((key, parse_value(value)) for key, _, value in (pair.partition("=") for pair in CLS_FAST))
    job = JobSpec(Renamed.name, "tiny", "none", 0, overrides).resolve()
    folder = JobDir(tmp_path, job.job_id)
    runner = Runner.from_cfg(build_config(job, job.context(tmp_path / "data", folder.work_dir), tmp_path))
    with pytest.raises(SuiteError, match=r"the val evaluation reported top1, none of which the task declares "
                                         r"\(accuracy\)"):
        runner.train()
    assert folder.metrics() == []
