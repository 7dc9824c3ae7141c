"""Plan files: a matrix of jobs written down once (``suite run --plan plans/long.toml``), so a published
table is reproduced by one command.

A plan is TOML: ``[[matrix]]`` tables, each a ``suite run`` in words -- ``tasks``, ``preset``, ``methods``,
``seeds``, ``set`` (knob -> value or list of values, a sweep as in ``--set k=a,b``). The plan's jobs are the
union of its matrices' (a job two matrices name is one job). A top-level ``[defaults]`` table gives keys that
every matrix shares unless it says otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sema_suite.errors import SuiteError
from sema_suite.running.jobs import Matrix, expand_matrix

KEYS = ("tasks", "preset", "methods", "seeds", "set")


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def load_plan(path: Path) -> list[dict[str, Any]]:
    """The plan's matrices, each with every key filled in; a clear error for a missing file or a bad key."""
    import tomllib

    try:
        doc = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SuiteError(f"no plan file {path}; plans ship under plans/ (e.g. --plan plans/long.toml)") from None
    except tomllib.TOMLDecodeError as error:
        raise SuiteError(f"{path} is not valid TOML: {error}") from None
    defaults = doc.get("defaults", {})
    unknown = sorted(set(doc) - {"defaults", "matrix"})
    matrices = [{**defaults, **entry} for entry in doc.get("matrix", [])]
    for entry in matrices:
        unknown += sorted(set(entry) - set(KEYS))
    if unknown:
        raise SuiteError(f"{path}: unknown key(s) {', '.join(unknown)}; a plan has [defaults] and [[matrix]] "
                         f"tables with the keys {', '.join(KEYS)}")
    if not matrices:
        raise SuiteError(f"{path} names no [[matrix]]: add one (tasks, preset, methods, seeds, set)")
    for entry in matrices:
        missing = [key for key in ("tasks", "methods") if key not in entry]
        if missing:
            raise SuiteError(f"{path}: a [[matrix]] lacks {', '.join(missing)} (nor does [defaults] give it)")
    return matrices


def expand_plan(path: Path, world_size: int = 1) -> Matrix:
    """Every job of the plan, resolved (errors surface before any job starts), each once."""
    jobs, notes = {}, []
    for entry in load_plan(path):
        overrides = {key: _list(value) for key, value in entry.get("set", {}).items()}
        matrix = expand_matrix(_list(entry["tasks"]), _list(entry["methods"]), _list(entry.get("seeds", [0])),
                               entry.get("preset"), overrides, world_size)
        for job in matrix.jobs:
            jobs.setdefault(job.job_id, job)
        notes += [note for note in matrix.notes if note not in notes]
    return Matrix(list(jobs.values()), notes)
