"""The hook that measures flatness and sharpness during training (``suite run --analyze every_eval=N``)."""

from __future__ import annotations

from typing import Any

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from sema_suite.method.hooks import evaluated_member
from sema_suite.results.store import JobDir
from sema_suite.running.resumable import random_state, set_random_state


@HOOKS.register_module()
class AnalysisHook(Hook):
    """Measures flatness and sharpness during training (``suite run --analyze every_eval=N``).

    At every N-th evaluation (counted from the job's recorded evaluations, so a resumed run measures at the
    same ones) the reported weights are measured as ``suite analyze`` measures the final ones, and the rows
    go into ``analysis.csv`` at that evaluation's epoch and iteration. The final evaluation is left to the
    end-of-run measurement. The training's random stream is restored afterwards: a run measured during
    training trains on exactly the same random numbers as one that is not. In a shared run, each member is
    measured after its own evaluation pass.
    """

    priority = "VERY_LOW"  # after SemaHook has swapped the trained weights back and ResultsHook recorded the rows

    def __init__(self, results_dir: str, job_ids: list[str], task: str, settings: dict[str, Any]) -> None:
        from sema_suite.analysis.measure import Settings

        self.jobs = {job_id: JobDir(results_dir, job_id) for job_id in job_ids}
        self.task = task
        self.settings = Settings(**settings)

    def after_val_epoch(self, runner, metrics: dict[str, float] | None = None) -> None:
        from sema_suite.analysis.measure import record_measures
        from sema_suite.registry import get_task

        loop = runner.train_loop
        if runner.iter >= loop.max_iters:
            return  # the final weights are measured after training, with the landscape
        member = evaluated_member(runner)
        job = self.jobs[member] if member in self.jobs else next(iter(self.jobs.values()))
        evaluations = len({r["iter"] for r in job.metrics()})
        if evaluations % self.settings.every_eval:
            return
        state = random_state()
        try:
            record_measures(runner, get_task(self.task), job, self.settings, final=False)
        except Exception as err:  # noqa: BLE001  (a measurement never ends the training it watches)
            runner.logger.warning(f"measuring {job.job_id} during training failed: {type(err).__name__}: {err}")
            failures = job.status().get("analysis_failures", [])
            job.update_status(analysis_failures=[*failures, {"iter": runner.iter,
                                                             "error": f"{type(err).__name__}: {err}"}])
        finally:
            set_random_state(state)
