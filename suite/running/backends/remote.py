"""What the Ray and Slurm backends share: a job's environment on a cluster node, and the driver's view of
jobs that run elsewhere, read from their status files (which is why the results directory is shared)."""

from __future__ import annotations

from collections.abc import Iterable

from sema_suite.results.store import JobDir
from sema_suite.running.scheduler import Outcome, Progress


def node_env(gpu: bool, cpus: int) -> dict[str, str]:
    """A GPU job keeps the GPU its cluster assigned; a CPU job sees none and uses the cores it reserved."""
    return {} if gpu else {"CUDA_VISIBLE_DEVICES": "", "SUITE_THREADS": str(cpus)}


class Watch:
    """Start lines (every attempt: retries and requeues show) and finish lines, or the bar on a terminal."""

    def __init__(self, todo: list[JobDir], where: str) -> None:
        self.where = where
        self.progress = Progress(len(todo))
        self.started = {job.job_id: job.status().get("started") for job in todo}

    def poll(self, pending: Iterable[JobDir]) -> None:
        active = {}
        for job in pending:
            status = job.status()
            if status.get("state") != "running":
                continue
            active[f"{self.where}{len(active)}"] = job
            if status.get("started") != self.started[job.job_id]:
                self.started[job.job_id] = status.get("started")
                self.progress.started(job, f"{self.where} attempt {status.get('attempts')}")
        self.progress.running(active)

    def finished(self, outcome: Outcome) -> None:
        self.progress.finished(outcome)

    def close(self) -> None:
        self.progress.close()
