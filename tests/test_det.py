"""The det task: the generated COCO shapes, the paper presets' configs, and real tiny MMDetection runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sema_suite.cli import main
from sema_suite.data import cache_dir
from sema_suite.errors import DatasetMissing
from sema_suite.results.store import JobDir, read_json
from sema_suite.running.jobs import JobSpec
from sema_tasks.det import COCO_FILES, SHIPPED_CONFIGS, TASK
from sema_tasks.det.coco import holdout_files
from sema_tasks.det.shapes import CLASSES, ShapesSpec, ann_file, ensure_shapes

mmcv_ops = pytest.importorskip("mmcv.ops", reason="mmcv with compiled ops (scripts/build_mmcv.sh)")

REPO = Path(__file__).resolve().parents[1]
# Small enough for the test budget, big enough to learn: 6 epochs of 8 steps.
QUICK = ["epochs=6", "num_train=128", "num_val=32", "num_test=32", "batch_size=16", "lr_warmup_iters=8"]
STEPS = 8  # per epoch


@pytest.fixture(autouse=True)
def _env(tmp_path_factory, monkeypatch):
    """Generated data sets go to a per-session cache, not the user's ~/.cache; workers use one thread each
    (these models are too small to gain from two, and on a busy machine two threads spin: 3x the CPU time)."""
    monkeypatch.setenv("SEMA_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("SUITE_THREADS", "1")


def _sets(items: list[str]) -> list[str]:
    """``--set`` arguments; a later item overrides an earlier one of the same key (a key may be set once)."""
    last = {item.partition("=")[0]: item for item in items}
    return [arg for item in last.values() for arg in ("--set", item)]


def _only_job(results: Path) -> JobDir:
    (job_json,) = results.glob("*/job.json")
    return JobDir(results, job_json.parent.name)


# -- the shapes data set ----------------------------------------------------------------------------------


def test_shapes_are_a_real_coco_dataset_with_exact_boxes_and_masks(tmp_path):
    from pycocotools.coco import COCO

    spec = ShapesSpec(num_train=20, num_val=10, num_test=10)
    root = ensure_shapes(spec, tmp_path)
    coco = COCO(str(ann_file(root, "train")))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    assert len(coco.getImgIds()) == 20 and len(list((root / "val").glob("*.png"))) == 10
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) >= 20 and {a["category_id"] for a in anns} == {1, 2, 3}
    for ann in anns:
        mask = coco.annToMask(ann)
        ys, xs = np.nonzero(mask)
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and x + w <= spec.image_size and y + h <= spec.image_size
        # the rasterised polygon fills its box (sharp corners may lose a pixel or two) and has the recorded area
        seen = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        overlap = max(0, min(seen[2], x + w) - max(seen[0], x)) * max(0, min(seen[3], y + h) - max(seen[1], y))
        assert overlap / (w * h + (seen[2] - seen[0]) * (seen[3] - seen[1]) - overlap) > 0.8
        assert abs(mask.sum() - ann["area"]) <= 0.2 * ann["area"] + 4


def test_shapes_are_generated_once_and_identically(tmp_path):
    spec = ShapesSpec(num_train=8, num_val=4, num_test=4)
    root = ensure_shapes(spec, tmp_path / "a")
    stamp = ann_file(root, "train").stat().st_mtime_ns
    assert ensure_shapes(spec, tmp_path / "a") == root and ann_file(root, "train").stat().st_mtime_ns == stamp
    other = ensure_shapes(spec, tmp_path / "b")
    assert ann_file(other, "val").read_text() == ann_file(root, "val").read_text()
    assert ann_file(other, "test").read_text() == ann_file(root, "test").read_text()
    assert (other / "train" / "00003.png").read_bytes() == (root / "train" / "00003.png").read_bytes()
    assert ensure_shapes(ShapesSpec(num_train=9, num_val=4, num_test=4), tmp_path / "a") != root  # other data
    assert ensure_shapes(ShapesSpec(num_train=8, num_val=4, num_test=5), tmp_path / "a") != root


# -- paper presets ----------------------------------------------------------------------------------------


def test_missing_coco_fails_before_anything_is_written(tmp_path, capsys):
    results = tmp_path / "results"
    code = main(["run", "--task", "det", "--preset", "coco-retinanet-1x", "--method", "sema",
                 "--data-root", str(tmp_path / "data"), "--results-dir", str(results)])
    assert code == 2 and not results.exists()
    err = capsys.readouterr().err
    for name in COCO_FILES:
        assert f"coco/{name}" in err


def test_check_data_accepts_a_complete_coco_layout(tmp_path):
    for name in COCO_FILES:
        path = tmp_path / "coco" / name
        path.mkdir(parents=True) if name.endswith("/") else (path.parent.mkdir(parents=True, exist_ok=True),
                                                               path.write_text("{}"))
    job = JobSpec("det", "coco-mask-rcnn-1x", "sema", 0).resolve()
    TASK.check_data(job.preset, job.context(tmp_path, tmp_path / "work"))
    (tmp_path / "coco" / "val2017").rmdir()
    with pytest.raises(DatasetMissing, match="val2017"):
        TASK.check_data(job.preset, job.context(tmp_path, tmp_path / "work"))


def _dry_run_config(preset: str, tmp_path: Path, capsys, *sets: str):
    from mmengine.config import Config

    data = tmp_path / "data"
    code = main(["run", "--task", "det", "--preset", preset, "--method", "sema", "--dry-run", *_sets(list(sets)),
                 "--data-root", str(data), "--results-dir", str(tmp_path / "results")])
    assert code == 0 and not (tmp_path / "results").exists()
    out = capsys.readouterr().out
    return Config.fromstring(out.split("\n", 1)[1].rsplit("# model:", 1)[0], ".py"), out


@pytest.mark.parametrize("preset", sorted(SHIPPED_CONFIGS))
def test_dry_run_builds_each_paper_preset(preset, tmp_path, capsys):
    from mmengine.config import Config

    data = tmp_path / "data"
    code = main(["run", "--task", "det", "--preset", preset, "--method", "sema", "--dry-run",
                 "--data-root", str(data), "--results-dir", str(tmp_path / "results")])
    assert code == 0 and not (tmp_path / "results").exists()
    out = capsys.readouterr().out
    text = out.split("\n", 1)[1].rsplit("# model:", 1)[0]
    cfg = Config.fromstring(text, ".py")
    model = out.rsplit("# model:", 1)[1]
    assert ("MaskRCNN" if "mask" in preset else "RetinaNet") in model and "M parameters" in model
    assert cfg.default_scope == "mmdet"
    assert cfg.train_dataloader.dataset.data_root == f"{data}/coco/"
    # test: val2017, once at the end; val: the held-out slice of train2017, which training does not read
    assert cfg.test_evaluator.ann_file == f"{data}/coco/annotations/instances_val2017.json"
    assert cfg.test_dataloader.dataset.data_prefix.img == "val2017/" and cfg.test_cfg.type == "TestLoop"
    held_out = holdout_files(data / "coco", 5000, cache_dir())
    assert cfg.train_dataloader.dataset.ann_file == str(held_out[0])
    assert cfg.val_dataloader.dataset.ann_file == cfg.val_evaluator.ann_file == str(held_out[1])
    assert cfg.val_dataloader.dataset.data_prefix.img == "train2017/" and cfg.val_dataloader.dataset.test_mode
    assert "data/coco" not in text.replace(str(data), "")  # nothing left pointing at mmdet's default root
    hooks = {h["type"]: h for h in cfg.custom_hooks}
    assert hooks["SemaHook"]["switch"] is True and hooks["SemaHook"]["decay"] == 0.9995
    # the recipe's total batch of 16 on the job's GPU; a smaller one scales the learning rate with it
    assert cfg.train_dataloader.batch_size == 16
    assert cfg.auto_scale_lr == {"enable": True, "base_batch_size": 16}
    iteration_based = cfg.train_cfg.type == "ResumableIterLoop"  # mmengine's loop, resumable mid-pass
    assert iteration_based == preset.endswith("90k")
    assert hooks["ResultsHook"]["by_epoch"] is not iteration_based
    assert cfg.default_hooks.checkpoint.by_epoch is not iteration_based
    assert cfg.log_processor.by_epoch is not iteration_based
    assert hooks["ResultsHook"]["val_split"] == "val"


@pytest.mark.parametrize("preset", sorted(SHIPPED_CONFIGS))
def test_final_paper_run_trains_on_all_of_train2017_and_scores_val2017_every_time(preset, tmp_path, capsys):
    cfg, _ = _dry_run_config(preset, tmp_path, capsys, "val_size=0")
    data = tmp_path / "data"
    assert cfg.train_dataloader.dataset.ann_file == "annotations/instances_train2017.json"  # as shipped
    assert cfg.val_evaluator.ann_file == f"{data}/coco/annotations/instances_val2017.json"
    assert "test_dataloader" not in cfg  # val2017 is scored at every evaluation, labelled test
    assert {h["type"]: h for h in cfg.custom_hooks}["ResultsHook"]["val_split"] == "test"


def test_paper_preset_datasets_hold_the_slice_out_of_training(tmp_path):
    """A miniature COCO (shapes laid out as train2017 / val2017): the datasets and the val metric that
    MMDetection builds from a paper preset's config hold the expected, disjoint images."""
    from mmdet.registry import DATASETS, METRICS
    from mmengine.registry import init_default_scope

    shapes = ensure_shapes(ShapesSpec(num_train=40, num_val=8, num_test=0), tmp_path / "shapes")
    coco = tmp_path / "data" / "coco"
    (coco / "annotations").mkdir(parents=True)
    for split, name in (("train", "train2017"), ("val", "val2017")):
        annotations = json.loads(ann_file(shapes, split).read_text())
        for category, coco_name in zip(annotations["categories"], ("person", "bicycle", "car")):
            category["name"] = coco_name  # the shipped configs train on COCO's classes
        (coco / "annotations" / f"instances_{name}.json").write_text(json.dumps(annotations))
        (coco / name).symlink_to(shapes / split)
    job = JobSpec("det", "coco-retinanet-1x", "sema", 0, (("val_size", 10),)).resolve()
    cfg = TASK.build_config(job.preset, job.context(tmp_path / "data", tmp_path / "work"))
    init_default_scope("mmdet")
    data = {s: DATASETS.build(cfg[f"{s}_dataloader"]["dataset"]) for s in ("train", "val", "test")}
    info = {s: [d.get_data_info(i) for i in range(len(d))] for s, d in data.items()}
    paths = {s: {i["img_path"] for i in infos} for s, infos in info.items()}
    assert {s: len(p) for s, p in paths.items()} == {"train": 30, "val": 10, "test": 8}
    assert not paths["train"] & paths["val"]
    assert all(Path(p).parent == coco / "train2017" for p in paths["train"] | paths["val"])
    assert all(Path(p).parent == coco / "val2017" for p in paths["test"])
    metric = METRICS.build(cfg["val_evaluator"])  # scores against the slice's own annotations
    assert set(metric._coco_api.get_img_ids()) == {i["img_id"] for i in info["val"]}


# -- real tiny runs ---------------------------------------------------------------------------------------


def _metrics(job: JobDir, split: str = "val") -> dict[tuple[int, str], float]:
    """(iteration, metric) -> value of the ``split`` rows; fails if any evaluation was recorded twice."""
    rows = job.metrics()
    keys = [(r["split"], r["iter"], r["metric"]) for r in rows]
    assert len(keys) == len(set(keys)), "an evaluation was recorded twice"
    return {(i, m): r["value"] for (s, i, m), r in zip(keys, rows) if s == split}


@pytest.mark.slow
def test_tiny_ema_learns(tmp_path):
    results = tmp_path / "results"
    epochs = 10  # a detector trained from scratch needs ~80 steps before its AP takes off
    args = ["run", "--task", "det", "--method", "ema", "--results-dir", str(results),
            *_sets([*QUICK, f"epochs={epochs}"])]
    assert main(args) == 0
    job = _only_job(results)
    metrics = _metrics(job)
    assert sorted({i for i, _ in metrics}) == [STEPS * e for e in range(1, epochs + 1)]
    assert {m for _, m in metrics} == {"bbox_mAP", "bbox_mAP_50", "bbox_mAP_75"}
    first, last = metrics[(STEPS, "bbox_mAP_50")], metrics[(epochs * STEPS, "bbox_mAP_50")]
    assert last > 0.1 and last > 2 * first  # it learns (an untrained detector scores ~0.03)
    test = _metrics(job, "test")  # the test shapes, once, at the end
    assert sorted(test) == sorted((epochs * STEPS, m) for m in ("bbox_mAP", "bbox_mAP_50", "bbox_mAP_75"))
    assert test[(epochs * STEPS, "bbox_mAP_50")] > 0.1
    averaging = job.status()["averaging"]
    assert averaging["updates"] == epochs * STEPS and averaging["switches"] == 0


@pytest.mark.slow
def test_tiny_mask_reports_bbox_and_segm(tmp_path):
    results = tmp_path / "results"
    args = ["run", "--task", "det", "--preset", "tiny-mask", "--method", "ema", "--results-dir", str(results),
            *_sets([*QUICK, "epochs=2", "num_train=64"])]
    assert main(args) == 0
    metrics = _metrics(_only_job(results))
    assert {m for _, m in metrics} == {f"{k}_mAP{s}" for k in ("bbox", "segm") for s in ("", "_50", "_75")}
    assert all(0 <= v <= 1 for v in metrics.values())


@pytest.mark.slow
def test_iteration_based_tiny_switches_every_pass(tmp_path):
    results = tmp_path / "results"
    sets = [*QUICK, "num_train=64", "iters=12", "val_interval=6", "switch_start=1"]
    assert main(["run", "--task", "det", "--method", "sema", "--results-dir", str(results), *_sets(sets)]) == 0
    job = _only_job(results)
    assert sorted({i for i, _ in _metrics(job)}) == [6, 12]
    averaging = job.status()["averaging"]
    assert [p["iter"] for p in averaging["switch_points"]] == [4, 8, 12]  # 64 images / 16 = 4 steps a pass


@pytest.mark.slow
def test_interrupted_tiny_job_resumes_and_records_each_evaluation_once(tmp_path):
    results = tmp_path / "results"
    command = [sys.executable, "-m", "sema_suite.cli", "run", "--task", "det", "--method", "sema",
               "--results-dir", str(results), "--checkpoint-every", "eval", *_sets(QUICK)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    job = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # kill the worker while it trains past epoch 2 (2+ checkpoints)
        jobs = list(results.glob("*/status.json"))
        if jobs:
            job = JobDir(results, jobs[0].parent.name)
            progress = read_json(job.status_json).get("progress") or {}
            if progress.get("iter", 0) > 2 * STEPS:
                break
        time.sleep(0.05)
    else:
        first.kill()
        pytest.fail("the tiny job never got past epoch 2")
    os.kill(job.status()["pid"], signal.SIGKILL)
    first.wait(timeout=60)
    before = _metrics(job)
    assert before and max(i for i, _ in before) < 6 * STEPS  # it really stopped before the end

    assert subprocess.run(command, env=env, capture_output=True).returncode == 0
    status = job.status()
    assert status["state"] == "done" and status["attempts"] == 2 and status["resumed_from"]
    after = _metrics(job)  # asserts that no evaluation appears twice
    assert sorted({i for i, _ in after}) == [STEPS * e for e in range(1, 7)]
    assert sorted({i for i, _ in _metrics(job, "test")}) == [6 * STEPS]
    assert all(after[key] == value for key, value in before.items() if key[0] <= 2 * STEPS)
    assert [p["epoch"] for p in status["averaging"]["switch_points"]] == [2, 3, 4, 5, 6]
    assert json.loads(job.job_json.read_text())["spec"]["preset"] == "tiny"
