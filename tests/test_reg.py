"""The regression adapter: the rotated digits, the AgeDB reader, a short real run that beats the constant
predictor, and the leaderboard's handling of lower-is-better metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sema_suite.cli import main
from sema_suite.data import affine, load_digits_split
from sema_suite.errors import DatasetMissing
from sema_suite.results import leaderboard
from sema_suite.results.store import JobDir
from sema_suite.running.jobs import JobSpec
from sema_tasks.reg import TASK
from sema_tasks.reg.modules import AgeDB, RotatedDigits, agedb_age, rcf_angles, rcf_colour_ratios, red_blue


def test_rotated_digits_are_fixed_and_rotated_by_their_target():
    train, again = RotatedDigits("train", 16, 60.0), RotatedDigits("train", 16, 60.0)
    assert torch.equal(train.targets, again.targets) and torch.equal(train.images, again.images)
    val, test = RotatedDigits("val", 16, 60.0), RotatedDigits("test", 16, 60.0)
    assert len(train) + len(val) + len(test) == 1797 and train.images.shape[1:] == (3, 16, 16)
    assert train.targets.abs().max() <= 60 and train.targets.std() > 30  # spread over [-60, 60]
    # undoing the rotation brings back the upright digit (up to interpolation and colour)
    image = val.images[:1] * 0.5 + 0.5
    upright = affine(image, -val.targets[:1]).amax(dim=1, keepdim=True)
    digit = torch.nn.functional.pad(load_digits_split("val", 12)[0][:1], (2, 2, 2, 2))
    colour_free = upright / upright.amax()
    assert torch.nn.functional.cosine_similarity(colour_free.flatten(), digit.flatten(), dim=0) > 0.9
    assert val.metainfo["train_median"] == pytest.approx(float(train.targets.median()))


def test_red_blue_colouring_follows_rcf_mnist():
    image = torch.rand(1, 4, 4)
    coloured = red_blue(image, 0.25)
    assert torch.allclose(coloured[0], image[0] * 0.25) and not coloured[1].any()
    assert torch.allclose(coloured[2], image[0] * 0.75)


def test_rcf_mnist_colour_is_a_spurious_cue_inverted_on_test():
    """As C-Mixup: the red ratio is angle/360 for 80 % of training images (1 - angle/360 for the rest), the
    other way round on test, and random on val."""
    from scipy.stats import pearsonr

    angles = rcf_angles("train", 20_000)
    assert angles.min() >= 0 and angles.max() < 360 and len(angles.unique()) > 19_000  # continuous, not 60 levels
    share = {}
    for split in ("train", "val", "test"):
        ratios = rcf_colour_ratios(split, angles, 0.8, seed=7)
        share[split] = float(torch.isclose(ratios, angles / 360).float().mean())
        share[f"{split}_r"] = pearsonr(ratios.numpy(), angles.numpy()).statistic
    assert share["train"] == pytest.approx(0.8, abs=0.01) and share["test"] == pytest.approx(0.2, abs=0.01)
    assert share["train_r"] > 0.5 and share["test_r"] < -0.5 and abs(share["val_r"]) < 0.05


def test_agedb_reads_ages_from_file_names(tmp_path):
    from PIL import Image

    assert agedb_age(Path("0_MariaCallas_35_f.jpg")) == 35
    with pytest.raises(ValueError, match="not an AgeDB file name"):
        agedb_age(Path("portrait.jpg"))
    for split, ages in (("train", (20, 30, 70)), ("val", (41,)), ("test", (55, 60))):
        (tmp_path / split).mkdir()
        for i, age in enumerate(ages):
            Image.new("RGB", (40, 50), (i * 60, 100, 200)).save(tmp_path / split / f"{i}_Someone_{age}_m.jpg")
    data = AgeDB(str(tmp_path), "val", image_size=32)
    assert len(data) == 1 and data.metainfo["train_median"] == 30
    item = data[0]
    assert item["inputs"].shape == (3, 32, 32) and item["targets"] == 41
    test = AgeDB(str(tmp_path), "test", image_size=32)
    assert sorted(test.targets.tolist()) == [55, 60] and test.metainfo["train_median"] == 30


def test_agedb_without_data_names_the_layout(tmp_path):
    job = JobSpec("reg", "agedb", "none", 0).resolve()
    with pytest.raises(DatasetMissing, match=r"agedb/train/\*\.jpg"):
        TASK.check_data(job.preset, job.context(tmp_path, tmp_path / "work"))
    for split in ("train", "val"):  # the test split is needed too
        (tmp_path / "agedb" / split).mkdir(parents=True)
        (tmp_path / "agedb" / split / "0_A_30_m.jpg").write_bytes(b"")
    with pytest.raises(DatasetMissing, match=r"agedb/test/\*\.jpg"):
        TASK.check_data(job.preset, job.context(tmp_path, tmp_path / "work"))


@pytest.mark.slow
def test_tiny_run_beats_the_constant_predictor(tmp_path, capsys):
    assert main(["run", "--task", "reg", "--method", "none", "--set", "epochs=3",
                 "--results-dir", str(tmp_path)]) == 0
    (job_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    rows = JobDir(tmp_path, job_dir.name).metrics()
    mae = [r["value"] for r in rows if r["metric"] == "mae" and r["split"] == "val"]
    rmse = [r["value"] for r in rows if r["metric"] == "rmse" and r["split"] == "val"]
    test = {r["metric"]: r["value"] for r in rows if r["split"] == "test"}
    assert len(mae) == len(rmse) == 3 and set(test) == {"mae", "rmse", "mae_constant"}
    assert 25 < test["mae_constant"] < 35  # |uniform(-60, 60)| averages 30
    assert mae[-1] < test["mae_constant"] / 2 and all(r >= m for r, m in zip(rmse, mae))
    assert test["mae"] < test["mae_constant"] / 2 and test["rmse"] >= test["mae"]


@pytest.mark.parametrize("preset", sorted(TASK.presets))
def test_dry_run_builds_every_preset(preset, tmp_path, capsys):
    assert main(["run", "--task", "reg", "--preset", preset, "--method", "ema", "--dry-run",
                 "--results-dir", str(tmp_path), "--data-root", str(tmp_path)]) == 0
    assert "Regressor" in capsys.readouterr().out


def _rows(method: str, curve: list[float], seed: int = 0) -> list[dict]:
    return [{"job_id": f"reg-{method}-s{seed}", "timestamp": "2025-01-01T00:00:00",
             "task": "reg", "preset": "tiny", "dataset": "d", "model": "m", "split": "val", "metric": "mae",
             "higher_is_better": False, "method": method, "seed": seed, "epoch": float(e), "value": v,
             "wall_time_s": 2.0 * e}
            for e, v in enumerate(curve, start=1)]


def test_leaderboard_treats_lower_as_better():
    rows = (_rows("none", [9.0, 6.0, 5.0, 5.5]) + _rows("none", [9.0, 6.0, 5.0, 4.5], seed=1)
            + _rows("sema", [8.0, 4.9, 4.0, 4.2]) + _rows("ema", [12.0, 9.0, 7.0, 6.0]))
    table = {r["method"]: r for r in leaderboard.aggregate(rows)}
    assert table["none"]["final_mean"] == 5.0 and table["none"]["best_mean"] == pytest.approx(4.75)
    assert table["sema"]["best_mean"] == 4.0  # the lowest value, not the highest
    assert table["sema"]["delta_vs_none"] == pytest.approx(-1.3)  # paired with none's seed 0 (5.5): lower, better
    assert table["ema"]["delta_vs_none"] == pytest.approx(0.5)
    assert table["sema"]["win_rate"] == 1.0 and table["ema"]["win_rate"] == 0.0
    # convergence: the first epoch at or below 90 % of the improvement of the same seed's none (seed 0:
    # 9.0 -> 5.5, target 5.85; seed 1: 9.0 -> 4.5, target 4.95)
    assert table["sema"]["reach90_epoch"] == 2
    assert table["none"]["reach90_epoch"] == pytest.approx(3.5)  # epochs 3 and 4
    assert table["ema"]["reach90_epoch"] is None
