"""The paper presets: MMDetection's own shipped COCO configs, pointed at the user's COCO directory.

Nothing of the recipe changes (model, pipelines, schedule, optimizer, batch size per GPU). The configs
assume 8 GPUs x 2 images; a suite job uses one GPU, so to keep the recipe's total batch of 16 on one GPU
pass ``--set cfg.train_dataloader.batch_size=16`` (or scale the LR with ``--set cfg.auto_scale_lr.enable=true``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _rebase(node: Any, old: str, new: str) -> Any:
    """Every path string under the shipped data root (datasets, evaluators) moved to ``new``."""
    if isinstance(node, dict):
        return {key: _rebase(value, old, new) for key, value in node.items()}
    if isinstance(node, (list, tuple)):
        return type(node)(_rebase(value, old, new) for value in node)
    if isinstance(node, str) and node.startswith(old):
        return new + node[len(old):]
    return node


def shipped_config(name: str, coco_root: Path) -> dict[str, Any]:
    """The shipped config ``name`` (``mmdet::...``) with its data root replaced by ``coco_root``.

    Its test split is dropped: it is the val split again, and would record the last evaluation twice.
    """
    from mmengine.hub import get_config

    cfg = get_config(name).to_dict()
    cfg = _rebase(cfg, cfg["data_root"], f"{coco_root}/")
    for key in ("test_dataloader", "test_cfg", "test_evaluator"):
        cfg.pop(key, None)
    return cfg
