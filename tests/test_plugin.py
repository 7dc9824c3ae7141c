"""A third-party adapter registered through the `suite.tasks` entry-point group runs like a built-in one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sema_suite.results.store import JobDir

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sema-bench-plugin"


@pytest.mark.slow
def test_entry_point_plugin_runs(tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(EXAMPLE / "sema_bench_plugin", site / "sema_bench_plugin")
    dist = site / "sema_bench_plugin-0.1.0.dist-info"  # what `pip install` writes, without the network
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sema-bench-plugin\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text('[suite.tasks]\ndigits-mlp = sema_bench_plugin:TASK\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    cli = [sys.executable, "-m", "sema_suite.cli"]

    listed = subprocess.run([*cli, "list"], capture_output=True, text=True, env=env)
    assert "task digits-mlp: digits with a two-layer MLP" in listed.stdout, listed.stderr

    results = tmp_path / "results"
    run = subprocess.run([*cli, "run", "--task", "digits-mlp", "--method", "sema", "--set", "epochs=3",
                          "--results-dir", str(results), "--analyze", "batches=1", "trace_samples=2", "steps=1",
                          "average_samples=2", "directions=1", "points=3"], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr + run.stdout
    (job,) = [JobDir(results, p.name) for p in results.iterdir()]
    values = [r["value"] for r in job.metrics()]
    assert len(values) == 3 and values[-1] > 40  # 10 classes: chance is 10 %
    assert job.status()["averaging"]["switches"] == 3
    # suite run --analyze measures the plugin through its own analysis_loss (clean inputs)
    assert job.status()["analysis"]["state"] == "done", job.status()["analysis"]
    assert {r["metric"] for r in job.analysis()} >= {"train_loss", "hessian_trace", "sharpness_adaptive"}
