"""Errors a user can act on. The CLI prints them as one clear message (no traceback) and exits non-zero."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class SuiteError(Exception):
    """Base class: the message says what is wrong and how to fix it."""


class UnknownChoice(SuiteError):
    def __init__(self, kind: str, value: str, choices: Iterable[str]) -> None:
        super().__init__(f"unknown {kind} {value!r}; valid {kind}s: {', '.join(sorted(choices))}")


class BadOverride(SuiteError):
    pass


class DatasetMissing(SuiteError):
    def __init__(self, dataset: str, root: Path, layout: str, hint: str = "") -> None:
        message = (
            f"{dataset} not found under {root}. Expected layout:\n{layout}\n"
            f"Point --data-root at the directory that holds it"
        )
        super().__init__(message + (f", or {hint}." if hint else "."))


# what to do about each results file that cannot be read: only as much as that file needs
_REPAIR = {
    "job.json": "it records the job's spec and environment; its rows are still used. Restore it from a copy, or "
                "delete the job's folder and re-run the same `suite run` to recompute the job",
    "status.json": "the job is left out until its state is known. Delete that file and re-run the same `suite run`: "
                   "the job resumes from its last checkpoint (or trains again) and records its rows once",
    "analysis.csv": "its flatness rows are left out. Delete that file and re-run `suite analyze` on the job",
    "barriers.csv": "its interpolation rows are left out. Delete that file and re-run `suite analyze` on the job",
    "landscape.csv": "its loss landscape is left out. Delete that file and re-run `suite analyze` on the job",
    "interpolation.csv": "its interpolation curves are left out. Delete that file and re-run `suite analyze` on the job",
}


class CorruptResults(SuiteError):
    def __init__(self, path: Path, reason: str) -> None:
        advice = _REPAIR.get(Path(path).name, f"the job is left out. Delete that job's folder ({Path(path).parent}) "
                                              "and re-run the same `suite run` command to recompute it")
        super().__init__(f"unreadable results file {path}: {reason}; {advice}.")


class UnsafeCheckpoint(SuiteError):
    def __init__(self, path: Path, globals_: list[str]) -> None:
        super().__init__(
            f"refused to load {path}: loading it would run {', '.join(globals_) or 'code'}, which a checkpoint of "
            "this suite never asks for, so nothing in it ran. A checkpoint written by a version before 2026-12-08 asks "
            "for builtins.getattr (mmengine's log history): if this job ran then, delete its work/ folder and re-run "
            "it. Otherwise the file was replaced or crafted: delete it (and the folder, if you do not trust the rest)."
        )


class NonFiniteLoss(SuiteError):
    pass
