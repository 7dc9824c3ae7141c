"""A third-party task adapter: digits classification with an MLP, registered through an entry point.

`pip install -e examples/sema-bench-plugin`, then `suite run --task digits-mlp --method none,ema,sema`.
"""

from __future__ import annotations

from typing import Any

from suite.task import BuildContext, Metric, Preset, Task


class DigitsMLP(Task):
    name = "digits-mlp"
    description = "digits with a two-layer MLP (example plugin)"
    metrics = (Metric("top1", higher_is_better=True, primary=True),)
    presets = {"tiny": Preset("tiny", "sklearn digits 8x8, MLP, 5 epochs", dataset="digits", model="mlp",
                              params={"epochs": 5, "lr": 0.2, "hidden": 128},
                              averaging={"decay": 0.95}, offline=True)}

    def build_config(self, preset: Preset, ctx: BuildContext) -> dict[str, Any]:
        from sema_bench_plugin import components  # noqa: F401  (registers DigitsMLPModel)

        loader = {"batch_size": 64, "num_workers": 0, "collate_fn": {"type": "default_collate"},
                  "dataset": {"type": "DigitsClassification", "image_size": 8}}
        return {
            "model": {"type": "DigitsMLPModel", "hidden": ctx.params["hidden"]},
            "train_dataloader": {**loader, "sampler": {"type": "DefaultSampler", "shuffle": True},
                                 "dataset": {**loader["dataset"], "split": "train"}},
            "val_dataloader": {**loader, "sampler": {"type": "DefaultSampler", "shuffle": False},
                               "dataset": {**loader["dataset"], "split": "val"}},
            "val_evaluator": {"type": "TopKAccuracy"},
            "train_cfg": {"type": "EpochBasedTrainLoop", "max_epochs": ctx.params["epochs"], "val_interval": 1},
            "val_cfg": {"type": "ValLoop"},
            "optim_wrapper": {"optimizer": {"type": "SGD", "lr": ctx.params["lr"], "momentum": 0.9}},
        }


TASK = DigitsMLP()
