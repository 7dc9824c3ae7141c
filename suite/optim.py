"""The optimizer a preset names (``optimizer`` knob), as an mmengine ``optimizer`` config.

A preset that offers the optimizer axis lists ``optimizer`` among its params with the hyper-parameters the
named one takes (``lr``, ``weight_decay``, ``momentum`` for SGD, ``betas`` for Adam and AdamW); the job's
variant then names the optimizer, so results never mix optimizers. Import-light: adapters build configs with it.
"""

from __future__ import annotations

from typing import Any

from sema_suite.errors import BadOverride

OPTIMIZERS = ("sgd", "adam", "adamw")


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
