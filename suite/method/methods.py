"""The ``--method`` axis: what each method adds to a job, the averaging knobs, and which knobs each method uses.

A knob a method does not use (``decay`` for ``none``, the switch knobs for ``ema``) is dropped from the
job's resolved spec, so it neither changes the job's id nor retrains an identical job; the CLI says so.
"""

from __future__ import annotations

from typing import Any

from sema_suite.errors import BadOverride

METHODS: dict[str, str] = {
    "none": "plain training; the trained weights are evaluated",
    "ema": "EMA of the weights; the averaged weights are evaluated",
    "sema": "Switch EMA: as ema, and the average is copied back into the model at each switch point",
}

# Defaults for every task; a preset's ``averaging`` dict and ``--set`` override them.
AVERAGING_DEFAULTS: dict[str, Any] = {
    "decay": 0.999,
    "update_interval": 1,
    "average_buffers": True,
    "ema_warmup_epochs": 0,
    "ema_warmup_iters": 0,
    "ema_warmup_factor": 0.9,
    "switch_interval": 1,
    "switch_start": 1,
    "switch_interval_iters": None,
}

# One meaning per knob in every loop kind. An "epoch" of an iteration-based loop (gen, COCO 90k) is one pass
# over the training data (len(train_dataloader) iterations).
AVERAGING_HELP: dict[str, str] = {
    "decay": "avg <- decay * avg + (1 - decay) * w; close to 1 (ema, sema)",
    "update_interval": "optimizer steps between averaging updates (ema, sema)",
    "average_buffers": "average float buffers (BatchNorm statistics) too, else copy them (ema, sema)",
    "ema_warmup_epochs": "linear decay warm-up over this many epochs, 0: none (ema, sema)",
    "ema_warmup_iters": "... or over this many iterations; takes precedence over ema_warmup_epochs (ema, sema)",
    "ema_warmup_factor": "the warm-up starts at ema_warmup_factor * decay (ema, sema; only with a warm-up)",
    "switch_interval": "switch every this many epochs (sema)",
    "switch_start": "first epoch (1-based) at whose end, or within which, switches may happen (sema)",
    "switch_interval_iters": "switch every this many iterations instead of switch_interval; None: per epoch (sema)",
}

_AVERAGING = ("decay", "update_interval", "average_buffers", "ema_warmup_epochs", "ema_warmup_iters", "ema_warmup_factor")
_SWITCH = ("switch_interval", "switch_start", "switch_interval_iters")
USED_KNOBS: dict[str, tuple[str, ...]] = {"none": (), "ema": _AVERAGING, "sema": _AVERAGING + _SWITCH}


def effective_averaging(method: str, averaging: dict[str, Any]) -> dict[str, Any]:
    """The averaging knobs that change what a job of ``method`` does, with the same meaning in every loop.

    Knobs that are inert in this combination are left out: a warm-up factor without a warm-up, and
    ``ema_warmup_epochs`` when ``ema_warmup_iters`` is set.
    """
    if averaging.get("switch_interval_iters") is not None and averaging["switch_interval"] != 1 and method == "sema":
        raise BadOverride("switch_interval and switch_interval_iters are both set; a switch period is either in "
                          "epochs or in iterations: drop one of them")
    used = {key: averaging[key] for key in USED_KNOBS[method]}
    if used.get("ema_warmup_iters"):
        used.pop("ema_warmup_epochs", None)
    if used and not (used.get("ema_warmup_iters") or used.get("ema_warmup_epochs")):
        used.pop("ema_warmup_factor", None)
    if used.get("switch_interval_iters") is not None:
        used.pop("switch_interval", None)
    return used


def average_knobs(averaging: dict[str, Any]) -> dict[str, Any]:
    """One average's knobs as :class:`sema_suite.method.hooks.SemaHook` takes them (``averaging`` as
    :func:`effective_averaging` leaves it)."""
    full = {**AVERAGING_DEFAULTS, **averaging}
    warmup = None
    if full["ema_warmup_iters"]:
        warmup = {"iters": full["ema_warmup_iters"], "start_factor": full["ema_warmup_factor"]}
    elif full["ema_warmup_epochs"]:
        warmup = {"epochs": full["ema_warmup_epochs"], "start_factor": full["ema_warmup_factor"]}
    return {"decay": full["decay"], "warmup": warmup, "update_interval": full["update_interval"],
            "average_buffers": full["average_buffers"]}


def averaging_hook(members: list[tuple[str, str, dict[str, Any]]]) -> dict[str, Any] | None:
    """The SemaHook config for a run's members, each ``(job id, method, averaging)`` (``averaging`` as
    :func:`effective_averaging` leaves it), or None for a lone ``none`` job.

    One member: its average, and (``sema``) the switch. Several (a shared run of ``none`` and ``ema`` jobs):
    the trained weights for ``none``, an average for each ``ema`` job.
    """
    if len(members) > 1:
        return {"type": "SemaHook", "members": [
            {"name": name, "average": None if method == "none" else average_knobs(averaging)}
            for name, method, averaging in members]}
    ((name, method, averaging),) = members
    if method == "none":
        return None
    full = {**AVERAGING_DEFAULTS, **averaging}
    return {
        "type": "SemaHook",
        "name": name,
        **average_knobs(averaging),
        "switch": method == "sema",
        "switch_interval": full["switch_interval"],
        "switch_start": full["switch_start"],
        "switch_interval_iters": full["switch_interval_iters"],
    }
