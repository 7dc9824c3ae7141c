"""The plugin's model; the classifier head logic, dataset and metric come from the built-in cls task."""

import contextlib
from collections.abc import Iterator

import torch
from mmengine.registry import HOOKS, MODELS
from torch import nn

from sema_suite.method.hooks import MethodHook
from sema_tasks.cls.modules import Classifier


@MODELS.register_module()
class DigitsMLPModel(Classifier):
    """An MLP trained on inputs with Gaussian noise of std ``input_noise`` added (a regulariser)."""

    def __init__(self, hidden: int, input_noise: float = 0.0) -> None:
        super().__init__(nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10)))
        self.input_noise = input_noise

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor | None = None, mode: str = "tensor"):
        if mode == "loss" and self.input_noise:
            inputs = inputs + self.input_noise * torch.randn_like(inputs)
        return super().forward(inputs, labels, mode)


class PolyakHook(MethodHook):
    """The ``polyak`` method's work: at each epoch end the weights join an equal average (Polyak-Ruppert over the
    epoch ends), which every evaluation evaluates; training never sees it."""

    def __init__(self, name: str) -> None:
        self.members = [{"name": name}]
        self.average: dict[str, torch.Tensor] = {}
        self.count = 0

    def after_train_epoch(self, runner) -> None:
        self.count += 1
        with torch.no_grad():
            for key, value in runner.model.state_dict().items():
                if value.is_floating_point():
                    mean = self.average.setdefault(key, value.clone())
                    mean.add_(value - mean, alpha=1 / self.count)

    @contextlib.contextmanager
    def reporting(self, model, name: str) -> Iterator[nn.Module]:
        trained = {key: value.clone() for key, value in model.state_dict().items()}
        model.load_state_dict(self.average, strict=False)
        try:
            yield model
        finally:
            model.load_state_dict(trained)

    def counts(self, name: str | None = None) -> dict[str, int]:
        return {"updates": self.count}

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint["polyak_hook"] = {"average": self.average, "count": self.count}

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        saved = checkpoint["polyak_hook"]
        self.average, self.count = saved["average"], saved["count"]


HOOKS.register_module(module=PolyakHook)
