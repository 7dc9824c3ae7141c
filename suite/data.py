"""Offline data the tiny presets share: scikit-learn's bundled handwritten digits, split once, for all jobs.

The split is fixed (not the job's seed) so every method and seed is evaluated on the same images.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F

DIGITS_CLASSES = 10


def cache_dir() -> Path:
    """Where generated data sets (and the mmcv wheel) are kept between runs: ``$SEMA_CACHE_DIR`` or
    ``~/.cache/sema-bench``, outside any checkout so every clone and results dir shares them."""
    return Path(os.environ.get("SEMA_CACHE_DIR") or Path.home() / ".cache" / "sema-bench")


@cache
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # N x 1 x 8 x 8 in [0, 1]
    return images, torch.as_tensor(bunch.target, dtype=torch.long)


def load_digits_split(split: str, size: int = 8, val_fraction: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N x 1 x size x size, in [0, 1]) and labels of the ``train`` or ``val`` part of the digits."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    images, labels = _digits()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    n_val = int(len(labels) * val_fraction)
    index = order[:n_val] if split == "val" else order[n_val:]
    images = images[index]
    if size != images.shape[-1]:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return images, labels[index]


def random_shift(image: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Translate a C x H x W image by up to ``max_shift`` pixels (zero padding): cheap, label-preserving."""
    if max_shift == 0:
        return image
    padded = F.pad(image, (max_shift,) * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2,)).tolist()
    return padded[:, dy:dy + image.shape[1], dx:dx + image.shape[2]]


def affine(images: torch.Tensor, degrees: torch.Tensor, scale: torch.Tensor | None = None,
           shift: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate (counter-clockwise as displayed), zoom (``scale`` > 1 zooms in) and translate (``shift``, in
    fractions of the half-width) a batch N x C x H x W of images, with zero padding.

    One ``grid_sample`` for the whole batch: cheap enough to generate rotated digits and SSL views on a CPU.
    """
    n = images.shape[0]
    angle = torch.deg2rad(torch.as_tensor(degrees, dtype=images.dtype).expand(n))
    scale = torch.ones(n, dtype=images.dtype) if scale is None else torch.as_tensor(scale, dtype=images.dtype)
    shift = torch.zeros(n, 2, dtype=images.dtype) if shift is None else torch.as_tensor(shift, dtype=images.dtype)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # output pixel q samples the input at A q + b, with A = R(-angle) / scale in (x right, y down) coordinates
    a = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2) / scale.view(n, 1, 1)
    b = -(a @ shift.unsqueeze(-1))
    grid = F.affine_grid(torch.cat([a, b], -1), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
