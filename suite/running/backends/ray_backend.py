"""The Ray backend: each job is one Ray task that runs the job's worker process on whichever node Ray picks.

Results: tasks write straight into the results directory, as local workers do, so it must be a directory
every node of the cluster sees at the same absolute path (NFS, Lustre, a cloud file share; on a one-machine
cluster any local directory). The driver follows progress from the same files, and the suite must be
installed on every node (the Docker image has it).

Failures: a job whose training fails (an exception, a NaN loss) is recorded as failed in its status.json and
not retried. A system failure is retried up to ``max_retries`` times and resumes from the job's last
checkpoint: the Ray worker or its node dies (Ray retries the task), or the job's process is killed by a
signal, e.g. by the OOM killer (the task raises :class:`WorkerDied`, which Ray retries).
"""

from __future__ import annotations

import sys
from pathlib import Path

import ray
from ray.exceptions import RayError

from sema_suite.errors import SuiteError
from sema_suite.results.store import JobDir
from sema_suite.running.backends.remote import Watch, node_env
from sema_suite.running.scheduler import Outcome, job_outcome, run_worker


class WorkerDied(Exception):
    """The job's worker process was killed by a signal: a system failure, so Ray retries the task."""


@ray.remote
def run_on_node(results_dir: str, job_id: str, env: dict[str, str]) -> int:
    """Runs on a cluster node: the job's worker process, to its end."""
    code = run_worker(JobDir(Path(results_dir), job_id), env)
    if code < 0:
        raise WorkerDied(f"job {job_id}: its worker was killed by signal {-code}")
    return code


class RayBackend:
    def __init__(self, address: str | None, max_retries: int = 3, cpus_per_job: int = 1, poll_s: float = 1.0,
                 jobs_per_gpu: int = 1, gpus_per_job: int = 1) -> None:
        self.address = address
        self.gpus_per_job = gpus_per_job  # GPUs a task reserves for a job on several processes
        self.jobs_per_gpu = jobs_per_gpu  # a task reserves 1/N of a GPU: N tasks share it
        self.max_retries = max_retries
        self.cpus_per_job = cpus_per_job
        self.poll_s = poll_s

    def _connect(self) -> bool:
        """Join the cluster (or start a Ray instance here); True when jobs should each reserve a GPU."""
        try:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        except ConnectionError as err:
            raise SuiteError(f"could not join the Ray cluster at {self.address}: {err}") from err
        nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
        total = ray.cluster_resources()
        print(f"ray: {len(nodes)} node(s), {total.get('CPU', 0):g} CPUs, {total.get('GPU', 0):g} GPUs",
              file=sys.stderr)
        widest = max((node.get("CPU", 0) for node in nodes), default=0)
        if self.cpus_per_job > widest:
            raise SuiteError(f"--cpus-per-job {self.cpus_per_job}: no node of this Ray cluster has that many CPUs "
                             f"(the largest has {widest:g})")
        if self.jobs_per_gpu > 1 and not total.get("GPU"):
            raise SuiteError(f"--jobs-per-gpu {self.jobs_per_gpu}: this Ray cluster has no GPU to share; drop it")
        return total.get("GPU", 0) > 0

    def run(self, todo: list[JobDir]) -> list[Outcome]:
        if not todo:
            return []
        try:
            gpu = self._connect()
            task = run_on_node.options(num_cpus=self.cpus_per_job, num_gpus=self.gpus_per_job / self.jobs_per_gpu if gpu else 0,
                                       max_retries=self.max_retries, retry_exceptions=[WorkerDied])
            env = node_env(gpu, self.cpus_per_job)
            refs = {task.remote(str(job.path.parent.resolve()), job.job_id, env): job for job in todo}
            return self._follow(refs)
        finally:
            ray.shutdown()  # leaves a cluster we joined running; stops an instance we started

    def _follow(self, refs: dict[ray.ObjectRef, JobDir]) -> list[Outcome]:
        watch = Watch(list(refs.values()), "ray")
        pending, outcomes = list(refs), []
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1, timeout=self.poll_s)
                for ref in ready:
                    job = refs[ref]
                    try:
                        outcome = job_outcome(job, ray.get(ref))
                    except RayError as err:  # retries used up, or the cluster lost the task
                        outcome = job_outcome(job, None, lost=f"ray: {type(err).__name__}: {err}".splitlines()[0])
                    outcomes.append(outcome)
                    watch.finished(outcome)
                watch.poll(refs[ref] for ref in pending)
        finally:
            for ref in pending:  # Ctrl-C: stop our tasks; their workers stop with them and record it
                ray.cancel(ref, force=True)
            watch.close()
        return outcomes
