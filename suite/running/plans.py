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
SCALARS = (str, int, float, bool)


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


class _Schema:
    """Checks one plan file's tables, each error naming the file, the table, the key and what it takes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, key: str, value: Any, expected: str) -> None:
        raise SuiteError(f"{self.path}: {where} {key} = {value!r}: expected {expected}")

    def items(self, where: str, key: str, value: Any, kind: type, expected: str) -> None:
        """A value or a non-empty list of values of ``kind`` (never a bool where a number is wanted)."""
        values = _list(value)
        if not values or any(not isinstance(v, kind) or (kind is int and isinstance(v, bool)) for v in values):
            self.fail(where, key, value, expected)

    def table(self, where: str, entry: Any) -> dict[str, Any]:
        if not isinstance(entry, dict):
            self.fail(where, "", entry, "a table of " + ", ".join(KEYS))
        for key in ("tasks", "methods"):
            if key in entry:
                self.items(where, key, entry[key], str, f"a {key[:-1]} name or a non-empty list of them")
        if "seeds" in entry:
            self.items(where, "seeds", entry["seeds"], int, "a seed (a whole number >= 0) or a non-empty list of them")
            if any(seed < 0 for seed in _list(entry["seeds"])):
                self.fail(where, "seeds", entry["seeds"], "seeds >= 0")
        if "preset" in entry and not isinstance(entry["preset"], str):
            self.fail(where, "preset", entry["preset"], "a preset name")
        if "set" in entry:
            if not isinstance(entry["set"], dict):
                self.fail(where, "set", entry["set"], "a table of knob = value (or a list of values: a sweep)")
            for knob, value in entry["set"].items():
                values = _list(value)
                if not values or any(not isinstance(v, (*SCALARS, list)) for v in values):
                    self.fail(where, f"set.{knob}", value, "a value or a non-empty list of values")
        return entry


def load_plan(path: Path) -> list[dict[str, Any]]:
    """The plan's matrices, each with every key filled in; a clear error for a missing file, a bad key or a value
    of the wrong type."""
    import tomllib

    try:
        doc = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SuiteError(f"no plan file {path}; plans ship under plans/ (e.g. --plan plans/long.toml)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise SuiteError(f"{path} is not valid TOML: {error}") from None
    schema = _Schema(path)
    defaults = schema.table("[defaults]", doc.get("defaults", {}))
    if not isinstance(doc.get("matrix", []), list):
        schema.fail("the", "matrix", doc["matrix"], "[[matrix]] tables (an array of tables)")
    unknown = sorted(set(doc) - {"defaults", "matrix"})
    matrices = [{**defaults, **schema.table(f"[[matrix]] #{i + 1}", entry)}
                for i, entry in enumerate(doc.get("matrix", []))]
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
