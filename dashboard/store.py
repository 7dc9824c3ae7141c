"""Read a results directory for the dashboard, fast and read-only.

Every file is parsed through the suite's own readers (:mod:`sema_suite.results.store`) and cached under its
modification time and size, so a page refresh over a thousand jobs re-parses only what changed: a rerun with
nothing changed costs one ``scandir`` per job folder and returns the same :class:`Snapshot`, whose derived
tables are computed once. The leaderboard is kept per (task, preset), whose numbers never depend on another
one's jobs, so a changed job recomputes only its own task's part. A file that cannot be read (corrupt, or
half-copied by hand) is skipped and reported as a problem, never raised.
No Streamlit here: the app keeps one :class:`ResultsStore` per directory in ``st.cache_resource``.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from sema_suite.errors import CorruptResults
from sema_suite.results.leaderboard import SELECTION_ORDER, aggregate, newest_jobs, primary_metrics
from sema_suite.results.reading import MEASURED as MEASURED_ROW
from sema_suite.results.reading import MEASURED_FILES as MEASURED
from sema_suite.results.reading import Seen, lost_results
from sema_suite.results.store import JobDir, read_json, read_metrics

FILES = ("job.json", "status.json", "metrics.csv", "samples", *MEASURED)
RUN_FILE = "run.json"  # marks a shared run's own folder, which is not a job
_NUMBER = re.compile(r"(\d+(?:\.\d+)?)(?!.*\d)")  # the last number in a file name: "epoch_12" -> 12


@dataclass(frozen=True)
class Sample:
    """One PNG a generation/video task wrote under ``<job>/samples/``; ``step`` is its epoch or iteration."""

    path: Path
    step: float | None


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    spec: dict[str, Any]  # job.json's "spec": task, preset, method, seed, overrides, params, averaging...
    status: dict[str, Any]  # status.json: state, error, progress, averaging, updated...
    rows: list[dict[str, Any]]  # metrics.csv, typed
    samples: tuple[Sample, ...] = ()
    analysis: list[dict[str, Any]] = field(default_factory=list)  # analysis.csv and barriers.csv (suite analyze)
    landscape: list[dict[str, Any]] = field(default_factory=list)  # landscape.csv
    interpolation: list[dict[str, Any]] = field(default_factory=list)  # interpolation.csv (sema jobs)
    environment: dict[str, Any] = field(default_factory=dict)  # job.json's: code hash, packages, lock
    stamp: tuple = ()  # (mtime_ns, size) of each of FILES when read (None: absent): what caches of it key on

    @property
    def state(self) -> str:
        return str(self.status.get("state", "pending"))

    def get(self, key: str) -> Any:
        """A spec field, falling back to the metrics rows (a job whose job.json could not be read)."""
        if key in self.spec:
            return self.spec[key]
        return self.rows[0][key] if self.rows else None

    @property
    def part(self) -> tuple[str, str] | None:
        """The (task, preset) its rows belong to: the leaderboard's unit of recomputation."""
        first = (self.rows or self.analysis or [None])[0]
        return None if first is None else (first["task"], first["preset"])


def board_of(jobs: list[JobRecord]) -> list[dict[str, Any]]:
    """The leaderboard of some done jobs: :func:`sema_suite.results.leaderboard.aggregate`, its tuned selection
    ranked by each task's primary metric."""
    rows = [row for job in jobs for row in (*job.rows, *job.analysis)]
    return aggregate(rows, primary_metrics(rows))


@dataclass
class Snapshot:
    """The whole results directory at one moment; derived tables are computed once per snapshot.
    ``board`` computes one (task, preset)'s leaderboard from its done jobs (the store's caches each part)."""

    results_dir: Path
    jobs: list[JobRecord]
    problems: list[str] = field(default_factory=list)
    board: Callable[[tuple[str, str], list[JobRecord]], list[dict[str, Any]]] = lambda _, jobs: board_of(jobs)

    @cached_property
    def rows(self) -> list[dict[str, Any]]:
        """Every recorded evaluation, from jobs in any state."""
        return [row for job in self.jobs for row in job.rows]

    @cached_property
    def curve_jobs(self) -> list[JobRecord]:
        """Done and running jobs (the curves are live; a failed run would bend the mean), one per (task, preset,
        variant, method, seed): where two claim the same seed, e.g. one left from an older version of a preset,
        the newest, by the leaderboard's own rule. So a curve never averages two runs of one seed."""
        live = [job for job in self.jobs if job.state in ("done", "running") and job.rows]
        kept, _ = newest_jobs([row for job in live for row in job.rows])
        return [job for job in live if job.job_id in kept]

    @cached_property
    def curve_rows(self) -> list[dict[str, Any]]:
        return [row for job in self.curve_jobs for row in job.rows]

    @cached_property
    def repeated(self) -> list[JobRecord]:
        """Done and running jobs left out of the curves: an older job of a seed that a newer one also ran."""
        kept = {job.job_id for job in self.curve_jobs}
        return [job for job in self.jobs if job.state in ("done", "running") and job.rows and job.job_id not in kept]

    @cached_property
    def curves(self) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
        """(task, preset, metric) -> its :attr:`curve_rows`: a view's rows without a pass over every job's."""
        out: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for row in self.curve_rows:
            out.setdefault((row["task"], row["preset"], row["metric"]), []).append(row)
        return out

    @cached_property
    def metrics(self) -> dict[tuple[str, str], dict[str, bool]]:
        """(task, preset) -> metric -> higher is better, over every recorded evaluation."""
        out: dict[tuple[str, str], dict[str, bool]] = {}
        for row in self.rows:
            out.setdefault((row["task"], row["preset"]), {})[row["metric"]] = row["higher_is_better"]
        return out

    @cached_property
    def leaderboard(self) -> list[dict[str, Any]]:
        """Exactly what ``suite leaderboard`` computes over the done jobs, put together from one part per (task,
        preset): each part is in the leaderboard's order, so a stable sort on the order's first keys merges them."""
        parts: dict[tuple[str, str], list[JobRecord]] = {}
        for job in self.jobs:
            if job.state == "done" and job.part is not None:
                parts.setdefault(job.part, []).append(job)
        table = [row for part, jobs in parts.items() for row in self.board(part, jobs)]
        table.sort(key=lambda r: (SELECTION_ORDER[r["selection"]], r["task"], r["preset"]))
        return table

    @cached_property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for job in self.jobs:
            counts[job.state] = counts.get(job.state, 0) + 1
        return counts


def _stamp(folder: str) -> tuple | None:
    """The (mtime_ns, size) of each of :data:`FILES` in a job folder (None where absent), from one ``scandir``;
    None for a folder that is not a job (a shared run's own, or one with neither job.json nor status.json)."""
    found: dict[str, tuple[int, int]] = {}
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name in FILES or entry.name == RUN_FILE:
                    st = entry.stat()
                    found[entry.name] = (st.st_mtime_ns, st.st_size)
    except (FileNotFoundError, NotADirectoryError):  # removed while we looked
        return None
    if RUN_FILE in found or not ({"job.json", "status.json"} & found.keys()):
        return None
    return tuple(found.get(name) for name in FILES)


def _sample_step(path: Path) -> float | None:
    match = _NUMBER.search(path.stem)
    return float(match.group(1)) if match else None


def _list_samples(folder: Path) -> tuple[Sample, ...]:
    samples = [Sample(p, _sample_step(p)) for p in folder.glob("*.png") if p.is_file()]
    return tuple(sorted(samples, key=lambda s: (s.step is None, s.step or 0.0, s.path.name)))


class ResultsStore:
    """Parsed files of one results directory, each re-read only when its mtime or size changes."""

    def __init__(self, results_dir: Path) -> None:
        self.results_dir = Path(results_dir)
        self._files: dict[Path, tuple[Any, Any]] = {}  # path -> (stat key, parsed value or CorruptResults)
        self._lock = threading.Lock()  # Streamlit serves each browser session from its own thread
        self._last: tuple[tuple, Snapshot] | None = None
        # (task, preset) -> (its done jobs' stamps, its leaderboard)
        self._boards: dict[tuple[str, str], tuple[tuple, list[dict[str, Any]]]] = {}

    def _read(self, path: Path, key: Any, reader: Callable[[Path], Any]) -> Any:
        cached = self._files.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            value = reader(path)
        except CorruptResults as err:
            value = err
        self._files[path] = (key, value)
        return value

    def snapshot(self) -> Snapshot:
        """The current state; the same object as last time when no file changed."""
        with self._lock:
            keys = self._scan()
            fingerprint = tuple(keys.items())
            if self._last is not None and self._last[0] == fingerprint:
                return self._last[1]
            folders = [self.results_dir / name for name in keys]
            snapshot = self._build(folders, keys)
            live = {f / n for f in folders for n in FILES}
            self._files = {p: v for p, v in self._files.items() if p in live}  # forget deleted jobs
            self._boards = {part: board for part, board in self._boards.items()
                            if any(job.part == part for job in snapshot.jobs)}
            self._last = (fingerprint, snapshot)
            return snapshot

    def _scan(self) -> dict[str, tuple]:
        """Job folder name -> its files' stamps (see :func:`_stamp`), sorted by name."""
        try:
            with os.scandir(self.results_dir) as entries:
                folders = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
        except (FileNotFoundError, NotADirectoryError):
            return {}
        stamps = ((name, _stamp(os.path.join(self.results_dir, name))) for name in folders)
        return {name: stamp for name, stamp in stamps if stamp is not None}

    def _board(self, part: tuple[str, str], jobs: list[JobRecord]) -> list[dict[str, Any]]:
        """One (task, preset)'s leaderboard, computed again only when one of its done jobs' files changed."""
        stamps = tuple((job.job_id, job.stamp) for job in jobs)
        cached = self._boards.get(part)
        if cached is None or cached[0] != stamps:
            cached = self._boards[part] = (stamps, board_of(jobs))
        return cached[1]

    def _build(self, folders: list[Path], keys: dict[str, tuple]) -> Snapshot:
        """The snapshot of these job folders; unreadable files and results a table would lose are its problems,
        named as ``suite leaderboard`` names them (:mod:`sema_suite.results.reading`)."""
        jobs, problems, seen = [], [], []
        for folder in folders:
            job = JobDir(self.results_dir, folder.name)
            k_job, k_status, k_metrics, k_samples, *k_measured = keys[folder.name]
            doc = self._read(job.job_json, k_job, read_json) if k_job else {}
            status = self._read(job.status_json, k_status, read_json) if k_status else {"state": "pending"}
            rows = self._read(job.metrics_csv, k_metrics, read_metrics) if k_metrics else []
            measured = [self._read(folder / name, key, reader) if key else []
                        for (name, reader), key in zip(MEASURED.items(), k_measured)]
            for value in (doc, status, rows, *measured):
                if isinstance(value, CorruptResults):
                    problems.append(f"skipped {value}")
            if not isinstance(status, CorruptResults) and isinstance(rows, list) and (k_status or rows):
                seen.append(Seen(folder.name, status.get("state") if k_status else None, rows))
            analysis, barriers, landscape, interpolation = (v if isinstance(v, list) else [] for v in measured)
            if isinstance(status, CorruptResults):
                status = {"state": "unreadable", "error": str(status)}
            samples = self._read(folder / "samples", k_samples, _list_samples) if k_samples else ()
            jobs.append(JobRecord(
                job_id=folder.name,
                spec=doc.get("spec", {}) if isinstance(doc, dict) else {},
                status=status,
                rows=rows if isinstance(rows, list) else [],
                samples=samples,
                analysis=[{**row, MEASURED_ROW: True} for row in analysis + barriers],  # the leaderboard's tag
                landscape=landscape,
                interpolation=interpolation,
                environment=(doc.get("environment") or {}) if isinstance(doc, dict) else {},
                stamp=keys[folder.name],
            ))
        return Snapshot(self.results_dir, jobs, problems + lost_results(seen), board=self._board)
