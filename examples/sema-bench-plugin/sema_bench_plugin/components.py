"""The plugin's model; the dataset and the metric come from the built-in cls task."""

import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.registry import MODELS
from torch import nn

import tasks.cls.modules  # noqa: F401  (DigitsClassification, TopKAccuracy)


@MODELS.register_module()
class DigitsMLPModel(BaseModel):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, inputs, labels=None, mode="tensor"):
        logits = self.net(inputs)
        if mode == "loss":
            return {"loss": F.cross_entropy(logits, labels)}
        if mode == "predict":
            return [{"scores": s, "label": l} for s, l in zip(logits.detach(), labels)]
        return logits
