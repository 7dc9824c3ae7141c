"""The plugin's model; the classifier head logic, dataset and metric come from the built-in cls task."""

from mmengine.registry import MODELS
from torch import nn

from tasks.cls.modules import Classifier


@MODELS.register_module()
class DigitsMLPModel(Classifier):
    def __init__(self, hidden: int) -> None:
        super().__init__(nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10)))
