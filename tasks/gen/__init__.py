"""Image generation: a DDPM (diffusers' UNet2DModel + DDPMScheduler) scored by Fréchet distance, trained by
iterations -- the paper's generative benchmark.

Each evaluation generates one sample per reference image of its split and scores their Fréchet distance to
those images: ``val`` against held-out training images (the digits' val split; ``val_size`` CIFAR-10
training images; CelebA's official val partition), ``test`` against the test images (the digits' test split;
the CIFAR-10 test set; CelebA's test partition), at most ``fid_samples`` of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sema_suite.data import HeldOutSplits, check_val_size, dataloader, evaluation_config
from sema_suite.errors import DatasetMissing
from sema_suite.knobs import Rule, count
from sema_suite.optim import optimizer_config
from sema_suite.task import BuildContext, Metric, Preset, Task

CIFAR_TRAIN = 50_000

# The DDPM paper's CIFAR-10 network (35.7M parameters): 128 channels x (1, 2, 2, 2), two residual blocks per
# resolution, self-attention at 16x16, dropout 0.1 -- in diffusers' terms, google/ddpm-cifar10-32's config.
_DDPM_CIFAR10_UNET = {
    "block_out_channels": [128, 256, 256, 256], "layers_per_block": 2,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
    "attention_head_dim": None, "norm_num_groups": 32, "norm_eps": 1e-6, "downsample_padding": 0,
    "flip_sin_to_cos": False, "freq_shift": 1, "dropout": 0.1,
}
# The DDIM paper's CelebA 64x64 network: 128 channels x (1, 2, 2, 2, 4), attention at 16x16, dropout 0.1.
_DDIM_CELEBA_UNET = {
    **_DDPM_CIFAR10_UNET, "block_out_channels": [128, 256, 256, 256, 512],
    "down_block_types": ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
}
# DDPM's recipe: Adam 2e-4, batch 128, 5,000 warm-up iterations, gradient clipping at 1, 800k iterations,
# EMA decay 0.9999. Evaluations sample with 100 deterministic DDIM steps (the full 1,000-step chain:
# sampler=ddpm), one sample per reference image, at most fid_samples of them. CIFAR-10 holds val_size = 5,000
# training images out (10 %, class-balanced) as the val reference (so val FID uses 5,000 samples) and tests
# against its 10,000 test images; final runs train on all 50,000 (--set val_size=0). The DDPM paper's FID
# compares 50,000 samples with the training images: not comparable with these numbers.
# Averaging: DDPM's decay 0.9999 (the ema baseline is the recipe's), which lags ~10,000 iterations -- 28 passes
# over CIFAR-10 at batch 128. A switch after every pass would copy back an average that has taken in ~3 % of
# that pass's progress, and SEMA would stall by construction; so the switch comes every 50,000 iterations
# (the evaluation interval: 16 switches in 800k), which keeps the lag at a fifth of the switch period, as in the
# authors' tuned CIFAR setting (0.99 at ~500 steps per epoch). Decay warm-up over the 5,000-iteration LR warm-up.
_PAPER_AVERAGING = {"decay": 0.9999, "ema_warmup_iters": 5000, "ema_warmup_factor": 0.9, "switch_interval_iters": 50_000}
_PAPER_PARAMS = {"iters": 800_000, "val_interval": 50_000, "batch_size": 128, "lr": 2e-4, "lr_warmup_iters": 5_000,
                 "grad_clip": 1.0, "num_workers": None, "num_train_timesteps": 1000, "sampler": "ddim",
                 "sample_steps": 100, "fid_samples": 10_000, "eval_batch_size": 500}


class Generation(HeldOutSplits, Task):
    name = "gen"
    description = "image generation, DDPM (digits offline with fid_digits; CIFAR-10 32x32, CelebA 64x64)"
    metrics = (
        Metric("fid", higher_is_better=False, primary=True,
               description="Fréchet Inception Distance (Inception-v3 pool3 features) of samples vs real images"),
        Metric("fid_digits", higher_is_better=False,
               description="Fréchet distance in the features of the project's own digits classifier (tiny "
                           "preset; not comparable with Inception FID)"),
    )
    by_epoch = False
    rules = {"channels": Rule(list), "num_train_timesteps": count(), "sampler": Rule(str, choices=("ddim", "ddpm")),
             "sample_steps": count(), "fid_samples": count(0)}
    presets = {
        # 16x16 digits, a 0.2M-parameter UNet, Adam 2e-3 for 400 iterations of batch 64 (~24 passes over the
        # 1,079 training digits); every 100 iterations, 359 samples (one per validation digit) from 20 DDIM
        # steps are scored with fid_digits, and at the end 359 against the test digits. The averaging horizon
        # is scaled to the run as in the other tiny presets: decay 0.95 (~20 iterations, about one pass; 0.98
        # kept sema's FID at 4-5x none's over the first 200 iterations), switching after every pass (17
        # iterations).
        "tiny": Preset(
            name="tiny",
            description="sklearn digits 16x16, small UNet, 400 iterations, fid_digits (CPU, ~2.5 min)",
            dataset="digits",
            model="ddpm-unet-tiny",
            params={"iters": 400, "val_interval": 100, "batch_size": 64, "optimizer": "adam", "lr": 2e-3,
                    "lr_warmup_iters": 20,
                    "grad_clip": 1.0, "num_workers": 0, "image_size": 16, "channels": [16, 32],
                    "num_train_timesteps": 1000, "sampler": "ddim", "sample_steps": 20, "fid_samples": 0,
                    "eval_batch_size": 359},
            averaging={"decay": 0.95},
            optimizers={"adamw": {"lr": 2e-3, "weight_decay": 0.01}, "sgd": {"lr": 0.05, "weight_decay": 0.0, "momentum": 0.9}},
            offline=True,
            primary_metric="fid_digits",
        ),
        # The paper's regime on a CPU: the tiny data at batch 32 (34 iterations a pass) for 100 passes (3,400
        # iterations, 100 switches), a narrower UNet (8/16 channels); fid_digits on 359 samples from 20 DDIM steps
        # every 10 passes. Decay 0.8 lags ~4 iterations, an eighth of a pass.
        "long": Preset(
            name="long",
            description="sklearn digits 16x16, narrow UNet, 100 passes of 34 iterations, fid_digits (CPU, offline)",
            dataset="digits",
            model="ddpm-unet-tiny",
            params={"iters": 3400, "val_interval": 340, "batch_size": 32, "optimizer": "adam", "lr": 2e-3,
                    "weight_decay": 0.0, "momentum": 0.9, "lr_warmup_iters": 100, "grad_clip": 1.0, "num_workers": 0,
                    "image_size": 16, "channels": [8, 16], "num_train_timesteps": 1000, "sampler": "ddim",
                    "sample_steps": 20, "fid_samples": 0, "eval_batch_size": 359},
            averaging={"decay": 0.8},
            optimizers={"adamw": {"lr": 2e-3, "weight_decay": 0.01}, "sgd": {"lr": 0.05, "weight_decay": 0.0, "momentum": 0.9}},
            offline=True,
            primary_metric="fid_digits",
        ),
        "cifar10": Preset(
            name="cifar10",
            description="CIFAR-10 32x32, DDPM UNet (35.7M), 800k iterations, Inception FID (GPU)",
            dataset="cifar10",
            model="ddpm-unet-cifar10",
            params=dict(_PAPER_PARAMS, image_size=32, val_size=5000),
            averaging=_PAPER_AVERAGING,
        ),
        "celeba64": Preset(
            name="celeba64",
            description="CelebA 64x64 from --data-root, DDIM-paper UNet, 800k iterations, Inception FID (GPU)",
            dataset="celeba64",
            model="ddpm-unet-celeba64",
            params=dict(_PAPER_PARAMS, image_size=64, eval_batch_size=250),
            averaging=_PAPER_AVERAGING,
        ),
    }

    def check_data(self, preset: Preset, ctx: BuildContext) -> None:
        root = Path(ctx.data_root)
        if preset.dataset == "cifar10":
            check_val_size(ctx.params, CIFAR_TRAIN, "cifar10")
        if preset.dataset == "cifar10" and not ctx.download and not (root / "cifar-10-batches-py").is_dir():
            raise DatasetMissing("cifar10", root, f"  {root}/cifar-10-batches-py/  (torchvision's python version)",
                                 hint="add --download to fetch it")
        if preset.dataset == "celeba64":
            needed = [root / "celeba" / "img_align_celeba", root / "celeba" / "list_eval_partition.txt"]
            if not all(p.exists() for p in needed):
                raise DatasetMissing("celeba64", root, f"  {needed[0]}/000001.jpg ...  (aligned and cropped)\n"
                                     f"  {needed[1]}  (the official train/val/test partition)")

    def build_config(self, preset: Preset, ctx: BuildContext) -> dict[str, Any]:
        from sema_tasks.gen import modules  # noqa: F401  (registers the components)

        p = ctx.params
        size = p["image_size"]
        reference_limit = p["fid_samples"] or None
        if preset.dataset == "digits":
            data = {"type": "DigitsImages", "image_size": size}
            channels = 1
            unet = {"block_out_channels": p["channels"], "layers_per_block": 1,
                    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
                    "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "norm_num_groups": 8}
            metric = {"type": "FrechetDistance", "name": "fid_digits", "features": "digits", "image_size": size}
        else:
            if preset.dataset == "cifar10":
                check_val_size(p, CIFAR_TRAIN, "cifar10")
                data = {"type": "CifarImages", "root": str(ctx.data_root), "download": ctx.download,
                        "val_size": p["val_size"]}
                unet = _DDPM_CIFAR10_UNET
            else:
                data = {"type": "CelebAImages", "root": str(ctx.data_root), "image_size": size}
                unet = _DDIM_CELEBA_UNET
            channels = 3
            metric = {"type": "FrechetDistance", "name": "fid", "features": "inception", "image_size": size}

        def loader(split: str) -> dict[str, Any]:
            train = split == "train"
            if train:  # DDPM trains on random horizontal flips of the natural images
                dataset = {**data, "split": split, **({"flip": True} if channels == 3 else {})}
            else:  # the reference images of the Fréchet distance
                dataset = {**data, "split": split, "limit": reference_limit}
            return dataloader(dataset, p, train, batch_size=p["batch_size" if train else "eval_batch_size"])

        return {
            "model": {"type": "DenoisingDiffusion",
                      "unet": {**unet, "sample_size": size, "in_channels": channels, "out_channels": channels},
                      "num_train_timesteps": p["num_train_timesteps"], "sampler": p["sampler"],
                      "sample_steps": p["sample_steps"]},
            "train_dataloader": loader("train"),
            **evaluation_config(p, loader, metric),
            "train_cfg": {"type": "IterBasedTrainLoop", "max_iters": p["iters"], "val_interval": p["val_interval"]},
            "optim_wrapper": {"type": "OptimWrapper", "optimizer": optimizer_config(p, "adam"),
                              "clip_grad": {"max_norm": p["grad_clip"]}},
            "param_scheduler": [{"type": "LinearLR", "start_factor": 1e-3, "by_epoch": False,
                                 "begin": 0, "end": p["lr_warmup_iters"]}],
            "custom_hooks": [{"type": "PreviewHook", "job_dir": str(Path(ctx.work_dir).parent)}],
        }


TASK = Generation()
