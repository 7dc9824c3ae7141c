"""mmengine components of the classification task: datasets, a CIFAR-style ResNet, top-k accuracy."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, METRICS, MODELS
from torch import nn
from torch.utils.data import Dataset, Subset

from sema_suite.data import load_digits_split, random_shift, split_indices
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
