"""The default backend: worker processes on this machine, one pinned GPU each or sharing the CPU cores."""

from __future__ import annotations

from dataclasses import dataclass

from sema_suite.results.store import JobDir
from sema_suite.running.scheduler import Outcome, run_jobs, worker_slots


@dataclass
class LocalBackend:
    gpus: list[str] | None = None
    workers: int = 1
    jobs_per_gpu: int = 1
    gpus_per_job: int = 1

    def run(self, todo: list[JobDir]) -> list[Outcome]:
        return run_jobs(todo, worker_slots(self.gpus, self.workers, self.jobs_per_gpu, self.gpus_per_job))
