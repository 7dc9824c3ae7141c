"""``suite run --dry-run``: resolve a job's full config and build its model, without data or a GPU."""

from __future__ import annotations

from pathlib import Path

from sema_suite.running.jobs import ResolvedJob


def dry_run(job: ResolvedJob, results_dir: Path, data_root: Path) -> str:
    from mmengine.registry import MODELS, init_default_scope

    from sema_suite.running.config import build_config

    ctx = job.context(data_root, Path(results_dir) / job.job_id / "work", dry_run=True)
    cfg = build_config(job, ctx, results_dir)
    init_default_scope(cfg.get("default_scope", "mmengine"))
    model = MODELS.build(cfg.model)
    params = sum(p.numel() for p in model.parameters())
    return f"# job {job.job_id}\n{cfg.pretty_text}\n# model: {type(model).__name__}, {params / 1e6:.2f}M parameters\n"
