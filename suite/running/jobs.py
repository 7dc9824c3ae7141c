"""Jobs: one (task, preset, method, seed, overrides), with a deterministic id; and sweeps over knobs.

The id is a readable prefix plus a short hash of the *resolved* spec -- what the job actually runs: the
preset's params and the averaging knobs its method uses, after overrides. Restating a default, or setting a
knob the method ignores (``decay`` for ``none``), is the same job; changing a knob that matters is a new one.
A comma list in ``--set`` (``decay=0.9,0.95``) is a sweep: the matrix is the cartesian product.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sema_suite.errors import BadOverride, UnknownChoice
from sema_suite.knobs import Rule
from sema_suite.method.methods import averaging_defaults, effective_averaging, get_method, knob_table
from sema_suite.optim import with_optimizer
from sema_suite.registry import get_task
from sema_suite.running.variants import format_variant, split_top_level
from sema_suite.task import BuildContext, Preset, Task

CONFIG_PREFIX = "cfg."  # --set cfg.a.b=value edits the final mmengine config directly
# Spellings that once named a training knob in some presets and an averaging knob in others: an error now.
AMBIGUOUS_KNOBS = {
    "warmup_epochs": "lr_warmup_epochs (the learning-rate warm-up) or ema_warmup_epochs (the decay's warm-up)",
    "warmup_iters": "lr_warmup_iters (the learning-rate warm-up) or ema_warmup_iters (the decay's warm-up)",
    "warmup_factor": "ema_warmup_factor (where the decay's warm-up starts)",
}


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


def parse_overrides(items: list[str]) -> dict[str, list[Any]]:
    """``--set`` items -> key -> its values: one for a plain override, several for a sweep (``k=a,b,c``)."""
    overrides: dict[str, list[Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadOverride(f"bad override {item!r}: write it as key=value, e.g. --set epochs=3")
        if key in overrides:
            raise BadOverride(f"{key} is set twice; write a sweep as one comma list, e.g. --set {key}=a,b")
        values = [parse_value(part) for part in split_top_level(value)]
        if len(values) != len({repr(v) for v in values}):
            raise BadOverride(f"the sweep {item!r} repeats a value")
        overrides[key] = values
    return overrides


def _coerce(key: str, value: Any, default: Any) -> Any:
    if default is None and isinstance(value, float) and value.is_integer():
        return int(value)  # a knob whose default is None (switch_interval_iters): 100.0 and 100 are one job
    if default is None or value is None or isinstance(value, type(default)):
        if isinstance(default, int) and isinstance(value, bool) and not isinstance(default, bool):
            raise BadOverride(f"{key} takes an integer, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise BadOverride(f"{key} takes a {type(default).__name__} (default {default!r}), got {value!r}")


def _checked(key: str, value: Any, default: Any, rule: Rule | None) -> Any:
    """``value`` for knob ``key``, checked against its rule (else against its default's type)."""
    return rule.check(key, value) if rule is not None else _coerce(key, value, default)


@dataclass(frozen=True)
class JobSpec:
    task: str
    preset: str
    method: str
    seed: int
    overrides: tuple[tuple[str, Any], ...] = ()
    world_size: int = 1  # processes (GPUs) the job trains on, with DDP (suite run --gpus-per-job)

    def resolve(self) -> ResolvedJob:
        task = get_task(self.task)
        if self.preset not in task.presets:
            raise UnknownChoice(f"preset of task {self.task!r}", self.preset, task.presets)
        get_method(self.method)  # an unknown method is named before anything else
        if self.world_size < 1:
            raise BadOverride(f"--gpus-per-job {self.world_size}: a job needs at least one process")
        if self.world_size > 1 and not task.multi_gpu:
            raise BadOverride(f"--gpus-per-job {self.world_size}: task {self.task} trains and evaluates in one "
                              "process (its metrics are not gathered across processes); multi-GPU jobs are for det")
        preset = task.presets[self.preset]
        params = dict(preset.knobs)
        averaging = {**averaging_defaults(), **preset.averaging}
        config_edits = {}
        for key, value in self.overrides:
            if key.startswith(CONFIG_PREFIX):
                config_edits[key[len(CONFIG_PREFIX):]] = value
            elif key in params:
                params[key] = _checked(key, value, params[key], task.rule(key))
            elif key in averaging:
                averaging[key] = _checked(key, value, averaging[key], knob_table()[key].rule)
            elif key in AMBIGUOUS_KNOBS:
                raise BadOverride(f"{key} is ambiguous (a training knob or an averaging knob); write "
                                  f"{AMBIGUOUS_KNOBS[key]}")
            else:
                valid = [*params, *averaging, f"{CONFIG_PREFIX}<mmengine.config.key>"]
                raise UnknownChoice(f"override key for {self.task}/{self.preset}", key, valid)
        reference = preset.knobs
        if "optimizer" in params:
            overridden = {key for key, _ in self.overrides}
            params, reference = with_optimizer(preset.knobs, preset.optimizers, params, overridden)
        effective = effective_averaging(self.method, averaging)
        shipped = effective_averaging(self.method, {**averaging_defaults(), **preset.averaging})
        changed = {k: v for k, v in params.items() if v != reference[k]}
        changed |= {k: v for k, v in effective.items() if k not in shipped or v != shipped[k]}
        changed |= {f"{CONFIG_PREFIX}{k}": v for k, v in config_edits.items()}
        if self.world_size > 1:  # data order and batch statistics differ: another setting, never mixed
            changed["gpus_per_job"] = self.world_size
        ignored = tuple(k for k, _ in self.overrides
                        if k in averaging and k not in params and k not in effective)
        return ResolvedJob(self, task, preset, params, effective, config_edits, format_variant(changed), ignored)


@dataclass(frozen=True)
class ResolvedJob:
    spec: JobSpec
    task: Task
    preset: Preset
    params: dict[str, Any]
    averaging: dict[str, Any]  # the knobs the method uses (empty for "none")
    config_edits: dict[str, Any]
    variant: str  # what differs from the preset as shipped, "k=v,k=v" ('' = as shipped): other settings never mix
    ignored: tuple[str, ...] = ()  # override keys this method does not use

    def identity(self) -> dict[str, Any]:
        """What the job runs, and nothing else: the hash of this is the job's id."""
        identity = {
            "task": self.spec.task, "preset": self.spec.preset, "method": self.spec.method, "seed": self.spec.seed,
            "params": self.params, "averaging": self.averaging, "config_edits": self.config_edits,
        }
        return identity | ({"world_size": self.spec.world_size} if self.spec.world_size > 1 else {})

    def as_dict(self) -> dict[str, Any]:
        return {**self.identity(), "overrides": dict(self.spec.overrides), "variant": self.variant,
                "dataset": self.preset.dataset, "model": self.preset.model}

    def context(self, data_root: Path, work_dir: Path, download: bool = False, dry_run: bool = False) -> BuildContext:
        return BuildContext(params=self.params, seed=self.spec.seed, data_root=Path(data_root).expanduser(),
                            work_dir=Path(work_dir), download=download, dry_run=dry_run)

    @property
    def job_id(self) -> str:
        digest = hashlib.sha1(json.dumps(self.identity(), sort_keys=True, default=repr).encode()).hexdigest()
        return f"{self.spec.task}-{self.spec.preset}-{self.spec.method}-s{self.spec.seed}-{digest[:8]}"


@dataclass(frozen=True)
class Matrix:
    """The expanded jobs of a ``suite run``, in order and without duplicates, and what the user should know."""

    jobs: list[ResolvedJob]
    notes: list[str]

    def describe(self) -> str:
        lines = [f"{len(self.jobs)} job(s):"]
        for job in self.jobs:
            lines.append(f"  {job.job_id}  {job.spec.method:4s} seed {job.spec.seed}  {job.variant or '(as shipped)'}")
        return "\n".join(lines + self.notes)


def expand_matrix(tasks: list[str], methods: list[str], seeds: list[int], preset: str | None,
                  overrides: dict[str, list[Any]], world_size: int = 1) -> Matrix:
    """Every (task, method, seed, sweep point), resolved; errors surface before any job starts.

    Points that resolve to the same job (``none`` under a decay sweep) are one job.
    """
    for kind, given in (("task", tasks), ("method", methods), ("seed", seeds)):
        if not given:
            raise BadOverride(f"no {kind} given: a matrix needs at least one (its jobs are tasks x methods x seeds)")
    if bad := [seed for seed in seeds if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0]:
        raise BadOverride(f"seed(s) {', '.join(map(repr, bad))}: a seed is a whole number >= 0 (e.g. 0,1,2)")
    keys = sorted(overrides)
    points = [tuple(zip(keys, values)) for values in itertools.product(*(overrides[k] for k in keys))]
    jobs: dict[str, ResolvedJob] = {}
    ignored: dict[str, set[str]] = {}
    for task_name, method, seed, point in itertools.product(tasks, methods, seeds, points):
        task = get_task(task_name)
        job = JobSpec(task_name, preset or task.default_preset, method, seed, point, world_size).resolve()
        jobs.setdefault(job.job_id, job)
        if job.ignored:
            ignored.setdefault(method, set()).update(job.ignored)
    notes = [f"note: {', '.join(sorted(keys))} ignored for method {method} (it does not use them)"
             for method, keys in sorted(ignored.items())]
    return Matrix(list(jobs.values()), notes)
