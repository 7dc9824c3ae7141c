"""mmengine components of the self-supervised task: two-view datasets, SimCLR / BYOL, the momentum-target
hook, and the frozen-feature evaluations (k-NN every evaluation, a linear probe at the end of the run)."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, FUNCTIONS, HOOKS, METRICS, MODELS
from torch import nn
from torch.utils.data import ConcatDataset, Dataset, Subset

from sema_suite.data import affine, load_digits_split, split_indices
from sema_suite.method.averaging import unwrap_model
from sema_suite.nets import build_backbone
from sema_tasks.ssl.losses import byol_loss, knn_predict, moco_v3_loss, nt_xent

METHODS = ("simclr", "mocov3", "byol")
MOMENTUM_METHODS = ("mocov3", "byol")  # methods with a momentum target network
_STATS = {"cifar100": ((0.507, 0.487, 0.441), (0.267, 0.256, 0.276)),
          "stl10": ((0.447, 0.440, 0.407), (0.260, 0.257, 0.271))}


# -- data ---------------------------------------------------------------------------------------------------

def distort_digits(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random nuisances on N x 1 x H x W digits in [0, 1], one draw per image: a crop-and-zoom with a
    rotation, brightness jitter, an erased square (half of the images) and pixel noise; returns [-1, 1]."""
    n, size = images.shape[0], images.shape[-1]

    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return torch.rand(n, *shape, generator=generator) * (high - low) + low

    x = affine(images, uniform(-25, 25), scale=uniform(0.8, 1.4), shift=uniform(-0.25, 0.25, 2))
    x = x * uniform(0.5, 1.5, 1, 1, 1)
    side = size // 3
    corner = torch.randint(0, size - side + 1, (n, 2), generator=generator)
    rows, cols = torch.arange(size).view(1, size, 1), torch.arange(size).view(1, 1, size)
    top, left = corner[:, 0].view(n, 1, 1), corner[:, 1].view(n, 1, 1)
    erase = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
    erase &= (torch.rand(n, 1, 1, generator=generator) < 0.5)
    x = x.masked_fill(erase.unsqueeze(1), 0.0)
    x = (x + 0.05 * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    return (x - 0.5) / 0.5


@FUNCTIONS.register_module()
def digits_two_views(batch: Sequence[dict]) -> dict:
    """Collate training digits into two independently distorted views each: B x 2 x 1 x H x W (batched,
    so the augmentation costs one ``grid_sample`` per step instead of one per image)."""
    images = torch.stack([item["inputs"] for item in batch])
    return {"inputs": torch.stack([distort_digits(images), distort_digits(images)], dim=1)}


@DATASETS.register_module()
class UnlabelledDigits(Dataset):
    """The training digits in [0, 1] (labels unused); :func:`digits_two_views` makes the views."""

    def __init__(self, image_size: int = 16) -> None:
        self.images, _ = load_digits_split("train", image_size)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        return {"inputs": self.images[index]}


class _Labelled(Dataset):
    """Un-augmented images with labels, flagged as k-NN bank (training split) or query (held-out split)."""

    def __init__(self, images: Any, labels: Any, bank: bool, transform=None) -> None:
        self.images, self.labels, self.bank, self.transform = images, labels, bank, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        image = self.images[index]
        image = self.transform(image) if self.transform else image
        return {"inputs": image, "labels": int(self.labels[index]), "bank": self.bank}


_DISTORTION_SEEDS = {"train": 0, "val": 1, "test": 2}  # each split's one fixed draw of the distortions


@DATASETS.register_module()
class DigitsFeatureEval(ConcatDataset):
    """The training digits (the k-NN bank / probe training set) followed by the ``val`` or ``test`` digits
    (the queries), each with one fixed draw of the training distortions: raw pixels are then a weak
    representation (on clean digits pixel k-NN is already ~98 % accurate), so the score measures the
    invariances learnt."""

    def __init__(self, split: str = "val", image_size: int = 16) -> None:
        if split not in ("val", "test"):
            raise ValueError(f"the queries are the 'val' or 'test' digits, not {split!r}")
        parts = []
        for part in ("train", split):
            images, labels = load_digits_split(part, image_size)
            images = distort_digits(images, torch.Generator().manual_seed(_DISTORTION_SEEDS[part]))
            parts.append(_Labelled(images, labels, bank=part == "train"))
        super().__init__(parts)


def _labels(name: str, data) -> list[int]:
    return data.targets if name == "cifar100" else data.labels


def labelled_split(name: str, data, split: str, val_size: int) -> list[int]:
    """The indices of ``data`` (a torchvision training set) that are labelled training images of ``split``:
    ``train`` all but the ``val_size`` held out (class-balanced, fixed), ``val`` those. The labelled images
    come first (STL-10's unlabelled ones, label -1, follow them in train+unlabeled)."""
    labels = np.asarray(_labels(name, data))
    labelled = int((labels >= 0).sum())
    return split_indices(split, labelled, val_size, labels[:labelled]).tolist()


def _torchvision(name: str, root: str, split: str, download: bool, transform):
    from torchvision import datasets

    if name == "cifar100":
        return datasets.CIFAR100(root, train=split == "train", download=download, transform=transform)
    return datasets.STL10(root, split=split, download=download, transform=transform)


class _TwoViews:
    def __init__(self, transform) -> None:
        self.transform = transform

    def __call__(self, image):
        return torch.stack([self.transform(image), self.transform(image)])


@DATASETS.register_module()
class TorchvisionTwoViews(Dataset):
    """CIFAR-100 (train) or STL-10 (train+unlabeled) with SimCLR's augmentations, two views per image,
    without the ``val_size`` labelled images held out for ``val`` (see :func:`labelled_split`)."""

    def __init__(self, name: str, root: str, image_size: int, download: bool = False, val_size: int = 0) -> None:
        from torchvision import transforms as T

        mean, std = _STATS[name]
        augment = T.Compose([
            T.RandomResizedCrop(image_size, scale=(0.08, 1.0)), T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(p=0.2),
            T.ToTensor(), T.Normalize(mean, std),
        ])
        split = "train" if name == "cifar100" else "train+unlabeled"
        data = _torchvision(name, root, split, download, _TwoViews(augment))
        labelled = int((np.asarray(_labels(name, data)) >= 0).sum())
        kept = labelled_split(name, data, "train", val_size) + list(range(labelled, len(data)))  # + STL's unlabelled
        self.data = Subset(data, kept)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict:
        return {"inputs": self.data[index][0]}


@DATASETS.register_module()
class TorchvisionFeatureEval(ConcatDataset):
    """The labelled training images the SSL run trained on (k-NN bank / probe training set) followed by the
    queries: the ``val_size`` held-out labelled training images (``val``) or the test split (``test``)."""

    def __init__(self, name: str, root: str, split: str = "test", download: bool = False, val_size: int = 0) -> None:
        from torchvision import transforms as T

        mean, std = _STATS[name]
        transform = T.Compose([T.ToTensor(), T.Normalize(mean, std)])
        parts = []
        for part in ("train", split):
            data = _torchvision(name, root, "test" if part == "test" else "train", download, None)
            labels = np.asarray(_labels(name, data))
            images = data.data if name == "cifar100" else data.data.transpose(0, 2, 3, 1)  # H x W x C uint8
            index = np.arange(len(labels)) if part == "test" else labelled_split(name, data, part, val_size)
            parts.append(_Labelled(images[index], labels[index], bank=part == "train", transform=transform))
        super().__init__(parts)


# -- model --------------------------------------------------------------------------------------------------

def mlp(dim_in: int, hidden: int, dim_out: int) -> nn.Sequential:
    """The projector / predictor head of SimCLR and BYOL: Linear-BN-ReLU-Linear."""
    return nn.Sequential(nn.Linear(dim_in, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, dim_out))


@MODELS.register_module()
class SelfSupervised(BaseModel):
    """SimCLR (contrastive, in-batch negatives), MoCo v3 (online network + predictor contrasted with a
    momentum target network's keys) or BYOL (the same networks, regressing the target's projections).

    The target of MoCo v3 / BYOL lives under ``target.`` and is listed in ``averaging_exclude``: it is part
    of the method, updated by :class:`MomentumTargetHook`, and the SEMA hook neither averages nor switches it.
    ``mode="predict"`` returns the backbone's features for the frozen-feature evaluations.
    """

    def __init__(self, method: str, backbone: dict, proj_hidden: int, proj_dim: int, pred_hidden: int = 0,
                 temperature: float = 0.5) -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"ssl_method must be one of {METHODS}, got {method!r}")
        self.method = method
        self.temperature = temperature
        self.backbone, features = build_backbone(backbone)
        self.projector = mlp(features, proj_hidden, proj_dim)
        self.averaging_exclude: tuple[str, ...] = ()
        if method in MOMENTUM_METHODS:
            self.predictor = mlp(proj_dim, pred_hidden, proj_dim)
            self.target = nn.ModuleDict({"backbone": copy.deepcopy(self.backbone),
                                         "projector": copy.deepcopy(self.projector)})
            self.target.requires_grad_(False)
            self.averaging_exclude = ("target.",)

    def _online(self) -> list[nn.Module]:
        return [self.backbone, self.projector]

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """The momentum target's step: target <- m * target + (1 - m) * online (float buffers too, ints copied)."""
        for online, target in zip(self._online(), (self.target["backbone"], self.target["projector"])):
            for (_, o), (_, t) in zip(online.state_dict(keep_vars=True).items(),
                                      target.state_dict(keep_vars=True).items()):
                if t.is_floating_point():
                    t.lerp_(o.detach(), 1.0 - momentum)
                else:
                    t.copy_(o)

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor | None = None, bank: torch.Tensor | None = None,
                mode: str = "tensor"):
        if mode == "loss":
            return {"loss": self._loss(inputs[:, 0], inputs[:, 1])}
        features = self.backbone(inputs)
        if mode == "predict":
            labels, bank = torch.as_tensor(labels).tolist(), torch.as_tensor(bank).tolist()  # one transfer each
            return [{"feature": f, "label": int(y), "bank": bool(b)}
                    for f, y, b in zip(features.detach(), labels, bank)]
        return features

    def _loss(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        views = torch.cat([x1, x2])
        z1, z2 = self.projector(self.backbone(views)).chunk(2)
        if self.method == "simclr":
            return nt_xent(z1, z2, self.temperature)
        p1, p2 = self.predictor(torch.cat([z1, z2])).chunk(2)
        with torch.no_grad():
            t1, t2 = self.target["projector"](self.target["backbone"](views)).chunk(2)
        if self.method == "mocov3":
            return moco_v3_loss(p1, t2, self.temperature) + moco_v3_loss(p2, t1, self.temperature)
        return byol_loss(p1, t2) + byol_loss(p2, t1)


@HOOKS.register_module()
class MomentumTargetHook(Hook):
    """The target update of MoCo v3 / BYOL after every optimizer step, with BYOL's cosine momentum schedule
    ``m = 1 - (1 - base) * (cos(pi * k / K) + 1) / 2`` (k: steps done, K: all steps); resumes with the run."""

    priority = "ABOVE_NORMAL"

    def __init__(self, base_momentum: float = 0.99) -> None:
        self.base_momentum = base_momentum

    def momentum(self, step: int, total: int) -> float:
        return 1 - (1 - self.base_momentum) * (math.cos(math.pi * step / total) + 1) / 2

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not getattr(runner.optim_wrapper, "should_update", lambda: True)():
            return
        unwrap_model(runner.model).update_target(self.momentum(runner.iter, runner.max_iters))


# -- evaluation ---------------------------------------------------------------------------------------------

class _FrozenFeatures(BaseMetric):
    """Collects (feature, label, bank flag) of every image; subclasses score the held-out features."""

    default_prefix = "ssl"

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """One host transfer per batch, not one per image."""
        features = torch.stack([s["feature"] for s in data_samples]).float().cpu()
        self.results.extend((f, s["label"], s["bank"]) for f, s in zip(features, data_samples))

    @staticmethod
    def split(results: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        features = torch.stack([r[0] for r in results])
        labels = torch.tensor([r[1] for r in results])
        bank = torch.tensor([r[2] for r in results])
        return features[bank], labels[bank], features[~bank], labels[~bank]


@METRICS.register_module()
class KnnAccuracy(_FrozenFeatures):
    """Top-1 accuracy (%) of a weighted k-NN classifier on the backbone's features (primary SSL metric)."""

    def __init__(self, k: int = 200, temperature: float = 0.07, **kwargs) -> None:
        super().__init__(**kwargs)
        self.k, self.temperature = k, temperature

    def compute_metrics(self, results: list) -> dict[str, float]:
        bank, bank_labels, queries, labels = self.split(results)
        num_classes = int(max(bank_labels.max(), labels.max())) + 1
        device = "cuda" if torch.cuda.is_available() else "cpu"  # the job's own GPU (CUDA_VISIBLE_DEVICES), if any
        predicted = knn_predict(bank.to(device), bank_labels.to(device), queries.to(device), self.k, self.temperature,
                                num_classes)
        return {"knn": 100.0 * (predicted.cpu() == labels).float().mean().item()}


@METRICS.register_module()
class LinearProbe(_FrozenFeatures):
    """Top-1 accuracy (%) of an L2-regularised multinomial logistic regression (L-BFGS, standardised
    features) fitted on the frozen training features and scored on the held-out ones."""

    def __init__(self, c: float = 1.0, max_iter: int = 1000, **kwargs) -> None:
        super().__init__(**kwargs)
        self.c, self.max_iter = c, max_iter

    def compute_metrics(self, results: list) -> dict[str, float]:
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        bank, bank_labels, queries, labels = self.split(results)
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=self.c, max_iter=self.max_iter))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            probe.fit(bank.numpy(), bank_labels.numpy())
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            MMLogger.get_current_instance().warning(f"linear probe did not converge in {self.max_iter} iterations")
        accuracy = (probe.predict(queries.numpy()) == labels.numpy()).mean()
        return {"linear_probe": 100.0 * float(accuracy)}
