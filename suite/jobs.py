"""Jobs: one (task, preset, method, seed, overrides), with a deterministic id.

The id is a readable prefix plus a short hash of the *resolved* spec (preset params and averaging knobs
after overrides), so re-running a matrix finds its finished jobs, and changing a knob makes a new job.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suite.errors import BadOverride, UnknownChoice
from suite.methods import AVERAGING_DEFAULTS, METHODS
from suite.registry import get_task
from suite.task import BuildContext, Preset, Task

CONFIG_PREFIX = "cfg."  # --set cfg.a.b=value edits the final mmengine config directly


def parse_value(text: str) -> Any:
    """``3`` -> 3, ``0.1`` -> 0.1, ``true`` -> True, ``nan`` -> nan, ``[1,2]`` -> [1, 2]; else the string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    if lowered in ("nan", "inf", "-inf"):
        return float(lowered)
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_overrides(items: list[str]) -> dict[str, Any]:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BadOverride(f"bad override {item!r}: write it as key=value, e.g. --set epochs=3")
        overrides[key.strip()] = parse_value(value)
    return overrides


def _coerce(key: str, value: Any, default: Any) -> Any:
    if default is None or value is None or isinstance(value, type(default)):
        if isinstance(default, int) and isinstance(value, bool) and not isinstance(default, bool):
            raise BadOverride(f"{key} takes an integer, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise BadOverride(f"{key} takes a {type(default).__name__} (default {default!r}), got {value!r}")


@dataclass(frozen=True)
class JobSpec:
    task: str
    preset: str
    method: str
    seed: int
    overrides: tuple[tuple[str, Any], ...] = ()

    def resolve(self) -> ResolvedJob:
        task = get_task(self.task)
        if self.preset not in task.presets:
            raise UnknownChoice(f"preset of task {self.task!r}", self.preset, task.presets)
        if self.method not in METHODS:
            raise UnknownChoice("method", self.method, METHODS)
        preset = task.presets[self.preset]
        params = dict(preset.params)
        averaging = {**AVERAGING_DEFAULTS, **preset.averaging}
        config_edits = {}
        for key, value in self.overrides:
            if key.startswith(CONFIG_PREFIX):
                config_edits[key[len(CONFIG_PREFIX):]] = value
            elif key in params:
                params[key] = _coerce(key, value, params[key])
            elif key in averaging:
                averaging[key] = _coerce(key, value, averaging[key])
            else:
                valid = [*params, *averaging, f"{CONFIG_PREFIX}<mmengine.config.key>"]
                raise UnknownChoice(f"override key for {self.task}/{self.preset}", key, valid)
        return ResolvedJob(self, task, preset, params, averaging if self.method != "none" else {}, config_edits)


@dataclass(frozen=True)
class ResolvedJob:
    spec: JobSpec
    task: Task
    preset: Preset
    params: dict[str, Any]
    averaging: dict[str, Any]  # empty for method "none"
    config_edits: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.spec.task, "preset": self.spec.preset, "method": self.spec.method,
            "seed": self.spec.seed, "overrides": dict(self.spec.overrides),
            "dataset": self.preset.dataset, "model": self.preset.model,
            "params": self.params, "averaging": self.averaging, "config_edits": self.config_edits,
        }

    def context(self, data_root: Path, work_dir: Path, download: bool = False, dry_run: bool = False) -> BuildContext:
        return BuildContext(params=self.params, seed=self.spec.seed, data_root=Path(data_root).expanduser(),
                            work_dir=Path(work_dir), download=download, dry_run=dry_run)

    @property
    def variant(self) -> str:
        """The overrides as ``k=v,k=v`` ('' for the preset as shipped): runs of other settings never mix."""
        return ",".join(f"{k}={v}" for k, v in self.spec.overrides)

    @property
    def job_id(self) -> str:
        digest = hashlib.sha1(json.dumps(self.as_dict(), sort_keys=True, default=str).encode()).hexdigest()
        return f"{self.spec.task}-{self.spec.preset}-{self.spec.method}-s{self.spec.seed}-{digest[:8]}"


def expand_matrix(tasks: list[str], methods: list[str], seeds: list[int], preset: str | None,
                  overrides: dict[str, Any]) -> list[ResolvedJob]:
    """Every (task, method, seed) combination, resolved; errors surface before any job starts."""
    jobs = []
    for task_name, method, seed in itertools.product(tasks, methods, seeds):
        task = get_task(task_name)
        spec = JobSpec(task_name, preset or task.default_preset, method, seed, tuple(sorted(overrides.items())))
        jobs.append(spec.resolve())
    return jobs
