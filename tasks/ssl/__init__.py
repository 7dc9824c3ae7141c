"""Self-supervised learning: SimCLR (contrastive), MoCo v3 and BYOL (both with a momentum target network).

The SSL method is part of the preset (``tiny`` and ``*-simclr`` are SimCLR, ``tiny-mocov3`` and
``*-mocov3`` MoCo v3, ``*-byol`` BYOL), so that the leaderboard never mixes methods under one preset name.
BYOL has no tiny preset: within the one-minute budget (~100 steps) it stayed at the untrained backbone's
k-NN accuracy, while SimCLR and MoCo v3 learn. Evaluation is on the frozen backbone: a weighted k-NN
classifier at every evaluation (the primary metric), and at the end of the run -- the run's test pass, which
the worker starts after training -- the k-NN and a linear probe on the test split. The k-NN bank and the
probe's training set are always the labelled training images the SSL run trained on; the queries are the
held-out ``val`` images at every evaluation and the ``test`` images at the end. With ``ema``/``sema`` both
evaluate the averaged online weights; a momentum target network is never averaged.

Splits: ``tiny`` uses the suite's fixed 60/20/20 split of the digits. The paper presets hold ``val_size``
labelled training images out (class-balanced, fixed; kept out of the SSL training set too) as the ``val``
queries, and test on the dataset's test set; ``--set val_size=0`` trains on everything (the recipe).
"""

from __future__ import annotations

from typing import Any

from sema_suite.data import HeldOutSplits, check_val_size, dataloader, evaluation_config
from sema_suite.errors import BadOverride
from sema_suite.knobs import POSITIVE, Rule, count
from sema_suite.optim import optimizer_config
from sema_suite.task import BuildContext, Metric, Preset, Task, require_torchvision_folder

_FOLDERS = {"cifar100": "cifar-100-python", "stl10": "stl10_binary"}
LABELLED_TRAIN = {"cifar100": 50_000, "stl10": 5_000}  # the labelled training images, which val is held out of
_NAMES = {"simclr": "SimCLR", "mocov3": "MoCo v3", "byol": "BYOL"}

# The common CIFAR/STL-10 recipes of solo-learn and the BYOL paper, with SGD in place of LARS (the suite
# stays on torch's optimizers): ResNet-18, batch 256, 10 warm-up epochs then cosine, weight decay 1e-5
# (SimCLR, MoCo v3) / 1.5e-6 (BYOL), projector 2048 -> 128 (SimCLR, temperature 0.2) or 4096 -> 256 with a
# 4096-wide predictor and target momentum 0.99 -> 1 (MoCo v3 with temperature 0.2, BYOL); k-NN with k = 200,
# temperature 0.07. val_size: 10 % of the labelled training images (as CIFAR's 5,000 of 50,000) -- CIFAR-100
# 5,000, STL-10 500 of its 5,000 labelled ones (its 100,000 unlabelled images always train).
_PAPER = {
    "simclr": {"ssl_method": "simclr", "lr": 0.4, "weight_decay": 1e-5, "proj_hidden": 2048, "proj_dim": 128,
               "temperature": 0.2},
    "mocov3": {"ssl_method": "mocov3", "lr": 0.3, "weight_decay": 1e-5, "proj_hidden": 4096, "proj_dim": 256,
               "pred_hidden": 4096, "temperature": 0.2, "target_momentum": 0.99},
    "byol": {"ssl_method": "byol", "lr": 1.0, "weight_decay": 1.5e-6, "proj_hidden": 4096, "proj_dim": 256,
             "pred_hidden": 4096, "target_momentum": 0.99},
}
# decay: the averaging lag (~d/(1-d) steps) kept at about a quarter of an epoch, as in the authors' tuned CIFAR
# setting (0.99 at ~500 steps per epoch): CIFAR-100 is 176 steps per epoch at batch 256 (0.98, ~50 steps), STL-10
# 408 (104,500 images: 0.99, ~100 steps). 0.999 would lag several epochs behind a per-epoch switch.
_DATASETS = {
    "cifar100": {"epochs": 1000, "image_size": 32, "backbone": "cifar", "val_size": 5000, "decay": 0.98},
    "stl10": {"epochs": 400, "image_size": 96, "backbone": "resnet18", "val_size": 500, "decay": 0.99},
}


def _paper_preset(dataset: str, method: str) -> Preset:
    data = _DATASETS[dataset]
    label = {"cifar100": "CIFAR-100", "stl10": "STL-10 (train+unlabeled)"}[dataset]
    stem = "CIFAR stem" if data["backbone"] == "cifar" else "ImageNet stem"
    return Preset(
        name=f"{dataset}-{method}",
        description=f"{label}, ResNet-18 ({stem}), {_NAMES[method]}, SGD + cosine, {data['epochs']} epochs, "
                    "k-NN every 10 epochs (GPU)",
        dataset=dataset,
        model=f"resnet18-{method}",
        params={**_PAPER[method], "epochs": data["epochs"], "batch_size": 256, "momentum": 0.9, "lr_warmup_epochs": 10,
                "num_workers": None, "backbone": data["backbone"], "depths": [2, 2, 2, 2], "width": 64,
                "image_size": data["image_size"], "knn_k": 200, "knn_temperature": 0.07, "probe_c": 1.0,
                "val_interval": 10, "val_size": data["val_size"]},
        averaging={"decay": data["decay"], "ema_warmup_epochs": 5, "ema_warmup_factor": 0.9, "switch_start": 5},
    )


def _tiny(method: str, extra: dict[str, Any]) -> Preset:
    return Preset(
        name="tiny" if method == "simclr" else f"tiny-{method}",
        description=f"sklearn digits 12x12, two distorted views, small ResNet, {_NAMES[method]}, SGD, 8 epochs; "
                    "k-NN every epoch, k-NN and a linear probe on the test digits at the end (CPU, ~1 min)",
        dataset="digits",
        model=f"resnet-tiny-{method}",
        params={"ssl_method": method, "epochs": 8, "batch_size": 96, "optimizer": "sgd", "momentum": 0.9,
                "lr_warmup_epochs": 1,
                "num_workers": 0, "backbone": "cifar", "depths": [1, 1, 1], "width": 16, "image_size": 12,
                "proj_hidden": 128, "proj_dim": 64, "knn_k": 20, "knn_temperature": 0.07, "probe_c": 1.0,
                "val_interval": 1, **extra},
        # 1,079 training digits, 11 steps of 96 per epoch: decay 0.96 averages over ~2 epochs (as 0.999 does
        # over the paper's ~200 steps per epoch), warmed up over the first epoch, switching every epoch from
        # epoch 2.
        averaging={"decay": 0.96, "ema_warmup_epochs": 1, "ema_warmup_factor": 0.9, "switch_start": 2},
        optimizers={"adamw": {"lr": 1e-3, "weight_decay": 1e-4}},
        offline=True,
    )


class SelfSupervisedLearning(HeldOutSplits, Task):
    name = "ssl"
    description = "self-supervised learning, SimCLR / MoCo v3 / BYOL (digits offline; CIFAR-100, STL-10 ResNet-18)"
    metrics = (
        Metric("knn", higher_is_better=True, primary=True,
               description="weighted k-NN top-1 accuracy (%) on frozen backbone features, every evaluation"),
        Metric("linear_probe", higher_is_better=True,
               description="linear-probe top-1 accuracy (%) on frozen backbone features, once at the end (test)"),
    )
    rules = {"ssl_method": Rule(str, choices=("simclr", "mocov3", "byol")),
             "backbone": Rule(str, choices=("cifar", "resnet18", "resnet50")),
             **{key: count() for key in ("proj_hidden", "proj_dim", "pred_hidden", "knn_k")},
             "knn_temperature": POSITIVE, "probe_c": POSITIVE, "temperature": POSITIVE,
             "target_momentum": Rule(float, low=0, high=1)}
    presets = {
        "tiny": _tiny("simclr", {"lr": 0.3, "weight_decay": 5e-4, "temperature": 0.2}),
        "tiny-mocov3": _tiny("mocov3", {"lr": 0.3, "weight_decay": 5e-4, "pred_hidden": 128, "temperature": 0.2,
                                        "target_momentum": 0.96}),
        # The paper's regime on a CPU: SimCLR on the tiny digits with batch 32 (33 steps per epoch) for 100 epochs
        # (100 switches), a narrower ResNet (width 8), the learning rate scaled linearly with the batch (0.3 at
        # 96 -> 0.1 at 32). Decay 0.8 lags ~4 steps, an eighth of an epoch.
        "long": Preset(
            name="long",
            description="sklearn digits 12x12, two distorted views, narrow ResNet, SimCLR, SGD, 100 epochs of 33 "
                        "steps; k-NN every epoch, k-NN and a linear probe on the test digits at the end (CPU, offline)",
            dataset="digits",
            model="resnet-tiny-simclr",
            params={"ssl_method": "simclr", "epochs": 100, "batch_size": 32, "optimizer": "sgd", "lr": 0.1,
                    "momentum": 0.9, "weight_decay": 5e-4, "lr_warmup_epochs": 5, "num_workers": 0, "backbone": "cifar",
                    "depths": [1, 1, 1], "width": 8, "image_size": 12, "proj_hidden": 64, "proj_dim": 32,
                    "knn_k": 20, "knn_temperature": 0.07, "probe_c": 1.0, "val_interval": 1, "temperature": 0.2},
            averaging={"decay": 0.8, "ema_warmup_epochs": 1, "ema_warmup_factor": 0.9, "switch_start": 2},
            optimizers={"adamw": {"lr": 1e-3, "weight_decay": 1e-4}},
            offline=True,
        ),
        **{f"{d}-{m}": _paper_preset(d, m) for d in _DATASETS for m in _PAPER},
    }

    def check_data(self, preset: Preset, ctx: BuildContext) -> None:
        if folder := _FOLDERS.get(preset.dataset):
            check_val_size(ctx.params, LABELLED_TRAIN[preset.dataset], preset.dataset)
            require_torchvision_folder(preset.dataset, ctx, folder)

    def build_config(self, preset: Preset, ctx: BuildContext) -> dict[str, Any]:
        from sema_tasks.ssl import modules  # noqa: F401  (registers the components)

        p = ctx.params
        digits = preset.dataset == "digits"
        if digits:
            train_set = {"type": "UnlabelledDigits", "image_size": p["image_size"]}
            eval_set = {"type": "DigitsFeatureEval", "image_size": p["image_size"]}
        else:
            check_val_size(p, LABELLED_TRAIN[preset.dataset], preset.dataset)
            source = {"name": preset.dataset, "root": str(ctx.data_root), "download": ctx.download,
                      "val_size": p["val_size"]}
            train_set = {"type": "TorchvisionTwoViews", "image_size": p["image_size"], **source}
            eval_set = {"type": "TorchvisionFeatureEval", **source}

        def loader(dataset: dict[str, Any], train: bool) -> dict[str, Any]:
            collate = "digits_two_views" if digits and train else "default_collate"
            return dataloader(dataset, p, train, collate=collate, drop_last=train)

        backbone = {"arch": p["backbone"], "depths": p["depths"], "width": p["width"], "in_channels": 1 if digits else 3}
        model = {"type": "SelfSupervised", "method": p["ssl_method"], "backbone": backbone,
                 "proj_hidden": p["proj_hidden"], "proj_dim": p["proj_dim"]}
        hooks = []
        if "temperature" in p:  # SimCLR, MoCo v3
            model["temperature"] = p["temperature"]
        if "target_momentum" in p:  # MoCo v3, BYOL
            model["pred_hidden"] = p["pred_hidden"]
            hooks.append({"type": "MomentumTargetHook", "base_momentum": p["target_momentum"]})
        knn = {"type": "KnnAccuracy", "k": p["knn_k"], "temperature": p["knn_temperature"]}
        warmup = p["lr_warmup_epochs"]
        if not 0 <= warmup < p["epochs"]:
            raise BadOverride(f"lr_warmup_epochs must be in [0, epochs), got {warmup} with epochs={p['epochs']}")
        schedulers = [{"type": "CosineAnnealingLR", "by_epoch": True, "begin": warmup, "end": p["epochs"],
                       "T_max": p["epochs"] - warmup, "convert_to_iter_based": True}]
        if warmup:
            schedulers.insert(0, {"type": "LinearLR", "start_factor": 1e-3, "by_epoch": True, "begin": 0,
                                  "end": warmup, "convert_to_iter_based": True})
        return {
            "model": model,
            "custom_hooks": hooks,
            "train_dataloader": loader(train_set, train=True),
            **evaluation_config(p, lambda split: loader({**eval_set, "split": split}, train=False), knn,
                                test_evaluator=[knn, {"type": "LinearProbe", "c": p["probe_c"]}]),
            "train_cfg": {"type": "EpochBasedTrainLoop", "max_epochs": p["epochs"], "val_interval": p["val_interval"]},
            "optim_wrapper": {"type": "OptimWrapper", "optimizer": optimizer_config(p, "sgd", nesterov=False)},
            "param_scheduler": schedulers,
        }


TASK = SelfSupervisedLearning()
