"""Turn a resolved job into a full mmengine config: the adapter's part plus what every task shares."""

from __future__ import annotations

from pathlib import Path

from mmengine.config import Config

import sema_suite.analysis.hook  # noqa: F401  (registers the hooks and loops this config names)
import sema_suite.method.hooks  # noqa: F401
import sema_suite.method.swa  # noqa: F401
import sema_suite.results.hook  # noqa: F401
import sema_suite.running.compat  # noqa: F401  (mmengine loads and finds checkpoints the suite's way)
from sema_suite.errors import BadOverride
from sema_suite.method.methods import averaging_hook
from sema_suite.running.jobs import ResolvedJob
from sema_suite.running.resumable import make_resumable
from sema_suite.running.runs import Run
from sema_suite.task import BuildContext


def loop_by_epoch(train_cfg: dict, default: bool) -> bool:
    """Whether the config's training loop counts epochs; ``default`` (the task's) when the config does not say.

    A task can mix both kinds (e.g. MMDetection's 1x configs count epochs, its 90k ones iterations).
    """
    loop = train_cfg.get("type")
    if loop in ("IterBasedTrainLoop", "mmengine.IterBasedTrainLoop"):
        return False
    if loop in ("EpochBasedTrainLoop", "mmengine.EpochBasedTrainLoop"):
        return True
    return train_cfg.get("by_epoch", default)


def build_config(run: Run | ResolvedJob, ctx: BuildContext, results_dir: Path, analysis: dict | None = None,
                 log_to: list[str] | None = None, single_process: bool = False,
                 checkpoint_every: dict[str, float] | None = None) -> Config:
    """The adapter's config with the shared pieces injected: averaging hook, results hook, cost hook,
    checkpoints, seed. ``run``: a job, or a run of several (:mod:`sema_suite.running.runs`), whose evaluation loops then
    evaluate each member in turn (:class:`sema_suite.method.hooks.MembersLoop`). A job on several processes gets DDP
    (:func:`_distributed`) unless ``single_process`` (``suite analyze`` measures its weights in one process).

    Checkpoints are written at most once a minute of training by default, at an evaluation point or in the middle
    of a pass, and at the end, so an interrupted job loses at most that much work; ``checkpoint_every`` (``suite run
    --checkpoint-every``) sets another interval, or every N iterations, or each evaluation; the loops resume from
    any of them exactly (:mod:`sema_suite.running.resumable`). ``analysis``: the job's requested analysis settings, which
    add :class:`sema_suite.analysis.hook.AnalysisHook` when they measure during training (``every_eval``); ``log_to``: the
    trackers the job also logs to (:mod:`sema_suite.running.tracking`). The newest two are kept: mmengine deletes the oldest
    before it writes the next one, so with one kept a kill in between would leave nothing to resume from.
    """
    run = run if isinstance(run, Run) else Run((run,))
    job = run.lead
    task = job.task
    cfg = Config(task.build_config(job.preset, ctx))
    by_epoch = loop_by_epoch(cfg.train_cfg, default=task.by_epoch)
    interval = cfg.train_cfg.get("val_interval", 1)
    default_hooks = dict(cfg.get("default_hooks", {}))
    default_hooks["checkpoint"] = {
        **default_hooks.get("checkpoint", {}), "type": "CheckpointInFolderHook",
        "interval": interval, "by_epoch": by_epoch, "max_keep_ckpts": 2, "save_best": None,
    }
    default_hooks.setdefault("logger", {"type": "LoggerHook", "interval": 10})
    hooks = [h for h in cfg.get("custom_hooks", []) if h.get("type") not in ("EMAHook", "SemaHook", "SwaHook")]
    method = averaging_hook([(member.job_id, member.spec.method, member.averaging) for member in run.members],
                            job.params)
    if method:
        hooks.append(method)
    hooks.append({"type": "CostHook"})
    hooks.append({"type": "RandomStateHook"})
    hooks.append({"type": "PlainCheckpointHook"})
    hooks.append({
        "type": "ResultsHook",
        "results_dir": str(results_dir),
        "run_id": run.run_id,
        "rows": [{"job_id": member.job_id, "run_id": run.run_id, "task": member.spec.task,
                  "preset": member.spec.preset, "dataset": member.preset.dataset, "model": member.preset.model,
                  "method": member.spec.method, "seed": member.spec.seed, "variant": member.variant}
                 for member in run.members],
        "metrics": {m.name: m.higher_is_better for m in task.metrics},
        "by_epoch": by_epoch,
        "val_split": task.val_split(job.preset, job.params),
    })
    if analysis and analysis.get("every_eval"):
        hooks.append({"type": "AnalysisHook", "results_dir": str(results_dir),
                      "job_ids": [member.job_id for member in run.members], "task": job.spec.task,
                      "settings": analysis})
    if run.shared:  # every evaluation evaluates each member's weights
        for kind in ("val", "test"):
            if cfg.get(f"{kind}_cfg") is not None and cfg.get(f"{kind}_dataloader") is not None:
                cfg[f"{kind}_cfg"] = {"type": "MembersLoop", "loop": dict(cfg[f"{kind}_cfg"]), "kind": kind}
    cfg.merge_from_dict({
        "work_dir": str(ctx.work_dir),
        "default_hooks": default_hooks,
        "custom_hooks": hooks,
        "randomness": {"seed": job.spec.seed, "diff_rank_seed": False, "deterministic": False},
        "resume": True,  # continue from work_dir's last checkpoint when there is one
        "load_from": None,
        "launcher": "none",
        # cuDNN picks the fastest convolution kernels for the paper presets' fixed shapes; the offline presets
        # (CPU, bit-reproducible) keep it off
        "env_cfg": {"cudnn_benchmark": not job.preset.offline, "mp_cfg": {"mp_start_method": "fork", "opencv_num_threads": 0},
                    "dist_cfg": {"backend": "nccl"}},
        "log_processor": {"by_epoch": by_epoch},
        "default_scope": cfg.get("default_scope", "mmengine"),
        "visualizer": _visualizer(cfg, run, results_dir, log_to or []),
    })
    if job.spec.world_size > 1 and not single_process:
        _distributed(cfg, job.spec.world_size)
    if job.params.get("amp", "none") != "none":
        _mixed_precision(cfg, job.params["amp"], ctx.dry_run)
    if job.config_edits:
        cfg.merge_from_dict(job.config_edits)
    make_resumable(cfg, loop_by_epoch(cfg.train_cfg, default=task.by_epoch), checkpoint_every)
    return cfg


def _mixed_precision(cfg: Config, amp: str, dry_run: bool) -> None:
    """The task's optimizer wrapper as mmengine's ``AmpOptimWrapper`` (autocast, and for fp16 a dynamic loss
    scale). The weights, and the averages of them, stay float32."""
    import torch

    from sema_suite.task import AMP_DTYPES

    if not dry_run and not torch.cuda.is_available():
        raise BadOverride(f"amp={amp} needs a GPU (mmengine's AmpOptimWrapper autocasts on CUDA); this machine has "
                          "none: drop it (--set amp=none)")
    cfg.optim_wrapper = {**cfg.optim_wrapper, "type": "AmpOptimWrapper", "dtype": AMP_DTYPES[amp],
                         **({"loss_scale": "dynamic"} if amp == "fp16" else {})}


def _distributed(cfg: Config, world_size: int) -> None:
    """A job on ``world_size`` processes (DDP through mmengine's ``pytorch`` launcher; the worker starts them with
    torchrun): the preset's batch is the total, split over the processes, so the learning rate and the steps per
    epoch -- and with them the averaging settings -- stay the single-process recipe's. ``device_ids`` None (mmengine
    would pass the local rank): DDP takes the module's device, which works for a GPU per process and for CPU
    processes (gloo) alike."""
    import torch

    total = cfg.train_dataloader.batch_size
    if total % world_size:
        raise BadOverride(f"--gpus-per-job {world_size}: the batch of {total} does not split evenly over "
                          f"{world_size} processes; set a batch_size that does (--set batch_size=...)")
    cfg.train_dataloader.batch_size = total // world_size
    cfg.merge_from_dict({
        "launcher": "pytorch",
        "env_cfg": {"dist_cfg": {"backend": "nccl" if torch.cuda.is_available() else "gloo"}},
        "model_wrapper_cfg": {"type": "MMDistributedDataParallel", "device_ids": None, "broadcast_buffers": False,
                              "find_unused_parameters": cfg.get("find_unused_parameters", False)},
    })


def _visualizer(cfg: Config, run: Run, results_dir: Path, log_to: list[str]) -> dict:
    """The task's visualizer (mmengine's local one by default), with the trackers of ``suite run --log-to``:
    one tracker run per training run (a shared run's metrics are prefixed with each member's job id)."""
    from sema_suite.running.tracking import vis_backends

    spec = run.lead.as_dict()
    if run.shared:
        spec |= {"method": "+".join(dict.fromkeys(m.spec.method for m in run.members)),
                 "variant": f"shared run of {len(run.members)} jobs"}
    visualizer = dict(cfg.get("visualizer", {"type": "Visualizer", "vis_backends": [{"type": "LocalVisBackend"}]}))
    trackers = vis_backends(log_to, run.run_id, spec, results_dir)
    return {**visualizer, "vis_backends": [*visualizer.get("vis_backends", []), *trackers]}
