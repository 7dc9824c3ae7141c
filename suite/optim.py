"""The optimizer axis: the optimizer a preset names (``optimizer`` knob) and, for each alternative it offers, the
learning rate and weight decay that optimizer needs (the preset's ``optimizers`` table, never one LR for all).

``--set optimizer=sgd,adamw`` is a sweep like any other: each optimizer's hyper-parameters come from the table
unless set too (``--set lr=...``), and the job's variant names the optimizer (``optimizer=sgd``), so results
never mix optimizers. A hyper-parameter the chosen optimizer does not read (``momentum`` for Adam) is an error.
Import-light: the CLI resolves jobs with it and adapters build configs with it.
"""

from __future__ import annotations

from typing import Any

from sema_suite.errors import BadOverride

# what each optimizer reads from the params
OPTIMIZER_KNOBS = {"sgd": ("lr", "weight_decay", "momentum"), "adam": ("lr", "weight_decay", "betas"),
                   "adamw": ("lr", "weight_decay", "betas")}
OPTIMIZERS = tuple(OPTIMIZER_KNOBS)
_READ_BY_SOME = set().union(*OPTIMIZER_KNOBS.values())


def with_optimizer(shipped: dict[str, Any], table: dict[str, dict[str, Any]], params: dict[str, Any],
                   overridden: set[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(params, reference)`` for a job of a preset with the optimizer axis: ``params`` with the chosen
    optimizer's table entries where the job did not set them, and ``reference`` the preset's knobs under that
    optimizer, from which the job's variant is measured (so it reads ``optimizer=sgd``, not every LR it implies).
    """
    name, own = params["optimizer"], {}
    if name != shipped["optimizer"]:
        if name not in table:
            offered = ", ".join([shipped["optimizer"], *table])
            raise BadOverride(f"optimizer={name!r}: this preset offers {offered} (each with its own learning rate and "
                              "weight decay); add a row to its optimizers table for another")
        own = table[name]
    reads = set(OPTIMIZER_KNOBS[name])
    idle = sorted(key for key in overridden if key in _READ_BY_SOME - reads)
    if idle:
        raise BadOverride(f"{', '.join(idle)} does nothing with optimizer={name} (it reads {', '.join(sorted(reads))}): "
                          "drop it")
    return {**params, **{k: v for k, v in own.items() if k not in overridden}}, {**shipped, **own}


def optimizer_config(params: dict[str, Any], default: str, nesterov: bool = True) -> dict[str, Any]:
    """``params["optimizer"]`` (``default`` for a preset without the knob) with its hyper-parameters from
    ``params``; an unknown name is a clear error."""
    name = params.get("optimizer", default)
    base = {"lr": params["lr"], "weight_decay": params.get("weight_decay", 0.0)}
    if name == "sgd":
        return {"type": "SGD", **base, "momentum": params.get("momentum", 0.9), "nesterov": nesterov}
    if name in ("adam", "adamw"):
        return {"type": "Adam" if name == "adam" else "AdamW", **base, "betas": params.get("betas", [0.9, 0.999])}
    raise BadOverride(f"optimizer={name!r}: choose one of {', '.join(OPTIMIZERS)}")
