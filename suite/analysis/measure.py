"""Flatness and sharpness of a finished job's reported weights: what ``suite analyze`` measures.

The weights are the ones the job reports (averaged for ``ema``/``sema``, trained for ``none``), loaded from
its last checkpoint. The loss is the task's own training loss made deterministic (:meth:`Task.analysis_loss`)
on a fixed subset of the training data: ``batches`` batches of the training loader's size, drawn with a
fixed seed (the same examples for every method and seed), materialised once so augmentations and views do
not change between calls. The measures come from :mod:`sema_suite.analysis.flatness`:

- ``train_loss``: the loss itself; ``hessian_eig1``..``k``: top Hessian eigenvalues (Lanczos);
  ``hessian_trace`` and its standard error ``hessian_trace_stderr`` (Hutchinson);
- ``sharpness_adaptive`` (worst case within ``rho_adaptive``, weight-scaled as in ASAM), ``sharpness_l2``
  (worst case within ``rho``, plain L2) and ``sharpness_average`` with ``sharpness_average_stderr``
  (Andriushchenko et al.'s average case: the mean increase under per-coordinate Gaussian noise of standard
  deviation ``rho_average * |w_i|``, antithetic pairs);

each one row of ``analysis.csv`` (the format of ``metrics.csv``, split ``train``, lower is flatter), and
``landscape.csv``: the loss along ``directions`` filter-normalised random directions (Li et al. 2018).
A ``sema`` job is also interpolated with its ``none`` and ``ema`` partners (:mod:`sema_suite.analysis.interpolation`).
With ``every_eval=N`` (``suite run --analyze every_eval=N``), :class:`AnalysisHook` measures the same
scalars during training, at every N-th evaluation, so the rows show whether a method gets flatter over
training and not only at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sema_suite.errors import BadOverride
from sema_suite.results.store import JobDir, read_json, utc_stamp

SPLIT = "train"
_MAY_BE_ZERO = ("seed", "rho", "rho_adaptive", "rho_average", "eig_tol", "interpolation_points", "interpolation_bn",
                "every_eval")


@dataclass(frozen=True)
class Settings:
    """The knobs of one measurement; a job measured with other settings is measured again."""

    batches: int = 4  # training batches in the fixed subset
    seed: int = 0  # the subset, the random vectors and the loss's own randomness
    eigenvalues: int = 1
    eig_tol: float = 1e-3  # Lanczos' relative residual tolerance
    trace_samples: int = 32
    rho: float = 0.05  # plain L2 radius
    rho_adaptive: float = 0.5  # radius in units of |w| (ASAM)
    steps: int = 5  # projected gradient ascent steps of the worst-case sharpness
    rho_average: float = 0.01  # per-coordinate noise std in units of |w| (average-case sharpness)
    average_samples: int = 8  # antithetic pairs
    directions: int = 2
    points: int = 21
    span: float = 1.0
    interpolation_points: int = 11  # values of t on each line between a sema job and its partners; 0: none
    interpolation_bn: int = 0  # 1: recompute BatchNorm statistics at each point of a line (REPAIR); 0: lerp them
    every_eval: int = 0  # also measure at every this many evaluations during training (suite run --analyze)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def job_settings(self) -> dict[str, Any]:
        """The knobs of the measurements of one job's final weights (what ``analysis.csv`` depends on)."""
        return {k: v for k, v in self.as_dict().items()
                if k not in ("interpolation_points", "interpolation_bn", "every_eval")}

    def pair_settings(self) -> dict[str, Any]:
        """The knobs the interpolation depends on."""
        return {"batches": self.batches, "seed": self.seed, "interpolation_points": self.interpolation_points,
                **({"interpolation_bn": 1} if self.interpolation_bn else {})}

    @classmethod
    def parse(cls, pairs: list[str]) -> Settings:
        """``["batches=8", "rho=0.1"]`` -> Settings; an unknown knob or a bad value is a BadOverride."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for pair in pairs:
            key, sep, text = pair.partition("=")
            if not sep or key not in fields:
                raise BadOverride(f"--set {pair}: analysis knobs are key=value with key one of {', '.join(fields)}")
            kind = type(fields[key].default)
            try:
                values[key] = kind(text)
            except ValueError:
                raise BadOverride(f"--set {pair}: {key} takes a {kind.__name__}") from None
            if values[key] < 0 or (key not in _MAY_BE_ZERO and values[key] == 0):
                raise BadOverride(f"--set {pair}: {key} must be positive")
        if values.get("interpolation_bn", 0) > 1:
            raise BadOverride("--set interpolation_bn: 0 lerps BatchNorm statistics along a line, 1 recomputes them")
        if values.get("interpolation_points") == 1:
            raise BadOverride("--set interpolation_points=1: a line needs both ends; use 2 or more, or 0 for none")
        return cls(**values)


def requested(doc: dict[str, Any]) -> Settings | None:
    """The analysis a job's ``job.json`` asks for (``suite analyze``, ``suite run --analyze``), if any."""
    return Settings(**doc["analysis"]) if doc.get("analysis") else None


def pending(job: JobDir, doc: dict[str, Any], settings: Settings, pairs: bool = True) -> bool:
    """Whether the job still needs measuring with ``settings``: its own weights, or (``pairs``) the
    interpolation with its partners."""
    from sema_suite.analysis.interpolation import due_partners

    return measured_with(job) != settings.job_settings() or (pairs and bool(due_partners(job, doc, settings)))


def measured_with(job: JobDir) -> dict[str, Any] | None:
    """The settings a job's current analysis was measured with, or None when it has none."""
    analysis = job.status().get("analysis") or {}
    return analysis.get("settings") if analysis.get("state") == "done" and job.analysis_csv.exists() else None


def batch_size(loader) -> int:
    """A training loader's batch size, also where a batch sampler makes the batches (MMDetection's
    ``AspectRatioBatchSampler`` on the COCO presets leaves ``loader.batch_size`` None)."""
    size = loader.batch_size or getattr(loader.batch_sampler, "batch_size", None)
    if not size:
        raise ValueError(f"cannot tell the batch size of {type(loader.batch_sampler).__name__}: give it a batch_size")
    return size


def _fixed_batches(runner, settings: Settings) -> list[Any]:
    import torch
    from mmengine.runner.utils import set_random_seed
    from torch.utils.data import DataLoader

    loader = runner.train_dataloader
    dataset = loader.dataset
    size = batch_size(loader)
    count = min(len(dataset), settings.batches * size)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(settings.seed))[:count].tolist()
    set_random_seed(settings.seed)  # augmentations drawn once, the same for every job
    fixed = DataLoader(dataset, batch_size=size, sampler=order, collate_fn=loader.collate_fn)
    return list(fixed)


@contextlib.contextmanager
def sdpa_math():
    """Attention on PyTorch's math kernel: the fused ones (flash, memory-efficient) have no second derivative."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        yield


def measure(runner, task, settings: Settings, job_id: str,
            landscape: bool = True) -> tuple[dict[str, float], list[dict]]:
    """The measures of the weights job ``job_id`` reports (its average when it has one; in a shared run, its
    member's) as ``{metric: value}``, and the landscape rows (none unless ``landscape``). The trained weights
    and the model's mode are restored afterwards."""
    from sema_suite.analysis import flatness
    from sema_suite.method.hooks import MethodHook

    model = runner.model
    batches = _fixed_batches(runner, settings)
    hook = next((h for h in runner.hooks if isinstance(h, MethodHook)), None)
    training = model.training
    with hook.reporting(model, job_id) if hook is not None else contextlib.nullcontext(), sdpa_math():
        model.eval()
        loss_fn = task.analysis_loss(model, batches, settings.seed)
        params = [p for p in model.parameters() if p.requires_grad]
        values = {"train_loss": float(loss_fn().detach())}
        eigs = flatness.top_eigenvalues(loss_fn, params, k=settings.eigenvalues, seed=settings.seed,
                                        tol=settings.eig_tol)
        values |= {f"hessian_eig{i + 1}": value for i, value in enumerate(eigs)}
        trace, stderr = flatness.hessian_trace(loss_fn, params, samples=settings.trace_samples, seed=settings.seed)
        values |= {"hessian_trace": trace, "hessian_trace_stderr": stderr}
        values["sharpness_adaptive"] = flatness.sharpness(loss_fn, params, rho=settings.rho_adaptive, adaptive=True,
                                                          steps=settings.steps)
        values["sharpness_l2"] = flatness.sharpness(loss_fn, params, rho=settings.rho, steps=settings.steps)
        average, stderr = flatness.average_sharpness(loss_fn, params, rho=settings.rho_average,
                                                     samples=settings.average_samples, seed=settings.seed,
                                                     adaptive=True)
        values |= {"sharpness_average": average, "sharpness_average_stderr": stderr}
        rows = []
        if landscape:
            alphas, curves = flatness.loss_along_directions(loss_fn, params, directions=settings.directions,
                                                            points=settings.points, span=settings.span,
                                                            seed=settings.seed)
            rows = [{"direction": d, "alpha": float(a), "loss": float(v)}
                    for d, curve in enumerate(curves) for a, v in zip(alphas, curve)]
    model.train(training)
    return values, rows


def run_analysis(job: JobDir, settings: Settings, pairs: bool = True) -> None:
    """Measure ``job`` in this (worker) process, recording a failure in ``status.json`` rather than raising:
    the job's training results stand either way, and ``suite analyze`` reports the error."""
    import traceback

    try:
        analyze_job(job.path.parent, job.job_id, settings, pairs)
    except Exception as err:  # noqa: BLE001  (recorded, and reported by the command that asked)
        traceback.print_exc()
        status = job.status()
        for key in ("analysis", "interpolation"):  # the measurement that was under way
            if (status.get(key) or {}).get("state") == "running":
                job.update_status(**{key: {**status[key], "state": "failed", "error": f"{type(err).__name__}: {err}"}})


def failure(job: JobDir) -> str | None:
    """Why a job's last analysis failed, if it did."""
    status = job.status()
    return next((entry["error"] for key in ("analysis", "interpolation")
                 if (entry := status.get(key) or {}).get("state") == "failed"), None)


def analyze_job(results_dir: Path, job_id: str, settings: Settings, pairs: bool = True) -> None:
    """Measure one finished job: ``analysis.csv`` and ``landscape.csv`` unless measured with these settings,
    and (``pairs``) a ``sema`` job's interpolation with its partners."""
    from sema_suite.analysis.interpolation import due_partners, interpolate_job
    from sema_suite.method.checkpoints import last_path
    from sema_suite.running.worker import build_runner, load_job

    job = JobDir(results_dir, job_id)
    doc = read_json(job.job_json)
    measure_weights = measured_with(job) != settings.job_settings()
    partners = due_partners(job, doc, settings) if pairs else []
    if not (measure_weights or partners):
        return
    if measure_weights:
        job.update_status(analysis={"state": "running", "settings": settings.job_settings()})
    if partners:
        job.update_status(interpolation={"state": "running", "settings": settings.pair_settings(),
                                         "partners": partners})
    resolved = load_job(doc)
    checkpoint = last_path(job)
    runner = build_runner(resolved, job, Path(doc["data_root"]), download=False, single_process=True)
    hook_before_run(runner)
    runner.load_checkpoint(str(checkpoint), map_location="cpu", strict=True)  # every weight, or a failure: never a
    # measurement of the weights the model was built with
    if measure_weights:
        record_measures(runner, resolved.task, job, settings, final=True)
    if partners:
        with sdpa_math():
            runner.model.eval()
            loss_fn = resolved.task.analysis_loss(runner.model, _fixed_batches(runner, settings), settings.seed)
            interpolate_job(runner, resolved.task, job, partners, settings, loss_fn)


def record_measures(runner, task, job: JobDir, settings: Settings, final: bool) -> None:
    """Measure the weights the job reports now and write their rows into ``analysis.csv`` at its latest
    evaluation: at the end of a run (``final``: with the landscape) or during it (``every_eval``: the scalars).
    Rows of earlier evaluations stay; a measurement at the same evaluation is replaced."""
    started = time.time()
    values, landscape = measure(runner, task, settings, job.job_id, landscape=final)
    last = max(job.metrics(), key=lambda r: r["iter"])
    stamp = utc_stamp()
    seconds = round(time.time() - started, 2)
    constant = {k: last[k] for k in ("job_id", "run_id", "task", "preset", "dataset", "model", "method", "seed",
                                     "variant", "epoch", "iter")}
    rows = [{**constant, "split": SPLIT, "metric": name, "value": value, "higher_is_better": False,
             "wall_time_s": seconds, "timestamp": stamp} for name, value in values.items()]
    earlier = [r for r in job.analysis() if r["iter"] < last["iter"]]
    job.write_analysis(earlier + rows, [{"job_id": job.job_id, **row} for row in landscape] if final else None)
    if final:
        job.update_status(analysis={"state": "done", "settings": settings.job_settings(), "seconds": seconds,
                                    "training_seconds": job.status().get("seconds")})


def hook_before_run(runner) -> None:
    """Build what the suite's hooks build before training (the averager), without running anything."""
    from sema_suite.method.hooks import MethodHook

    for hook in runner.hooks:
        if isinstance(hook, MethodHook):
            hook.before_run(runner)
