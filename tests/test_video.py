"""The video prediction task: moving-digits data, SimVP, the frame metrics, and a short real training run."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from PIL import Image

from sema_suite.errors import DatasetMissing
from sema_suite.running.dry_run import dry_run
from sema_suite.running.jobs import JobSpec
from sema_tasks.video import TASK
from sema_tasks.video.modules import FramePredictionMetrics, MovingDigits, VideoPredictor, moving_digits

from in_process import train_sema


def test_moving_digits_move_and_stay_in_the_frame() -> None:
    digit = torch.zeros(1, 4, 4)
    digit[0, 1:3, 1:3] = 1.0  # a 2x2 bright square inside a 4x4 digit
    video = moving_digits(digit, frames=30, size=10, num_digits=1, speed=1.5, generator=torch.Generator().manual_seed(1))
    assert video.shape == (30, 1, 10, 10)
    assert (video.flatten(1).sum(1) == 4).all()  # never clipped by the walls: it bounces
    centers = [torch.nonzero(frame[0]).float().mean(0) for frame in video]
    steps = torch.stack([b - a for a, b in itertools.pairwise(centers)]).norm(dim=1)
    assert steps.max() <= 1.5 + 2**0.5  # the speed, plus rounding to whole pixels
    assert steps.mean() > 1.0


def test_evaluation_sequences_are_fixed_and_training_ones_fresh() -> None:
    val_a, val_b = MovingDigits("val", 4), MovingDigits("val", 4)
    assert torch.equal(val_a[2]["inputs"], val_b[2]["inputs"]) and torch.equal(val_a[2]["targets"], val_b[2]["targets"])
    train = MovingDigits("train", 4)
    assert not torch.equal(train[0]["inputs"], train[0]["inputs"])
    item = val_a[0]
    assert item["inputs"].shape == item["targets"].shape == (5, 1, 32, 32)
    assert 0 <= item["inputs"].min() and item["inputs"].max() <= 1


def test_metrics_follow_their_definitions() -> None:
    metric = FramePredictionMetrics(preview_count=2)
    target = MovingDigits("val", 3)[0]["targets"]
    exact = {"input": target, "target": target, "prediction": target}
    off = {"input": target, "target": target, "prediction": (target + 0.1).clamp(max=1.0)}
    metric.process({}, [exact, exact])
    perfect = metric.compute_metrics(metric.results)
    assert perfect == pytest.approx({"mse": 0.0, "mae": 0.0, "ssim": 1.0})
    assert metric.preview.shape == (3, 2 * 3 * 65 + 1, 5 * 65 + 1)  # 2 sequences x (input, truth, prediction)
    metric.results = []
    metric.process({}, [off])
    errors = (off["prediction"] - target).flatten(1)
    scores = metric.compute_metrics(metric.results)
    assert scores["mse"] == pytest.approx(errors.square().sum(1).mean().item(), rel=1e-5)  # per frame, summed
    assert scores["mae"] == pytest.approx(errors.abs().sum(1).mean().item(), rel=1e-5)
    assert scores["ssim"] < 1.0

    # as OpenSTL: MSE and MAE of the raw output, SSIM of the output clipped to [0, 1]
    over = {"input": target, "target": target, "prediction": target + 0.5}
    metric.results = []
    metric.process({}, [over])
    scores = metric.compute_metrics(metric.results)
    assert scores["mse"] == pytest.approx(0.25 * target[0].numel(), rel=1e-5)
    clipped = FramePredictionMetrics()
    clipped.process({}, [{**over, "prediction": over["prediction"].clamp(0, 1)}])
    assert scores["ssim"] == pytest.approx(clipped.compute_metrics(clipped.results)["ssim"])


def test_simvp_predicts_as_many_frames_as_it_sees() -> None:
    model = VideoPredictor(5, 5, hid_s=8, hid_t=16, n_spatial=4, n_temporal=2, mlp_ratio=2.0)
    frames = torch.rand(2, 5, 1, 32, 32)
    assert model(frames).shape == frames.shape
    model(frames, frames, mode="loss")["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="as many frames"):
        VideoPredictor(10, 5)


def test_dry_run_builds_every_preset_and_names_the_missing_test_file(tmp_path: Path) -> None:
    for preset in TASK.presets:
        text = dry_run(JobSpec("video", preset, "sema", 0).resolve(), tmp_path, tmp_path / "no-data")
        assert "VideoPredictor" in text
    assert "46.77M parameters" in dry_run(JobSpec("video", "mmnist", "none", 0).resolve(), tmp_path, tmp_path)
    job = JobSpec("video", "mmnist", "none", 0).resolve()
    with pytest.raises(DatasetMissing, match="mnist_test_seq.npy"):
        TASK.check_data(job.preset, job.context(tmp_path, tmp_path / "w"))


@pytest.mark.slow
def test_tiny_job_learns_and_sema_switches_every_epoch(tmp_path: Path) -> None:
    """Three short epochs of the real tiny job: it beats predicting black frames (MSE 53.7 on these
    sequences), SEMA switches at the end of epochs 2 and 3, every evaluation leaves its rows and its strip."""
    overrides = (("epochs", 3), ("train_sequences", 256), ("val_sequences", 64), ("batch_size", 16))
    folder, sema = train_sema("video", overrides, tmp_path)
    assert [s["epoch"] for s in sema.switches] == [2, 3]
    rows = folder.metrics()
    assert [(r["epoch"], r["metric"]) for r in rows] == [(e, m) for e in (1, 2, 3) for m in ("mse", "mae", "ssim")]
    first, final = ({r["metric"]: r["value"] for r in rows if r["epoch"] == e} for e in (1, 3))
    assert final["mse"] < 45 and final["ssim"] > first["ssim"]
    for iteration in (16, 32, 48):
        with Image.open(folder.path / "samples" / f"iter_{iteration:08d}.png") as png:
            assert png.size == (5 * 65 + 1, 2 * 3 * 65 + 1)
