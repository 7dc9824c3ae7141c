"""The plugin's model; the classifier head logic, dataset and metric come from the built-in cls task."""

import torch
from mmengine.registry import MODELS
from torch import nn

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
