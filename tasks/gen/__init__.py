"""Image generation: a DDPM (diffusers' UNet2DModel + DDPMScheduler) scored by Fréchet distance, trained by
iterations -- the paper's generative benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from suite.errors import DatasetMissing
from suite.task import BuildContext, Metric, Preset, Task

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
# EMA decay 0.9999. Evaluations sample with 100 deterministic DDIM steps against 10,000 training images (the
# papers' final numbers use 50,000: --set fid_samples=50000; the full 1,000-step chain: sampler=ddpm).
_PAPER_PARAMS = {"iters": 800_000, "val_interval": 50_000, "batch_size": 128, "lr": 2e-4, "warmup_iters": 5_000,
                 "grad_clip": 1.0, "num_workers": 4, "num_train_timesteps": 1000, "sampler": "ddim",
                 "sample_steps": 100, "fid_samples": 10_000, "eval_batch_size": 500}


class Generation(Task):
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
    presets = {
        # 16x16 digits, a 0.2M-parameter UNet, Adam 2e-3 for 400 iterations of batch 64 (~17 passes over the
        # 1,438 training digits); every 100 iterations, 359 samples (one per validation digit) from 20 DDIM
        # steps are scored with fid_digits (none: ~25 -> 15 -> 11 -> 9). The averaging horizon is scaled to the
        # run as in the other tiny presets: decay 0.95 (~20 iterations, under one pass; 0.98 kept sema's
        # FID at 4-5x none's over the first 200 iterations), switching after every pass (23 iterations).
        "tiny": Preset(
            name="tiny",
            description="sklearn digits 16x16, small UNet, 400 iterations, fid_digits (CPU, ~2.5 min)",
            dataset="digits",
            model="ddpm-unet-tiny",
            params={"iters": 400, "val_interval": 100, "batch_size": 64, "lr": 2e-3, "warmup_iters": 20,
                    "grad_clip": 1.0, "num_workers": 0, "image_size": 16, "channels": [16, 32],
                    "num_train_timesteps": 1000, "sampler": "ddim", "sample_steps": 20, "fid_samples": 0,
                    "eval_batch_size": 359},
            averaging={"decay": 0.95},
            offline=True,
        ),
        "cifar10": Preset(
            name="cifar10",
            description="CIFAR-10 32x32, DDPM UNet (35.7M), 800k iterations, Inception FID (GPU)",
            dataset="cifar10",
            model="ddpm-unet-cifar10",
            params=dict(_PAPER_PARAMS, image_size=32),
            averaging={"decay": 0.9999},
        ),
        "celeba64": Preset(
            name="celeba64",
            description="CelebA 64x64 from --data-root, DDIM-paper UNet, 800k iterations, Inception FID (GPU)",
            dataset="celeba64",
            model="ddpm-unet-celeba64",
            params=dict(_PAPER_PARAMS, image_size=64, eval_batch_size=250),
            averaging={"decay": 0.9999},
        ),
    }

    def check_data(self, preset: Preset, ctx: BuildContext) -> None:
        root = Path(ctx.data_root)
        if preset.dataset == "cifar10" and not ctx.download and not (root / "cifar-10-batches-py").is_dir():
            raise DatasetMissing("cifar10", root, f"  {root}/cifar-10-batches-py/  (torchvision's python version)",
                                 hint="add --download to fetch it")
        if preset.dataset == "celeba64":
            needed = [root / "celeba" / "img_align_celeba", root / "celeba" / "list_eval_partition.txt"]
            if not all(p.exists() for p in needed):
                raise DatasetMissing("celeba64", root, f"  {needed[0]}/000001.jpg ...  (aligned and cropped)\n"
                                     f"  {needed[1]}  (the official train/val/test partition)")

    def build_config(self, preset: Preset, ctx: BuildContext) -> dict[str, Any]:
        from tasks.gen import modules  # noqa: F401  (registers the components)

        p = ctx.params
        size = p["image_size"]
        reference_limit = p["fid_samples"] or None
        if preset.dataset == "digits":
            train_set = {"type": "DigitsImages", "split": "train", "image_size": size}
            reference = {"type": "DigitsImages", "split": "val", "image_size": size, "limit": reference_limit}
            channels = 1
            unet = {"block_out_channels": p["channels"], "layers_per_block": 1,
                    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
                    "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "norm_num_groups": 8}
            metric = {"type": "FrechetDistance", "name": "fid_digits", "features": "digits", "image_size": size}
        else:
            if preset.dataset == "cifar10":
                data = {"type": "CifarImages", "root": str(ctx.data_root), "download": ctx.download}
                unet = _DDPM_CIFAR10_UNET
            else:
                data = {"type": "CelebAImages", "root": str(ctx.data_root), "image_size": size}
                unet = _DDIM_CELEBA_UNET
            train_set = {**data, "split": "train", "flip": True}
            reference = {**data, "split": "train", "limit": reference_limit}
            channels = 3
            metric = {"type": "FrechetDistance", "name": "fid", "features": "inception", "image_size": size}

        def loader(dataset: dict[str, Any], batch_size: int, shuffle: bool) -> dict[str, Any]:
            return {"batch_size": batch_size, "num_workers": p["num_workers"],
                    "persistent_workers": p["num_workers"] > 0,
                    "sampler": {"type": "DefaultSampler", "shuffle": shuffle},
                    "collate_fn": {"type": "default_collate"}, "dataset": dataset}

        return {
            "model": {"type": "DenoisingDiffusion",
                      "unet": {**unet, "sample_size": size, "in_channels": channels, "out_channels": channels},
                      "num_train_timesteps": p["num_train_timesteps"], "sampler": p["sampler"],
                      "sample_steps": p["sample_steps"]},
            "train_dataloader": loader(train_set, p["batch_size"], shuffle=True),
            "val_dataloader": loader(reference, p["eval_batch_size"], shuffle=False),
            "val_evaluator": metric,
            "train_cfg": {"type": "IterBasedTrainLoop", "max_iters": p["iters"], "val_interval": p["val_interval"]},
            "val_cfg": {"type": "ValLoop"},
            "optim_wrapper": {"type": "OptimWrapper", "optimizer": {"type": "Adam", "lr": p["lr"]},
                              "clip_grad": {"max_norm": p["grad_clip"]}},
            "param_scheduler": [{"type": "LinearLR", "start_factor": 1e-3, "by_epoch": False,
                                 "begin": 0, "end": p["warmup_iters"]}],
            "custom_hooks": [{"type": "PreviewHook", "job_dir": str(Path(ctx.work_dir).parent)}],
        }


TASK = Generation()
