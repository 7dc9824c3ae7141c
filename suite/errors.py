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


class CorruptResults(SuiteError):
    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(
            f"corrupt results file {path}: {reason}. Delete that job's directory ({Path(path).parent}) "
            f"and re-run the same `suite run` command to recompute it."
        )


class NonFiniteLoss(SuiteError):
    pass
