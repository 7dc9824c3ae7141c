"""What values a knob takes -- its type and range, or its names -- checked when a matrix is planned.

Every ``--set`` key has a :class:`Rule`: a method knob carries its own (:class:`sema_suite.method.methods.Knob`), a
preset parameter takes the preset's (``Preset.rules``) or, for the training knobs many presets share (``epochs``,
``lr``, ...), the one in :data:`TRAINING`. A value is checked when the job is resolved, before any folder is
written, so ``decay=1.5`` or ``epochs=0`` is one clear error at the command line and never a job that fails inside
its worker. Import-light: the CLI plans with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sema_suite.errors import BadOverride

_KIND_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "a name", list: "a list"}


@dataclass(frozen=True)
class Rule:
    """The values one knob takes.

    ``kind``: bool, int, float, str or list (an int is accepted where a float is wanted); ``low``/``high``: the
    range of a number, each end excluded when ``low_open``/``high_open``; ``choices``: the only names a str knob
    takes; ``none``: whether None is a value (a knob whose None means "derive it", e.g. ``swa_lr``).
    """

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    none: bool = False

    def describe(self) -> str:
        """``a number in (0, 1]``, ``a whole number >= 1``, ``one of cosine, inverse_sqrt``."""
        if self.choices:
            text = f"one of {', '.join(self.choices)}"
        else:
            text = _KIND_NAMES[self.kind]
            if self.low is not None and self.high is not None:
                text += f" in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
            elif self.low is not None:
                text += f" {'>' if self.low_open else '>='} {self.low:g}"
            elif self.high is not None:
                text += f" {'<' if self.high_open else '<='} {self.high:g}"
        return text + (", or none" if self.none else "")

    def check(self, key: str, value: Any) -> Any:
        """``value`` as the knob takes it (an int where a float is wanted becomes a float), or a BadOverride that
        names the knob, the value and what it takes."""
        if value is None:
            if self.none:
                return None
            raise BadOverride(f"{key}=None: {key} takes {self.describe()}")
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif self.kind is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, self.kind) or (self.kind is not bool and isinstance(value, bool)):
            raise BadOverride(f"{key}={value!r}: {key} takes {self.describe()}")
        if self.choices and value not in self.choices:
            raise BadOverride(f"{key}={value!r}: {key} takes {self.describe()}")
        if self.kind in (int, float) and not self._in_range(value):
            raise BadOverride(f"{key}={value!r}: {key} takes {self.describe()}")
        return value

    def _in_range(self, value: float) -> bool:
        if isinstance(value, float) and math.isnan(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)


def count(low: int = 1) -> Rule:
    """A whole number of at least ``low`` (epochs, steps, a batch)."""
    return Rule(int, low=low)


POSITIVE = Rule(float, low=0, low_open=True)
NON_NEGATIVE = Rule(float, low=0)
FRACTION = Rule(float, low=0, high=1, high_open=True)  # a probability or a momentum: [0, 1)
FLAG = Rule(bool)

# Training knobs that many presets share, with one meaning each; a preset states a knob of its own in its
# ``rules`` (or a narrower range for one of these).
TRAINING: dict[str, Rule] = {
    "epochs": count(), "iters": count(), "val_interval": count(), "batch_size": count(), "eval_batch_size": count(),
    "lr": POSITIVE, "weight_decay": NON_NEGATIVE, "momentum": FRACTION, "betas": Rule(list),
    "num_workers": Rule(int, low=0, none=True), "grad_clip": Rule(float, low=0, none=True),
    "lr_warmup_epochs": Rule(int, low=0), "lr_warmup_iters": Rule(int, low=0), "dropout": FRACTION,
    "val_size": Rule(int, low=0), "image_size": count(), "amp": Rule(str, choices=("none", "bf16", "fp16")),
    "optimizer": Rule(str, choices=("sgd", "adam", "adamw")), "width": count(), "depths": Rule(list),
}
