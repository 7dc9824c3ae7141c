"""Finished cls jobs trained once for several test modules (the ``cls_jobs`` fixture of conftest.py): the tiny
preset cut to two short epochs, each job trained alone (``--no-share``: its own run and checkpoints), none, ema and
sema of seed 0 and none of seed 1. sema switches only at the end of epoch 2, so after epoch 1 all three of seed 0
trained the same weights. Tests read them in place; a test that writes copies them first (:func:`copy_jobs`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from sema_suite.results.store import JobDir

CLS_FAST = ["depths=[1]", "width=4", "image_size=8", "batch_size=128", "epochs=2", "switch_start=2"]
TRAINED = [("none,ema,sema", "0"), ("none", "1")]  # (methods, seeds) of each `suite run`


def sets(pairs: list[str]) -> list[str]:
    return [x for pair in pairs for x in ("--set", pair)]


def train(results: Path) -> None:
    for methods, seeds in TRAINED:
        done = subprocess.run([sys.executable, "-m", "sema_suite.cli", "run", "--task", "cls", "--method", methods,
                               "--seeds", seeds, "--no-share", "--checkpoint-every", "eval",  # epoch_1.pth too
                               "--results-dir", str(results), *sets(CLS_FAST)],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def jobs_by_method(results: Path, seed: int = 0) -> dict[str, JobDir]:
    """method -> the job of ``seed`` in ``results``."""
    return {p.parent.name.split("-")[2]: JobDir(results, p.parent.name) for p in results.glob(f"*-s{seed}-*/job.json")}


def copy_jobs(jobs: list[JobDir], results: Path) -> None:
    """Copy finished jobs into ``results`` (a checkpoint marker names its file relative to the work dir, so each copy
    finds its own checkpoints)."""
    for job in jobs:
        shutil.copytree(job.path, JobDir(results, job.job_id).path)
