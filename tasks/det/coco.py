"""The paper presets: MMDetection's own shipped COCO configs, pointed at the user's COCO directory.

Nothing of the recipe changes (model, pipelines, schedule, optimizer, batch size per GPU). The configs
assume 8 GPUs x 2 images; a suite job uses one GPU, so to keep the recipe's total batch of 16 on one GPU
pass ``--set cfg.train_dataloader.batch_size=16`` (or scale the LR with ``--set cfg.auto_scale_lr.enable=true``).

Splits: ``test`` is val2017 (what the field reports), scored once after training. ``val`` is a fixed random
slice of ``val_size`` train2017 images that training never sees: the slice and the rest of train2017 are
written once as two COCO annotation files under the suite's cache (:func:`ensure_holdout`), next to nothing
else -- the images are still read from ``train2017/``. With ``val_size=0`` the config is the shipped one:
training on all of train2017, and val2017 scored at every evaluation.
"""

from __future__ import annotations

import copy
import fcntl
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sema_suite.data import SPLIT_SEED

HOLDOUT_VERSION = 1  # bump when the slice or the files change, so stale caches are not reused


def _rebase(node: Any, old: str, new: str) -> Any:
    """Every path string under the shipped data root (datasets, evaluators) moved to ``new``."""
    if isinstance(node, dict):
        return {key: _rebase(value, old, new) for key, value in node.items()}
    if isinstance(node, (list, tuple)):
        return type(node)(_rebase(value, old, new) for value in node)
    if isinstance(node, str) and node.startswith(old):
        return new + node[len(old):]
    return node


def _source(coco_root: Path) -> Path:
    return Path(coco_root) / "annotations" / "instances_train2017.json"


def holdout_files(coco_root: Path, val_size: int, cache: Path) -> tuple[Path, Path]:
    """Where the annotation files of train2017 without the held-out slice, and of the slice, are kept.

    The folder is named by ``val_size``, the seed, the version and the source file's size, so another copy of
    COCO (or a subset of it) never reuses them.
    """
    source = _source(coco_root)
    size = source.stat().st_size if source.is_file() else "unread"
    folder = Path(cache) / "datasets" / f"coco2017-holdout{val_size}-s{SPLIT_SEED}-v{HOLDOUT_VERSION}-{size}"
    return folder / "instances_train2017_train.json", folder / "instances_train2017_val.json"


def ensure_holdout(coco_root: Path, val_size: int, cache: Path) -> tuple[Path, Path]:
    """The (train, val) annotation files for ``val_size`` held-out train2017 images, written on first use.

    The slice is a fixed random choice (seed :data:`sema_suite.data.SPLIT_SEED`) among the images sorted by id, so
    it depends on nothing but ``val_size``. One process writes them (the others wait on a lock rather than
    each reading the 450 MB source), into a temporary folder renamed into place, so no job reads half a file.
    """
    from sema_suite.data import holdout

    train_file, val_file = holdout_files(coco_root, val_size, cache)
    folder = train_file.parent
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if train_file.is_file() and val_file.is_file():
            return train_file, val_file
        source = json.loads(_source(coco_root).read_text())
        images = sorted(source["images"], key=lambda image: image["id"])
        kept, held = holdout(len(images), val_size)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        try:
            for path, index in ((train_file, kept), (val_file, held)):
                subset = [images[i] for i in index]
                ids = {image["id"] for image in subset}
                annotations = [a for a in source["annotations"] if a["image_id"] in ids]
                (tmp / path.name).write_text(json.dumps({**source, "images": subset, "annotations": annotations}))
            shutil.rmtree(folder, ignore_errors=True)  # a partial copy someone left (we hold the lock)
            tmp.rename(folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return train_file, val_file


def _with_ann_file(loader: dict[str, Any], ann_file: Path, images: str | None = None) -> dict[str, Any]:
    """A copy of a dataloader config whose COCO dataset (possibly wrapped) reads ``ann_file`` (and ``images``)."""
    loader = copy.deepcopy(loader)
    dataset = loader["dataset"]
    while "ann_file" not in dataset:  # RepeatDataset, ClassBalancedDataset, ... wrap the real one
        dataset = dataset["dataset"]
    dataset["ann_file"] = str(ann_file)
    if images is not None:
        dataset["data_prefix"] = {**dataset.get("data_prefix", {}), "img": images}
    return loader


def _images(loader: dict[str, Any]) -> str:
    dataset = loader["dataset"]
    while "ann_file" not in dataset:
        dataset = dataset["dataset"]
    return dataset["data_prefix"]["img"]


def shipped_config(name: str, coco_root: Path, holdout: tuple[Path, Path] | None = None) -> dict[str, Any]:
    """The shipped config ``name`` (``mmdet::...``) with its data root replaced by ``coco_root``.

    Its own test split is dropped (it is val2017 again). With ``holdout`` (the train and val annotation files
    of :func:`ensure_holdout`) it trains on the first, scores the second at every evaluation, and scores
    val2017 in the test pass; without, it trains on all of train2017 and scores val2017 at every evaluation.
    """
    from mmengine.hub import get_config

    cfg = get_config(name).to_dict()
    cfg = _rebase(cfg, cfg["data_root"], f"{coco_root}/")
    for key in ("test_dataloader", "test_cfg", "test_evaluator"):
        cfg.pop(key, None)
    if holdout is None:
        return cfg
    train_file, val_file = holdout
    cfg["test_dataloader"], cfg["test_evaluator"] = cfg["val_dataloader"], cfg["val_evaluator"]
    cfg["test_cfg"] = {"type": "TestLoop"}
    cfg["val_dataloader"] = _with_ann_file(cfg["val_dataloader"], val_file, _images(cfg["train_dataloader"]))
    cfg["val_evaluator"] = {**cfg["val_evaluator"], "ann_file": str(val_file)}
    cfg["train_dataloader"] = _with_ann_file(cfg["train_dataloader"], train_file)
    return cfg
