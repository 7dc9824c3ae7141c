"""Linear interpolation between a ``sema`` job's reported weights and its partners' (``suite analyze``).

Is SEMA's solution in the same basin as plain training's, or as EMA's? For every finished ``sema`` job, its
partners are the ``none`` and ``ema`` jobs of the same task, preset, seed and knobs (``ema`` with the same
decay and warm-up; the switch knobs, which ``ema`` does not use, dropped). Along ``(1 - t) * partner + t *
sema`` for ``interpolation_points`` values of t, the analysis loss on the fixed training batches and every
val metric are measured. Every floating-point tensor of the model's state moves along the line (BatchNorm
statistics too, so each end is exactly the weights the job reported); integer buffers come from the ``sema``
end. Lerped statistics do not match the interpolated weights and inflate mid-path barriers; with
``interpolation_bn=1`` the statistics are recomputed at every point over one pass of the training data
(REPAIR's re-estimation, Jordan et al. 2023; :mod:`sema_suite.method.batchnorm`), the ends included.

``interpolation.csv`` holds the curves (``partner_job_id``, ``partner_method``, ``t``, ``split``, ``metric``,
``value``); ``barriers.csv`` holds, in the format of ``metrics.csv``, the barrier of each curve
(:func:`sema_suite.analysis.flatness.barrier`: the largest excess over the chord, in the worse direction, lower is better):
``barrier_train_loss_vs_none`` (split ``train``), ``barrier_<metric>_vs_none`` (split ``val``) and the same
``_vs_ema``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sema_suite.results.store import JobDir, read_json, utc_stamp

if TYPE_CHECKING:
    from sema_suite.analysis.measure import Settings

PARTNERS = ("none", "ema")


def partner_ids(doc: dict[str, Any]) -> list[str]:
    """The job ids of a ``sema`` job's ``none`` and ``ema`` partners (which may not exist)."""
    from sema_suite.running.jobs import JobSpec

    spec = doc["spec"]
    overrides = tuple(sorted(spec["overrides"].items()))
    return [JobSpec(spec["task"], spec["preset"], method, int(spec["seed"]), overrides,
                    int(spec.get("world_size", 1))).resolve().job_id
            for method in PARTNERS]


def due_partners(job: JobDir, doc: dict[str, Any], settings: Settings) -> list[str]:
    """The partners to interpolate a job with now: finished, with weights, and not yet measured with these
    settings (empty for a job that is not ``sema``, or with ``interpolation_points=0``)."""
    if doc["spec"]["method"] != "sema" or not settings.interpolation_points:
        return []
    results_dir = job.path.parent
    ready = [pid for pid in partner_ids(doc)
             if (partner := JobDir(results_dir, pid)).exists() and partner.status().get("state") == "done"
             and partner.last_checkpoint() is not None]
    done = job.status().get("interpolation") or {}
    if (done.get("state") == "done" and done.get("settings") == settings.pair_settings()
            and done.get("partners") == ready and job.barriers_csv.exists()):
        return []
    return ready


def _lerp(start: dict[str, Any], end: dict[str, Any], t: float) -> dict[str, Any]:
    import torch

    return {name: torch.lerp(start[name].to(value), value, t) if value.is_floating_point() else value
            for name, value in end.items()}


def evaluate(runner) -> dict[str, float]:
    """The val metrics of the runner's model as it is now: the val loop's work without its hooks (which
    would swap averaged weights in)."""
    import torch

    loop = runner.val_loop
    runner.model.eval()
    with torch.no_grad():
        for batch in loop.dataloader:
            loop.evaluator.process(data_samples=runner.model.val_step(batch), data_batch=batch)
    metrics = loop.evaluator.evaluate(len(loop.dataloader.dataset))
    return {key.rsplit("/", 1)[-1]: float(value) for key, value in metrics.items()}


def interpolate_job(runner, task, job: JobDir, partners: list[str], settings: Settings, loss_fn) -> None:
    """Measure the lines from each partner to ``job`` and write ``interpolation.csv`` and ``barriers.csv``.

    ``runner`` holds ``job``'s model; ``loss_fn`` is the analysis loss on it (see :mod:`sema_suite.analysis.measure`).
    """
    import torch
    from mmengine.runner.utils import set_random_seed

    from sema_suite.analysis import flatness
    from sema_suite.method.batchnorm import recompute_bn
    from sema_suite.method.checkpoints import load, reported_state

    started = time.time()
    model = runner.model
    end = reported_state(load(job), job.job_id, "sema")
    higher = {m.name: m.higher_is_better for m in task.metrics}
    points = settings.interpolation_points
    ts = [i / (points - 1) for i in range(points)]
    curves, barriers = [], []
    last = max(job.metrics(), key=lambda r: r["iter"])
    constant = {k: last[k] for k in ("job_id", "run_id", "task", "preset", "dataset", "model", "method", "seed",
                                     "variant", "epoch", "iter")}
    stamp = utc_stamp()
    for partner_id in partners:
        partner = JobDir(job.path.parent, partner_id)
        method = read_json(partner.job_json)["spec"]["method"]
        start = reported_state(load(partner), partner_id, method)
        series: dict[tuple[str, str], list[float]] = {}
        for t in ts:
            model.load_state_dict(_lerp(start, end, t))
            if settings.interpolation_bn:
                recompute_bn(model, runner.train_dataloader)
            with torch.no_grad():
                series.setdefault(("train", "train_loss"), []).append(float(loss_fn().detach()))
            set_random_seed(settings.seed)  # sampling metrics (FID) draw the same noise at every t
            for name, value in evaluate(runner).items():
                if name in higher:
                    series.setdefault(("val", name), []).append(value)
        for (split, metric), values in series.items():
            curves += [{"job_id": job.job_id, "partner_job_id": partner_id, "partner_method": method, "t": t,
                        "split": split, "metric": metric, "value": v} for t, v in zip(ts, values)]
            height = flatness.barrier(ts, values, higher.get(metric, False))
            barriers.append({**constant, "split": split, "metric": f"barrier_{metric}_vs_{method}", "value": height,
                             "higher_is_better": False, "wall_time_s": 0.0, "timestamp": stamp})
    seconds = round(time.time() - started, 2)
    job.write_interpolation(curves, [{**row, "wall_time_s": seconds} for row in barriers])
    job.update_status(interpolation={"state": "done", "settings": settings.pair_settings(), "partners": partners,
                                     "seconds": seconds})
