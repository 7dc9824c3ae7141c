"""The results directory: one folder per job, files written atomically so a kill never leaves half a row.

    results/<job_id>/job.json      resolved spec + environment
    results/<job_id>/status.json   pending | running | done | failed (+ error, timings, progress, hook counts)
    results/<job_id>/metrics.csv   one row per (evaluation, metric), long format
    results/<job_id>/analysis.csv  flatness and sharpness of the reported weights (``suite analyze``), same format
    results/<job_id>/landscape.csv the loss along random directions (``suite analyze``)
    results/<job_id>/interpolation.csv  loss and val metrics on the line from a partner's weights (``sema`` jobs)
    results/<job_id>/barriers.csv  the barrier of each of those curves, in the format of ``metrics.csv``
    results/<job_id>/work/         mmengine work dir (checkpoints, logs)

A job trained in a shared run (``sema_suite.running.runs``) keeps its checkpoints in the run's folder, which its
``job.json`` names (``run_id``).

Plain standard library: the CLI, the leaderboard and the dashboard read these without importing torch.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sema_suite.errors import CorruptResults, SuiteError

METRIC_COLUMNS = (
    "job_id", "run_id", "task", "preset", "dataset", "model", "method", "seed", "variant",
    "epoch", "iter", "split", "metric", "value", "higher_is_better", "wall_time_s", "timestamp",
)
OPTIONAL_COLUMNS = {"variant": "", "run_id": ""}  # absent from files written before they existed
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: mkstemp creates 0600 files, results must stay readable like any other file


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: readers see old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "w", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CorruptResults(path, f"not readable JSON ({err})") from err
    if not isinstance(data, dict):
        raise CorruptResults(path, "expected a JSON object")
    return data


def _rows_to_csv(rows: Iterable[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({**row, "epoch": f"{float(row['epoch']):g}"} for row in rows)
    return buffer.getvalue()


def _table(columns: tuple[str, ...], rows: Iterable[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def utc_stamp() -> str:
    """Now, as every row's ``timestamp``: ISO 8601 in UTC with its zone (``Z``), so rows written on machines in
    different zones order correctly as text."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``metrics.csv`` with typed values; a malformed file raises :class:`CorruptResults`."""
    if not path.exists():
        return []
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            missing = set(METRIC_COLUMNS) - set(reader.fieldnames or ()) - set(OPTIONAL_COLUMNS)
            if missing:
                raise CorruptResults(path, f"missing columns {sorted(missing)}")
            rows = []
            for line, raw in enumerate(reader, start=2):
                raw = {**OPTIONAL_COLUMNS, **raw}
                raw["run_id"] = raw["run_id"] or raw["job_id"]
                if None in raw or any(raw[c] is None for c in METRIC_COLUMNS):
                    raise CorruptResults(path, f"line {line} has the wrong number of fields")
                try:
                    rows.append({
                        **raw,
                        "seed": int(raw["seed"]),
                        "epoch": float(raw["epoch"]),
                        "iter": int(raw["iter"]),
                        "value": float(raw["value"]),
                        "higher_is_better": raw["higher_is_better"] == "True",
                        "wall_time_s": float(raw["wall_time_s"]),
                    })
                except ValueError as err:
                    raise CorruptResults(path, f"line {line}: {err}") from err
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise CorruptResults(path, str(err)) from err
    return rows


def read_table(path: Path, numbers: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows of a plain CSV (``landscape.csv``, ``interpolation.csv``) with ``numbers`` as floats; a malformed
    file raises :class:`CorruptResults`."""
    if not path.exists():
        return []
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        return [{**row, **{c: float(row[c]) for c in numbers}} for row in rows]
    except (OSError, UnicodeDecodeError, csv.Error, KeyError, TypeError, ValueError) as err:
        raise CorruptResults(path, f"not a readable table ({err})") from err


LANDSCAPE_NUMBERS = ("direction", "alpha", "loss")
INTERPOLATION_NUMBERS = ("t", "value")


MARKER = "last_checkpoint"  # in a work dir: the name of its newest checkpoint (mmengine's convention)


def check_job_id(job_id: str) -> str:
    """A job id is one folder name under the results folder: never a path (``../other/JOB``) that would read or
    write outside it."""
    if not job_id or job_id in (".", "..") or "/" in job_id or "\\" in job_id or "\0" in job_id:
        raise SuiteError(f"{job_id!r} is not a job id: a job id is one folder name under --results-dir (e.g. "
                         "cls-tiny-sema-s0-1a2b3c4d, as `suite leaderboard` and the dashboard list them), never a path")
    return job_id


def marked_checkpoint(work_dir: Path) -> Path | None:
    """The checkpoint a work dir's :data:`MARKER` names, always inside ``work_dir``: the marker holds a file name
    relative to it. A marker of an older version holds an absolute path; only its file name is used, so a copied or
    moved results folder finds its own copy of the checkpoint, and a marker never leads out of the folder."""
    marker = Path(work_dir) / MARKER
    try:
        text = marker.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    path = Path(work_dir) / Path(text).name if text else None
    return path if path is not None and path.is_file() else None


def mark_checkpoint(work_dir: Path, checkpoint: Path) -> None:
    """Point ``work_dir``'s :data:`MARKER` at ``checkpoint`` (a file in it), by name."""
    write_atomic(Path(work_dir) / MARKER, Path(checkpoint).name)


class JobDir:
    """The files of one job, and the only code that writes them."""

    def __init__(self, results_dir: Path, job_id: str) -> None:
        self.job_id = check_job_id(job_id)
        self.path = Path(results_dir) / job_id
        self.job_json = self.path / "job.json"
        self.status_json = self.path / "status.json"
        self.metrics_csv = self.path / "metrics.csv"
        self.analysis_csv = self.path / "analysis.csv"
        self.landscape_csv = self.path / "landscape.csv"
        self.interpolation_csv = self.path / "interpolation.csv"
        self.barriers_csv = self.path / "barriers.csv"
        self.log_file = self.path / "job.log"

    @property
    def run_path(self) -> Path:
        """The folder of the run that trains this job: its own, or a shared run's (job.json names it)."""
        run_id = read_json(self.job_json).get("run_id") if self.job_json.exists() else None
        return self.path if run_id in (None, self.job_id) else self.path.parent / check_job_id(str(run_id))

    @property
    def work_dir(self) -> Path:
        """mmengine's work dir (checkpoints, logs) of the run that trains this job."""
        return self.run_path / "work"

    def exists(self) -> bool:
        return self.job_json.exists()

    def status(self) -> dict[str, Any]:
        if not self.status_json.exists():
            return {"state": "pending"}
        return read_json(self.status_json)

    def update_status(self, **fields: Any) -> dict[str, Any]:
        status = {**self.status(), **fields, "updated": time.time()}
        write_json(self.status_json, status)
        return status

    def metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.metrics_csv)

    def analysis(self) -> list[dict[str, Any]]:
        """The rows of ``suite analyze`` (none before it ran)."""
        return read_metrics(self.analysis_csv) if self.analysis_csv.exists() else []

    def write_analysis(self, rows: list[dict[str, Any]], landscape: list[dict[str, Any]] | None) -> None:
        """Replace the job's analysis: the landscape first (``None`` keeps it), so ``analysis.csv`` (which marks
        it measured) is written last."""
        if landscape is not None:
            write_atomic(self.landscape_csv, _table(("job_id", "direction", "alpha", "loss"), landscape))
        write_atomic(self.analysis_csv, _rows_to_csv(rows))

    def barriers(self) -> list[dict[str, Any]]:
        """The barrier rows of the interpolation to the job's partners (``sema`` jobs, ``suite analyze``)."""
        return read_metrics(self.barriers_csv) if self.barriers_csv.exists() else []

    def write_interpolation(self, curves: list[dict[str, Any]], barriers: list[dict[str, Any]]) -> None:
        """Replace the job's interpolation: the curves first, so ``barriers.csv`` (which marks it measured) is
        written last."""
        columns = ("job_id", "partner_job_id", "partner_method", "t", "split", "metric", "value")
        write_atomic(self.interpolation_csv, _table(columns, curves))
        write_atomic(self.barriers_csv, _rows_to_csv(barriers))

    def append_metrics(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if not math.isfinite(float(row["value"])):
                raise ValueError(f"metric {row['metric']} is {row['value']}; refusing to record a non-finite value")
        write_atomic(self.metrics_csv, _rows_to_csv([*self.metrics(), *rows]))

    def drop_metrics(self, keep: Callable[[dict[str, Any]], bool]) -> int:
        """Remove rows that a resumed run will compute again; returns how many went."""
        rows = self.metrics()
        kept = [row for row in rows if keep(row)]
        if len(kept) != len(rows):
            write_atomic(self.metrics_csv, _rows_to_csv(kept))
        return len(rows) - len(kept)

    def repair_checkpoint_marker(self) -> None:
        """Point ``work/last_checkpoint`` at the newest checkpoint if a kill tore the marker's write.

        mmengine rewrites the marker in place after each checkpoint is complete; a kill in between leaves it
        empty, and mmengine would then try to resume from ''. (A kill while a checkpoint is written leaves the
        marker on the previous, complete one, which is kept: see ``sema_suite.running.config``.)
        """
        marker = self.work_dir / MARKER
        if not marker.exists() or self.last_checkpoint() is not None:
            return
        saved = [path for path in self.work_dir.glob("*.pth") if re.fullmatch(r"(?:epoch|iter)_\d+\.pth", path.name)]
        if saved:  # the newest written: epoch_N and the periodic iter_N of one run do not count alike
            mark_checkpoint(self.work_dir, max(saved, key=lambda path: path.stat().st_mtime_ns))
        else:
            marker.unlink()

    def last_checkpoint(self) -> Path | None:
        """The run's newest checkpoint (:func:`marked_checkpoint`), None when it has none."""
        return marked_checkpoint(self.work_dir)
