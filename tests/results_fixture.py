"""Results directories for the dashboard tests, written by the suite's own writer (:class:`JobDir`).

The curves are synthetic but shaped like training (saturating, seed noise, ``sema`` ahead of ``ema`` ahead of
``none``) so rankings, deltas and speed-ups are all non-trivial.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

from suite.results import JobDir, write_json

# task -> (preset, [(metric, higher_is_better)]); the first metric is the one the curves are built around
TASKS = {
    "cls": ("tiny", [("top1", True)]),
    "gen": ("tiny", [("fid", False), ("loss", False)]),
}
BONUS = {"none": 0.0, "ema": 1.0, "sema": 2.0}


def _value(metric: str, higher: bool, method: str, seed: int, epoch: int, epochs: int) -> float:
    progress = 1.0 - math.exp(-3.0 * epoch / epochs * (1.0 + 0.25 * BONUS[method]))
    noise = random.Random(f"{metric}{method}{seed}{epoch}").gauss(0.0, 0.3)
    if higher:
        return round(40.0 + 50.0 * progress + BONUS[method] + noise, 4)
    return round(80.0 - 60.0 * progress - 3.0 * BONUS[method] + noise, 4)


def write_job(results: Path, task: str, method: str, seed: int, epochs: int = 6, state: str = "done",
              evaluated: int | None = None, samples: bool = False) -> JobDir:
    """One job as the scheduler, worker and hooks would leave it; ``evaluated`` epochs have metrics."""
    preset, metrics = TASKS[task]
    job_id = f"{task}-{preset}-{method}-s{seed}-fixture"
    job = JobDir(results, job_id)
    spec = {"task": task, "preset": preset, "method": method, "seed": seed, "overrides": {}, "dataset": "synthetic",
            "model": "toy", "params": {"epochs": epochs}, "averaging": {}, "config_edits": {}}
    write_json(job.job_json, {"job_id": job_id, "spec": spec, "data_root": "data", "download": False,
                              "environment": {}})
    job.update_status(state="pending")
    evaluated = epochs if evaluated is None else evaluated
    started = time.time()
    rows = []
    for epoch in range(1, evaluated + 1):
        for metric, higher in metrics:
            rows.append({"job_id": job_id, "task": task, "preset": preset, "dataset": "synthetic", "model": "toy",
                         "method": method, "seed": seed, "epoch": epoch, "iter": epoch * 20, "split": "val",
                         "metric": metric, "value": _value(metric, higher, method, seed, epoch, epochs),
                         "higher_is_better": higher, "wall_time_s": round(epoch * (2.0 + 0.1 * seed), 3),
                         "timestamp": "2026-01-01T00:00:00"})
        if samples:
            _png(job.path / "samples" / f"{epoch}.png", shade=int(255 * epoch / epochs))
    if rows:
        job.append_metrics(rows)
    averaging = None if method == "none" else {
        "updates": evaluated * 20, "switches": max(0, evaluated - 1) if method == "sema" else 0,
        "switch_points": [{"epoch": e, "iter": e * 20} for e in range(2, evaluated + 1)] if method == "sema" else []}
    progress = {"epoch": evaluated, "iter": evaluated * 20, "max_epochs": epochs, "max_iters": epochs * 20}
    if state == "done":
        job.update_status(state="done", started=started, finished=time.time(), progress=progress, averaging=averaging)
    elif state == "failed":
        job.update_status(state="failed", started=started, finished=time.time(), progress=progress,
                          averaging=averaging, error="NonFiniteLoss: loss became nan at epoch 3, iteration 41")
    elif state == "running":
        job.update_status(state="running", started=started, pid=1, progress=progress)
    return job


def _png(path: Path, shade: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), (shade, 64, 255 - shade)).save(path)


def make_results(results: Path, seeds: int = 3, epochs: int = 6, extra_states: bool = True) -> Path:
    """Every task x method x seed done; plus (``extra_states``) one running, one failed and one pending job."""
    for task in TASKS:
        for method in BONUS:
            for seed in range(seeds):
                write_job(results, task, method, seed, epochs=epochs, samples=task == "gen" and seed == 0)
    if extra_states:
        write_job(results, "cls", "sema", seeds, epochs=epochs, state="running", evaluated=2)
        write_job(results, "cls", "ema", seeds, epochs=epochs, state="failed", evaluated=2)
        write_job(results, "cls", "none", seeds, epochs=epochs, state="pending", evaluated=0)
    return results
