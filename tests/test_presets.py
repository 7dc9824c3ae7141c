"""The paper presets' averaging against their steps per switch period: the rule every preset follows.

An EMA lags the trained weights by ~d/(1-d) steps, and a switch pulls the model back by about that much, so
the lag must stay well under the switch period or SEMA stalls by construction (the authors' tuned CIFAR-100
setting: 0.99 at ~500 steps per epoch, a fifth). A new paper preset must say how many examples an epoch has.
"""

from __future__ import annotations

import pytest

from sema_suite.methods import AVERAGING_DEFAULTS
from sema_suite.registry import get_task, task_names

# examples per epoch before the val hold-out (lm: blocks of `context` tokens of the training text)
EPOCH = {
    ("cls", "cifar10"): 50_000, ("cls", "cifar100"): 50_000,
    ("det", "coco-retinanet-1x"): 118_287, ("det", "coco-mask-rcnn-1x"): 118_287, ("det", "coco-retinanet-90k"): 118_287,
    ("gen", "cifar10"): 50_000, ("gen", "celeba64"): 162_770,
    ("lm", "wikitext103"): 103_227_021 // 512, ("lm", "wikitext2"): 2_088_628 // 512,
    ("reg", "rcf-mnist"): 60_000, ("reg", "agedb"): 12_208,
    **{("ssl", f"cifar100-{m}"): 50_000 for m in ("simclr", "mocov3", "byol")},
    **{("ssl", f"stl10-{m}"): 105_000 for m in ("simclr", "mocov3", "byol")},
    ("video", "mmnist"): 10_000,
}
MAX_LAG_SHARE = 0.4


def paper_presets() -> list[tuple[str, str]]:
    return [(t, p.name) for t in task_names() for p in get_task(t).presets.values() if not p.offline]


def test_every_paper_preset_is_listed() -> None:
    assert sorted(paper_presets()) == sorted(EPOCH)


@pytest.mark.parametrize(("task", "preset"), paper_presets())
def test_the_averaging_lag_stays_well_under_the_switch_period(task: str, preset: str) -> None:
    shipped = get_task(task).presets[preset]
    averaging = {**AVERAGING_DEFAULTS, **shipped.averaging}
    params = shipped.params
    steps_per_epoch = (EPOCH[task, preset] - params.get("val_size", 0)) // params["batch_size"]
    period = averaging["switch_interval_iters"] or averaging["switch_interval"] * steps_per_epoch
    lag = averaging["decay"] / (1 - averaging["decay"])
    assert lag <= MAX_LAG_SHARE * period, (
        f"{task}/{preset}: decay {averaging['decay']} lags {lag:.0f} steps behind a switch every {period} steps")
