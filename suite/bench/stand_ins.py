"""Stand-in data of the paper presets' real shapes, for ``suite gpu-check``: no dataset needed.

torchvision's CIFAR and STL-10 classes check their files' md5 sums, so in the check's process only
(:func:`torchvision_stand_ins`) they -- and MNIST / FashionMNIST -- are replaced by torchvision's own
``FakeData`` with the real sizes, image shapes, class counts and the attributes the tasks read. The presets that
read files of their own get them written, in their real layout, under a scratch data root
(:func:`write_files`): CelebA and AgeDB JPEGs, the Moving MNIST test array, WikiText token files with the real
vocabulary sizes, and a COCO-format set (random images with boxes and polygons of COCO's 80 categories).
"""

from __future__ import annotations

import contextlib
import json
import random
import zlib
from collections.abc import Iterator
from pathlib import Path

# (images, channels, height, width, classes) of each torchvision set, per split it is built with
TORCHVISION_SHAPES = {
    "CIFAR10": {True: (50_000, 3, 32, 32, 10), False: (10_000, 3, 32, 32, 10)},
    "CIFAR100": {True: (50_000, 3, 32, 32, 100), False: (10_000, 3, 32, 32, 100)},
    "MNIST": {True: (60_000, 1, 28, 28, 10), False: (10_000, 1, 28, 28, 10)},
    "FashionMNIST": {True: (60_000, 1, 28, 28, 10), False: (10_000, 1, 28, 28, 10)},
    "STL10": {"train": (5_000, 3, 96, 96, 10), "test": (8_000, 3, 96, 96, 10), "unlabeled": (100_000, 3, 96, 96, 10),
              "train+unlabeled": (105_000, 3, 96, 96, 10)},
}
WIKITEXT_VOCAB = {"wikitext-2": 33_278, "wikitext-103": 267_735}  # word types in each release's training file
FILE_IMAGES = 512  # images written per file-based set (the loader goes round them)


def _stand_in(name: str):
    """A FakeData subclass that is built like torchvision's ``name`` and exposes what the tasks read of it."""
    import torch
    from torchvision.datasets import FakeData

    class StandIn(FakeData):
        def __init__(self, root: str, train: bool = True, split: str | None = None, download: bool = False,
                     transform=None) -> None:
            count, channels, height, width, classes = TORCHVISION_SHAPES[name][split if split else train]
            offset = zlib.crc32(f"{name}/{split or train}".encode()) % 1_000_000
            super().__init__(count, (channels, height, width), classes, random_offset=offset)
            self.image_transform = transform  # applied after the mode conversion below
            labels = torch.randint(0, classes, (count,), generator=torch.Generator().manual_seed(offset))
            if split and "unlabeled" in split:  # STL-10: the unlabelled images come last, label -1
                labels[TORCHVISION_SHAPES[name]["train"][0] if "+" in split else 0:] = -1
            self.targets = self.labels = labels.tolist()
            self._mode = "L" if channels == 1 else "RGB"

        @property
        def data(self) -> torch.Tensor:
            """MNIST's layout, uint8 N x H x W (made on first use): the tasks read no other set's ``data``."""
            if self.image_size[0] != 1:
                raise AttributeError(f"the {name} stand-in has no data array (only MNIST-style sets have one here)")
            if not hasattr(self, "_data"):
                generator = torch.Generator().manual_seed(len(self))
                self._data = torch.randint(0, 256, (len(self), *self.image_size[1:]), dtype=torch.uint8,
                                           generator=generator)
            return self._data

        def __getitem__(self, index: int):
            image = super().__getitem__(index)[0].convert(self._mode)
            return self.image_transform(image) if self.image_transform else image, self.targets[index]

    StandIn.__name__ = StandIn.__qualname__ = f"StandIn{name}"
    return StandIn


@contextlib.contextmanager
def torchvision_stand_ins() -> Iterator[None]:
    """torchvision's dataset classes that the presets use, replaced by stand-ins while inside."""
    import torchvision.datasets as datasets

    real = {name: getattr(datasets, name) for name in TORCHVISION_SHAPES}
    try:
        for name in TORCHVISION_SHAPES:
            setattr(datasets, name, _stand_in(name))
        yield
    finally:
        for name, cls in real.items():
            setattr(datasets, name, cls)


def write_files(root: Path, datasets: set[str], seed: int = 0) -> Path:
    """Write the stand-ins of those of ``datasets`` (the presets' dataset names) that are read from files
    under ``root`` (each once: a finished one is reused); returns ``root``."""
    writers = {"celeba64": lambda rng: _celeba(root / "celeba", rng),
               "agedb": lambda rng: _agedb(root / "agedb", rng),
               "moving-mnist": lambda rng: _moving_mnist_test(root / "moving_mnist" / "mnist_test_seq.npy"),
               "coco2017": lambda rng: _coco(root / "coco", rng),
               **{corpus: (lambda rng, c=corpus, v=vocab: _wikitext(root / c, v, rng))
                  for corpus, vocab in WIKITEXT_VOCAB.items()}}
    for name in sorted(datasets & writers.keys()):
        done = root / f".{name}.complete"
        if not done.exists():
            writers[name](random.Random(seed))
            done.touch()
    return root


def _noise_jpeg(path: Path, width: int, height: int, rng: random.Random) -> None:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(rng.randrange(2**32)).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=90)


def _celeba(folder: Path, rng: random.Random) -> None:
    """``img_align_celeba/*.jpg`` (178 x 218, CelebA's aligned size) and ``list_eval_partition.txt``."""
    lines = []
    for i in range(FILE_IMAGES):
        name = f"{i + 1:06d}.jpg"
        _noise_jpeg(folder / "img_align_celeba" / name, 178, 218, rng)
        lines.append(f"{name} {0 if i < FILE_IMAGES * 8 // 10 else 1 if i < FILE_IMAGES * 9 // 10 else 2}")
    (folder / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")


def _agedb(folder: Path, rng: random.Random) -> None:
    """``<split>/<id>_<name>_<age>_<gender>.jpg``, faces at a typical AgeDB size."""
    for split, count in (("train", FILE_IMAGES), ("val", 32), ("test", 32)):
        for i in range(count):
            _noise_jpeg(folder / split / f"{i}_Person{i}_{rng.randint(1, 101)}_{rng.choice('mf')}.jpg", 256, 320, rng)


def _moving_mnist_test(path: Path) -> None:
    """The fixed test array's layout: 20 frames x N sequences x 64 x 64, uint8."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.random.default_rng(0).integers(0, 256, (20, 64, 64, 64), dtype=np.uint8))


def _wikitext(folder: Path, vocab: int, rng: random.Random) -> None:
    """``wiki.{train,valid,test}.tokens``: the training file holds every one of ``vocab`` word types (so the
    model's embedding and output layers have their real size), then random words."""
    words = [f"w{i}" for i in range(vocab - 2)] + ["<unk>"]  # + <eos>, which the reader adds per line
    folder.mkdir(parents=True, exist_ok=True)
    train = words + rng.choices(words, k=max(0, 400_000 - len(words)))
    held_out = {name: rng.choices(words, k=20_000) for name in ("valid", "test")}
    for name, tokens in (("train", train), *held_out.items()):
        lines = [" ".join(tokens[i:i + 100]) for i in range(0, len(tokens), 100)]
        (folder / f"wiki.{name}.tokens").write_text("\n".join(lines) + "\n")


def _coco(folder: Path, rng: random.Random) -> None:
    """``annotations/instances_{train,val}2017.json`` and ``{train,val}2017/*.jpg``: 640 x 480 noise images,
    each with three boxes (and their polygons) of random COCO categories."""
    from mmdet.datasets import CocoDataset

    categories = [{"id": i + 1, "name": name} for i, name in enumerate(CocoDataset.METAINFO["classes"])]
    for split, count in (("train2017", FILE_IMAGES), ("val2017", 16)):
        images, annotations = [], []
        for i in range(count):
            images.append({"id": i + 1, "file_name": f"{i + 1:012d}.jpg", "width": 640, "height": 480})
            _noise_jpeg(folder / split / images[-1]["file_name"], 640, 480, rng)
            for _ in range(3):
                w, h = rng.uniform(32, 320), rng.uniform(32, 240)
                x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
                annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "iscrowd": 0, "area": w * h,
                                    "category_id": rng.choice(categories)["id"], "bbox": [x, y, w, h],
                                    "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})
        path = folder / "annotations" / f"instances_{split}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
