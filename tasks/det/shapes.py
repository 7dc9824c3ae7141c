"""The ``tiny`` detection data set: coloured shapes written once as a real COCO data set (JSON + PNG files).

Each image holds one to ``max_objects`` non-overlapping shapes -- rectangles, ellipses and triangles, one
category each -- in random colours on a noisy background, so a detector must learn the *form*, not the
colour. Every shape is drawn from the same polygon that is stored as its mask, and its box is that
polygon's extent, so boxes and masks are exact. The files are read by MMDetection's own ``CocoDataset``
and scored by its ``CocoMetric`` (pycocotools), exactly as COCO is.

Three splits, drawn one after the other from one random stream (so they hold different images): ``train``,
``val`` (evaluated at every evaluation) and ``test`` (evaluated once, at the end).

The data set depends only on its parameters (never on a job's seed): every method and seed trains and is
evaluated on the same images. It is generated into a temporary folder and renamed into place, so parallel
jobs that start together never see half of it.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("rectangle", "ellipse", "triangle")
VERSION = 2  # bump when the generator's output changes, so stale caches are not reused (2: the test split)
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ShapesSpec:
    image_size: int = 64
    num_train: int = 400
    num_val: int = 100
    num_test: int = 100
    max_objects: int = 3
    min_size: int = 10
    max_size: int = 28
    seed: int = 0

    def key(self) -> str:
        digest = hashlib.sha1(json.dumps({**asdict(self), "version": VERSION}, sort_keys=True).encode())
        return (f"coco-shapes-{self.image_size}px-{self.num_train}+{self.num_val}+{self.num_test}-"
                f"{digest.hexdigest()[:8]}")

    def count(self, split: str) -> int:
        return {"train": self.num_train, "val": self.num_val, "test": self.num_test}[split]


def ann_file(root: Path, split: str) -> Path:
    return root / "annotations" / f"instances_{split}.json"


def _polygon(kind: str, x: float, y: float, w: float, h: float, rng: np.random.Generator) -> list[tuple[float, float]]:
    """The outline of a shape that exactly fills the box (x, y, w, h)."""
    if kind == "rectangle":
        return [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
    if kind == "ellipse":
        cx, cy = x + w / 2, y + h / 2
        return [(cx + w / 2 * math.cos(t), cy + h / 2 * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 24, endpoint=False)]
    apex = x + rng.uniform(0, 1) * w  # a triangle with one vertex on one side of the box, two on the opposite
    points = [(apex, y), (x + w, y + h), (x, y + h)]
    if rng.random() < 0.5:  # upside down
        points = [(px, 2 * y + h - py) for px, py in points]
    return points


def _area(points: list[tuple[float, float]]) -> float:
    xs, ys = np.array(points).T
    return float(abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))) / 2)


def _colour(rng: np.random.Generator, away_from: np.ndarray) -> tuple[int, int, int]:
    """A random colour clearly different from the background (so every shape is visible)."""
    while True:
        colour = rng.integers(0, 256, 3)
        if np.abs(colour - away_from).sum() > 150:
            return tuple(int(c) for c in colour)


def _image(spec: ShapesSpec, rng: np.random.Generator) -> tuple[Image.Image, list[dict]]:
    size = spec.image_size
    background = rng.integers(0, 256, 3)
    pixels = background + rng.normal(0, 12, (size, size, 3))
    image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    boxes: list[tuple[float, float, float, float]] = []
    objects = []
    for _ in range(int(rng.integers(1, spec.max_objects + 1))):
        for _attempt in range(20):  # find a free place; give up on this shape if there is none
            w, h = rng.uniform(spec.min_size, spec.max_size, 2)
            x, y = rng.uniform(0, size - w), rng.uniform(0, size - h)
            if all(x + w + 2 < bx or bx + bw + 2 < x or y + h + 2 < by or by + bh + 2 < y for bx, by, bw, bh in boxes):
                break
        else:
            continue
        label = int(rng.integers(len(CLASSES)))
        points = _polygon(CLASSES[label], x, y, w, h, rng)
        draw.polygon(points, fill=_colour(rng, background))
        xs, ys = np.array(points).T
        box = (float(xs.min()), float(ys.min()), float(xs.max() - xs.min()), float(ys.max() - ys.min()))
        boxes.append(box)
        objects.append({"category_id": label + 1, "bbox": [round(v, 2) for v in box],
                        "segmentation": [[round(float(v), 2) for point in points for v in point]],
                        "area": round(_area(points), 2), "iscrowd": 0})
    return image, objects


def _write_split(spec: ShapesSpec, root: Path, split: str, count: int, rng: np.random.Generator) -> None:
    (root / split).mkdir(parents=True)
    images, annotations = [], []
    for index in range(count):
        image, objects = _image(spec, rng)
        name = f"{index:05d}.png"
        image.save(root / split / name)
        images.append({"id": index + 1, "file_name": name, "width": spec.image_size, "height": spec.image_size})
        for obj in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1, **obj})
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASSES)]
    path = ann_file(root, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))


def ensure_shapes(spec: ShapesSpec, cache: Path) -> Path:
    """The data set's folder under ``cache``, generated on first use: ``annotations/instances_{split}.json``
    and the images in ``{split}/``, for the splits ``train``, ``val`` and ``test``."""
    root = Path(cache) / "datasets" / spec.key()
    if all(ann_file(root, split).is_file() for split in SPLITS):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}."))
    try:
        rng = np.random.default_rng(spec.seed)
        for split in SPLITS:
            _write_split(spec, tmp, split, spec.count(split), rng)
        try:
            tmp.rename(root)
        except OSError:  # another process finished first: keep its copy
            if not all(ann_file(root, split).is_file() for split in SPLITS):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
