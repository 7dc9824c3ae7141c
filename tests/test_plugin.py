"""A third-party adapter and method, registered through the `suite.tasks` and `suite.methods` entry-point groups,
run like built-in ones."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
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
    points = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]["entry-points"]
    (dist / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in targets.items())
        for group, targets in points.items()))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    cli = [sys.executable, "-m", "sema_suite.cli"]

    listed = subprocess.run([*cli, "list"], capture_output=True, text=True, env=env)
    assert "task digits-mlp: digits with a two-layer MLP" in listed.stdout, listed.stderr
    assert "polyak: an equal average of the epoch-end weights" in listed.stdout

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

    # the plugin's method (suite.methods) on the plugin's task: its average is what is evaluated
    polyak = subprocess.run([*cli, "run", "--task", "digits-mlp", "--method", "polyak,none", "--set", "epochs=3",
                             "--results-dir", str(results)], capture_output=True, text=True, env=env)
    assert polyak.returncode == 0, polyak.stderr + polyak.stdout
    mine, plain = [JobDir(results, next(p.name for p in results.iterdir() if f"-tiny-{method}-" in p.name))
                   for method in ("polyak", "none")]
    assert mine.status()["averaging"] == {"updates": 3}
    averaged, trained = [[r["value"] for r in job.metrics()] for job in (mine, plain)]
    assert averaged[0] == trained[0] and averaged[1:] != trained[1:]  # one epoch averaged is that epoch's weights
