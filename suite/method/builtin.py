"""The built-in methods: ``none``, ``ema``, ``sema``, ``swa`` and ``lookahead``, each one :class:`Method`.

``ema``, ``sema`` and ``lookahead`` are one mechanism with different knobs (an average of the weights, and for
the last two a copy of it back into the model), so all three run on :class:`sema_suite.method.hooks.SemaHook`;
``swa`` runs on :class:`sema_suite.method.swa.SwaHook` (torch's ``swa_utils``). Import-light.
"""

from __future__ import annotations

from typing import Any

from sema_suite.knobs import FLAG, POSITIVE, Rule, count
from sema_suite.method.methods import Knob, Method, require

# One meaning per knob in every loop kind. An "epoch" of an iteration-based loop (gen, COCO 90k) is one pass
# over the training data (len(train_dataloader) iterations).
AVERAGE_KNOBS = {
    "decay": Knob(0.999, "avg <- decay * avg + (1 - decay) * w; close to 1",
                  past_lowest="none (decay 0 keeps no average)", rule=Rule(float, low=0, high=1, high_open=True)),
    "update_interval": Knob(1, "optimizer steps between averaging updates", rule=count()),
    "average_buffers": Knob(True, "average float buffers (BatchNorm statistics) too, else copy them", rule=FLAG),
    "ema_warmup_epochs": Knob(0, "linear decay warm-up over this many epochs, 0: none", rule=count(0)),
    "ema_warmup_iters": Knob(0, "... or over this many iterations; takes precedence over ema_warmup_epochs",
                             rule=count(0)),
    "ema_warmup_factor": Knob(0.9, "the warm-up starts at ema_warmup_factor * decay (only with a warm-up)",
                              rule=Rule(float, low=0, high=1, low_open=True)),
}
SWITCH_KNOBS = {
    "switch_interval": Knob(1, "switch every this many epochs",
                            past_highest="ema at the same decay (a sema that never switches)", rule=count()),
    "switch_start": Knob(1, "first epoch (1-based) at whose end, or within which, switches may happen", rule=count()),
    "switch_interval_iters": Knob(None, "switch every this many iterations instead of switch_interval; None: per epoch",
                                  rule=Rule(int, low=1, none=True)),
}


class Plain(Method):
    """Plain training: the trained weights are evaluated."""

    name = "none"
    summary = "plain training; the trained weights are evaluated"
    changes_trajectory = False

    def hook(self, job_id: str, knobs: dict[str, Any], params: dict[str, Any]) -> None:
        return None

    def member(self, job_id: str, knobs: dict[str, Any]) -> dict[str, Any]:
        return {"name": job_id, "average": None}


class Ema(Method):
    """After each optimizer step, fold the weights into an EMA; evaluate the EMA."""

    name = "ema"
    summary = "EMA of the weights; the averaged weights are evaluated"
    knobs = AVERAGE_KNOBS
    changes_trajectory = False

    def effective(self, knobs: dict[str, Any]) -> dict[str, Any]:
        used = super().effective(knobs)
        if used["ema_warmup_iters"]:
            used.pop("ema_warmup_epochs")
        if not (used["ema_warmup_iters"] or used.get("ema_warmup_epochs")):
            used.pop("ema_warmup_factor")  # a warm-up factor without a warm-up does nothing
        return used

    @staticmethod
    def average(knobs: dict[str, Any]) -> dict[str, Any]:
        """One average's knobs as SemaHook takes them."""
        full = {key: knob.default for key, knob in AVERAGE_KNOBS.items()} | knobs
        warmup = None
        if full["ema_warmup_iters"]:
            warmup = {"iters": full["ema_warmup_iters"], "start_factor": full["ema_warmup_factor"]}
        elif full["ema_warmup_epochs"]:
            warmup = {"epochs": full["ema_warmup_epochs"], "start_factor": full["ema_warmup_factor"]}
        return {"decay": full["decay"], "warmup": warmup, "update_interval": full["update_interval"],
                "average_buffers": full["average_buffers"]}

    def hook(self, job_id: str, knobs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        return {"type": "SemaHook", "name": job_id, **self.average(knobs)}

    def member(self, job_id: str, knobs: dict[str, Any]) -> dict[str, Any]:
        return {"name": job_id, "average": self.average(knobs)}


class Sema(Ema):
    """As ``ema``, and at each switch point (every epoch end by default) copy the EMA back into the model."""

    name = "sema"
    summary = "Switch EMA: as ema, and the average is copied back into the model at each switch point"
    knobs = AVERAGE_KNOBS | SWITCH_KNOBS
    changes_trajectory = True

    def effective(self, knobs: dict[str, Any]) -> dict[str, Any]:
        require(knobs["switch_interval_iters"] is None or knobs["switch_interval"] == 1,
                "switch_interval and switch_interval_iters are both set; a switch period is either in epochs or "
                "in iterations: drop one of them")
        used = super().effective(knobs)
        if used["switch_interval_iters"] is not None:
            used.pop("switch_interval")
        return used

    def hook(self, job_id: str, knobs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        full = {key: knob.default for key, knob in SWITCH_KNOBS.items()} | knobs
        return {**super().hook(job_id, knobs, params), "switch": True,
                **{key: full[key] for key in SWITCH_KNOBS}}

    def member(self, job_id: str, knobs: dict[str, Any]) -> dict[str, Any]:
        return Method.member(self, job_id, knobs)


class Lookahead(Method):
    """Lookahead (Zhang et al. 2019): every ``k`` optimizer steps the slow weights move ``alpha`` of the way to the
    fast (trained) ones, ``phi <- phi + alpha (theta - phi)``, and the fast weights restart from them. It is SEMA
    with an average updated every ``k`` steps at decay ``1 - alpha`` and a switch every ``k`` steps. As in timm's
    ``Lookahead`` (the reference it is tested against), the slow weights start at the weights after the first ``k``
    steps (the paper's algorithm starts them at the initial weights) and the optimizer state is kept. The slow
    weights are evaluated; only parameters are averaged (buffers stay the trained ones)."""

    name = "lookahead"
    summary = "Lookahead: every lookahead_k steps the slow weights step lookahead_alpha toward the fast ones, which restart from them"
    knobs = {"lookahead_k": Knob(5, "fast optimizer steps between slow-weight updates (Lookahead's k)", rule=count()),
             "lookahead_alpha": Knob(0.5, "slow-weight step size (Lookahead's alpha), in (0, 1]", highest=1.0,
                                     past_highest="none (at alpha 1 the slow weights are the fast ones)",
                                     rule=Rule(float, low=0, high=1, low_open=True))}

    def hook(self, job_id: str, knobs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        k = knobs["lookahead_k"]
        return {"type": "SemaHook", "name": job_id, "decay": 1.0 - knobs["lookahead_alpha"], "update_interval": k,
                "average_buffers": False, "switch": True, "switch_interval_iters": k}


class Swa(Method):
    """Stochastic weight averaging (Izmailov et al. 2018) with torch's ``swa_utils``: from epoch ``swa_start`` on,
    the preset's LR schedule gives way to ``SWALR`` (a cosine anneal over ``swa_anneal_epochs`` to ``swa_lr``),
    and at each epoch end the weights join an equal-weight average (``AveragedModel``). Evaluated: the average,
    with BatchNorm statistics recomputed over the training data (``update_bn``) before each evaluation; before
    ``swa_start``, the trained weights."""

    name = "swa"
    summary = "SWA: an equal average of the epoch-end weights from swa_start on, under SWALR; BatchNorm recomputed"
    knobs = {"swa_start": Knob(0.75, "first epoch whose end joins the average (>= 1), or a fraction of training (< 1)",
                               fraction_below_one=True, rule=POSITIVE),
             "swa_lr": Knob(None, "SWALR's learning rate; None: half the preset's lr", rule=Rule(float, low=0,
                                                                                                low_open=True, none=True)),
             "swa_anneal_epochs": Knob(2, "epochs SWALR anneals (cosine) from the scheduled LR to swa_lr; 0: at once",
                                       rule=count(0))}

    def effective(self, knobs: dict[str, Any]) -> dict[str, Any]:
        used = super().effective(knobs)
        start = used["swa_start"]
        require(0 < start < 1 or (start >= 1 and float(start).is_integer()),
                f"swa_start={start!r}: give an epoch (a whole number >= 1) or a fraction of training in (0, 1)")
        return used

    def hook(self, job_id: str, knobs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        swa_lr = knobs["swa_lr"]
        if swa_lr is None:
            require("lr" in params, "swa_lr=None takes half the preset's lr, and this preset has no lr knob: set swa_lr")
            swa_lr = params["lr"] / 2
        return {"type": "SwaHook", "name": job_id, "swa_start": knobs["swa_start"], "swa_lr": swa_lr,
                "anneal_epochs": knobs["swa_anneal_epochs"]}
