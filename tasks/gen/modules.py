"""mmengine components of the generation task: image datasets in [-1, 1], a DDPM (diffusers), Fréchet distance."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from diffusers.utils.torch_utils import randn_tensor
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, METRICS, MODELS
from torch.utils.data import Dataset

from sema_suite.data import load_digits_split, split_indices
from sema_suite.results.previews import image_grid  # the import registers PreviewHook, which the config names


class _Images(Dataset):
    """Items ``{"inputs": C x H x W in [-1, 1], "index": i}``; ``limit`` keeps the first images only."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit

    def __len__(self) -> int:
        return min(self._size(), self.limit or self._size())

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"inputs": self._image(index) * 2 - 1, "index": index}

    def _size(self) -> int:
        raise NotImplementedError

    def _image(self, index: int) -> torch.Tensor:
        raise NotImplementedError


@DATASETS.register_module()
class DigitsImages(_Images):
    """scikit-learn's handwritten digits, upsampled to ``image_size`` (the suite's fixed train/val/test split)."""

    def __init__(self, split: str, image_size: int = 16, limit: int | None = None) -> None:
        super().__init__(limit)
        self.images = load_digits_split(split, image_size)[0]

    def _size(self) -> int:
        return len(self.images)

    def _image(self, index: int) -> torch.Tensor:
        return self.images[index]


# DDIM's CelebA crop (its datasets/__init__.py: cx 89, cy 121, +-64): 128 x 128 from row 57, column 25
DDIM_CELEBA_BOX = (57, 25, 128, 128)


def _transform(box: tuple[int, int, int, int] | None, size: int, flip: bool):
    """Crop ``box`` (top, left, height, width; None: the whole image), resize to ``size``, flip when training."""
    from torchvision import transforms
    from torchvision.transforms import functional

    steps = ([transforms.Lambda(lambda image: functional.crop(image, *box))] if box else []) + [transforms.Resize(size)]
    return transforms.Compose(steps + ([transforms.RandomHorizontalFlip()] if flip else []) + [transforms.ToTensor()])


@DATASETS.register_module()
class CifarImages(_Images):
    """torchvision's CIFAR-10 images (labels unused), random horizontal flips when ``flip`` (as DDPM trains):
    ``train`` the training set less the ``val_size`` images (class-balanced, fixed) that form ``val``, ``test``
    the test set."""

    def __init__(self, root: str, split: str, flip: bool = False, download: bool = False,
                 limit: int | None = None, val_size: int = 0) -> None:
        from torchvision.datasets import CIFAR10

        super().__init__(limit)
        self.data = CIFAR10(root, train=split != "test", download=download, transform=_transform(None, 32, flip))
        self.index = (list(range(len(self.data))) if split == "test"
                      else split_indices(split, len(self.data), val_size, self.data.targets).tolist())

    def _size(self) -> int:
        return len(self.index)

    def _image(self, index: int) -> torch.Tensor:
        return self.data[self.index[index]][0]


CELEBA_PARTITIONS = {"train": "0", "val": "1", "test": "2"}


@DATASETS.register_module()
class CelebAImages(_Images):
    """Aligned CelebA, cropped as DDIM does (:data:`DDIM_CELEBA_BOX`) and resized: the DDIM paper's 64x64 CelebA, read from
    ``root/celeba/img_align_celeba/*.jpg`` with the official ``root/celeba/list_eval_partition.txt``."""

    def __init__(self, root: str, split: str, image_size: int = 64, flip: bool = False,
                 limit: int | None = None) -> None:
        super().__init__(limit)
        folder = Path(root) / "celeba"
        partition = CELEBA_PARTITIONS[split]
        lines = (folder / "list_eval_partition.txt").read_text().split("\n")
        self.files = [folder / "img_align_celeba" / name for name, part in
                      (line.split() for line in lines if line.strip()) if part == partition]
        self.transform = _transform(DDIM_CELEBA_BOX, image_size, flip)

    def _size(self) -> int:
        return len(self.files)

    def _image(self, index: int) -> torch.Tensor:
        from PIL import Image

        with Image.open(self.files[index]) as image:
            return self.transform(image.convert("RGB"))


@MODELS.register_module()
class DenoisingDiffusion(BaseModel):
    """DDPM: a diffusers ``UNet2DModel`` trained to predict the noise that a ``DDPMScheduler`` added.

    Sampling runs the reverse process of ``sampler`` (``"ddim"``, deterministic, or ``"ddpm"``, ancestral) in
    ``sample_steps`` steps. Item ``i`` of an evaluation always starts from (and, for ``"ddpm"``, draws) the
    same noise -- seeded by ``sample_seed`` and ``i`` -- so evaluations differ only by the weights.
    """

    def __init__(self, unet: dict[str, Any], num_train_timesteps: int = 1000, beta_schedule: str = "linear",
                 sampler: str = "ddim", sample_steps: int = 50, sample_seed: int = 0,
                 data_preprocessor: dict | None = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        if sampler not in ("ddim", "ddpm"):
            raise ValueError(f"sampler must be 'ddim' or 'ddpm', got {sampler!r}")
        self.unet = UNet2DModel(**unet)
        self.noise_scheduler = DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule)
        self.sampler = (DDIMScheduler if sampler == "ddim" else DDPMScheduler)(
            num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule)
        self.sample_steps = sample_steps
        self.sample_seed = sample_seed

    def forward(self, inputs: torch.Tensor, index: torch.Tensor | None = None, mode: str = "tensor"):
        if mode == "loss":
            noise = torch.randn_like(inputs)
            steps = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (len(inputs),),
                                  device=inputs.device)
            noisy = self.noise_scheduler.add_noise(inputs, noise, steps)
            return {"loss": F.mse_loss(self.unet(noisy, steps).sample, noise)}
        index = torch.arange(len(inputs)) if index is None else index
        fakes = self.sample(index, inputs.shape[1:], inputs.device)
        if mode == "predict":
            return [{"fake": (f + 1) / 2, "real": (r + 1) / 2} for f, r in zip(fakes, inputs)]
        return fakes

    @torch.no_grad()
    def sample(self, index: Sequence[int], shape: Sequence[int], device: torch.device) -> torch.Tensor:
        """Images in [-1, 1], one per item index."""
        generators = [torch.Generator().manual_seed(self.sample_seed * 1_000_000_007 + int(i)) for i in index]
        x = randn_tensor((len(generators), *shape), generator=generators, device=device)
        self.sampler.set_timesteps(self.sample_steps, device=device)
        for t in self.sampler.timesteps:
            x = self.sampler.step(self.unet(x, t).sample, t, x, generator=generators).prev_sample
        return x.clamp(-1, 1)


def inception_pixels(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] as the uint8 pixels Inception FID reads, rounded: torchmetrics' ``normalize=True``
    truncates (``(x * 255).byte()``), which after the [-1, 1] round trip drops 63 of the 256 levels by one."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


@METRICS.register_module()
class FrechetDistance(BaseMetric):
    """torchmetrics' ``FrechetInceptionDistance`` between the evaluation's real images and generated samples.

    ``features="inception"``: the standard Inception-v3 pool3 features (torch-fidelity downloads the weights
    on first use), reported as ``fid``. ``features="digits"``: the project's own digits classifier
    (:mod:`sema_tasks.gen.digits_features`, offline), reported under ``name`` (``fid_digits``). The torchmetrics
    object is built at the first evaluation, so building a config or a model never downloads anything.
    The real images' statistics are accumulated at the first evaluation and kept (the evaluation set and its
    order never change), so later evaluations -- and each job of a shared run -- only embed the samples.
    Evaluation runs in one process (the suite's launcher); also saves a grid of the first samples.
    """

    def __init__(self, name: str = "fid", features: str = "inception", image_size: int = 16,
                 preview_count: int = 64, **kwargs) -> None:
        super().__init__(**kwargs)
        if features not in ("inception", "digits"):
            raise ValueError(f"features must be 'inception' or 'digits', got {features!r}")
        self.name, self.features, self.image_size = name, features, image_size
        self.preview_count = preview_count
        self.preview: torch.Tensor | None = None  # written by sema_suite.results.previews.PreviewHook
        self._fid = None
        self._reals_known = False  # the real statistics are complete (after the first evaluation)
        self._samples: list[torch.Tensor] = []

    def _metric(self, device: torch.device):
        if self._fid is None:
            from torchmetrics.image.fid import FrechetInceptionDistance

            if self.features == "digits":
                from sema_tasks.gen.digits_features import load_digits_features

                self._fid = FrechetInceptionDistance(feature=load_digits_features(self.image_size),
                                                     reset_real_features=False)
            else:
                self._fid = FrechetInceptionDistance(feature=2048, reset_real_features=False)  # takes uint8
        return self._fid.to(device)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        fakes = torch.stack([s["fake"] for s in data_samples])
        reals = torch.stack([s["real"] for s in data_samples])
        fid = self._metric(fakes.device)
        pixels = inception_pixels if self.features == "inception" else (lambda images: images)
        if not self._reals_known:
            fid.update(pixels(reals), real=True)
        fid.update(pixels(fakes), real=False)
        self.results.append(len(fakes))
        if sum(len(s) for s in self._samples) < self.preview_count:
            self._samples.append(fakes.cpu())

    def compute_metrics(self, results: list) -> dict[str, float]:
        value = float(self._fid.compute())
        self._fid.reset()  # the generated images' statistics only
        self._reals_known = True
        samples = torch.cat(self._samples)[: self.preview_count]
        self._samples = []
        self.preview = image_grid(samples, ncol=8, scale=max(1, 64 // samples.shape[-1]))
        return {self.name: value}
