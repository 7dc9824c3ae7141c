"""`suite run --backend ray|slurm` on real engines: a local Ray instance and submitit's LocalExecutor.

Both run the tiny matrix of tests/matrix.py through the same worker processes and job folders as the local
backend, get a worker killed or preempted half-way, and must end with the uninterrupted run's leaderboard.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sema_suite.results.store import JobDir

from matrix import assert_complete, env, jobs, recorded, run_matrix, start_matrix, training, worker_processes


def wait_for_worker(results: Path, proc: subprocess.Popen, rows: int, timeout: float = 300) -> tuple[int, str, int]:
    """(pid, run id, parent pid) of a worker whose run is training and has recorded ``rows`` evaluations."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for pid, (job_id, ppid) in worker_processes(results).items():
            run = JobDir(results, job_id)
            if training(run, pid) and recorded(run) >= rows:
                return pid, job_id, ppid
        time.sleep(0.05)
    raise AssertionError(f"no worker got to {rows} evaluation(s); see {results.parent / (results.name + '.log')}")


@pytest.mark.slow
@pytest.mark.xdist_group("matrix")  # one worker runs the reference matrix (conftest.py) for all
def test_ray_retries_a_job_whose_worker_was_killed(tmp_path: Path, reference: str) -> None:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        address = ray.get_runtime_context().gcs_address
        results = tmp_path / "results"
        driver = start_matrix(results, "--backend", "ray", "--ray-address", address, "--max-retries", "2")
        _, job_id, ray_worker = wait_for_worker(results, driver, rows=1)
        assert ray_worker != driver.pid  # the job runs under a Ray worker process, not the driver
        os.kill(ray_worker, signal.SIGKILL)  # a system failure: the process running the Ray task dies
        assert driver.wait(timeout=600) == 0, (tmp_path / "results.log").read_text()
        assert_complete(results, reference)
        killed = JobDir(results, job_id).status()
        assert killed["attempts"] == 2 and killed["resumed_from"], killed
        assert f"[ray attempt 2] start {job_id}" in (tmp_path / "results.log").read_text()

        # a job that fails by itself is recorded as failed, once: not a system failure, so not retried
        bad = subprocess.run([sys.executable, "-m", "sema_suite.cli", "run", "--task", "cls", "--method", "ema",
                              "--set", "epochs=1", "--set", "cfg.optim_wrapper.optimizer.lr=nan",  # lr=nan is refused
                              "--results-dir", str(tmp_path / "bad"),
                              "--backend", "ray", "--ray-address", address, "--max-retries", "2"],
                             capture_output=True, text=True, env=env(), timeout=600)
        assert bad.returncode == 1, bad.stderr
        assert "loss became nan" in bad.stdout
        (failed,) = jobs(tmp_path / "bad")
        assert failed.status()["state"] == "failed" and failed.status()["attempts"] == 1
    finally:
        ray.shutdown()


@pytest.mark.slow
@pytest.mark.xdist_group("matrix")
def test_matrix_started_locally_is_finished_on_slurm_through_a_preemption(tmp_path: Path, reference: str) -> None:
    results = tmp_path / "results"
    local = start_matrix(results)  # one local worker: the first run (none and ema) finishes, sema's is cut short
    deadline = time.monotonic() + 300
    while not any(job.status()["state"] == "done" for job in jobs(results)) and time.monotonic() < deadline:
        time.sleep(0.05)
    wait_for_worker(results, local, rows=1)
    os.killpg(local.pid, signal.SIGKILL)  # the whole local run dies, as in a crash
    local.wait()

    slurm = start_matrix(results, "--backend", "slurm", "--submitit-cluster", "local", "--gpus-per-node", "0")
    _, job_id, task = wait_for_worker(results, slurm, rows=1)
    os.kill(task, signal.SIGUSR2)  # what Slurm sends (through submitit) before preempting or timing out a job
    assert slurm.wait(timeout=600) == 0, (tmp_path / "results.log").read_text()
    log = (tmp_path / "results.log").read_text()
    assert "3 job(s): 1 to run, 2 already done" in log
    assert_complete(results, reference)
    preempted = JobDir(results, job_id).status()
    assert preempted["attempts"] >= 2 and preempted["resumed_from"], preempted
    assert f"[slurm attempt {preempted['attempts']}] start {job_id}" in log
    assert "Requeued job" in "".join(p.read_text() for p in (results / ".submitit").glob("*_log.*"))

    again = run_matrix(results, "--backend", "slurm", "--submitit-cluster", "local", "--gpus-per-node", "0")
    assert again.returncode == 0 and "0 to run, 3 already done" in again.stderr


def test_slurm_without_slurm_is_a_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "sbatch").exists())
    result = subprocess.run([sys.executable, "-m", "sema_suite.cli", "run", "--backend", "slurm",
                             "--results-dir", str(tmp_path / "results")],
                            capture_output=True, text=True, env={**env(), "PATH": path}, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "no Slurm here (no sbatch on PATH); --submitit-cluster local" in result.stderr
    assert not (tmp_path / "results").exists()
