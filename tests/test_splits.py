"""The evaluation splits: every tiny preset's train / val / test data are fixed and disjoint, the paper presets
hold ``val_size`` training examples out (or, with ``val_size=0``, evaluate the test split at every evaluation),
and real tiny jobs record both ``val`` and ``test`` rows."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sema_suite.cli import main
from sema_suite.data import SPLITS, digits_indices, evaluation_config, holdout, load_digits_split, split_indices
from sema_suite.errors import BadOverride
from sema_suite.registry import get_task
from sema_suite.results.store import JobDir
from sema_suite.running.jobs import JobSpec
from sema_tasks.det.coco import ensure_holdout
from sema_tasks.det.shapes import ShapesSpec, ann_file, ensure_shapes

PAIRS = [("train", "val"), ("train", "test"), ("val", "test")]


def _disjoint(sets: dict[str, set]) -> None:
    for a, b in PAIRS:
        assert not sets[a] & sets[b], f"{a} and {b} share {sorted(sets[a] & sets[b])[:5]}"


# -- the tiny presets ---------------------------------------------------------------------------------------


def test_digits_split_three_ways_fixed_and_disjoint():
    index = {split: digits_indices(split).tolist() for split in SPLITS}
    assert {s: len(i) for s, i in index.items()} == {"train": 1079, "val": 359, "test": 359}
    sets = {s: set(i) for s, i in index.items()}
    _disjoint(sets)
    assert set.union(*sets.values()) == set(range(1797))
    assert all(digits_indices(s).tolist() == index[s] for s in SPLITS)  # fixed: no job seed in it
    torch.manual_seed(123)  # and independent of the global RNG
    assert digits_indices("test").tolist() == index["test"]
    from sklearn.datasets import load_digits

    targets = torch.as_tensor(load_digits().target)
    for split in SPLITS:
        assert torch.equal(load_digits_split(split)[1], targets[index[split]])
    with pytest.raises(ValueError, match="split must be one of"):
        digits_indices("holdout")


def test_digit_datasets_of_every_tiny_preset_read_their_own_split():
    """cls, reg, ssl, gen and video build each split from the digits of that split (and of no other)."""
    from sema_tasks.cls.modules import DigitsClassification
    from sema_tasks.gen.modules import DigitsImages
    from sema_tasks.reg.modules import RotatedDigits
    from sema_tasks.ssl.modules import DigitsFeatureEval, UnlabelledDigits
    from sema_tasks.video.modules import MovingDigits

    for split in SPLITS:
        images, labels = load_digits_split(split, 16)
        cls = DigitsClassification(split, 16)
        assert torch.equal(cls.images, (images - 0.5) / 0.5) and torch.equal(cls.labels, labels)
        assert torch.equal(DigitsImages(split, 16).images, images)
        assert len(RotatedDigits(split, 16)) == len(labels)
        assert torch.equal(MovingDigits(split, 4).digits, load_digits_split(split, 12)[0][:, 0])
    assert torch.equal(UnlabelledDigits(12).images, load_digits_split("train", 12)[0])
    for split in ("val", "test"):  # the k-NN bank is the training digits, the queries the evaluated split
        bank, queries = DigitsFeatureEval(split, 12).datasets
        assert bank.bank and not queries.bank
        assert torch.equal(bank.labels, load_digits_split("train")[1])
        assert torch.equal(queries.labels, load_digits_split(split)[1])


def test_rotated_digits_draw_each_split_from_its_own_seed():
    from sema_tasks.reg.modules import RotatedDigits

    splits = {s: RotatedDigits(s, 16) for s in SPLITS}
    assert not torch.equal(splits["val"].targets, splits["test"].targets)
    assert all(d.metainfo == splits["train"].metainfo for d in splits.values())  # the training median, always
    assert splits["train"].metainfo["train_median"] == pytest.approx(float(splits["train"].targets.median()))


def test_moving_digits_val_and_test_sequences_differ_in_digits_and_seeds():
    from sema_tasks.video.modules import MovingDigits

    val, test = MovingDigits("val", 8), MovingDigits("test", 8)
    assert val.seed_offset != test.seed_offset and abs(val.seed_offset - test.seed_offset) >= len(test)
    assert not torch.equal(val[0]["inputs"], test[0]["inputs"])
    assert torch.equal(test[3]["targets"], MovingDigits("test", 8)[3]["targets"])  # fixed


def _image_hashes(root: Path, split: str) -> set[str]:
    from PIL import Image

    with_names = {}
    for path in sorted((root / split).glob("*.png")):
        with Image.open(path) as image:
            with_names[path.name] = hashlib.sha1(np.asarray(image).tobytes()).hexdigest()
    return set(with_names.values())


def test_shapes_splits_are_disjoint_images(tmp_path):
    spec = ShapesSpec(num_train=30, num_val=10, num_test=12)
    root = ensure_shapes(spec, tmp_path)
    hashes = {split: _image_hashes(root, split) for split in SPLITS}
    assert {s: len(h) for s, h in hashes.items()} == {"train": 30, "val": 10, "test": 12}  # no repeats within
    _disjoint(hashes)
    for split in SPLITS:
        assert len(json.loads(ann_file(root, split).read_text())["images"]) == spec.count(split)
    assert ensure_shapes(ShapesSpec(num_train=30, num_val=10, num_test=11), tmp_path) != root  # its own cache


# -- the paper presets' held-out slice ----------------------------------------------------------------------


def test_holdout_is_fixed_disjoint_and_class_balanced():
    labels = np.repeat(np.arange(10), 100)[np.random.default_rng(5).permutation(1000)]
    kept, held = holdout(1000, 200, labels)
    assert len(held) == 200 and len(kept) == 800 and not set(kept) & set(held)
    assert sorted([*kept, *held]) == list(range(1000))
    assert np.bincount(labels[held]).tolist() == [20] * 10
    again_kept, again_held = holdout(1000, 200, labels)
    assert again_held.tolist() == held.tolist() and again_kept.tolist() == kept.tolist()
    random_kept, random_held = holdout(1000, 200)
    assert not set(random_kept) & set(random_held) and random_held.tolist() != held.tolist()
    assert len(holdout(1000, 0)[1]) == 0 and split_indices("train", 1000, 0).tolist() == list(range(1000))
    assert split_indices("val", 1000, 200, labels).tolist() == held.tolist()
    with pytest.raises(ValueError):
        holdout(10, 11)


def test_coco_holdout_files_split_train2017_by_image(tmp_path):
    coco = tmp_path / "coco"
    (coco / "annotations").mkdir(parents=True)
    images = [{"id": i, "file_name": f"{i:012d}.jpg"} for i in range(300, 0, -3)]  # 100 images, not in id order
    annotations = [{"id": 10 * i + k, "image_id": i, "bbox": [0, 0, 1, 1]} for i in range(300, 0, -3) for k in range(2)]
    source = {"info": {"year": 2017}, "images": images, "annotations": annotations, "categories": [{"id": 1}]}
    (coco / "annotations" / "instances_train2017.json").write_text(json.dumps(source))
    train_file, val_file = ensure_holdout(coco, 20, tmp_path / "cache")
    train, val = (json.loads(f.read_text()) for f in (train_file, val_file))
    train_ids, val_ids = ({im["id"] for im in d["images"]} for d in (train, val))
    assert len(val_ids) == 20 and len(train_ids) == 80 and not train_ids & val_ids
    assert train_ids | val_ids == {im["id"] for im in images}
    for data, ids in ((train, train_ids), (val, val_ids)):
        assert {a["image_id"] for a in data["annotations"]} == ids and len(data["annotations"]) == 2 * len(ids)
        assert data["categories"] == source["categories"] and data["info"] == source["info"]
    stamp = train_file.stat().st_mtime_ns  # written once; another cache gets the same slice
    assert ensure_holdout(coco, 20, tmp_path / "cache") == (train_file, val_file)
    assert train_file.stat().st_mtime_ns == stamp
    other = ensure_holdout(coco, 20, tmp_path / "other")[1]
    assert {im["id"] for im in json.loads(other.read_text())["images"]} == val_ids


PAPER = [(task, preset) for task in ("cls", "ssl", "gen", "video", "reg", "det")
         for preset, p in get_task(task).presets.items() if "val_size" in p.params]


def test_every_task_has_a_paper_preset_with_val_size():
    assert {task for task, _ in PAPER} == {"cls", "ssl", "gen", "video", "reg", "det"}


@pytest.mark.parametrize(("task", "preset"), PAPER)
def test_val_size_labels_the_final_run_test_and_rejects_impossible_sizes(task, preset, tmp_path):
    job = JobSpec(task, preset, "none", 0).resolve()
    assert job.params["val_size"] > 0 and job.task.val_split(job.preset, job.params) == "val"
    final = JobSpec(task, preset, "none", 0, (("val_size", 0),)).resolve()
    assert final.task.val_split(final.preset, final.params) == "test"
    with pytest.raises(BadOverride, match="val_size=-1: val_size takes a whole number >= 0"):  # refused at planning
        JobSpec(task, preset, "none", 0, (("val_size", -1),)).resolve()
    wrong = JobSpec(task, preset, "none", 0, (("val_size", 10_000_000),)).resolve()  # larger than the data: there
    with pytest.raises(BadOverride, match="val_size=0"):
        wrong.task.check_data(wrong.preset, wrong.context(tmp_path, tmp_path / "work", download=True))


def test_tiny_presets_evaluate_val_every_time():
    for task in ("cls", "ssl", "gen", "video", "reg", "det"):
        for preset in get_task(task).presets.values():
            if preset.offline:
                assert get_task(task).val_split(preset, dict(preset.params)) == "val", (task, preset.name)


def _split(loader: dict) -> str:
    dataset = loader["dataset"]
    if dataset["type"] == "MovingMNISTTestFile":
        return "test"
    return "train" if dataset["type"] in ("UnlabelledDigits", "TorchvisionTwoViews") else dataset["split"]


@pytest.mark.parametrize(("task", "preset"), [(t, p) for t, p in PAPER if t != "det"] + [
    ("cls", "tiny"), ("reg", "tiny"), ("ssl", "tiny"), ("gen", "tiny"), ("video", "tiny")])
def test_configs_score_val_every_evaluation_and_test_at_the_end(task, preset, tmp_path):
    job = JobSpec(task, preset, "none", 0).resolve()
    cfg = job.task.build_config(job.preset, job.context(tmp_path, tmp_path / "work", dry_run=True))
    assert _split(cfg["train_dataloader"]) == "train"
    assert _split(cfg["val_dataloader"]) == "val" and _split(cfg["test_dataloader"]) == "test"
    assert cfg["test_cfg"] == {"type": "TestLoop"}
    if "val_size" in job.params:
        for loader in ("train_dataloader", "val_dataloader"):  # training leaves out what val scores
            assert cfg[loader]["dataset"]["val_size"] == job.params["val_size"]
        final = JobSpec(task, preset, "none", 0, (("val_size", 0),)).resolve()
        cfg = final.task.build_config(final.preset, final.context(tmp_path, tmp_path / "work", dry_run=True))
        assert _split(cfg["val_dataloader"]) == "test"
        # a test pass only where the end of the run measures more (ssl: the linear probe; reg: mae_constant)
        assert ("test_dataloader" in cfg) == (task in ("ssl", "reg"))


def test_evaluation_config_without_a_held_out_split():
    def loader(split: str) -> dict:
        return {"split": split}

    assert evaluation_config({"val_size": 0}, loader, "E") == {
        "val_cfg": {"type": "ValLoop"}, "val_dataloader": {"split": "test"}, "val_evaluator": "E"}
    both = evaluation_config({"val_size": 0}, loader, "E", test_evaluator="T")
    assert both["test_dataloader"] == {"split": "test"} and both["test_evaluator"] == "T"
    held = evaluation_config({"val_size": 5}, loader, lambda split: f"E-{split}")
    assert held["val_evaluator"] == "E-val" and held["test_evaluator"] == "E-test"


# -- real tiny jobs ---------------------------------------------------------------------------------------


def _run(tmp_path: Path, task: str, sets: list[str]) -> list[dict]:
    args = ["run", "--task", task, "--method", "none", "--results-dir", str(tmp_path)]
    assert main([*args, *[x for s in sets for x in ("--set", s)]]) == 0
    (job_json,) = tmp_path.glob("*/job.json")
    return JobDir(tmp_path, job_json.parent.name).metrics()


@pytest.mark.slow
def test_tiny_cls_job_records_val_every_epoch_and_test_at_the_end(tmp_path, capsys):
    rows = _run(tmp_path, "cls", ["epochs=2"])
    assert [(r["split"], r["epoch"], r["metric"]) for r in rows] == [
        ("val", 1, "top1"), ("val", 2, "top1"), ("test", 2, "top1")]
    assert rows[-1]["value"] > 50  # it learnt (chance: 10 %)


@pytest.mark.slow
def test_tiny_reg_job_records_val_every_epoch_and_test_at_the_end(tmp_path, capsys):
    from sema_tasks.reg.modules import RotatedDigits

    rows = _run(tmp_path, "reg", ["epochs=2", "width=8"])
    assert [(r["split"], r["epoch"], r["metric"]) for r in rows] == [
        ("val", 1, "mae"), ("val", 1, "rmse"), ("val", 2, "mae"), ("val", 2, "rmse"),
        ("test", 2, "mae"), ("test", 2, "rmse"), ("test", 2, "mae_constant")]
    test = RotatedDigits("test", 16)  # the constant baseline is scored on the test digits
    expected = (test.targets.double() - test.metainfo["train_median"]).abs().mean().item()
    assert rows[-1]["value"] == pytest.approx(expected, rel=1e-6)


# -- the paper presets' datasets, on stand-ins for torchvision's ----------------------------------------------

TRAIN, TEST, VAL_SIZE = 200, 50, 20


def _ids(images, second: int = 1) -> list[int]:
    """The ids the fakes below write into the first two values of every image (``second``: where the second
    one is after STL-10's C x H x W images are transposed to H x W x C, 3)."""
    flat = torch.as_tensor(np.asarray(images)).reshape(len(images), -1).long()
    return (flat[:, 0] + 256 * flat[:, second]).tolist()


def _images(ids: range, shape: tuple[int, ...]) -> np.ndarray:
    images = np.zeros((len(ids), *shape), dtype=np.uint8).reshape(len(ids), -1)
    images[:, 0], images[:, 1] = np.array(ids) % 256, np.array(ids) // 256
    return images.reshape(len(ids), *shape)


class _FakeVision:
    """A torchvision dataset stand-in: training image i has id i, test image i has id 1000 + i."""

    shape: tuple[int, ...] = (32, 32, 3)

    def __init__(self, root, train=True, download=False, transform=None, split=None) -> None:
        train = train if split is None else split != "test"
        ids = range(TRAIN) if train else range(1000, 1000 + TEST)
        self.data, self.targets, self.transform = _images(ids, self.shape), [i % 10 for i in ids], transform

    def __len__(self) -> int:
        return len(self.data)


class _FakeMnist(_FakeVision):
    shape = (28, 28)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.data, self.targets = torch.as_tensor(self.data), torch.as_tensor(self.targets)


class _FakeStl(_FakeVision):
    """STL-10: ``train`` labelled images, ``train+unlabeled`` those then 150 unlabelled ones (label -1)."""

    shape = (3, 8, 8)

    def __init__(self, root, split="train", download=False, transform=None) -> None:
        super().__init__(root, split=split)
        self.labels = np.array(self.targets)
        if split == "train+unlabeled":
            self.data = np.concatenate([self.data, _images(range(2000, 2150), self.shape)])
            self.labels = np.concatenate([self.labels, -np.ones(150, dtype=np.int64)])


@pytest.fixture
def fake_torchvision(monkeypatch):
    from torchvision import datasets

    for name in ("CIFAR10", "CIFAR100"):
        monkeypatch.setattr(datasets, name, _FakeVision)
    for name in ("MNIST", "FashionMNIST"):
        monkeypatch.setattr(datasets, name, _FakeMnist)
    monkeypatch.setattr(datasets, "STL10", _FakeStl)


def _check(train: list[int], val: list[int], test: list[int]) -> None:
    assert len(val) == VAL_SIZE and not set(train) & set(val) and sorted(train + val) == list(range(TRAIN))
    assert sorted(test) == list(range(1000, 1000 + TEST))
    assert np.bincount(np.array(val) % 10).tolist() == [VAL_SIZE // 10] * 10  # class-balanced


def test_paper_datasets_hold_val_size_training_images_out(fake_torchvision):
    from sema_tasks.cls.modules import CifarClassification
    from sema_tasks.gen.modules import CifarImages
    from sema_tasks.reg.modules import RcfMnist, rcf_angles
    from sema_tasks.video.modules import MovingMNIST

    def cls(split):
        data = CifarClassification("root", split, classes=10, val_size=VAL_SIZE).data
        return _ids(data.dataset.data[data.indices]) if split != "test" else _ids(data.data)

    def gen(split):
        data = CifarImages("root", split, val_size=VAL_SIZE)
        return _ids(data.data.data[data.index])

    def reg(split):
        return _ids(RcfMnist("root", split, val_size=VAL_SIZE).images)

    def video(split):
        return _ids(MovingMNIST("root", split, num_sequences=4, val_size=VAL_SIZE).digits)

    for name, ids in (("cls", cls), ("gen", gen), ("reg", reg), ("video", video)):
        _check(*(ids(s) for s in ("train", "val")), cls("test") if name != "video" else list(range(1000, 1050)))
    assert _ids(RcfMnist("root", "test", val_size=VAL_SIZE).images) == list(range(1000, 1000 + TEST))
    train = RcfMnist("root", "train", val_size=VAL_SIZE)  # the constant baseline: the median of the kept targets
    assert RcfMnist("root", "test", val_size=VAL_SIZE).metainfo == train.metainfo
    assert train.metainfo["train_median"] == float(rcf_angles("train", TRAIN)[reg("train")].median())


@pytest.mark.parametrize("name", ["cifar100", "stl10"])
def test_ssl_paper_datasets_train_and_bank_without_the_val_queries(name, fake_torchvision):
    from sema_tasks.ssl.modules import TorchvisionFeatureEval, TorchvisionTwoViews

    trained = TorchvisionTwoViews(name, "root", 8, val_size=VAL_SIZE).data
    trained = _ids(trained.dataset.data[trained.indices])
    evals = {s: TorchvisionFeatureEval(name, "root", s, val_size=VAL_SIZE).datasets for s in ("val", "test")}
    second = 3 if name == "stl10" else 1  # the k-NN reads STL-10's images as H x W x C

    def ids(split: str, part: int) -> list[int]:
        return _ids(evals[split][part].images, second)

    assert ids("val", 0) == ids("test", 0) and all(parts[0].bank and not parts[1].bank for parts in evals.values())
    bank = ids("val", 0)
    _check(bank, ids("val", 1), ids("test", 1))
    unlabelled = list(range(2000, 2150)) if name == "stl10" else []
    assert sorted(trained) == sorted(bank + unlabelled)  # the SSL run never sees a val query


@pytest.mark.parametrize("classes", [10, 100])
def test_each_cifar_is_normalised_with_its_own_statistics(classes: int, monkeypatch) -> None:
    """An image whose pixels are the training set's channel means normalises to zeros: CIFAR-10 uses CIFAR-10's
    statistics, not CIFAR-100's. (A stand-in for torchvision's class: the real data cannot be downloaded here.)"""
    from PIL import Image
    from torchvision import datasets

    from sema_tasks.cls.modules import CIFAR_STATISTICS, CifarClassification

    mean, std = CIFAR_STATISTICS[classes]
    pixel = tuple(round(255 * m) for m in mean)

    class StandIn:
        def __init__(self, root, train, download, transform) -> None:
            self.transform, self.targets = transform, [0, 1] * 50

        def __len__(self) -> int:
            return len(self.targets)

        def __getitem__(self, index: int):
            return self.transform(Image.new("RGB", (32, 32), pixel)), self.targets[index]

    monkeypatch.setattr(datasets, "CIFAR10" if classes == 10 else "CIFAR100", StandIn)
    image = CifarClassification("unused", "test", classes=classes)[0]["inputs"]
    rounding = max(0.5 / 255 / s for s in std)  # the mean itself is rounded to a whole pixel value
    assert image.abs().max() <= rounding
    other = CIFAR_STATISTICS[110 - classes]  # with the other CIFAR's statistics the check would fail
    assert max(abs(m - o) / s for m, o, s in zip(mean, *other)) > 3 * rounding
