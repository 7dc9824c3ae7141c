"""The paper presets' averaging against their steps per switch period: the rule every preset follows.

An EMA lags the trained weights by ~d/(1-d) steps, and a switch pulls the model back by about that much, so
the lag must stay well under the switch period or SEMA stalls by construction (the authors' tuned CIFAR-100
setting: 0.99 at ~500 steps per epoch, a fifth). A new paper preset must say how many examples an epoch has. And the knobs every paper preset has (``amp``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sema_suite.method.methods import averaging_defaults
from sema_suite.registry import get_task, task_names
from sema_suite.running.jobs import JobSpec

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
    averaging = {**averaging_defaults(), **shipped.averaging}
    params = shipped.params
    steps_per_epoch = (EPOCH[task, preset] - params.get("val_size", 0)) // params["batch_size"]
    period = averaging["switch_interval_iters"] or averaging["switch_interval"] * steps_per_epoch
    lag = averaging["decay"] / (1 - averaging["decay"])
    assert lag <= MAX_LAG_SHARE * period, (
        f"{task}/{preset}: decay {averaging['decay']} lags {lag:.0f} steps behind a switch every {period} steps")

def test_amp_is_a_knob_of_every_paper_preset(tmp_path: Path) -> None:
    """Mixed precision through mmengine's AmpOptimWrapper, the same for every method; on a CPU, an error."""
    from sema_suite.running.config import build_config
    from sema_suite.task import AMP_DTYPES

    job = JobSpec("cls", "cifar100", "sema", 0, (("amp", "bf16"),)).resolve()
    assert job.variant == "amp=bf16" and job.job_id != JobSpec("cls", "cifar100", "sema", 0).resolve().job_id
    cfg = build_config(job, job.context(tmp_path, tmp_path / "work", dry_run=True), tmp_path)
    assert cfg.optim_wrapper.type == "AmpOptimWrapper" and cfg.optim_wrapper.dtype == AMP_DTYPES["bf16"]
    assert "amp" not in JobSpec("cls", "tiny", "sema", 0).resolve().params  # CPU presets do not offer it
    with pytest.raises(Exception, match="amp='int8': amp takes one of none, bf16, fp16"):
        JobSpec("cls", "cifar100", "sema", 0, (("amp", "int8"),)).resolve()
    if not torch.cuda.is_available():  # on a GPU machine this would train
        done = subprocess.run([sys.executable, "-m", "sema_suite.cli", "run", "--task", "cls", "--preset", "cifar100",
                               "--set", "amp=fp16", "--data-root", str(tmp_path), "--download",
                               "--results-dir", str(tmp_path / "results")],
                              check=False, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2 and "CUDA sees none here" in done.stderr
        assert not (tmp_path / "results").exists()


# training examples an epoch (a pass) of each long preset goes over, after the val hold-out
LONG_EXAMPLES = {"cls": 4000 - 500, "reg": 1079, "ssl": 1079, "video": 960, "gen": 1079, "lm": 40_960 // 64,
                 "det": 64}


def test_every_task_has_a_long_preset() -> None:
    assert sorted(LONG_EXAMPLES) == sorted(task_names())
    assert all(get_task(task).presets["long"].offline for task in LONG_EXAMPLES)


@pytest.mark.parametrize("task", sorted(LONG_EXAMPLES))
def test_long_presets_reach_the_papers_regime(task: str, tmp_path: Path) -> None:
    """At least 100 epochs (passes, so 100 switches), at least 30 optimizer steps each, and a shipped decay
    lagging at most a quarter of the steps between switches -- read from the resolved mmengine config."""
    import math

    from sema_suite.running.config import build_config

    job = JobSpec(task, "long", "sema", 0).resolve()
    cfg = build_config(job, job.context(tmp_path, tmp_path / "work", dry_run=True), tmp_path)
    loader = cfg.train_dataloader
    rounding = math.floor if loader.get("drop_last") else math.ceil
    steps = rounding(LONG_EXAMPLES[task] / loader.batch_size)
    loop = cfg.train_cfg
    epochs = loop.max_epochs if "max_epochs" in loop else loop.max_iters / steps
    assert epochs >= 100 and steps >= 30, f"{task}/long: {epochs} epochs of {steps} steps"
    lag = job.averaging["decay"] / (1 - job.averaging["decay"])
    assert lag <= 0.25 * job.averaging["switch_interval"] * steps, f"{task}/long: decay lags {lag:.1f} steps"
