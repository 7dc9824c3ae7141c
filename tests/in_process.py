"""Train one tiny job in the test process (not through the worker), to inspect the runner's hooks afterwards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmengine.runner import Runner

from sema_suite.method.hooks import SemaHook
from sema_suite.results.store import JobDir
from sema_suite.running.config import build_config
from sema_suite.running.jobs import JobSpec


def train_sema(task: str, overrides: tuple[tuple[str, Any], ...], tmp_path: Path) -> tuple[JobDir, SemaHook]:
    """Train ``task``'s tiny preset with SEMA, seed 0; return the job's results folder and its SEMA hook."""
    job = JobSpec(task, "tiny", "sema", 0, overrides).resolve()
    folder = JobDir(tmp_path, job.job_id)
    runner = Runner.from_cfg(build_config(job, job.context(tmp_path / "data", folder.work_dir), tmp_path))
    runner.train()
    return folder, next(h for h in runner.hooks if isinstance(h, SemaHook))
