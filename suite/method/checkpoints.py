"""The weights in a job's checkpoint: the ones the job reports, the trained ones, and ``suite export``.

An ``ema``/``sema`` checkpoint follows mmengine's EMAHook convention (:class:`sema_suite.method.hooks.SemaHook` writes it):
``state_dict`` holds the weights the method reports (the average), where MMDetection's and mmengine's test tools
load from, and ``ema_state_dict`` the trained weights (keys prefixed ``module.``); ``sema_hook`` holds each
average's exact float32 state and counters under its job id (``averagers``), and says which weights
``state_dict`` holds. A shared run's checkpoint (one trajectory, several jobs: :mod:`sema_suite.running.runs`) keeps
the trained weights in ``state_dict`` and every member's average under ``averagers``; each of its jobs finds
its own weights there. Checkpoints written before these conventions hold the trained weights in
``state_dict`` and one average under ``averager``. A ``none`` checkpoint holds its trained weights, which are
also the ones it reports.

Every checkpoint is read with torch's weights-only unpickler (:func:`read_checkpoint`): a file in a results folder
can never run code. Only torch at import time, lazily: the CLI imports this module when it exports.
"""

from __future__ import annotations

import pickle
from functools import cache
from pathlib import Path
from typing import Any

from sema_suite.errors import SuiteError, UnsafeCheckpoint
from sema_suite.results.store import JobDir, read_json

PREFIX = "module."  # mmengine's EMAHook keys the other weights as its wrapper's, under "module."
WEIGHTS = ("averaged", "trained")


HOOK_KEYS = ("sema_hook", "swa_hook")  # where SemaHook and SwaHook keep their state in a checkpoint


def averaged_in_state_dict(checkpoint: dict[str, Any]) -> bool:
    return any((checkpoint.get(key) or {}).get("state_dict") == "averaged" for key in HOOK_KEYS)


def store_reported(checkpoint: dict[str, Any], reported: dict[str, Any]) -> None:
    """Write a checkpoint as mmengine's EMAHook does: ``state_dict`` gets the ``reported`` weights (on the CPU, in the
    saved dtype; names a state dict leaves out, such as non-persistent buffers, skipped), ``ema_state_dict`` the
    trained ones under ``module.``."""
    state = checkpoint["state_dict"]
    names = [name for name in reported if name in state]
    checkpoint["ema_state_dict"] = {PREFIX + name: state[name] for name in names}
    for name in names:
        state[name] = reported[name].detach().to("cpu", state[name].dtype, copy=True)


def trained_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The trained weights (what the optimizer updated)."""
    state = dict(checkpoint["state_dict"])
    if averaged_in_state_dict(checkpoint):
        state.update({k[len(PREFIX):]: v for k, v in checkpoint["ema_state_dict"].items()})
    return state


def averager_states(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Each average's state by job id (a checkpoint older than shared runs: its one average, under "average")."""
    hook = checkpoint.get("sema_hook") or {}
    return hook["averagers"] if "averagers" in hook else ({"average": hook["averager"]} if "averager" in hook else {})


def reported_state(checkpoint: dict[str, Any], job_id: str, method: str) -> dict[str, Any]:
    """The weights job ``job_id`` of ``method`` reports: its average for ``ema``/``sema`` (also from checkpoints
    older than the conventions), the trained weights for ``none``. (An average also covers non-persistent
    buffers, such as a data preprocessor's constants, which a state dict leaves out.)"""
    if method == "none":
        return trained_state(checkpoint)
    state = dict(checkpoint["state_dict"])
    if averaged_in_state_dict(checkpoint) or "swa_hook" in checkpoint:  # swa: before swa_start, the trained ones
        return state
    states = averager_states(checkpoint)
    if job_id not in states and len(states) != 1:
        raise SuiteError(f"the checkpoint of {job_id}'s run keeps no average of it (it has {sorted(states)})")
    averaged = states.get(job_id) or next(iter(states.values()))
    tensors = {**averaged["averaged"], **{alias: averaged["averaged"][name]
                                          for alias, name in averaged.get("aliases", {}).items()}}
    state.update({name: value for name, value in tensors.items() if name in state})  # tied aliases too
    return state


def last_path(job: JobDir) -> Path:
    """A finished job's last checkpoint file; a SuiteError when there is none (published results keep none)."""
    path = job.last_checkpoint()
    if path is None:
        raise SuiteError(f"{job.job_id} has no checkpoint under {job.work_dir}: its weights are gone (published "
                         "results keep none); re-run the job to get them")
    return path


@cache
def _allowed_globals() -> tuple[Any, ...]:
    """The types besides tensors that a suite checkpoint holds, none of which runs code when rebuilt: numpy arrays,
    scalars and dtypes (the random state, mmengine's log history; see
    :class:`sema_suite.running.compat.PlainCheckpointHook`)."""
    import numpy as np

    dtypes = tuple(getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType"))
    return np._core.multiarray._reconstruct, np._core.multiarray.scalar, np.ndarray, np.dtype, *dtypes


def read_checkpoint(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    """A checkpoint file, loaded without running any code from it (weights only, :func:`_allowed_globals` allowed);
    a file that asks for anything else is refused with :class:`UnsafeCheckpoint`, and nothing in it runs."""
    import torch

    try:
        with torch.serialization.safe_globals(list(_allowed_globals())):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        allowed = {f"{g.__module__}.{g.__qualname__}" for g in _allowed_globals()}
        asked = sorted(set(torch.serialization.get_unsafe_globals_in_checkpoint(path)) - allowed)
        raise UnsafeCheckpoint(Path(path), asked) from None


def load(job: JobDir) -> dict[str, Any]:
    """A finished job's last checkpoint (:func:`read_checkpoint`)."""
    return read_checkpoint(last_path(job))


def export(results_dir: Path, job_id: str, weights: str | None, out: Path) -> tuple[str, int]:
    """Write a plain state dict of a job's weights to ``out`` (loadable with ``torch.load(weights_only=True)``);
    ``weights``: ``averaged``, ``trained``, or None for the ones the job reports. Returns what was written
    and how many tensors."""
    import torch

    job = JobDir(results_dir, job_id)
    if not job.exists():
        raise SuiteError(f"no job {job_id} under {results_dir}/ (`suite leaderboard` and the dashboard list them)")
    method = read_json(job.job_json)["spec"]["method"]
    if weights == "averaged" and method == "none":
        raise SuiteError(f"{job_id} is a `none` job: it keeps no average. Drop --weights (its trained weights are "
                         "the ones it reports) or pick an ema/sema job")
    checkpoint = load(job)
    chosen = weights or ("trained" if method == "none" else "averaged")
    state = trained_state(checkpoint) if chosen == "trained" else reported_state(checkpoint, job_id, method)
    tmp = out.with_name(f".{out.name}.tmp")
    torch.save({k: v.detach().clone() for k, v in state.items()}, tmp)
    tmp.replace(out)  # a kill never leaves half a file under the name asked for
    return chosen, len(state)
