"""One reader of result folders, for ``suite leaderboard``, the end of ``suite run`` and the dashboard alike.

A file that cannot be read is skipped with a warning naming it and what is wrong with it, never an error that
stops the whole table. A result a reader could lose without noticing is named too, by the same rules
(:func:`lost_results`) in the CLI and the dashboard: a job with rows but no ``status.json``, a done job with no
rows, a job missing a split or metric that the other seeds of its setting have, a (task, preset) with no test
split (tuned rows are reported on test).

Plain standard library: the CLI and the dashboard read results without importing torch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from sema_suite.errors import CorruptResults
from sema_suite.results.store import (
    INTERPOLATION_NUMBERS,
    LANDSCAPE_NUMBERS,
    JobDir,
    read_json,
    read_metrics,
    read_table,
)

MEASURED = "measured"  # marks a row of `suite analyze` (flatness, barriers) among a job's training rows
JOB_FILES = ("job.json", "status.json", "metrics.csv")  # any of them makes a folder a job's
# what suite analyze writes into a job's folder, and how to read each
MEASURED_FILES: dict[str, Callable[[Path], list[dict[str, Any]]]] = {
    "analysis.csv": read_metrics,
    "barriers.csv": read_metrics,
    "landscape.csv": lambda path: read_table(path, LANDSCAPE_NUMBERS),
    "interpolation.csv": lambda path: read_table(path, INTERPOLATION_NUMBERS),
}


def result_folders(path: Path) -> list[Path]:
    """``path`` when it holds job folders; else its subfolders that do -- the tiers of a parent such as
    ``published/`` (``published/tiny``, ``published/long``), whose leaderboards are one table (the preset column
    tells them apart)."""
    path = Path(path)
    if _holds_jobs(path):
        return [path]
    return [folder for folder in sorted(path.iterdir()) if _holds_jobs(folder)] if path.is_dir() else []


def _holds_jobs(path: Path) -> bool:
    return path.is_dir() and any(any(path.glob(f"*/{name}")) for name in JOB_FILES)


def job_folders(results_dir: Path) -> list[JobDir]:
    """Every job folder under ``results_dir`` (or its tiers), by name; a shared run's own folder (``run.json``)
    holds no results and is left out."""
    return [JobDir(folder, name) for folder in result_folders(results_dir)
            for name in sorted({p.parent.name for n in JOB_FILES for p in folder.glob(f"*/{n}")})
            if not (folder / name / "run.json").exists()]


def _jobs(results_dir: Path, job_ids: Iterable[str] | None) -> list[JobDir]:
    """Every job folder under ``results_dir``, or those of ``job_ids``."""
    return job_folders(results_dir) if job_ids is None else [JobDir(results_dir, name) for name in job_ids]


def finished_jobs(results_dir: Path, job_ids: Iterable[str] | None = None) -> list[JobDir]:
    """Jobs whose status is done (all of them, or those of ``job_ids``); one whose status cannot be read is left
    out (:func:`read_results` says so)."""
    jobs = _jobs(results_dir, job_ids)
    return [job for job in jobs if _state(job) == "done"]


def _state(job: JobDir) -> str | None:
    try:
        return job.status().get("state")
    except CorruptResults:
        return None


@dataclass(frozen=True)
class Seen:
    """What the rules of :func:`lost_results` need of one job folder."""

    job_id: str
    state: str | None  # status.json's state; None when there is no status.json
    rows: list[dict[str, Any]]  # its metrics.csv's rows


@dataclass
class Reading:
    """What one pass over result folders found: the rows of the done jobs, and what a reader must be told."""

    done: list[JobDir] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)  # the done jobs' metrics rows and measured rows
    environments: dict[str, dict[str, Any]] = field(default_factory=dict)  # done job -> its job.json's environment
    seen: list[Seen] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # files skipped, each with what is wrong

    def warnings(self) -> list[str]:
        return [*self.problems, *lost_results(self.seen)]

    def __iadd__(self, other: Reading) -> Self:
        self.done += other.done
        self.rows += other.rows
        self.environments |= other.environments
        self.seen += other.seen
        self.problems += other.problems
        return self


def read_results(results_dir: Path, job_ids: Iterable[str] | None = None) -> Reading:
    """Every job folder under ``results_dir`` (or those of ``job_ids``), each unreadable file skipped and named."""
    reading = Reading()
    jobs = _jobs(results_dir, job_ids)
    for job in jobs:  # every file read, in the dashboard's order, so both name the same problems
        doc = _read(reading, job.job_json, read_json) if job.job_json.exists() else None
        status = _read(reading, job.status_json, read_json) if job.status_json.exists() else None
        rows = _read(reading, job.metrics_csv, read_metrics)
        analysis, barriers, _, _ = (_read(reading, job.path / name, reader) or []  # all read, as the dashboard
                                    for name, reader in MEASURED_FILES.items())  # does: the same problems named
        if rows is None or (job.status_json.exists() and status is None) or (status is None and not rows):
            continue  # an unreadable file (named in the problems), or a job planned and never started
        reading.seen.append(Seen(job.job_id, None if status is None else status.get("state"), rows))
        if status is not None and status.get("state") == "done":
            reading.environments[job.job_id] = (doc or {}).get("environment") or {}
            reading.done.append(job)
            reading.rows += [*rows, *({**row, MEASURED: True} for row in (*analysis, *barriers))]
    return reading


def _read(reading: Reading, path: Path, reader: Callable[[Path], Any]) -> Any:
    """``reader(path)``, or None with the file named in ``reading.problems`` when it cannot be read."""
    try:
        return reader(path)
    except CorruptResults as err:
        reading.problems.append(f"skipped {err}")
        return None


def lost_results(seen: list[Seen]) -> list[str]:
    """What a table built from these jobs would silently leave out, each said with what to do about it."""
    warnings = []
    done = [job for job in seen if job.state == "done"]
    for job in seen:
        if job.state is None and job.rows:
            warnings.append(f"{job.job_id} has metrics rows but no status.json, so no table uses it (the dashboard "
                            "lists it as pending): re-run the same `suite run` to finish it, or restore its status.json")
    for job in done:
        if not job.rows:
            warnings.append(f"{job.job_id} is done but recorded no metric rows, so no table has it: its evaluator "
                            "reports metric names its task does not declare, or its metrics.csv was emptied; see "
                            "its job.log, then delete its folder and re-run the same `suite run`")
    settings: dict[tuple, list[Seen]] = defaultdict(list)
    for job in done:
        if job.rows:
            first = job.rows[0]
            settings[(first["task"], first["preset"], first.get("variant", ""), first["method"])].append(job)
    for (task, preset, variant, method), jobs in sorted(settings.items()):
        recorded = {job.job_id: {(r["split"], r["metric"]) for r in job.rows} for job in jobs}
        every = set().union(*recorded.values())
        for job in jobs:
            if missing := sorted(every - recorded[job.job_id]):
                names = ", ".join(f"{split} {metric}" for split, metric in missing)
                warnings.append(f"{job.job_id} ({task}/{preset} {method}{f' [{variant}]' if variant else ''} seed "
                                f"{job.rows[0]['seed']}) has no {names} rows that its other seeds have: those rows "
                                "are averaged over one seed fewer; delete its folder and re-run the same `suite run`")
    by_preset: dict[tuple[str, str], set[str]] = defaultdict(set)
    for job in done:
        for row in job.rows:
            by_preset[(row["task"], row["preset"])].add(row["split"])
    for (task, preset), splits in sorted(by_preset.items()):
        if "test" not in splits:
            warnings.append(f"{task}/{preset} has no test rows, so the leaderboard has no tuned rows for it (a tuned "
                            "variant is chosen on val and reported on test): give the task a test_dataloader, "
                            "test_cfg and test_evaluator, as the built-in tasks do")
    return warnings
