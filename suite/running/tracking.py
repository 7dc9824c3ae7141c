"""``suite run --log-to tensorboard,mlflow,wandb``: every job also logs to the trackers researchers already use.

Each tracker is mmengine's own visualizer backend, added beside the local one, so it receives what mmengine
logs (training losses, learning rate, every evaluation's metrics) and the SEMA hook's switch points
(``sema/switch_epoch`` at the iteration of each switch). Runs are named by job id and tagged with task, preset,
method, variant and seed:

- ``tensorboard``: event files in the job's work dir (``tensorboard --logdir results``);
- ``mlflow``: experiment ``sema-bench-<task>``, to ``MLFLOW_TRACKING_URI`` when set, else the local file store
  ``<results>/mlruns`` (``mlflow ui --backend-store-uri results/mlruns``). MLflow 3 keeps that store in
  maintenance mode and refuses it unless ``MLFLOW_ALLOW_FILE_STORE`` is set, which the suite does for its
  default; a database store (``sqlite:///...``) needs the full ``mlflow`` package, not the extra's client;
- ``wandb``: project ``sema-bench`` (``WANDB_PROJECT`` overrides), grouped by task/preset, run id = job id (a
  resumed job continues its run), files in ``<results>/<job_id>/wandb``; ``WANDB_MODE=offline`` logs without a
  network (``wandb sync`` uploads later).

Plain standard library at import: the CLI checks names and packages before anything is written.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from sema_suite.errors import SuiteError

TRACKERS = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}  # name -> the package it needs


def check(names: list[str]) -> list[str]:
    """The trackers asked for, validated: an unknown name or a missing package is a SuiteError naming the fix."""
    for name in names:
        if name not in TRACKERS:
            raise SuiteError(f"--log-to {name}: unknown tracker; choose from {', '.join(TRACKERS)}")
        if importlib.util.find_spec(TRACKERS[name]) is None:
            raise SuiteError(f"--log-to {name} needs the {TRACKERS[name]} package, which is not installed: "
                             "pip install 'sema-bench[track]' (or drop it from --log-to)")
    return list(dict.fromkeys(names))


def tags(spec: dict[str, Any]) -> dict[str, str]:
    """What every tracker's run is tagged with (``spec``: a job.json's ``spec``, with its job id)."""
    return {"task": spec["task"], "preset": spec["preset"], "method": spec["method"],
            "variant": spec.get("variant") or "shipped", "seed": str(spec["seed"])}


def vis_backends(names: list[str], job_id: str, spec: dict[str, Any], results_dir: Path) -> list[dict[str, Any]]:
    """mmengine visualizer backend configs for ``names`` (``save_dir`` is filled in by the runner)."""
    labels = tags(spec)
    backends = []
    for name in names:
        if name == "tensorboard":
            backends.append({"type": "TensorboardVisBackend"})
        elif name == "mlflow":
            uri = os.environ.get("MLFLOW_TRACKING_URI")
            if not uri:
                uri = (Path(results_dir).resolve() / "mlruns").as_uri()
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # this worker's own process only
            backends.append({"type": "MLflowVisBackend", "exp_name": f"sema-bench-{spec['task']}", "run_name": job_id,
                             "tags": {**labels, "job_id": job_id}, "tracking_uri": uri})
        elif name == "wandb":
            backends.append({"type": "WandbVisBackend", "init_kwargs": {
                "project": os.environ.get("WANDB_PROJECT", "sema-bench"), "name": job_id, "id": job_id,
                "group": f"{spec['task']}/{spec['preset']}", "resume": "allow",
                # the job's folder: outside the work dir, whose logs MLflow uploads as artifacts
                "dir": str(Path(results_dir).resolve() / job_id),
                # W&B tags are at most 64 characters: a long variant is in the run's config only
                "tags": [tag for k, v in labels.items() if len(tag := f"{k}={v}") <= 64],
                "config": {**labels, "job_id": job_id}}})
    return backends
