"""``suite gpu-check`` on this CPU: what it runs, what it skips, and that the stand-in data load through the
presets' real datasets with the real shapes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sema_suite.bench.gpu_check import paper_presets, plan
from sema_suite.bench.stand_ins import WIKITEXT_VOCAB, torchvision_stand_ins, write_files


def test_every_paper_preset_is_checked_with_each_method_and_the_gpu_cases_where_there_are_gpus() -> None:
    presets = paper_presets([])
    assert ("det", "coco-mask-rcnn-1x") in presets and ("lm", "wikitext103") in presets
    assert all(preset != "tiny" for _, preset in presets)
    groups, skipped = plan(presets, gpus=0)
    assert all([c.label for c in cases] == ["none", "ema", "sema"] for cases in groups)
    assert len([s for s in skipped if "bf16" in s]) == len(presets)
    assert [s for s in skipped if "ddp" in s] == [f"det/{p} sema (ddp x2): needs 2 GPUs, CUDA sees 0"
                                                 for t, p in presets if t == "det"]
    groups, skipped = plan([("det", "coco-retinanet-1x"), ("cls", "cifar10")], gpus=2)
    assert not skipped
    assert [c.label for c in groups[0]] == ["none", "ema", "sema", "sema (bf16)", "sema (ddp x2)"]
    assert [c.label for c in groups[1]] == ["none", "ema", "sema", "sema (bf16)"]


@pytest.mark.parametrize("args, message", [
    (["--presets", "cls/imagenet"], "cls/imagenet: not a paper preset; choose from cls/cifar100"),
    (["--iters", "0"], "'0': give a whole number of at least 1"),
])
def test_bad_input_is_a_clear_error(args: list[str], message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "sema_suite.cli", "gpu-check", *args], capture_output=True, text=True)
    assert result.returncode == 2 and message in result.stderr


@pytest.mark.slow
def test_on_a_cpu_it_trains_a_preset_with_each_method_and_sees_the_switch(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "sema_suite.cli", "gpu-check", "--presets", "cls/cifar10",
                             "--iters", "2"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split()[1]: line.split() for line in result.stdout.splitlines() if line.startswith("cls/cifar10")}
    assert rows.keys() == {"none", "ema", "sema"}
    assert all(row[2] == "2" and float(row[3]) > 0 for row in rows.values())  # batch 2 on a CPU, steps/s
    assert rows["sema"][-2:] == ["yes", "(2)"] and rows["none"][-1] == "-"
    assert float(rows["ema"][5]) > 0  # the averaging hook's share of training time, in percent
    assert "skipped: cls/cifar10 sema (bf16): mixed precision needs CUDA" in result.stdout
    (analysed,) = [line for line in result.stdout.splitlines() if line.startswith("analysis cls/cifar10 (sema)")]
    assert "measures on 1 batch(es)" in analysed and "FAILED" not in analysed  # suite analyze's measures, once


def test_file_stand_ins_load_through_the_presets_real_datasets(tmp_path: Path) -> None:
    import torch
    from mmdet.datasets import CocoDataset

    from sema_tasks.gen.modules import CelebAImages
    from sema_tasks.lm.text import vocab_size
    from sema_tasks.reg.modules import AgeDB
    from sema_tasks.video.modules import MovingMNIST, MovingMNISTTestFile

    root = write_files(tmp_path, {"celeba64", "agedb", "moving-mnist", "coco2017", "wikitext-2"})
    assert CelebAImages(str(root), "train")[0]["inputs"].shape == (3, 64, 64)
    assert AgeDB(str(root / "agedb"), "train")[0]["inputs"].shape == (3, 224, 224)
    assert MovingMNISTTestFile(str(root))[0]["inputs"].shape == (10, 1, 64, 64)
    assert vocab_size("wikitext-2", str(root)) == WIKITEXT_VOCAB["wikitext-2"]
    coco = CocoDataset(data_root=f"{root}/coco/", ann_file="annotations/instances_train2017.json",
                       data_prefix={"img": "train2017/"}, filter_cfg={"filter_empty_gt": True}, pipeline=[])
    assert len(coco) == 512 and len(coco[0]["instances"]) == 3
    with torchvision_stand_ins():
        video = MovingMNIST(str(root), "train", num_sequences=4)
        assert video[0]["inputs"].shape == (10, 1, 64, 64) and video[0]["inputs"].dtype == torch.float32


@pytest.mark.parametrize("name, split, shape", [("CIFAR100", {"train": True}, (3, 32, 32)),
                                                ("STL10", {"split": "train+unlabeled"}, (3, 96, 96)),
                                                ("FashionMNIST", {"train": False}, (1, 28, 28))])
def test_torchvision_stand_ins_have_the_real_sizes_and_attributes(name: str, split: dict, shape: tuple) -> None:
    import torchvision.datasets as datasets
    from torchvision.transforms import ToTensor

    real = getattr(datasets, name)
    with torchvision_stand_ins():
        data = getattr(datasets, name)("unused", **split, transform=ToTensor())
        assert getattr(datasets, name) is not real
    assert getattr(datasets, name) is real  # put back on the way out
    image, label = data[7]
    assert tuple(image.shape) == shape and label == data.targets[7]
    expected = {"CIFAR100": 50_000, "STL10": 105_000, "FashionMNIST": 10_000}[name]
    assert len(data) == len(data.targets) == expected
    if name == "STL10":
        assert data.labels[4_999] >= 0 and set(data.labels[5_000:]) == {-1}  # unlabelled images come last
