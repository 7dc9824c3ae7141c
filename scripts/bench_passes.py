"""The data stream of an iteration-based job: mmengine's endless iterator against the suite's ``Passes``.

Draws 400 batches (the tiny ``gen`` job: 17 a pass) of the tiny ``gen`` preset's training loader through each,
in this process, and prints the times and their ratio. ``.venv/bin/python scripts/bench_passes.py``
"""

import tempfile
import time
from pathlib import Path

from mmengine.runner import Runner
from mmengine.runner.loops import _InfiniteDataloaderIterator

from sema_suite.running.config import build_config
from sema_suite.running.jobs import JobSpec
from sema_suite.running.resumable import Passes

BATCHES = 400

with tempfile.TemporaryDirectory() as scratch:
    job = JobSpec("gen", "tiny", "none", 0).resolve()
    cfg = build_config(job, job.context(Path(scratch) / "data", Path(scratch) / "work"), Path(scratch))
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    times = {}
    for name, stream in [("mmengine _InfiniteDataloaderIterator", lambda: _InfiniteDataloaderIterator(loader)),
                         ("suite Passes", lambda: Passes(loader, iter(loader)))]:
        batches, started = stream(), time.perf_counter()
        for _ in range(BATCHES):
            next(batches)
        times[name] = time.perf_counter() - started
        print(f"{name}: {times[name]:.1f} s for {BATCHES} batches ({len(loader)} a pass)")
    print(f"ratio: {times['suite Passes'] / times['mmengine _InfiniteDataloaderIterator']:.3f}x")
