"""Loading a checkpoint from a results folder never runs code, never leaves the folder, and never measures the
wrong weights: export, analyze and resume on copies of the shared cls jobs (tests/cls_jobs.py), some crafted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sema_suite.method.checkpoints import read_checkpoint
from sema_suite.results.store import JobDir, mark_checkpoint

from cls_jobs import CLS_FAST, copy_jobs, jobs_by_method, sets

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cls_jobs")]


class Payload:
    """What a crafted checkpoint hides: unpickling it with ``weights_only=False`` creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def suite(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sema_suite.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "SUITE_THREADS": "1"})


def plant(job: JobDir, marker: Path) -> Path:
    """Replace the job's last checkpoint with a crafted one that would create ``marker`` when unpickled."""
    path = job.last_checkpoint()
    torch.save({"state_dict": {}, "meta": Payload(marker)}, path)
    return path


@pytest.fixture
def copies(cls_jobs: Path, tmp_path: Path) -> dict[str, JobDir]:
    """method -> a writable copy of the shared cls job of seed 0."""
    jobs = jobs_by_method(cls_jobs)
    copy_jobs(list(jobs.values()), tmp_path / "results")
    return {method: JobDir(tmp_path / "results", job.job_id) for method, job in jobs.items()}


def test_a_crafted_checkpoint_is_refused_by_export_analyze_and_resume(copies, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    none, sema = copies["none"], copies["sema"]
    results = str(none.path.parent)

    crafted = plant(sema, marker)
    export = suite("export", sema.job_id, "--results-dir", results, "-o", str(tmp_path / "w.pth"))
    assert export.returncode == 2 and f"refused to load {crafted}" in export.stderr, export.stderr
    analyze = suite("analyze", "--results-dir", results, "--jobs", sema.job_id, "--set", "batches=1")
    assert analyze.returncode == 1 and "refused to load" in analyze.stdout, analyze.stdout + analyze.stderr

    plant(none, marker)  # an interrupted job, resumed from a crafted checkpoint
    none.update_status(state="failed", error="killed")
    resume = suite("run", "--task", "cls", "--method", "none", "--seeds", "0", "--no-share", "--results-dir", results,
                   *sets(CLS_FAST))
    assert resume.returncode == 1 and "refused to load" in none.status()["error"], resume.stdout + resume.stderr
    assert not marker.exists() and not (tmp_path / "w.pth").exists()


def test_a_checkpoint_marker_never_leads_out_of_its_folder(copies, tmp_path: Path) -> None:
    job = copies["ema"]
    marker = job.work_dir / "last_checkpoint"
    assert "/" not in marker.read_text()  # written relative to the work dir
    own = job.last_checkpoint()
    assert own.parent == job.work_dir
    marker.write_text(str(Path("/elsewhere/results") / job.job_id / "work" / own.name))  # an older, absolute marker
    assert job.last_checkpoint() == own  # a copied folder finds its own copy
    shutil.copy(own, tmp_path / "outside.pth")
    marker.write_text(str(tmp_path / "outside.pth"))
    assert job.last_checkpoint() is None  # a file of that name is not in the work dir: nothing is followed
    mark_checkpoint(job.work_dir, own)
    assert job.last_checkpoint() == own


def test_weights_that_do_not_fit_the_model_fail_the_analysis(copies, tmp_path: Path) -> None:
    job = copies["none"]
    path = job.last_checkpoint()
    checkpoint = read_checkpoint(path)
    checkpoint["state_dict"] = {}  # a checkpoint without the model's weights
    torch.save(checkpoint, path)
    analyze = suite("analyze", "--results-dir", str(job.path.parent), "--jobs", job.job_id, "--set", "batches=1")
    assert analyze.returncode == 1 and f"failed: {job.job_id}: RuntimeError" in analyze.stdout, analyze.stdout
    assert "missing keys in source state_dict" in job.status()["analysis"]["error"] and not job.analysis_csv.exists()
