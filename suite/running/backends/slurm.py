"""The Slurm backend: one submitit job array, one array task per job, each running the job's worker process.

Slurm jobs run on the cluster's shared filesystem (as Slurm jobs do), so the results directory is used in
place: ``results/.submitit/`` holds submitit's pickles and Slurm's logs, each job's own log stays in
``results/<job_id>/job.log``.

Preemption and time-outs: Slurm signals the task (submitit asks for USR2 ahead of the time limit); submitit
then calls :meth:`WorkerTask.checkpoint`, which returns the same job to requeue, and the task stops its worker
as it exits -- the job's last checkpoint stays in its work dir. The requeued task runs the worker again, which
resumes from that checkpoint. ``cluster="local"`` runs the same arrays on this machine with submitit's LocalExecutor, which
requeues the same way.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import submitit

from sema_suite.errors import SuiteError
from sema_suite.results.store import JobDir
from sema_suite.running.backends.remote import Watch, node_env
from sema_suite.running.scheduler import Outcome, job_outcome, run_worker


class WorkerTask:
    """What each array task runs: the job's worker, to its end; checkpointable, so requeued on preemption."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(self, results_dir: str, job_id: str) -> int:
        return run_worker(JobDir(Path(results_dir), job_id), self.env)

    def checkpoint(self, results_dir: str, job_id: str) -> submitit.helpers.DelayedSubmission:
        """Called by submitit (in a signal handler) on preemption or time-out: requeue this same job.

        submitit then exits this process by raising SystemExit, and :func:`run_worker` stops the worker on
        the way out; the job's last checkpoint stays in its work dir for the requeued task to resume from.
        """
        return submitit.helpers.DelayedSubmission(WorkerTask(self.env), results_dir, job_id)


class SlurmBackend:
    def __init__(self, cluster: str = "slurm", partition: str | None = None, timeout_min: int = 24 * 60,
                 gpus_per_node: int = 1, cpus_per_job: int = 1, array_parallelism: int = 64,
                 max_requeues: int = 3, poll_s: float = 2.0) -> None:
        if cluster == "slurm" and shutil.which("sbatch") is None:
            raise SuiteError("the slurm backend found no Slurm here (no sbatch on PATH); "
                             "--submitit-cluster local runs the same job arrays on this machine")
        self.cluster = cluster
        self.parameters = {"name": "sema-bench", "timeout_min": timeout_min, "gpus_per_node": gpus_per_node,
                           "cpus_per_task": cpus_per_job, "slurm_partition": partition,
                           "slurm_array_parallelism": array_parallelism}
        self.env = node_env(gpus_per_node > 0, cpus_per_job)
        self.max_requeues = max_requeues
        self.poll_s = poll_s

    def run(self, todo: list[JobDir]) -> list[Outcome]:
        if not todo:
            return []
        results_dir = todo[0].path.parent.resolve()
        executor = submitit.AutoExecutor(folder=results_dir / ".submitit", cluster=self.cluster,
                                         slurm_max_num_timeout=self.max_requeues,
                                         local_max_num_timeout=self.max_requeues)
        executor.update_parameters(**self.parameters)
        jobs = executor.map_array(WorkerTask(self.env), [str(results_dir)] * len(todo), [j.job_id for j in todo])
        print(f"submitit ({self.cluster}): array of {len(jobs)} job(s), first id {jobs[0].job_id}",
              file=sys.stderr, flush=True)
        return self._follow(dict(zip(jobs, todo)))

    def _follow(self, handles: dict[submitit.Job, JobDir]) -> list[Outcome]:
        watch = Watch(list(handles.values()), "slurm")
        pending, outcomes = dict(handles), []
        try:
            while pending:
                for handle, job in list(pending.items()):
                    try:
                        if not handle.done():  # the debug executor runs the job here
                            continue
                        outcome = job_outcome(job, handle.result())
                    except Exception as err:  # noqa: BLE001  (submitit raises what the task or Slurm reported)
                        outcome = job_outcome(job, None, lost=f"slurm: {type(err).__name__}: {err}".splitlines()[0])
                    del pending[handle]
                    outcomes.append(outcome)
                    watch.finished(outcome)
                watch.poll(pending.values())
                if pending:
                    time.sleep(self.poll_s)
        finally:
            for handle in pending:  # Ctrl-C: cancel what is still queued or running
                handle.cancel(check=False)
            watch.close()
        return outcomes
