"""mmengine components of the video prediction task: moving-digits sequences, SimVP, MSE / MAE / SSIM."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, METRICS, MODELS
from torch import nn
from torch.utils.data import Dataset

from sema_suite.data import load_digits_split, split_indices
from sema_suite.results.previews import image_grid  # the import registers PreviewHook, which the config names

# -- data ---------------------------------------------------------------------------------------------------


def moving_digits(digits: torch.Tensor, frames: int, size: int, num_digits: int, speed: float,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """One ``frames x 1 x size x size`` sequence in [0, 1]: ``num_digits`` random digits (``N x s x s``) moving
    in straight lines at ``speed`` pixels per frame and bouncing off the edges (Moving MNIST's recipe; where
    digits overlap, the brighter pixel wins)."""
    digit_size = digits.shape[-1]
    limit = size - digit_size
    video = torch.zeros(frames, 1, size, size)
    for _ in range(num_digits):
        digit = digits[torch.randint(len(digits), (1,), generator=generator).item()].float()
        digit = digit / 255 if digits.dtype == torch.uint8 else digit
        position = torch.rand(2, generator=generator) * limit
        angle = torch.rand(1, generator=generator).item() * 2 * math.pi
        velocity = torch.tensor([math.sin(angle), math.cos(angle)]) * speed
        for t in range(frames):
            y, x = position.round().int().tolist()
            patch = video[t, 0, y:y + digit_size, x:x + digit_size]
            torch.maximum(patch, digit, out=patch)
            position += velocity
            for axis in range(2):  # bounce: reflect the position and the velocity at the walls
                if position[axis] < 0 or position[axis] > limit:
                    position[axis] = -position[axis] if position[axis] < 0 else 2 * limit - position[axis]
                    velocity[axis] = -velocity[axis]
    return video


class _MovingDigits(Dataset):
    """Items ``{"inputs": T_in x 1 x H x W, "targets": T_out x 1 x H x W}`` in [0, 1].

    Training sequences are new at every access (drawn from the global RNG, which mmengine seeds per job);
    evaluation sequences are fixed: sequence ``i`` is drawn from a generator seeded with ``i`` (``val``) or
    ``TEST_SEED + i`` (``test``), the same for every job.
    """

    TEST_SEED = 1_000_000_000  # test sequences never share a seed with val ones

    def __init__(self, digits: torch.Tensor, split: str, num_sequences: int, frames_in: int, frames_out: int,
                 frame_size: int, num_digits: int, speed: float) -> None:
        self.digits, self.train = digits, split == "train"
        self.seed_offset = self.TEST_SEED if split == "test" else 0
        self.num_sequences, self.frames_in = num_sequences, frames_in
        self.draw = {"frames": frames_in + frames_out, "size": frame_size, "num_digits": num_digits, "speed": speed}

    def __len__(self) -> int:
        return self.num_sequences

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        generator = None if self.train else torch.Generator().manual_seed(index + self.seed_offset)
        video = moving_digits(self.digits, generator=generator, **self.draw)
        return {"inputs": video[:self.frames_in], "targets": video[self.frames_in:]}


@DATASETS.register_module()
class MovingDigits(_MovingDigits):
    """Moving scikit-learn digits (upsampled to ``digit_size``); the train, val and test splits move disjoint
    digits (the suite's fixed split of the digits)."""

    def __init__(self, split: str, num_sequences: int, frames_in: int = 5, frames_out: int = 5,
                 frame_size: int = 32, digit_size: int = 12, num_digits: int = 2, speed: float = 2.0) -> None:
        digits = load_digits_split(split, digit_size)[0][:, 0]
        super().__init__(digits, split, num_sequences, frames_in, frames_out, frame_size, num_digits, speed)


@DATASETS.register_module()
class MovingMNIST(_MovingDigits):
    """Moving MNIST sequences, 64x64, drawn from torchvision's MNIST training digits (as Srivastava et al. and
    OpenSTL do: two 28x28 digits, 3.6 pixels per frame): ``train`` fresh ones from all but ``val_size`` digits
    (class-balanced, fixed), ``val`` fixed ones from those ``val_size``."""

    def __init__(self, root: str, split: str = "train", num_sequences: int = 10_000, frames_in: int = 10,
                 frames_out: int = 10, speed: float = 3.6, download: bool = False, val_size: int = 0) -> None:
        from torchvision.datasets import MNIST

        mnist = MNIST(root, train=True, download=download)
        digits = mnist.data[torch.as_tensor(split_indices(split, len(mnist.data), val_size, mnist.targets))]
        super().__init__(digits, split, num_sequences, frames_in, frames_out, 64, 2, speed)


@DATASETS.register_module()
class MovingMNISTTestFile(Dataset):
    """The standard fixed Moving MNIST test set ``root/moving_mnist/mnist_test_seq.npy`` (20 frames x 10,000
    sequences x 64 x 64, uint8): the first ``frames_in`` frames are the input, the next ``frames_out`` the
    targets."""

    FILE = "moving_mnist/mnist_test_seq.npy"

    def __init__(self, root: str, frames_in: int = 10, frames_out: int = 10) -> None:
        import numpy as np

        self.videos = torch.from_numpy(np.load(Path(root) / self.FILE)).transpose(0, 1)  # N x 20 x 64 x 64
        self.frames_in, self.frames_out = frames_in, frames_out

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        video = self.videos[index, : self.frames_in + self.frames_out].unsqueeze(1).float() / 255
        return {"inputs": video[:self.frames_in], "targets": video[self.frames_in:]}


# -- SimVP (Gao et al. 2022; the gSTA translator of SimVP v2 / OpenSTL) -------------------------------------


class _ConvSC(nn.Module):
    """3x3 conv (stride 2 to go down, conv + pixel shuffle to go up), GroupNorm(2), SiLU."""

    def __init__(self, cin: int, cout: int, down: bool = False, up: bool = False) -> None:
        super().__init__()
        if up:
            self.conv = nn.Sequential(nn.Conv2d(cin, cout * 4, 3, padding=1), nn.PixelShuffle(2))
        else:
            self.conv = nn.Conv2d(cin, cout, 3, stride=2 if down else 1, padding=1)
        self.norm = nn.GroupNorm(2, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self.norm(self.conv(x)))


class _GatedSpatialAttention(nn.Module):
    """gSTA's large-kernel attention (a 21x21 field from a 5x5 and a dilated 7x7 depth-wise conv), gated."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj_in = nn.Conv2d(dim, dim, 1)
        self.local = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.dilated = nn.Conv2d(dim, dim, 7, padding=9, groups=dim, dilation=3)
        self.gate = nn.Conv2d(dim, 2 * dim, 1)
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.gate(self.dilated(self.local(F.gelu(self.proj_in(x))))).chunk(2, dim=1)
        return self.proj_out(torch.sigmoid(gate) * value) + x


class _GSTABlock(nn.Module):
    """Norm -> gated spatial attention and norm -> conv MLP (with a depth-wise 3x3), each with a layer scale;
    a 1x1 conv when the width changes."""

    def __init__(self, cin: int, cout: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(cin * mlp_ratio)
        self.norm1, self.norm2 = nn.BatchNorm2d(cin), nn.BatchNorm2d(cin)
        self.attn = _GatedSpatialAttention(cin)
        self.mlp = nn.Sequential(nn.Conv2d(cin, hidden, 1), nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden),
                                 nn.GELU(), nn.Conv2d(hidden, cin, 1))
        self.scale1 = nn.Parameter(torch.full((cin, 1, 1), 1e-2))
        self.scale2 = nn.Parameter(torch.full((cin, 1, 1), 1e-2))
        self.reduce = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                nn.init.normal_(m.weight, 0, math.sqrt(2.0 / fan_out))
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.scale1 * self.attn(self.norm1(x))
        x = x + self.scale2 * self.mlp(self.norm2(x))
        return self.reduce(x)


class SimVPNet(nn.Module):
    """Encoder (per frame, ``n_spatial`` conv layers, every second one halving the size), translator
    (``n_temporal`` gSTA blocks over the frames stacked as channels), decoder (mirrors the encoder, with a
    skip from its first layer). Predicts as many frames as it is given."""

    def __init__(self, frames: int, channels: int = 1, hid_s: int = 64, hid_t: int = 512, n_spatial: int = 4,
                 n_temporal: int = 8, mlp_ratio: float = 8.0) -> None:
        super().__init__()
        if n_temporal < 2:
            raise ValueError("SimVP's translator needs n_temporal >= 2")
        down = [i % 2 == 1 for i in range(n_spatial)]  # False, True, False, True, ...
        self.encoder = nn.ModuleList(_ConvSC(channels if i == 0 else hid_s, hid_s, down=d) for i, d in enumerate(down))
        self.decoder = nn.ModuleList(_ConvSC(hid_s, hid_s, up=u) for u in reversed(down))
        self.readout = nn.Conv2d(hid_s, channels, 1)
        widths = [frames * hid_s] + [hid_t] * (n_temporal - 1) + [frames * hid_s]
        self.translator = nn.Sequential(*(_GSTABlock(a, b, mlp_ratio) for a, b in itertools.pairwise(widths)))
        for m in [*self.encoder.modules(), *self.decoder.modules()]:
            if isinstance(m, nn.Conv2d):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = frames.shape
        x = skip = self.encoder[0](frames.reshape(b * t, c, h, w))
        for layer in self.encoder[1:]:
            x = layer(x)
        _, ch, hh, ww = x.shape
        x = self.translator(x.reshape(b, t * ch, hh, ww)).reshape(b * t, ch, hh, ww)
        for layer in self.decoder[:-1]:
            x = layer(x)
        x = self.readout(self.decoder[-1](x + skip))
        return x.reshape(b, t, c, h, w)


@MODELS.register_module()
class VideoPredictor(BaseModel):
    """SimVP trained with the MSE between predicted and true future frames."""

    def __init__(self, frames_in: int, frames_out: int, channels: int = 1, data_preprocessor: dict | None = None,
                 **simvp: Any) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        if frames_in != frames_out:
            raise ValueError(f"SimVP predicts as many frames as it sees; got {frames_in} -> {frames_out}")
        self.net = SimVPNet(frames_in, channels, **simvp)

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor | None = None, mode: str = "tensor"):
        predictions = self.net(inputs)
        if mode == "loss":
            return {"loss": F.mse_loss(predictions, targets)}
        if mode == "predict":
            return [{"input": i, "target": t, "prediction": p}  # unclamped: OpenSTL scores MSE/MAE on the raw output
                    for i, t, p in zip(inputs, targets, predictions.detach())]
        return predictions


# -- metrics ------------------------------------------------------------------------------------------------


@METRICS.register_module()
class FramePredictionMetrics(BaseMetric):
    """``mse`` and ``mae`` per frame (summed over the frame's pixels, in [0, 1] units, averaged over frames and
    sequences) of the raw predictions, and ``ssim`` (torchmetrics, Gaussian 11x11 window, averaged over frames) of
    the predictions clipped to [0, 1] -- OpenSTL's conventions (its ``metric()`` clips for SSIM and PSNR only).

    Also keeps an input / truth / prediction strip of the first ``preview_count`` sequences for the dashboard.
    """

    def __init__(self, preview_count: int = 2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.preview_count = preview_count
        self.preview: torch.Tensor | None = None  # written by sema_suite.results.previews.PreviewHook
        self._strips: list[torch.Tensor] = []

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        from torchmetrics.functional.image import structural_similarity_index_measure

        pred = torch.stack([s["prediction"] for s in data_samples]).float()
        true = torch.stack([s["target"] for s in data_samples]).float()
        ssim = structural_similarity_index_measure(pred.clamp(0, 1).flatten(0, 1), true.flatten(0, 1), data_range=1.0,
                                                   reduction="none").view(pred.shape[:2]).mean(1)
        mse = (pred - true).square().flatten(2).sum(2).mean(1)
        mae = (pred - true).abs().flatten(2).sum(2).mean(1)
        self.results.extend(torch.stack([mse, mae, ssim], 1).cpu().tolist())
        for sample in data_samples[: self.preview_count - len(self._strips)]:
            self._strips.append(torch.cat([sample["input"], sample["target"], sample["prediction"].clamp(0, 1)]).cpu())

    def compute_metrics(self, results: list) -> dict[str, float]:
        mse, mae, ssim = torch.tensor(results, dtype=torch.float64).mean(0).tolist()
        frames = self._strips[0].shape[0] // 3
        self.preview = image_grid(torch.cat(self._strips), ncol=frames, scale=max(1, 64 // self._strips[0].shape[-1]))
        self._strips = []
        return {"mse": mse, "mae": mae, "ssim": ssim}
