"""mmengine components of the regression task: rotated-and-coloured digits / FashionMNIST, AgeDB, a ResNet
regressor with an L1 loss, and the error metrics."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, METRICS, MODELS
from torch import nn
from torch.utils.data import Dataset

from sema_suite.data import affine, load_digits_split, random_shift, split_indices
from sema_suite.nets import build_backbone

# fixed, not the job's seed: every job sees the same images and angles. RCF-MNIST draws its angles once for the
# whole FashionMNIST training set (val is a slice of it) and once for the test set, and its colours per split.
_SPLIT_SEED = {"train": 1, "val": 2, "test": 3}
_RCF_SEED = {"train": 1, "test": 2}
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def digit_angles(split: str, count: int, max_angle: float) -> torch.Tensor:
    """The fixed rotation of each digit of a split, uniform in [-max_angle, max_angle] degrees."""
    generator = torch.Generator().manual_seed(_SPLIT_SEED[split])
    return (torch.rand(count, generator=generator) * 2 - 1) * max_angle


@DATASETS.register_module()
class RotatedDigits(Dataset):
    """scikit-learn's digits (the suite's fixed train/val/test split), upsampled and padded to ``image_size``,
    rotated by a fixed random angle (the target) and given a random foreground colour; training images also get
    random 1-pixel shifts (angle-preserving)."""

    def __init__(self, split: str, image_size: int = 16, max_angle: float = 60.0) -> None:
        digits, _ = load_digits_split(split, image_size - 4)
        digits = F.pad(digits, (2, 2, 2, 2))  # room for the corners to rotate into
        generator = torch.Generator().manual_seed(100 + _SPLIT_SEED[split])
        self.targets = digit_angles(split, len(digits), max_angle)
        colours = 0.25 + 0.75 * torch.rand(len(digits), 3, 1, 1, generator=generator)
        self.images = (affine(digits, self.targets) * colours - 0.5) / 0.5
        self.train = split == "train"
        train_count = len(load_digits_split("train", 8)[1])
        self.metainfo = {"train_median": float(digit_angles("train", train_count, max_angle).median())}

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> dict:
        image = self.images[index]
        return {"inputs": random_shift(image, 1) if self.train else image, "targets": self.targets[index]}


def red_blue(image: torch.Tensor, ratio: float) -> torch.Tensor:
    """RCF-MNIST's colouring of a 1 x H x W image in [0, 1]: red = x * ratio, green = 0, blue = x * (1 - ratio)."""
    return torch.cat([image * ratio, torch.zeros_like(image), image * (1 - ratio)])


def rcf_angles(source: str, count: int) -> torch.Tensor:
    """The fixed rotation of each image of FashionMNIST's ``train`` or ``test`` set: uniform in [0, 360) degrees
    (C-Mixup's default, ``use_rotate_class=0``)."""
    return torch.rand(count, generator=torch.Generator().manual_seed(_RCF_SEED[source]), dtype=torch.float64).float() * 360.0


def rcf_colour_ratios(split: str, angles: torch.Tensor, spurious_ratio: float, seed: int) -> torch.Tensor:
    """C-Mixup's red ratio of each image: the colour is a spurious cue for the angle. ``train``: ``angle / 360`` for a
    ``spurious_ratio`` share of the images, ``1 - angle / 360`` for the rest; ``test``: the other way round (the
    majority gets the inverted cue, so a model that reads the colour fails); ``val``: a random ratio."""
    generator = torch.Generator().manual_seed(seed)
    if split == "val":
        return torch.rand(len(angles), generator=generator)
    follows = torch.rand(len(angles), generator=generator) < spurious_ratio
    if split == "test":
        follows = ~follows
    ratio = angles / 360.0
    return torch.where(follows, ratio, 1.0 - ratio)


@DATASETS.register_module()
class RcfMnist(Dataset):
    """RCF-MNIST (C-Mixup's rotated-coloured FashionMNIST, its out-of-distribution regression set): 32x32,
    rotated by a fixed angle in [0, 360) (the target), coloured red/blue with a ratio that follows the angle
    in training and is inverted at test time (see :func:`rcf_colour_ratios`); crops when training.

    ``train`` is FashionMNIST's training set less the ``val_size`` images (class-balanced, fixed) that form
    ``val``; ``test`` is its test set.
    """

    def __init__(self, root: str, split: str, download: bool = False, val_size: int = 0,
                 spurious_ratio: float = 0.8) -> None:
        from torchvision import datasets

        data = datasets.FashionMNIST(root, train=True, download=download)
        angles = rcf_angles("train", len(data.data))
        train = torch.as_tensor(split_indices("train", len(data.data), val_size, data.targets))
        self.metainfo = {"train_median": float(angles[train].median())}
        if split == "test":
            data = datasets.FashionMNIST(root, train=False, download=download)
            angles, index = rcf_angles("test", len(data.data)), torch.arange(len(data.data))
        else:
            index = train if split == "train" else torch.as_tensor(
                split_indices("val", len(data.data), val_size, data.targets))
        self.images, self.targets = data.data[index], angles[index]
        self.ratios = rcf_colour_ratios(split, self.targets, spurious_ratio, 100 + _SPLIT_SEED[split])
        self.train = split == "train"

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> dict:
        image = F.interpolate(self.images[index][None, None].float() / 255, size=(32, 32), mode="bilinear",
                              align_corners=False)
        image = affine(image, self.targets[index:index + 1])[0].clamp(0, 1)
        image = (red_blue(image, float(self.ratios[index])) - 0.5) / 0.5
        return {"inputs": random_shift(image, 2) if self.train else image, "targets": self.targets[index]}


def agedb_age(path: Path) -> int:
    """The age in an AgeDB file name, ``<id>_<name>_<age>_<gender>.jpg``."""
    parts = path.stem.split("_")
    if len(parts) < 4 or not parts[-2].isdigit() or parts[-1].lower() not in ("m", "f"):
        raise ValueError(f"{path.name} is not an AgeDB file name (<id>_<name>_<age>_<gender>.jpg)")
    return int(parts[-2])


@DATASETS.register_module()
class AgeDB(Dataset):
    """AgeDB face images from ``root/<split>/*.jpg`` with the age parsed from each file name."""

    def __init__(self, root: str, split: str, image_size: int = 224) -> None:
        from torchvision import transforms as T

        self.files = sorted((Path(root) / split).glob("*.jpg"))
        self.targets = torch.tensor([agedb_age(f) for f in self.files], dtype=torch.float32)
        train = self.targets if split == "train" else torch.tensor(
            [agedb_age(f) for f in (Path(root) / "train").glob("*.jpg")], dtype=torch.float32)
        self.metainfo = {"train_median": float(train.median())}
        augment = [T.RandomCrop(image_size, padding=16), T.RandomHorizontalFlip()] if split == "train" else []
        self.transform = T.Compose([T.Resize((image_size, image_size)), *augment, T.ToTensor(), T.Normalize(*_IMAGENET)])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        from PIL import Image

        with Image.open(self.files[index]) as image:
            return {"inputs": self.transform(image.convert("RGB")), "targets": self.targets[index]}


@MODELS.register_module()
class Regressor(BaseModel):
    """A ResNet with a linear head predicting ``(target - center) / scale``, trained with an L1 loss
    (what MAE measures); predictions are reported in the target's own unit."""

    def __init__(self, backbone: dict, target_center: float = 0.0, target_scale: float = 1.0) -> None:
        super().__init__()
        self.backbone, features = build_backbone(backbone)
        self.head = nn.Linear(features, 1)
        self.center, self.scale = target_center, target_scale

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor | None = None, mode: str = "tensor"):
        out = self.head(self.backbone(inputs)).squeeze(1)
        if mode == "loss":
            return {"loss": F.l1_loss(out, (targets.float() - self.center) / self.scale)}
        prediction = out * self.scale + self.center
        if mode == "predict":
            return [{"pred": p, "target": t} for p, t in zip(prediction.detach(), targets)]
        return prediction


def _on_host(rows: list[list]) -> list[list[float]]:
    """Scalars (0-d tensors, possibly on a GPU, or numbers) as float64 lists, with one host transfer per batch
    instead of one per value."""
    device = next((v.device for row in rows for v in row if isinstance(v, torch.Tensor)), None)
    values = torch.stack([torch.stack([torch.as_tensor(v, device=device).reshape(()).double() for v in row])
                          for row in rows])
    return values.cpu().tolist()


@METRICS.register_module()
class RegressionError(BaseMetric):
    """``mae`` and ``rmse`` of the predictions, in the target's unit."""

    default_prefix = "reg"

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        pairs = _on_host([[s["pred"], s["target"]] for s in data_samples])
        self.results.extend((p, t) for p, t in pairs)

    def compute_metrics(self, results: list) -> dict[str, float]:
        errors = torch.tensor([p - t for p, t in results], dtype=torch.float64)
        return {"mae": errors.abs().mean().item(), "rmse": math.sqrt(errors.square().mean().item())}


@METRICS.register_module()
class ConstantBaselineError(BaseMetric):
    """``mae_constant``: the MAE of always predicting the training targets' median (the best constant
    under MAE) on the evaluated images -- what a model must beat. Needs ``train_median`` in the dataset's
    metainfo."""

    default_prefix = "reg"

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        self.results.extend(t for (t,) in _on_host([[s["target"]] for s in data_samples]))

    def compute_metrics(self, results: list) -> dict[str, float]:
        median = self.dataset_meta["train_median"]
        mae = torch.tensor(results, dtype=torch.float64).sub(median).abs().mean().item()
        MMLogger.get_current_instance().info(f"a constant prediction (training median {median:.4g}) has MAE {mae:.4g}")
        return {"mae_constant": mae}
