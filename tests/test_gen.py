"""The generation task: the digits FID extractor, the DDPM sampler, the metric, and a short real training run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from sema_suite.errors import DatasetMissing
from sema_suite.running.dry_run import dry_run
from sema_suite.running.jobs import JobSpec
from sema_tasks.gen import TASK
from sema_tasks.gen.digits_features import load_digits_features
from sema_tasks.gen.modules import DenoisingDiffusion, DigitsImages, FrechetDistance

from in_process import train_sema


@pytest.fixture(scope="module")
def features_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh cache, so the extractor is trained (once) by these tests rather than taken from the user's (the tests
    that use it share the xdist group ``gen_features``: one worker trains it)."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEMA_CACHE_DIR", str(path))
        torch.manual_seed(123)
        expected_next = torch.rand(3)
        torch.manual_seed(123)
        load_digits_features(16)
        assert torch.equal(torch.rand(3), expected_next), "training the extractor moved the caller's RNG"
    return path


@pytest.fixture
def cached(features_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SEMA_CACHE_DIR", str(features_cache))
    return features_cache


@pytest.mark.xdist_group("gen_features")
def test_extractor_is_cached_and_classifies_digits(cached: Path) -> None:
    (path,) = cached.glob("fid_digits_16px_v*.pt")
    saved = torch.load(path, weights_only=True)
    assert saved["val_accuracy"] > 0.95
    torch.manual_seed(1)
    expected_next = torch.rand(3)
    torch.manual_seed(1)
    model = load_digits_features(16)  # from the cache: the same weights, and the caller's RNG untouched
    assert torch.equal(torch.rand(3), expected_next)
    assert all(torch.equal(t, saved["state_dict"][n]) for n, t in model.state_dict().items())
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def fid(reals: torch.Tensor, fakes: torch.Tensor) -> float:
    metric = FrechetDistance(name="fid_digits", features="digits", image_size=16)
    for r, f in zip(reals.split(100), fakes.split(100)):
        metric.process({}, [{"real": a, "fake": b} for a, b in zip(r, f)])
    return metric.compute_metrics(metric.results)["fid_digits"]


@pytest.mark.xdist_group("gen_features")
def test_fid_digits_tells_digits_from_blur(cached: Path) -> None:
    val = DigitsImages("val").images  # in [0, 1]
    train = DigitsImages("train").images[: len(val)]
    blurred = torch.nn.functional.avg_pool2d(train, 5, stride=1, padding=2)
    same_distribution = fid(val, train)
    assert same_distribution < 5 < fid(val, blurred)
    assert fid(val, torch.rand_like(val)) > fid(val, blurred)


@pytest.mark.xdist_group("gen_features")
def test_real_statistics_are_computed_once_and_reused(cached: Path) -> None:
    val = DigitsImages("val").images
    train = DigitsImages("train").images[: len(val)]
    blurred = torch.nn.functional.avg_pool2d(train, 5, stride=1, padding=2)
    metric = FrechetDistance(name="fid_digits", features="digits", image_size=16)
    values = []
    for fakes in (train, blurred, train):  # three evaluations of one metric object, as a run makes them
        for r, f in zip(val.split(100), fakes.split(100)):
            metric.process({}, [{"real": a, "fake": b} for a, b in zip(r, f)])
        values.append(metric.compute_metrics(metric.results)["fid_digits"])
        metric.results.clear()
        assert int(metric._fid.real_features_num_samples) == len(val)  # the reals were embedded once
    assert values == [fid(val, train), fid(val, blurred), fid(val, train)]  # what fresh metrics give


@pytest.mark.xdist_group("gen_features")
def test_metric_writes_a_preview_grid(cached: Path) -> None:
    metric = FrechetDistance(name="fid_digits", features="digits", image_size=16, preview_count=64)
    images = DigitsImages("val").images[:100]
    metric.process({}, [{"real": x, "fake": x} for x in images])
    assert metric.compute_metrics(metric.results)["fid_digits"] == pytest.approx(0, abs=1e-2)
    assert metric.preview.shape == (3, 8 * 65 + 1, 8 * 65 + 1)  # 8x8 grid of 16 px images at 4x, 1 px padding


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_sample_i_does_not_depend_on_its_batch(sampler: str) -> None:
    torch.manual_seed(0)
    unet = {"sample_size": 8, "in_channels": 1, "out_channels": 1, "block_out_channels": [8, 8],
            "layers_per_block": 1, "down_block_types": ["DownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "UpBlock2D"], "norm_num_groups": 4}
    model = DenoisingDiffusion(unet, sampler=sampler, sample_steps=4).eval()
    alone = model.sample([3], (1, 8, 8), torch.device("cpu"))
    batch = model.sample([7, 3, 1], (1, 8, 8), torch.device("cpu"))
    assert torch.allclose(alone[0], batch[1], atol=1e-5)
    assert not torch.allclose(batch[0], batch[1])
    assert batch.min() >= -1 and batch.max() <= 1


def test_dry_run_builds_every_preset_without_data(tmp_path: Path) -> None:
    sizes = {}
    for preset in TASK.presets:
        job = JobSpec("gen", preset, "sema", 0).resolve()
        text = dry_run(job, tmp_path, tmp_path / "no-data")
        sizes[preset] = float(text.rsplit(", ", 1)[1].split("M")[0])
        assert "ResumableIterLoop" in text  # mmengine's iteration loop, resumable mid-pass
    assert sizes["cifar10"] == pytest.approx(35.7, abs=0.1)  # the DDPM paper's CIFAR-10 network
    with pytest.raises(DatasetMissing, match="list_eval_partition.txt"):
        TASK.check_data(TASK.presets["celeba64"], JobSpec("gen", "celeba64", "none", 0).resolve()
                        .context(tmp_path, tmp_path / "w"))


@pytest.mark.xdist_group("gen_features")
@pytest.mark.slow
def test_tiny_job_learns_and_sema_switches_every_pass(cached: Path, tmp_path: Path) -> None:
    """60 iterations of the real tiny job (evaluated on 128 samples of 10 DDIM steps every 20): SEMA switches
    after every pass over the data (17 iterations), each evaluation leaves its row in metrics.csv and its
    sample grid in the job directory, and the Fréchet distance falls (with a short decay, so that the
    averaged weights do not lag this short run)."""
    overrides = (("iters", 60), ("val_interval", 20), ("sample_steps", 10), ("fid_samples", 128),
                 ("eval_batch_size", 128), ("decay", 0.5))
    folder, sema = train_sema("gen", overrides, tmp_path)
    assert [s["iter"] for s in sema.switches] == [17, 34, 51]
    rows = folder.metrics()
    assert [(r["iter"], r["metric"]) for r in rows] == [(20, "fid_digits"), (40, "fid_digits"), (60, "fid_digits")]
    assert rows[1]["epoch"] == pytest.approx(40 / 17, abs=1e-3)
    assert rows[-1]["value"] < 0.8 * rows[0]["value"]
    for it in (20, 40, 60):
        with Image.open(folder.path / "samples" / f"iter_{it:08d}.png") as png:
            assert png.size == (8 * 65 + 1, 8 * 65 + 1)


def test_inception_fid_reads_every_pixel_level_rounded() -> None:
    """Each of the 256 levels, through the [-1, 1] round trip the data takes, comes back as itself (truncation,
    torchmetrics' normalize=True, drops 63 of them by one)."""
    from sema_tasks.gen.modules import inception_pixels

    levels = torch.arange(256, dtype=torch.float32)
    images = ((levels / 255 * 2 - 1) + 1) / 2
    assert torch.equal(inception_pixels(images).long(), levels.long())
    assert (images * 255).byte().long().ne(levels.long()).sum() > 0  # what truncation did


def test_celeba_is_cropped_where_ddim_crops_it(tmp_path: Path) -> None:
    """A 178 x 218 aligned CelebA image, each pixel coding its row and column: the 64 x 64 image comes from
    rows 57-184 and columns 25-152 (DDIM's box), not a centred 140-pixel square."""
    from PIL import Image

    from sema_tasks.gen.modules import CelebAImages

    rows, cols = torch.meshgrid(torch.arange(218), torch.arange(178), indexing="ij")
    pixels = torch.stack([rows, cols, torch.zeros_like(rows)], -1).to(torch.uint8).numpy()
    folder = tmp_path / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    Image.fromarray(pixels).save(folder / "img_align_celeba" / "000001.png")
    (folder / "list_eval_partition.txt").write_text("000001.png 0\n")
    image = CelebAImages(str(tmp_path), "train", image_size=128)._image(0) * 255  # no resizing at 128
    assert image[0].min().round() == 57 and image[0].max().round() == 57 + 127
    assert image[1].min().round() == 25 and image[1].max().round() == 25 + 127
