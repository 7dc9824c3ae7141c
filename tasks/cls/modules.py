"""mmengine components of the classification task: datasets, a CIFAR-style ResNet, top-k accuracy."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, METRICS, MODELS
from torch import nn
from torch.utils.data import Dataset, Subset

from sema_suite.data import cache_dir, load_digits_split, random_shift, split_indices
from sema_suite.nets import cifar_resnet

# per-channel mean and standard deviation of each training set's pixels (in [0, 1]); each dataset its own
CIFAR_STATISTICS = {
    10: ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    100: ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


@DATASETS.register_module()
class DigitsClassification(Dataset):
    """scikit-learn's 1,797 handwritten digits (the suite's fixed train/val/test split), upsampled; random
    2-pixel shifts when training."""

    def __init__(self, split: str, image_size: int = 16) -> None:
        self.images, self.labels = load_digits_split(split, image_size)
        self.images = (self.images - 0.5) / 0.5
        self.train = split == "train"

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        image = self.images[index]
        return {"inputs": random_shift(image, 2) if self.train else image, "labels": self.labels[index]}


@DATASETS.register_module()
class CifarClassification(Dataset):
    """torchvision's CIFAR-10/100 with the standard crop-and-flip augmentation when training.

    ``train`` is the training set less the ``val_size`` images (class-balanced, fixed) that form ``val``;
    ``test`` is the CIFAR test set.
    """

    def __init__(self, root: str, split: str, classes: int = 100, download: bool = False, val_size: int = 0) -> None:
        from torchvision import datasets, transforms

        cls = datasets.CIFAR100 if classes == 100 else datasets.CIFAR10
        normalize = [transforms.ToTensor(), transforms.Normalize(*CIFAR_STATISTICS[classes])]
        augment = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()] if split == "train" else []
        self.data = cls(root, train=split != "test", download=download,
                        transform=transforms.Compose(augment + normalize))
        if split != "test":
            self.data = Subset(self.data, split_indices(split, len(self.data), val_size, self.data.targets).tolist())

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict:
        image, label = self.data[index]
        return {"inputs": image, "labels": label}


def mnist1d_arrays() -> dict[str, np.ndarray]:
    """MNIST-1D as the ``mnist1d`` package generates it with its default arguments (4,000 train and 1,000 test
    sequences of length 40), generated once and cached: ``make_dataset`` reseeds Python's and numpy's global
    generators, so it runs with their states saved and restored, never disturbing a job's seeded draws."""
    path = cache_dir() / "mnist1d" / "mnist1d-default.npz"
    if not path.exists():
        import random

        from mnist1d.data import get_dataset_args, make_dataset

        states = random.getstate(), np.random.get_state()
        try:
            data = make_dataset(get_dataset_args())
        finally:
            random.setstate(states[0])
            np.random.set_state(states[1])
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.npz")
        np.savez(partial, **{k: data[k] for k in ("x", "y", "x_test", "y_test")})
        os.replace(partial, path)
    with np.load(path) as stored:
        return {k: stored[k] for k in stored.files}


@DATASETS.register_module()
class Mnist1dClassification(Dataset):
    """MNIST-1D: ``train`` is the generated training set less ``val_size`` sequences (class-balanced, fixed)
    that form ``val``; ``test`` is the generated test set. No augmentation (the data are already random
    transformations of the digit templates)."""

    def __init__(self, split: str, val_size: int = 500) -> None:
        data = mnist1d_arrays()
        x, y = (data["x_test"], data["y_test"]) if split == "test" else (data["x"], data["y"])
        if split != "test":
            index = split_indices(split, len(y), val_size, y)
            x, y = x[index], y[index]
        self.inputs = torch.as_tensor(x, dtype=torch.float32).unsqueeze(1)  # N x 1 x 40
        self.labels = torch.as_tensor(y, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"inputs": self.inputs[index], "labels": self.labels[index]}


class Classifier(BaseModel):
    """Cross-entropy training and per-sample scores for :class:`TopKAccuracy` around any logits network."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor | None = None, mode: str = "tensor"):
        logits = self.net(inputs)
        if mode == "loss":
            return {"loss": F.cross_entropy(logits, labels)}
        if mode == "predict":
            return [{"scores": s, "label": l} for s, l in zip(logits.detach(), labels)]
        return logits


@MODELS.register_module()
class ImageClassifier(Classifier):
    def __init__(self, num_classes: int, depths: Sequence[int], width: int, in_channels: int = 3) -> None:
        super().__init__(cifar_resnet(depths, width, num_classes, in_channels))


@MODELS.register_module()
class Mnist1dClassifier(Classifier):
    """The MNIST-1D paper's CNN (its ``ConvBase``): three strided 1-D convolutions with ReLU and a linear
    classifier over the flattened features (length 40 -> 19 -> 10 -> 5)."""

    def __init__(self, channels: int = 25, length: int = 40, num_classes: int = 10) -> None:
        for kernel in (5, 3, 3):
            length = (length + 2 - kernel) // 2 + 1
        super().__init__(nn.Sequential(
            nn.Conv1d(1, channels, 5, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(channels * length, num_classes)))


@METRICS.register_module()
class TopKAccuracy(BaseMetric):
    """Top-k accuracy in percent; reported as ``top1`` (and ``top5`` when k includes 5)."""

    def __init__(self, topk: Sequence[int] = (1,), **kwargs) -> None:
        super().__init__(**kwargs)
        self.topk = tuple(topk)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """One host transfer per batch (the hits), not one per sample: a GPU never waits on each image."""
        scores = torch.stack([sample["scores"] for sample in data_samples])
        labels = torch.stack([torch.as_tensor(sample["label"], device=scores.device) for sample in data_samples])
        ranked = scores.topk(max(self.topk), dim=1).indices
        hits = torch.stack([(ranked[:, :k] == labels[:, None]).any(dim=1) for k in self.topk], dim=1)
        self.results.extend(hits.cpu().tolist())

    def compute_metrics(self, results: list) -> dict[str, float]:
        hits = torch.tensor(results, dtype=torch.float32)
        return {f"top{k}": 100.0 * hits[:, i].mean().item() for i, k in enumerate(self.topk)}
