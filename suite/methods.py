"""The ``--method`` axis: what each method adds to a job, and the averaging knobs users may set."""

from __future__ import annotations

from typing import Any

METHODS: dict[str, str] = {
    "none": "plain training; the trained weights are evaluated",
    "ema": "EMA of the weights; the averaged weights are evaluated",
    "sema": "Switch EMA: as ema, and the average is copied back into the model at each switch point",
}

# Defaults for every task; a preset's ``averaging`` dict and ``--set`` override them.
AVERAGING_DEFAULTS: dict[str, Any] = {
    "decay": 0.999,  # avg <- decay * avg + (1 - decay) * w, close to 1
    "update_interval": 1,  # optimizer steps between averaging updates
    "average_buffers": True,  # average BatchNorm statistics too
    "warmup_epochs": 0,  # linear decay warm-up length in epochs (0: none) ...
    "warmup_iters": 0,  # ... or in iterations
    "warmup_factor": 0.9,  # the warm-up starts at warmup_factor * decay
    "switch_interval": 1,  # SEMA: switch every this many epochs ...
    "switch_start": 1,  # ... from this epoch on (1-based)
    "switch_interval_iters": None,  # or every this many iterations (None: per epoch; iteration loops: one pass)
}


def averaging_hook(method: str, averaging: dict[str, Any]) -> dict[str, Any] | None:
    """The SemaHook config for a method, or None for plain training."""
    if method == "none":
        return None
    warmup = None
    if averaging["warmup_iters"]:
        warmup = {"iters": averaging["warmup_iters"], "start_factor": averaging["warmup_factor"]}
    elif averaging["warmup_epochs"]:
        warmup = {"epochs": averaging["warmup_epochs"], "start_factor": averaging["warmup_factor"]}
    return {
        "type": "SemaHook",
        "decay": averaging["decay"],
        "warmup": warmup,
        "update_interval": averaging["update_interval"],
        "average_buffers": averaging["average_buffers"],
        "switch": method == "sema",
        "switch_interval": averaging["switch_interval"],
        "switch_start": averaging["switch_start"],
        "switch_interval_iters": averaging["switch_interval_iters"],
    }
