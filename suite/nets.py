"""Backbones the task adapters share: a CIFAR-stem ResNet of any depth/width and torchvision's ResNets.

Adapters describe a backbone with a small dict (so it fits in an mmengine config) and build it with
:func:`build_backbone`, which also says how many features it outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn
from torchvision.models import resnet18, resnet50
from torchvision.models.resnet import BasicBlock

_TORCHVISION = {"resnet18": (resnet18, 512), "resnet50": (resnet50, 2048)}


def cifar_resnet(depths: Sequence[int], width: int, num_classes: int, in_channels: int = 3) -> nn.Sequential:
    """A ResNet with the CIFAR stem (3x3 conv, no max-pool); depths (2, 2, 2, 2) at width 64 is ResNet-18.

    ``num_classes=0`` leaves out the classifier: the network then outputs its pooled features.
    """
    layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                               nn.ReLU(inplace=True)]
    channels = width
    for stage, depth in enumerate(depths):
        out = width * 2 ** stage
        for block in range(depth):
            stride = 2 if stage > 0 and block == 0 else 1
            downsample = None
            if stride != 1 or channels != out:
                downsample = nn.Sequential(nn.Conv2d(channels, out, 1, stride, bias=False), nn.BatchNorm2d(out))
            layers.append(BasicBlock(channels, out, stride, downsample))
            channels = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if num_classes:
        layers.append(nn.Linear(channels, num_classes))
    return nn.Sequential(*layers)


def build_backbone(spec: dict[str, Any]) -> tuple[nn.Module, int]:
    """A feature extractor and its output width, from ``{"arch": "cifar", "depths": [...], "width": w,
    "in_channels": c}`` or ``{"arch": "resnet18" | "resnet50"}`` (ImageNet stem, random init)."""
    arch = spec["arch"]
    if arch == "cifar":
        depths, width = spec["depths"], spec["width"]
        return cifar_resnet(depths, width, 0, spec.get("in_channels", 3)), width * 2 ** (len(depths) - 1)
    if arch in _TORCHVISION:
        factory, features = _TORCHVISION[arch]
        net = factory(weights=None)
        net.fc = nn.Identity()
        return net, features
    raise ValueError(f"unknown backbone arch {arch!r}; valid: cifar, {', '.join(_TORCHVISION)}")
