"""The feature extractor behind ``fid_digits``: the project's own stand-in for Inception on the offline preset.

Inception-v3 weights need a download and know nothing of 16x16 handwritten digits, so the tiny preset
measures the Fréchet distance in the feature space of a small digits classifier instead: its global-average-
pooled penultimate activations (as Inception's pool3). The classifier is trained once, deterministically
(fixed seed, one thread, a few seconds on a CPU), and cached on disk; every job then loads the same weights.
The numbers are *not* comparable with Inception FID, hence their own name.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from sema_suite.data import cache_dir, load_digits_split, random_shift

VERSION = 2  # bump when the architecture, the recipe or the digits split changes: the cache file name carries it
_EPOCHS, _BATCH, _LR, _SEED = 8, 64, 2e-3, 0


class DigitsFeatures(nn.Module):
    """A small CNN on ``N x 1 x S x S`` images in [0, 1]; ``forward`` returns its 64 penultimate features."""

    num_features = 64  # read by torchmetrics' FrechetInceptionDistance

    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.body = nn.Sequential(*block(1, 16), *block(16, 32), nn.MaxPool2d(2), *block(32, 64), nn.MaxPool2d(2),
                                  *block(64, self.num_features), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(self.num_features, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body((images - 0.5) / 0.5)

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self(images))


def _train(image_size: int) -> tuple[DigitsFeatures, float]:
    """Train on the digits' train split; returns the model and its accuracy on the val split."""
    images, labels = load_digits_split("train", image_size)
    model = DigitsFeatures()
    optimizer = torch.optim.Adam(model.parameters(), lr=_LR)
    for _ in range(_EPOCHS):
        model.train()
        for batch in torch.randperm(len(labels)).split(_BATCH):
            inputs = torch.stack([random_shift(image, 1) for image in images[batch]])
            loss = F.cross_entropy(model.classify(inputs), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    val_images, val_labels = load_digits_split("val", image_size)
    with torch.no_grad():
        accuracy = (model.classify(val_images).argmax(1) == val_labels).float().mean().item()
    return model, accuracy


def load_digits_features(image_size: int) -> DigitsFeatures:
    """The cached extractor for ``image_size`` images, trained (and cached) on first use.

    Runs under a forked RNG (and trains on one thread), so it neither shifts the calling job's random stream
    -- whether the cache is there or not -- nor depends on how many threads the job uses.
    """
    path = cache_dir() / f"fid_digits_{image_size}px_v{VERSION}.pt"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        if path.exists():
            model = DigitsFeatures()
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
            return model.eval().requires_grad_(False)
        threads = torch.get_num_threads()
        try:
            torch.set_num_threads(1)
            with torch.enable_grad():  # this may run inside an evaluation
                model, accuracy = _train(image_size)
        finally:
            torch.set_num_threads(threads)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # concurrent jobs: the last rename wins, same bytes
    torch.save({"state_dict": model.state_dict(), "val_accuracy": accuracy, "image_size": image_size}, tmp)
    tmp.replace(path)
    return model.eval().requires_grad_(False)
