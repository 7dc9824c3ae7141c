"""Performance profiles over the leaderboard: on what fraction of problems is a method within tau of the best?

A problem is one (task, preset). A method's score on it is the final mean of the task's primary metric from
the leaderboard's ``tuned`` selection (the variant with the best mean ``val`` metric), or from ``shipped``
where the method has no tuned row; both read on one split per problem, ``test`` when any of its rows has it,
else ``val``, so that every method on a problem is judged on the same data.

The ratio to the best is the relative gap ``|best - score| / |best|`` (the absolute gap when ``best`` is 0),
where ``best`` is the highest score on the problem when the metric is higher-is-better and the lowest when it
is lower-is-better. The gap is therefore 0 for the best method and positive for every other, whichever the
metric's direction, and the profile ``rho(tau)`` (the fraction of all problems with gap <= tau) rises from the
share of problems a method wins to 1. A problem a method has no score on counts against it at every tau.
This is the profile of Dolan & More (2002) that AlgoPerf scores with, with the relative gap of a metric in
place of a ratio of times to target.

Plain standard library, like the rest of what reads results: the dashboard plots these numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Problem = tuple[str, str]  # (task, preset)


def selection_of(row: Mapping[str, Any]) -> str:
    """A leaderboard row's selection; a leaderboard written before that column had only shipped and sweep rows,
    told apart by the variant ('' = as shipped)."""
    return row.get("selection") or ("shipped" if not row.get("variant") else "sweep")


@dataclass(frozen=True)
class Score:
    """The number a method is profiled by on one problem, and where it came from."""

    task: str
    preset: str
    metric: str
    split: str
    higher_is_better: bool
    method: str
    selection: str  # tuned, or shipped where the method has no tuned row
    variant: str
    value: float


def scores(rows: Iterable[Mapping[str, Any]], primary: Callable[[str, str], str | None]) -> list[Score]:
    """One score per (problem, method) from leaderboard rows; ``primary(task, preset)`` names its primary metric
    (when it is None or has no rows, the alphabetically first metric of the problem stands in)."""
    candidates: dict[Problem, list[Mapping[str, Any]]] = {}
    for row in rows:
        if selection_of(row) in ("tuned", "shipped") and row.get("final_mean") is not None:
            candidates.setdefault((row["task"], row["preset"]), []).append(row)
    out = []
    for (task, preset), problem_rows in sorted(candidates.items()):
        metrics = {r["metric"] for r in problem_rows}
        metric = primary(task, preset)
        metric = metric if metric in metrics else min(metrics)
        problem_rows = [r for r in problem_rows if r["metric"] == metric]
        split = "test" if any(r["split"] == "test" for r in problem_rows) else "val"
        chosen: dict[str, Mapping[str, Any]] = {}
        for row in problem_rows:
            if row["split"] == split and (row["method"] not in chosen or selection_of(row) == "tuned"):
                chosen[row["method"]] = row
        out += [Score(task, preset, metric, split, bool(r["higher_is_better"]), method, selection_of(r),
                      r.get("variant") or "", float(r["final_mean"])) for method, r in sorted(chosen.items())]
    return out


def gaps(problem_scores: Iterable[Score]) -> dict[str, dict[Problem, float]]:
    """method -> problem -> relative gap to the best method on that problem (see the module docstring).
    Every method has an entry for every problem: ``inf`` where it has no score."""
    by_problem: dict[Problem, list[Score]] = {}
    for score in problem_scores:
        by_problem.setdefault((score.task, score.preset), []).append(score)
    methods = sorted({s.method for group in by_problem.values() for s in group})
    out: dict[str, dict[Problem, float]] = {m: {} for m in methods}
    for problem, group in by_problem.items():
        pick = max if group[0].higher_is_better else min
        best = pick(s.value for s in group)
        values = {s.method: s.value for s in group}
        for method in methods:
            value = values.get(method)
            if value is None:
                out[method][problem] = math.inf
            else:
                out[method][problem] = abs(best - value) / abs(best) if best else abs(best - value)
    return out


def breakpoints(method_gaps: Mapping[str, Mapping[Problem, float]]) -> list[float]:
    """The taus at which some profile steps up: 0 and every finite gap, sorted."""
    return sorted({0.0, *(g for per in method_gaps.values() for g in per.values() if math.isfinite(g))})


def profile(method_gaps: Mapping[str, Mapping[Problem, float]], taus: Iterable[float]) -> dict[str, list[float]]:
    """method -> [rho(tau) for tau in taus]: the fraction of problems on which the method's gap <= tau."""
    taus = list(taus)
    out = {}
    for method, per_problem in method_gaps.items():
        n = len(per_problem)
        out[method] = [sum(g <= tau for g in per_problem.values()) / n if n else 0.0 for tau in taus]
    return out
