"""Object detection and instance segmentation through MMDetection 3 (COCO bbox / segm mAP).

``tiny`` and ``tiny-mask`` train small MMDetection detectors on a generated COCO-format shapes data set on a
CPU (its own train, val and test splits); the paper presets run MMDetection's own shipped COCO configs with
only the data root, the held-out ``val`` slice of train2017 (see :mod:`sema_tasks.det.coco`) and the suite's hooks
injected, and report val2017 as ``test``. Everything is read and scored by MMDetection's ``CocoDataset`` and
``CocoMetric``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sema_suite.data import HeldOutSplits, cache_dir, check_val_size
from sema_suite.errors import DatasetMissing
from sema_suite.knobs import count
from sema_suite.task import BuildContext, Metric, Preset, Task

# The shipped MMDetection config of each paper preset (they live inside the mmdet package).
SHIPPED_CONFIGS = {
    "coco-retinanet-1x": "mmdet::retinanet/retinanet_r50_fpn_1x_coco.py",
    "coco-mask-rcnn-1x": "mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py",
    "coco-retinanet-90k": "mmdet::retinanet/retinanet_r50_fpn_90k_coco.py",
}
COCO_FILES = ("annotations/instances_train2017.json", "annotations/instances_val2017.json", "train2017/", "val2017/")

_TINY = {"epochs": 12, "iters": 0, "val_interval": 1, "batch_size": 16, "optimizer": "adamw", "lr": 0.002, "weight_decay": 0.05,
         "lr_warmup_iters": 25, "num_workers": 0, "width": 16, "channels": 48, "image_size": 64, "num_train": 400,
         "num_val": 100, "num_test": 100}
# The shapes data set gives 25 steps per epoch at batch 16, 300 in all. The averaging lag of an EMA is
# ~d/(1-d) steps; a per-epoch switch pulls the model back by about that much, so it must stay well under an
# epoch or SEMA stalls. Measured on this preset (seed 0): plain training 0.55 bbox mAP; SEMA at decay 0.98
# (a lag of 49 steps, two epochs) 0.27, at 0.9 0.45. So 0.9: a lag of ~9 steps (a third of an epoch, ~3% of
# the run; the paper's CIFAR setting averages over ~1%), warmed up over the first epoch, switching every
# epoch from the second one.
_TINY_AVERAGING = {"decay": 0.9, "ema_warmup_epochs": 1, "ema_warmup_factor": 0.9, "switch_start": 2}
_TINY_OPTIMIZERS = {"sgd": {"lr": 0.01, "weight_decay": 1e-4, "momentum": 0.9}}  # the optimizer axis: --set optimizer=sgd
# COCO 1x at the recipe's total batch of 16 is 7,080 steps per epoch (113,287 images once val is held out).
# The averaging lag, ~d/(1-d) steps, is kept at about a quarter of the switch period, as in the authors' tuned
# CIFAR setting (0.99 at ~500 steps per epoch): 0.9995, a lag of ~2,000 steps. (MMDetection's own EMA for its
# detectors, 0.9998, lags ~5,000 steps, 0.7 of an epoch: a per-epoch switch would pull the model most of an
# epoch back.) Warmed up over the 500-step LR warm-up x 4.
_COCO_AVERAGING = {"decay": 0.9995, "ema_warmup_iters": 2000, "ema_warmup_factor": 0.9, "switch_start": 1}
# val_size: 5,000 train2017 images held out for val -- as many as val2017 (the test split) has, so a val
# evaluation costs what a test one does; 4 % of train2017. Final runs train on all of it: --set val_size=0.
# batch_size: the recipe's total batch of 16 (8 GPUs x 2 images), here on the job's GPU(s) (the memory it
# takes on one GPU is not measured: no GPU was available); a smaller batch (--set batch_size=4 on a small GPU) scales the
# learning rate with it (MMDetection's auto_scale_lr, base 16), so the per-image rate stays the recipe's.
_COCO_PARAMS = {"val_size": 5000, "batch_size": 16}
COCO_BASE_BATCH = 16
COCO_TRAIN = 118_287  # images in train2017


def _coco_preset(name: str, model: str, description: str) -> Preset:
    return Preset(name=name, description=description, dataset="coco2017", model=model, params=dict(_COCO_PARAMS),
                  averaging=_COCO_AVERAGING)


class Detection(HeldOutSplits, Task):
    name = "det"
    multi_gpu = True  # MMDetection's CocoMetric gathers its results across processes
    description = "object detection / instance segmentation, MMDetection (shapes offline; COCO RetinaNet, Mask R-CNN)"
    metrics = (
        Metric("bbox_mAP", higher_is_better=True, primary=True, description="COCO box AP@[.5:.95]"),
        Metric("bbox_mAP_50", higher_is_better=True, description="COCO box AP@.5"),
        Metric("bbox_mAP_75", higher_is_better=True, description="COCO box AP@.75"),
        Metric("segm_mAP", higher_is_better=True, description="COCO mask AP@[.5:.95] (mask presets)"),
        Metric("segm_mAP_50", higher_is_better=True, description="COCO mask AP@.5 (mask presets)"),
        Metric("segm_mAP_75", higher_is_better=True, description="COCO mask AP@.75 (mask presets)"),
    )
    # iters 0: the tiny presets train by epoch
    rules = {"iters": count(0), "channels": count(), "num_train": count(), "num_val": count(), "num_test": count()}
    presets = {
        "tiny": Preset(
            name="tiny",
            description="generated COCO shapes 64 px, narrow RetinaNet from scratch, 12 epochs (CPU, ~1.5 min)",
            dataset="coco-shapes", model="retinanet-r18w16", params=_TINY, averaging=_TINY_AVERAGING, offline=True,
            optimizers=_TINY_OPTIMIZERS,
        ),
        "tiny-mask": Preset(
            name="tiny-mask",
            description="generated COCO shapes 64 px, narrow Mask R-CNN from scratch, 12 epochs (CPU, ~3.5 min)",
            dataset="coco-shapes", model="mask-rcnn-r18w16", params=_TINY,
            averaging=_TINY_AVERAGING, offline=True, optimizers=_TINY_OPTIMIZERS,
        ),
        # The paper's regime on a CPU: the shapes data at batch 2 over 64 training images (32 steps an epoch) for
        # 100 epochs (100 switches), a narrower RetinaNet (width 8, 32 FPN channels), scored every 5 epochs.
        # Decay 0.8 lags ~4 steps, an eighth of an epoch.
        "long": Preset(
            name="long",
            description="generated COCO shapes 64 px, narrower RetinaNet from scratch, 100 epochs of 32 steps "
                        "(CPU, offline)",
            dataset="coco-shapes", model="retinanet-r18w8",
            params={**_TINY, "epochs": 100, "val_interval": 5, "batch_size": 2, "optimizer": "adamw",
                    "momentum": 0.9, "lr": 1e-3, "lr_warmup_iters": 100, "width": 8, "channels": 32, "num_train": 64,
                    "num_val": 50, "num_test": 100},
            averaging={**_TINY_AVERAGING, "decay": 0.8}, optimizers={"sgd": {"lr": 0.01, "weight_decay": 1e-4, "momentum": 0.9}, "adam": {"lr": 1e-3, "weight_decay": 0.0}},
            offline=True,
        ),
        "coco-retinanet-1x": _coco_preset("coco-retinanet-1x", "retinanet-r50-fpn",
                                          "COCO 2017, RetinaNet R-50-FPN 1x, MMDetection's config (GPU)"),
        "coco-mask-rcnn-1x": _coco_preset("coco-mask-rcnn-1x", "mask-rcnn-r50-fpn",
                                          "COCO 2017, Mask R-CNN R-50-FPN 1x, MMDetection's config (GPU)"),
        "coco-retinanet-90k": _coco_preset("coco-retinanet-90k", "retinanet-r50-fpn",
                                           "COCO 2017, RetinaNet R-50-FPN 90k iterations (iteration-based, GPU)"),
    }

    def check_data(self, preset: Preset, ctx: BuildContext) -> None:
        if preset.name not in SHIPPED_CONFIGS:
            return
        check_val_size(ctx.params, COCO_TRAIN, "COCO train2017")
        root = Path(ctx.data_root) / "coco"
        if not all((root / name).exists() for name in COCO_FILES):
            layout = "\n".join(f"  {root}/{name}" for name in COCO_FILES)
            raise DatasetMissing("COCO 2017", ctx.data_root, layout,
                                 hint="download it from https://cocodataset.org/#download")

    def build_config(self, preset: Preset, ctx: BuildContext) -> dict[str, Any]:
        if preset.name in SHIPPED_CONFIGS:
            from sema_tasks.det.coco import ensure_holdout, holdout_files, shipped_config

            val_size, coco = ctx.params["val_size"], Path(ctx.data_root) / "coco"
            check_val_size(ctx.params, COCO_TRAIN, "COCO train2017")
            holdout = None  # val_size=0: train on all of train2017, score val2017 at every evaluation
            if val_size and ctx.dry_run:  # where the files would be, without reading COCO
                holdout = holdout_files(coco, val_size, cache_dir())
            elif val_size:
                holdout = ensure_holdout(coco, val_size, cache_dir())
            cfg = shipped_config(SHIPPED_CONFIGS[preset.name], coco, holdout)
            cfg["train_dataloader"]["batch_size"] = ctx.params["batch_size"]
            cfg["auto_scale_lr"] = {"enable": True, "base_batch_size": COCO_BASE_BATCH}
            return cfg
        from sema_tasks.det import tiny
        from sema_tasks.det.shapes import ensure_shapes

        spec = tiny.spec(ctx.params)
        root = cache_dir() / "datasets" / spec.key() if ctx.dry_run else ensure_shapes(spec, cache_dir())
        return tiny.config(ctx.params, root, mask=preset.name == "tiny-mask")


TASK = Detection()
