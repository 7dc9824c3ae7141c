"""Synthetic results directories, written by the suite's own writer (:class:`JobDir`): the dashboard's tests
and ``suite bench dashboard`` read exactly the files a real run leaves.

The curves are synthetic but shaped like training (saturating, seed noise, ``sema`` ahead of ``ema`` ahead of
``none``) so rankings, deltas and convergence are all non-trivial. A job may run a variant (``--set`` knobs), which
shifts its curve by :data:`VARIANT_BONUS`.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from pathlib import Path

from sema_suite.results.store import JobDir, write_json

# task -> (preset, [(metric, higher_is_better)]); the first metric is the one the curves are built around and the
# task's primary one (as its adapter says)
TASKS = {
    "cls": ("tiny", [("top1", True)]),
    "gen": ("tiny", [("fid_digits", False), ("loss", False)]),
    "det": ("tiny", [("bbox_mAP", True)]),
    "lm": ("tiny", [("ppl", False)]),
    "reg": ("tiny", [("mae", False), ("rmse", False)]),
    "ssl": ("tiny", [("knn", True)]),
    "video": ("tiny", [("mse", False)]),
}
FIXTURE_TASKS = ("cls", "gen")  # what make_results writes
BONUS = {"none": 0.0, "ema": 1.0, "sema": 2.0, "swa": 1.5, "lookahead": 0.5}  # any method name, not just three
FIXTURE_METHODS = ("none", "ema", "sema")
SHIPPED_DECAY = 0.99  # the averaging methods' decay as shipped
VARIANT_BONUS = {"decay=0.8": -3.0, "decay=0.9": 0.5}  # what a swept decay adds to the method's bonus


def _value(metric: str, higher: bool, method: str, seed: int, epoch: int, epochs: int, variant: str = "",
           split: str = "val") -> float:
    bonus = BONUS[method] + VARIANT_BONUS.get(variant, 0.0)
    progress = 1.0 - math.exp(-3.0 * epoch / epochs * (1.0 + 0.25 * max(bonus, 0.0)))
    noise = random.Random(f"{metric}{method}{variant}{seed}{epoch}{split}").gauss(0.0, 0.3)
    if higher:
        return round(40.0 + 50.0 * progress + bonus + noise, 4)
    return round(80.0 - 60.0 * progress - 3.0 * bonus + noise, 4)


def write_job(results: Path, task: str, method: str, seed: int, epochs: int = 6, state: str = "done",
              evaluated: int | None = None, samples: bool = False, decay: float | None = None,
              test: bool = False) -> JobDir:
    """One job as the scheduler, worker and hooks would leave it; ``evaluated`` epochs have metrics.
    ``decay``: the job ran ``--set decay=...`` (an averaging method's variant); ``test``: a done job ends with an
    evaluation on the test split, as real jobs do."""
    preset, metrics = TASKS[task]
    variant = "" if decay is None else f"decay={decay!r}"
    job_id = f"{task}-{preset}-{method}-s{seed}-" + (f"decay{decay!r}-" if variant else "") + "fixture"
    job = JobDir(results, job_id)
    averaging = {} if method == "none" else {"decay": SHIPPED_DECAY if decay is None else decay, "switch_interval": 1}
    spec = {"task": task, "preset": preset, "method": method, "seed": seed, "variant": variant,
            "overrides": {} if decay is None else {"decay": decay}, "dataset": "synthetic", "model": "toy",
            "params": {"epochs": epochs}, "averaging": averaging, "config_edits": {}}
    write_json(job.job_json, {"job_id": job_id, "spec": spec, "data_root": "data", "download": False,
                              "environment": {}})
    job.update_status(state="pending")
    evaluated = epochs if evaluated is None else evaluated
    started = time.time()
    evaluations = [(epoch, "val") for epoch in range(1, evaluated + 1)]
    evaluations += [(epochs, "test")] if test and state == "done" else []
    rows = []
    for epoch, split in evaluations:
        for metric, higher in metrics:
            rows.append({"job_id": job_id, "run_id": job_id, "task": task, "preset": preset, "dataset": "synthetic",
                         "model": "toy", "method": method, "seed": seed, "variant": variant, "epoch": epoch,
                         "iter": epoch * 20, "split": split, "metric": metric,
                         "value": _value(metric, higher, method, seed, epoch, epochs, variant, split),
                         "higher_is_better": higher, "wall_time_s": round(epoch * (2.0 + 0.1 * seed), 3),
                         "timestamp": "2026-01-01T00:00:00"})
        if samples and split == "val":
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


def make_results(results: Path, seeds: int = 3, epochs: int = 6, extra_states: bool = True,
                 sweep: tuple[float, ...] = (), test: bool = False) -> Path:
    """Every task x method x seed done; plus (``extra_states``) one running, one failed and one pending job;
    plus (``sweep``) ``sema`` on cls at each of these decays, every seed done; ``test``: see :func:`write_job`."""
    for task in FIXTURE_TASKS:
        for method in FIXTURE_METHODS:
            for seed in range(seeds):
                write_job(results, task, method, seed, epochs=epochs, samples=task == "gen" and seed == 0, test=test)
    for decay in sweep:
        for seed in range(seeds):
            write_job(results, "cls", "sema", seed, epochs=epochs, decay=decay, test=test)
    if extra_states:
        write_job(results, "cls", "sema", seeds, epochs=epochs, state="running", evaluated=2)
        write_job(results, "cls", "ema", seeds, epochs=epochs, state="failed", evaluated=2)
        write_job(results, "cls", "none", seeds, epochs=epochs, state="pending", evaluated=0)
    return results


SWEEP = (0.5, 0.7, 0.8, 0.9, 0.95, 0.995, 0.999)  # the decays ema and sema are swept over in make_matrix


def make_matrix(results: Path, jobs: int, epochs: int = 100) -> Path:
    """``jobs`` finished jobs shaped like a long-tier matrix (``epochs`` evaluations, then a test one): seed after
    seed, every task with each method as shipped and ema and sema at each decay of :data:`SWEEP`."""
    settings = [(method, None) for method in BONUS] + [(m, d) for m in ("ema", "sema") for d in SWEEP]
    plan = ((task, method, seed, decay) for seed in itertools.count() for task in TASKS for method, decay in settings)
    for task, method, seed, decay in itertools.islice(plan, jobs):
        write_job(results, task, method, seed, epochs=epochs, decay=decay, test=True)
    return results
