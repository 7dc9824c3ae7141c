"""A third-party task adapter (digits classification with an MLP) and method (``polyak``: an equal average of the
epoch-end weights), each registered through an entry point.

`pip install -e examples/sema-bench-plugin`, then `suite run --task digits-mlp --method none,ema,sema,polyak`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sema_suite.method.methods import Method
from sema_suite.task import BuildContext, Metric, Preset, Task


class DigitsMLP(Task):
    name = "digits-mlp"
    description = "digits with a two-layer MLP (example plugin)"
    metrics = (Metric("top1", higher_is_better=True, primary=True),)
    presets = {"tiny": Preset("tiny", "sklearn digits 8x8, MLP, 5 epochs", dataset="digits", model="mlp",
                              params={"epochs": 5, "lr": 0.2, "hidden": 128, "input_noise": 0.1},
                              averaging={"decay": 0.95}, offline=True)}

    def build_config(self, preset: Preset, ctx: BuildContext) -> dict[str, Any]:
        from sema_bench_plugin import components  # noqa: F401  (registers DigitsMLPModel)

        loader = {"batch_size": 64, "num_workers": 0, "collate_fn": {"type": "default_collate"},
                  "dataset": {"type": "DigitsClassification", "image_size": 8}}
        return {
            "model": {"type": "DigitsMLPModel", "hidden": ctx.params["hidden"], "input_noise": ctx.params["input_noise"]},
            "train_dataloader": {**loader, "sampler": {"type": "DefaultSampler", "shuffle": True},
                                 "dataset": {**loader["dataset"], "split": "train"}},
            "val_dataloader": {**loader, "sampler": {"type": "DefaultSampler", "shuffle": False},
                               "dataset": {**loader["dataset"], "split": "val"}},
            "val_evaluator": {"type": "TopKAccuracy"},
            "train_cfg": {"type": "EpochBasedTrainLoop", "max_epochs": ctx.params["epochs"], "val_interval": 1},
            "val_cfg": {"type": "ValLoop"},
            "optim_wrapper": {"optimizer": {"type": "SGD", "lr": ctx.params["lr"], "momentum": 0.9}},
        }


    def analysis_loss(self, model: Any, batches: list[Any], seed: int) -> Callable[[], Any]:
        """What `suite analyze` differentiates: the cross-entropy on clean inputs. The training loss adds input
        noise (a regulariser); measuring without it describes the weights, not one draw of the noise."""
        import torch.nn.functional as F

        processed = [model.data_preprocessor(batch, True) for batch in batches]

        def loss() -> Any:
            return sum(F.cross_entropy(model(data["inputs"]), data["labels"]) for data in processed) / len(processed)

        return loss


TASK = DigitsMLP()


class Polyak(Method):
    """Evaluate the equal average of the weights at every epoch end so far; training never sees it. It could share a
    run with ``none`` in principle; without a member of SemaHook's kind it trains on its own (the default)."""

    name = "polyak"
    summary = "an equal average of the epoch-end weights (example plugin)"

    def hook(self, job_id: str, knobs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
        from sema_bench_plugin import components  # noqa: F401  (registers PolyakHook)

        return {"type": "PolyakHook", "name": job_id}


METHOD = Polyak()
