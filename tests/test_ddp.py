"""Jobs on several processes (``suite run --gpus-per-job N``): DDP through mmengine, launched by torchrun.

Without a GPU the processes run on the CPU with gloo, which exercises the same path: the launcher, the
process group, DDP, the split batch, one set of records written by rank 0, checkpoints and the analysis.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from mmengine.config import Config

from sema_suite.results.store import JobDir, read_json
from sema_suite.running.jobs import JobSpec
from sema_suite.running.runs import members
from sema_suite.running.scheduler import worker_slots

SMALL = ["epochs=2", "num_train=64", "num_val=32", "num_test=32"]


def suite(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sema_suite.cli", *args], check=False, capture_output=True, text=True,
                          env={**os.environ, "SUITE_THREADS": "1"}, timeout=900)


@pytest.mark.slow
def test_a_det_job_on_two_processes_trains_once_and_records_once(tmp_path: Path) -> None:
    results = tmp_path / "results"
    sets = [x for s in SMALL for x in ("--set", s)]
    done = suite("run", "--task", "det", "--method", "none,ema", "--gpus-per-job", "2", *sets,
                 "--results-dir", str(results))
    assert done.returncode == 0, done.stderr
    (run,) = [p.parent for p in results.glob("*/run.json")]
    log = (run / "job.log").read_text()
    assert "Distributed training: True" in log
    for job in members(JobDir(results, run.name)):
        spec = read_json(job.job_json)["spec"]
        assert spec["world_size"] == 2 and "gpus_per_job=2" in spec["variant"]
        rows = job.metrics()
        assert set(Counter((r["split"], r["iter"], r["metric"]) for r in rows).values()) == {1}  # rank 0 alone
        # the preset's batch of 16 is the total: 8 per process, so 64 images are 4 steps per epoch
        assert sorted({r["iter"] for r in rows if r["split"] == "val"}) == [4, 8]
    config = Config.fromfile(next((run / "work").glob("*.py")))
    assert config.train_dataloader.batch_size == 8 and config.launcher == "pytorch"
    analysed = suite("analyze", "--results-dir", str(results), "--set", "batches=1", "--set", "trace_samples=2",
                     "--set", "steps=1", "--set", "average_samples=2", "--set", "directions=1", "--set", "points=3")
    assert analysed.returncode == 0, analysed.stderr  # measured in one process, from the run's checkpoint
    again = suite("run", "--task", "det", "--method", "none,ema", "--gpus-per-job", "2", *sets,
                  "--results-dir", str(results))
    assert again.returncode == 0 and "0 to run, 2 already done" in again.stderr


def test_a_job_on_several_processes_is_another_job() -> None:
    one = JobSpec("det", "tiny", "sema", 0).resolve()
    two = JobSpec("det", "tiny", "sema", 0, world_size=2).resolve()
    assert one.job_id != two.job_id and two.variant == "gpus_per_job=2" and one.variant == ""


@pytest.mark.parametrize(("args", "message"), [
    (["--task", "cls", "--gpus-per-job", "2"], "task cls trains and evaluates in one process"),
    (["--task", "det", "--gpus-per-job", "2", "--jobs-per-gpu", "2", "--gpus", "0"], "use one of them"),
    (["--task", "det", "--gpus-per-job", "2", "--analyze", "every_eval=1"], "drop every_eval"),
    pytest.param(["--task", "det", "--gpus-per-job", "3"], "does not split evenly over 3 processes",
                 marks=pytest.mark.slow),  # found once the worker has built the job
])
def test_what_a_multi_process_job_cannot_do_is_a_clear_error(tmp_path: Path, args: list[str], message: str) -> None:
    done = suite("run", *args, "--results-dir", str(tmp_path / "results"))
    assert done.returncode in (1, 2) and message in done.stderr + done.stdout, done.stderr


def test_gpus_are_grouped_per_job() -> None:
    slots = worker_slots(["0", "1", "2", "3"], workers=1, gpus_per_job=2)
    assert [slot["CUDA_VISIBLE_DEVICES"] for slot in slots] == ["0,1", "2,3"]

