"""Preview images of an evaluation (generated samples, predicted frames), saved as PNG in the job directory.

A metric that has something to show sets ``self.preview`` (a ``C x H x W`` float image in [0, 1]) in its
``compute_metrics``; :class:`PreviewHook` writes it after the evaluation as

    results/<job_id>/samples/iter_<NNNNNNNN>.png

where ``NNNNNNNN`` is the ``iter`` column of that evaluation's rows in ``metrics.csv`` (zero-padded, so
the names sort in training order). The dashboard shows them next to the curves.
"""

from __future__ import annotations

from pathlib import Path

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

PREVIEW_DIR = "samples"


def preview_path(job_dir: Path, iteration: int) -> Path:
    return Path(job_dir) / PREVIEW_DIR / f"iter_{iteration:08d}.png"


def image_grid(images: torch.Tensor, ncol: int, pad: int = 1, scale: int = 1) -> torch.Tensor:
    """Tile ``N x C x H x W`` images (in [0, 1]) into one ``C x H' x W'`` image, ``ncol`` per row, each
    enlarged ``scale`` times (nearest) so that tiny images stay visible."""
    from torchvision.utils import make_grid

    images = images.detach().float().cpu().clamp(0, 1)
    if scale > 1:
        images = images.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    return make_grid(images, nrow=ncol, padding=pad, pad_value=1.0)


def save_png(image: torch.Tensor, path: Path) -> None:
    """Write a ``C x H x W`` image in [0, 1] (C = 1 or 3) through a temporary file, so readers never see half."""
    from PIL import Image

    array = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(tmp, format="PNG")
    tmp.replace(path)


@HOOKS.register_module()
class PreviewHook(Hook):
    """Saves the ``preview`` image of every validation metric that made one, named by the iteration, in the folder
    of the job whose weights were evaluated (in a shared run, each member's own)."""

    priority = "LOW"

    def __init__(self, job_dir: str) -> None:
        self.job_dir = Path(job_dir)  # the run's folder (a lone job's own)

    def after_val_epoch(self, runner, metrics=None) -> None:
        from sema_suite.method.hooks import evaluated_member

        member = evaluated_member(runner)
        folder = self.job_dir.parent / member if member and (self.job_dir.parent / member).is_dir() else self.job_dir
        for metric in getattr(runner.val_evaluator, "metrics", ()):
            image = getattr(metric, "preview", None)
            if image is not None:
                save_png(image, preview_path(folder, runner.iter))
                metric.preview = None
