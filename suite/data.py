"""Data splits every task shares, and the offline data of the tiny presets.

Every task evaluates on two splits: ``val``, held out from the training data (never trained on), evaluated
at every evaluation for curves and selection; and ``test``, the split the field reports, evaluated once at
the end. Every held-out split here is fixed -- drawn with a constant seed, never the job's -- so every method
and seed is evaluated on the same examples.

- The tiny presets split scikit-learn's bundled digits three ways (:func:`load_digits_split`).
- The paper presets hold ``val_size`` training examples out (:func:`holdout`); ``val_size=0`` is the final
  run on the full training set, whose every evaluation then scores the test split (:func:`evaluation_config`,
  :class:`HeldOutSplits`).

Import-light (torch and numpy are imported where used): task adapters build their configs with it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sema_suite.errors import BadOverride

if TYPE_CHECKING:
    import numpy as np
    import torch

    from sema_suite.task import Preset

DIGITS_CLASSES = 10
# scikit-learn's 1,797 digits: 60 / 20 / 20 % (1,079 / 359 / 359), after one fixed permutation
DIGITS_FRACTIONS = {"val": 0.2, "test": 0.2}
SPLIT_SEED = 0  # the seed of every fixed split: a constant, not the job's seed
SPLITS = ("train", "val", "test")


def cache_dir() -> Path:
    """Where generated data sets (and the mmcv wheel) are kept between runs: ``$SEMA_CACHE_DIR`` or
    ``~/.cache/sema-bench``, outside any checkout so every clone and results dir shares them."""
    return Path(os.environ.get("SEMA_CACHE_DIR") or Path.home() / ".cache" / "sema-bench")


# -- the held-out split of the paper presets --------------------------------------------------------------


def check_val_size(params: dict[str, Any], train_count: int, dataset: str) -> None:
    """A clear error unless the preset's ``val_size`` leaves some of the ``train_count`` training examples."""
    val_size = params.get("val_size")
    if val_size is None:
        return
    if isinstance(val_size, bool) or not isinstance(val_size, int) or not 0 <= val_size < train_count:
        raise BadOverride(
            f"val_size must be a whole number from 0 to {train_count - 1} ({dataset} has {train_count} training "
            f"examples), got {val_size!r}: hold out fewer (e.g. --set val_size={min(5000, train_count // 10)}), or "
            "--set val_size=0 to train on the full training set and evaluate the test split at every evaluation")


def holdout(count: int, size: int, labels: Sequence[int] | None = None, seed: int = SPLIT_SEED
            ) -> tuple[np.ndarray, np.ndarray]:
    """``(kept, held_out)``: sorted indices of ``range(count)`` that stay for training and the fixed ``size``
    that are held out.

    Without ``labels`` the held-out slice is a random one; with them it is class-balanced: the classes take
    turns, each giving its next example in one fixed random order (so every class gets ``size / classes``
    while it has examples). Balanced, not stratified: on an imbalanced dataset the held-out split has equal
    counts per class rather than the data's class mix (a caller whose val split should follow an imbalanced mix
    passes no ``labels``). It depends only on ``count``, ``size``, ``labels`` and ``seed``.
    """
    import numpy as np

    if not 0 <= size <= count:
        raise ValueError(f"cannot hold out {size} of {count} examples")
    order = np.random.default_rng(seed).permutation(count)
    if labels is not None:
        labels = np.asarray(labels)[order]
        rank = np.empty(count, dtype=np.int64)  # the position of each example among its class, in that order
        for label in np.unique(labels):
            members = np.flatnonzero(labels == label)
            rank[members] = np.arange(len(members))
        order = order[np.lexsort((np.arange(count), rank))]
    held = np.sort(order[:size])
    kept = np.setdiff1d(np.arange(count), held, assume_unique=True)
    return kept, held


def split_indices(split: str, count: int, val_size: int, labels: Sequence[int] | None = None) -> np.ndarray:
    """The indices of the training data that form ``split``: ``"train"`` (all but the held-out ones) or
    ``"val"`` (the ``val_size`` held out; see :func:`holdout`)."""
    if split not in ("train", "val"):
        raise ValueError(f"the training data holds the 'train' and 'val' splits, not {split!r}")
    kept, held = holdout(count, val_size, labels)
    return kept if split == "train" else held


class HeldOutSplits:
    """Mixin for a :class:`sema_suite.task.Task` whose paper presets have a ``val_size`` param: with ``val_size=0``
    (a final run on the full training set) its every evaluation scores the test split, labelled ``test``."""

    def val_split(self, preset: Preset, params: dict[str, Any]) -> str:
        return "test" if params.get("val_size") == 0 else "val"


def evaluation_config(params: dict[str, Any], loader: Callable[[str], dict[str, Any]], evaluator: Any,
                      test_evaluator: Any = None) -> dict[str, Any]:
    """The ``val_*`` and ``test_*`` entries of a task config, from ``loader(split)`` (a dataloader config for
    ``"val"`` or ``"test"``) and the evaluator(s) -- each a config, or a function of the split.

    The val loop scores ``val`` at every evaluation; the test pass (run once, after training) scores ``test``
    with ``test_evaluator`` (default: ``evaluator``; give it when the end of a run measures more, e.g. a
    linear probe). With ``val_size=0`` the val loop scores ``test`` instead, and there is a test pass only
    when it measures more: it then scores ``test`` with everything, its rows replacing the last evaluation's.
    """

    def build(what: Any, split: str) -> Any:
        return what(split) if callable(what) else what

    config = {"val_cfg": {"type": "ValLoop"}}
    if params.get("val_size") == 0:
        config |= {"val_dataloader": loader("test"), "val_evaluator": build(evaluator, "test")}
        if test_evaluator is None:
            return config
    else:
        config |= {"val_dataloader": loader("val"), "val_evaluator": build(evaluator, "val")}
    return config | {"test_dataloader": loader("test"), "test_evaluator": build(test_evaluator or evaluator, "test"),
                     "test_cfg": {"type": "TestLoop"}}


MAX_AUTO_WORKERS = 8


def available_cpus() -> int:
    """The CPU cores this job may use: its worker slot's share (``SUITE_CPUS``, or ``SUITE_THREADS`` for a CPU
    worker), else the cores this process may run on."""
    share = os.environ.get("SUITE_CPUS") or os.environ.get("SUITE_THREADS")
    return int(share) if share else len(os.sched_getaffinity(0))


def loader_workers(requested: int | None) -> int:
    """A preset's ``num_workers``: a number, or None (the paper presets) for the cores available to the job less
    one for the training process, at most 8 -- so four jobs on a 16-core GPU box do not start 32 loaders each."""
    return requested if requested is not None else max(0, min(MAX_AUTO_WORKERS, available_cpus() - 1))


def dataloader(dataset: dict[str, Any], params: dict[str, Any], train: bool, *, batch_size: int | None = None,
               collate: str | None = "default_collate", drop_last: bool = False) -> dict[str, Any]:
    """The mmengine dataloader config every adapter uses: ``params``' batch size and worker count (see
    :func:`loader_workers`), workers kept between passes, batches in pinned memory when there is a GPU to copy
    them to, shuffled only when training. ``collate=None`` keeps mmengine's ``pseudo_collate`` (what MMDetection
    expects)."""
    import torch

    workers = loader_workers(params["num_workers"])
    config = {"batch_size": params["batch_size"] if batch_size is None else batch_size,
              "num_workers": workers, "persistent_workers": workers > 0, "pin_memory": torch.cuda.is_available(),
              "drop_last": drop_last, "sampler": {"type": "DefaultSampler", "shuffle": train}, "dataset": dataset}
    return config | ({"collate_fn": {"type": collate}} if collate else {})


# -- the tiny presets' digits -----------------------------------------------------------------------------


def digits_file() -> Path:
    """scikit-learn's digits (``sklearn.datasets.load_digits``' own file), found without importing scikit-learn:
    its import takes ~2.6 s, most of a tiny job's start-up. A test checks the data equal ``load_digits()``'s."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the tiny presets' digits ship with scikit-learn: pip install scikit-learn")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"


@cache
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    import numpy as np
    import torch

    data = np.loadtxt(digits_file(), delimiter=",")  # 64 pixel values in 0..16, then the label
    images = torch.as_tensor(data[:, :-1].reshape(-1, 1, 8, 8), dtype=torch.float32) / 16.0  # N x 1 x 8 x 8 in [0, 1]
    return images, torch.as_tensor(data[:, -1].astype(np.int64))


def digits_indices(split: str) -> torch.Tensor:
    """Which of scikit-learn's 1,797 digits form ``split`` (``train``, ``val`` or ``test``): fixed, disjoint."""
    import torch

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    count = len(_digits()[1])
    order = torch.randperm(count, generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_val, n_test = (int(count * DIGITS_FRACTIONS[s]) for s in ("val", "test"))
    return {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}[split]


def load_digits_split(split: str, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N x 1 x size x size, in [0, 1]) and labels of the ``train``, ``val`` or ``test`` digits."""
    import torch.nn.functional as F

    images, labels = _digits()
    index = digits_indices(split)
    images = images[index]
    if size != images.shape[-1]:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return images, labels[index]


def random_shift(image: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Translate a C x H x W image by up to ``max_shift`` pixels (zero padding): cheap, label-preserving."""
    import torch
    import torch.nn.functional as F

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
    import torch
    import torch.nn.functional as F

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
