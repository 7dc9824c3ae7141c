"""Training runs: which jobs share one trajectory, and where a shared run keeps its files.

``ema`` does not change training: with the same seed, its trained weights follow exactly the trajectory of
``none``. So the ``none`` job and every ``ema`` job of the same (task, preset, seed, training knobs) are one
run: it trains once, keeps one average per ``ema`` job, and evaluates each job's weights in turn at every
evaluation (so does any method whose :class:`~sema_suite.method.methods.Method` says it does not change the
trajectory). A ``sema``, ``swa`` or ``lookahead`` job changes training (a switch, SWA's learning rate, the slow
weights) and needs a run of its own, as does every job under ``suite run --no-share``. A run of one job is that job (its folder, its id). A shared run has a
folder of its own::

    results/<run_id>/run.json     its member job ids (and what job.json says of where data and results live)
    results/<run_id>/status.json  the run's state, progress and cost breakdown
    results/<run_id>/work/        its checkpoints: the trained weights and every member's average
    results/<run_id>/job.log

and each member's folder holds ``job.json`` (naming the ``run_id``), ``status.json`` and ``metrics.csv`` as
any job's does; rows name the run in their ``run_id`` column.

Plain standard library: the CLI plans before it imports torch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sema_suite.method.methods import get_method
from sema_suite.results.store import JobDir, read_json
from sema_suite.running.jobs import JobSpec, ResolvedJob


def trajectory(job: ResolvedJob) -> dict[str, Any] | None:
    """What decides a job's training trajectory, or None when its method changes it (``sema``): a key shared runs
    group by."""
    if get_method(job.spec.method).changes_trajectory:
        return None
    identity = job.identity()
    return {key: identity[key] for key in ("task", "preset", "seed", "params", "config_edits", "world_size")
            if key in identity}


@dataclass(frozen=True)
class Run:
    """One training run and the jobs it reports: ``none`` first, then each ``ema`` job, for a shared run."""

    members: tuple[ResolvedJob, ...]

    @property
    def shared(self) -> bool:
        return len(self.members) > 1

    @property
    def run_id(self) -> str:
        lead = self.members[0]
        if not self.shared:
            return lead.job_id
        key = {"trajectory": trajectory(lead), "members": sorted(job.job_id for job in self.members)}
        digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=repr).encode()).hexdigest()
        return f"{lead.spec.task}-{lead.spec.preset}-shared-s{lead.spec.seed}-{digest[:8]}"

    @property
    def lead(self) -> ResolvedJob:
        """The job whose task config the run trains with (every member's is the same)."""
        return self.members[0]


def plan(jobs: Iterable[ResolvedJob], share: bool = True) -> list[Run]:
    """The runs that produce ``jobs``: one per trajectory for ``none``/``ema`` jobs when ``share``, one per job
    otherwise; in the order of each run's first job."""
    groups: dict[str, list[ResolvedJob]] = {}
    for job in jobs:
        key = trajectory(job) if share else None
        groups.setdefault(json.dumps(key, sort_keys=True, default=repr) if key else job.job_id, []).append(job)
    return [Run(tuple(sorted(group, key=lambda j: j.spec.method != "none"))) for group in groups.values()]


def retrained_notes(runs: list[Run], matrix: list[ResolvedJob], results_dir: Path) -> list[str]:
    """What to tell the user before running: an ``ema`` job whose trajectory already finished for other jobs
    (its ``none`` job, or ``ema`` jobs of the matrix at other knobs) trains that trajectory again, since an
    average must see the whole of it; the finished jobs keep their rows."""
    notes = []
    for run in runs:
        averages = [job for job in run.members if job.spec.method != "none" and trajectory(job) is not None]
        if not averages:
            continue
        lead = averages[0].spec
        plain = JobSpec(lead.task, lead.preset, "none", lead.seed, lead.overrides, lead.world_size).resolve().job_id
        mates = dict.fromkeys([plain, *(j.job_id for j in matrix if trajectory(j) == trajectory(averages[0]))])
        mine = {j.job_id for j in run.members}
        finished = [job_id for job_id in mates if job_id not in mine
                    and JobDir(results_dir, job_id).status().get("state") == "done"]
        if finished:
            names = ", ".join(job.job_id for job in averages)
            notes.append(f"note: {names} average(s) a trajectory already trained for {', '.join(finished)}: an "
                         "average must see the whole trajectory, so it is trained again; finished jobs keep their rows")
    return notes


def write_run(results_dir: Path, run: Run, doc: dict[str, Any]) -> JobDir:
    """A shared run's folder with its ``run.json`` (``doc``: what every member's job.json says besides its spec)."""
    from sema_suite.results.store import write_json

    folder = JobDir(results_dir, run.run_id)
    write_json(folder.path / "run.json", {**doc, "run_id": run.run_id,
                                          "members": [job.job_id for job in run.members]})
    return folder


def run_json(unit: JobDir) -> Path | None:
    """A shared run's ``run.json`` (None for a job's own folder)."""
    path = unit.path / "run.json"
    return path if path.exists() else None


def members(unit: JobDir) -> list[JobDir]:
    """The jobs a worker unit (a job's folder, or a shared run's) produces."""
    if run_json(unit) is None:
        return [unit]
    return [JobDir(unit.path.parent, job_id) for job_id in read_json(run_json(unit))["members"]]
