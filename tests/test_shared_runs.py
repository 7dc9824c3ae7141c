"""Shared runs: one training serves the none job and every ema job of a trajectory (see sema_suite.running.runs).

The equivalence is the contract: on CPU, where runs are deterministic, a shared run's rows and weights equal
those of one run per job (--no-share), bit for bit.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sema_suite import cli
from sema_suite.method.hooks import SemaHook
from sema_suite.results.store import JobDir, read_json
from sema_suite.running.jobs import expand_matrix
from sema_suite.running.runs import members, plan

FAST = ["depths=[1]", "width=4", "image_size=8", "batch_size=128", "epochs=2"]


def suite(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sema_suite.cli", *args], check=False, capture_output=True, text=True,
                          env={**__import__("os").environ, "SUITE_THREADS": "1"}, timeout=900)


def matrix(results: Path, methods: str, decays: str, *extra: str) -> subprocess.CompletedProcess:
    sets = [x for s in [*FAST, f"decay={decays}"] for x in ("--set", s)]
    return suite("run", "--task", "cls", "--method", methods, "--results-dir", str(results), *sets, *extra)


def test_plan_shares_a_trajectory_between_none_and_every_ema_decay() -> None:
    jobs = expand_matrix(["cls"], ["none", "ema", "sema"], [0, 1], None, {"decay": [0.9, 0.95, 0.99]}).jobs
    runs = plan(jobs)
    assert len(runs) == 2 * (1 + 3)  # per seed: one shared run, three sema runs
    shared = [run for run in runs if run.shared]
    assert [[j.spec.method for j in run.members] for run in shared] == [["none", "ema", "ema", "ema"]] * 2
    assert {j.spec.seed for j in shared[0].members} == {0} and {j.spec.seed for j in shared[1].members} == {1}
    assert shared[0].run_id != shared[1].run_id and "-shared-s0-" in shared[0].run_id
    assert all(run.run_id == run.members[0].job_id for run in runs if not run.shared)  # a lone job is its run
    assert len(plan(jobs, share=False)) == len(jobs)
    # other training knobs are other trajectories; a run's id names its members
    epochs = expand_matrix(["cls"], ["none", "ema"], [0], None, {"epochs": [1, 2]}).jobs
    assert sorted(len(run.members) for run in plan(epochs)) == [2, 2]
    fewer = expand_matrix(["cls"], ["none", "ema"], [0], None, {"decay": [0.9]}).jobs
    assert plan(fewer)[0].run_id != shared[0].run_id


def test_a_switch_takes_exactly_one_average() -> None:
    with pytest.raises(ValueError, match="exactly one averaged member"):
        SemaHook(switch=True, members=[{"name": "a", "average": None}, {"name": "b", "average": None}])


def _rows(results: Path) -> dict[str, list[tuple]]:
    return {p.parent.name: [(r["split"], r["iter"], r["metric"], r["value"]) for r in JobDir(results, p.parent.name).metrics()]
            for p in results.glob("*/job.json")}


def _export(results: Path, job_id: str, out: Path) -> dict[str, torch.Tensor]:
    """`suite export`, in this process (its own process is tested in tests/test_export.py)."""
    assert cli.main(["export", job_id, "--results-dir", str(results), "-o", str(out)]) == 0
    return torch.load(out, weights_only=True)


@pytest.mark.slow
def test_shared_run_equals_one_run_per_job_bit_for_bit(tmp_path: Path) -> None:
    shared, separate = tmp_path / "shared", tmp_path / "separate"
    first = matrix(shared, "none,ema,sema", "0.9,0.99")
    assert first.returncode == 0, first.stderr
    assert "5 job(s) to run in 3 training run(s) (1 shared by 3 none/ema jobs" in first.stderr
    alone = matrix(separate, "none,ema", "0.9,0.99", "--no-share")  # sema trains alone either way
    assert alone.returncode == 0, alone.stderr
    assert "3 job(s) to run in 3 training run(s)" in alone.stderr

    rows, separate_rows = _rows(shared), _rows(separate)
    assert {job_id: rows[job_id] for job_id in separate_rows} == separate_rows and len(separate_rows) == 3
    assert len(rows) == 5 and all(rows.values())

    (run,) = [p.parent for p in shared.glob("*/run.json")]
    jobs = members(JobDir(shared, run.name))
    assert [read_json(j.job_json)["spec"]["method"] for j in jobs] == ["none", "ema", "ema"]
    assert not any(j.path.joinpath("work").exists() for j in jobs) and (run / "work").is_dir()  # trained once
    for job in jobs:
        assert {r["run_id"] for r in job.metrics()} == {run.name}
        assert job.last_checkpoint() is not None and job.last_checkpoint().parent == run / "work"
    for job_id in rows:
        if not any(j.job_id == job_id for j in jobs):
            assert {r["run_id"] for r in JobDir(shared, job_id).metrics()} == {job_id}  # sema: its own run

    # where the time went: the run's totals, and each job's share (its own evaluation and averaging)
    total = JobDir(shared, run.name).status()["costs"]
    costs = [j.status()["costs"] for j in jobs]
    assert all(c["train_s"] == total["train_s"] > 0 and c["eval_s"] > 0 for c in costs)
    assert sum(c["eval_s"] for c in costs) == pytest.approx(total["eval_s"], abs=0.01)
    assert costs[0]["averaging_s"] == 0 < costs[1]["averaging_s"]  # none keeps no average
    assert all(max(r["wall_time_s"] for r in j.metrics()) <= total["wall_s"] for j in jobs)

    # each job's weights come out of the shared checkpoint exactly as from its own run's
    for job in jobs:
        method = read_json(job.job_json)["spec"]["method"]
        ours, theirs = (_export(d, job.job_id, tmp_path / f"{d.name}-{job.job_id}.pth") for d in (shared, separate))
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), method

    # a decay added to the finished matrix trains the trajectory again for it alone; the others keep their rows
    before = {j.job_id: j.metrics_csv.read_bytes() for j in jobs}
    more = matrix(shared, "ema", "0.9,0.95,0.99")
    assert more.returncode == 0, more.stderr
    assert "1 to run, 2 already done" in more.stderr and "it is trained again" in more.stderr
    assert {j.job_id: j.metrics_csv.read_bytes() for j in jobs} == before
    (new,) = set(_rows(shared)) - set(rows)
    assert read_json(JobDir(shared, new).job_json)["run_id"] == new and JobDir(shared, new).status()["state"] == "done"


@pytest.mark.slow
def test_dashboard_lists_jobs_not_runs_with_their_costs(tmp_path: Path) -> None:
    pytest.importorskip("streamlit")
    from sema_dashboard import tables
    from sema_dashboard.store import ResultsStore

    results = tmp_path / "results"
    done = matrix(results, "none,ema", "0.9")
    assert done.returncode == 0, done.stderr
    (run,) = [p.parent.name for p in results.glob("*/run.json")]
    snapshot = ResultsStore(results).snapshot()
    assert len(snapshot.jobs) == 2 and run not in {j.job_id for j in snapshot.jobs}
    frame = tables.jobs_frame(snapshot.jobs)
    assert set(frame["run"]) == {run}
    assert (frame["train s"] > 0).all() and (frame["eval s"] > 0).all() and (frame["wall s"] > 0).all()


@pytest.mark.slow
def test_each_job_of_a_shared_run_gets_its_own_previews(tmp_path: Path) -> None:
    results = tmp_path / "results"
    short = ["epochs=1", "train_sequences=128", "val_sequences=32", "test_sequences=32"]  # 4 steps, then a preview
    done = suite("run", "--task", "video", "--method", "none,ema", *[x for s in short for x in ("--set", s)],
                 "--results-dir", str(results))
    assert done.returncode == 0, done.stderr
    previews = {p.parent.parent.name: p.read_bytes() for p in results.glob("*/samples/*.png")}
    assert len(previews) == 2 and not any("shared" in name for name in previews)
    assert len(set(previews.values())) == 2  # the trained and the averaged weights predict differently
