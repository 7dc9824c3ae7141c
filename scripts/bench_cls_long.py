"""What the suite costs over a bare PyTorch loop doing the same work: ``cls`` long, ``none``, seed 0.

The bare loop: MNIST-1D through the task's own dataset and model classes, Adam 1e-2, batches of 100 reshuffled each
epoch, 100 epochs, top-1 on val after every epoch and on test at the end, one torch thread. The suite: ``suite run
--task cls --preset long --method none`` into a scratch folder, one torch thread (``SUITE_THREADS=1``), timed as a
command and split by its own ``costs``. Back to back in this process; prints both times, their ratio and the split.
``.venv/bin/python scripts/bench_cls_long.py``
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from sema_tasks.cls.modules import Mnist1dClassification, Mnist1dClassifier

EPOCHS, BATCH, LR = 100, 100, 1e-2


def accuracy(model: torch.nn.Module, data: Mnist1dClassification) -> float:
    model.eval()
    with torch.no_grad():
        hits = sum((model(data.inputs[i:i + 1000]).argmax(1) == data.labels[i:i + 1000]).sum().item()
                   for i in range(0, len(data), 1000))
    model.train()
    return 100.0 * hits / len(data)


def bare_loop() -> float:
    torch.manual_seed(0)
    train, val, test = (Mnist1dClassification(split) for split in ("train", "val", "test"))
    model = Mnist1dClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    order = torch.Generator().manual_seed(0)
    for _ in range(EPOCHS):
        for batch in torch.randperm(len(train), generator=order).split(BATCH):
            loss = F.cross_entropy(model(train.inputs[batch]), train.labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        accuracy(model, val)
    return accuracy(model, test)


def main() -> None:
    torch.set_num_threads(1)
    started = time.perf_counter()
    top1 = bare_loop()
    bare = time.perf_counter() - started
    print(f"bare loop: {bare:.1f} s (test top-1 {top1:.1f})")
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "sema_suite.cli", "run", "--task", "cls", "--preset", "long", "--method",
                        "none", "--results-dir", scratch], check=True, capture_output=True,
                       env={**os.environ, "SUITE_THREADS": "1"})
        command = time.perf_counter() - started
        (status,) = Path(scratch).glob("*/status.json")
        costs = json.loads(status.read_text())["costs"]
    print(f"suite run: {command:.1f} s as a command, {costs['wall_s']:.1f} s of job")
    print("  split: " + ", ".join(f"{key} {value:.2f}" for key, value in costs.items() if key != "wall_s")
          + f", not accounted {costs['wall_s'] - sum(v for k, v in costs.items() if k != 'wall_s'):.2f}")
    print(f"ratio: job {costs['wall_s'] / bare:.2f}x, command {command / bare:.2f}x the bare loop")


if __name__ == "__main__":
    main()
