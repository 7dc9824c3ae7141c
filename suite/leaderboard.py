"""Aggregate finished jobs over seeds into the leaderboard, one row per (task, preset, metric, method).

Rows are also kept apart by ``variant`` (the job's ``--set`` overrides) and ``split`` (val / test), so runs
with other settings never mix with the presets as shipped.

Per row: seeds, final mean/std (the last evaluation of each seed), best mean/std (the best evaluation of each
seed, by the metric's direction), the delta of the final mean against ``none``, and convergence speed: the
first epoch at which the method's seed-mean curve reaches ``none``'s final mean (``none``'s own row holds
the epoch at which it first gets there itself).
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from suite.results import JobDir, write_atomic

COLUMNS = (
    "task", "preset", "variant", "dataset", "model", "split", "metric", "higher_is_better", "method", "seeds",
    "final_mean", "final_std", "best_mean", "best_std", "delta_vs_none", "delta_vs_none_pct",
    "epochs", "epoch_reach_none_final",
)
METHOD_ORDER = {"none": 0, "ema": 1, "sema": 2}


def finished_jobs(results_dir: Path, job_ids: Iterable[str] | None = None) -> Iterable[JobDir]:
    """Jobs whose status is done (all of them, or those of ``job_ids``). A corrupt file raises CorruptResults."""
    names = sorted(p.parent.name for p in Path(results_dir).glob("*/status.json")) if job_ids is None else job_ids
    for name in names:
        job = JobDir(results_dir, name)
        if job.status().get("state") == "done":
            yield job


class Key(NamedTuple):
    """What one leaderboard row aggregates: a metric of one method in one setting, over seeds."""

    task: str
    preset: str
    variant: str  # the job's --set overrides; runs with other settings are other rows
    dataset: str
    model: str
    split: str
    metric: str
    higher_is_better: bool
    method: str


def _curves(rows: list[dict[str, Any]]) -> dict[Key, dict[int, list[tuple[float, float]]]]:
    """Key -> seed -> [(epoch, value)] sorted by epoch."""
    curves: dict[Key, dict[int, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        key = Key(r["task"], r["preset"], r.get("variant", ""), r["dataset"], r["model"], r["split"], r["metric"],
                  r["higher_is_better"], r["method"])
        curves[key][r["seed"]].append((r["epoch"], r["value"]))
    for seeds in curves.values():
        for points in seeds.values():
            points.sort()
    return curves


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _mean_curve(seeds: dict[int, list[tuple[float, float]]]) -> list[tuple[float, float]]:
    by_epoch: dict[float, list[float]] = defaultdict(list)
    for points in seeds.values():
        for epoch, value in points:
            by_epoch[epoch].append(value)
    return [(epoch, statistics.fmean(vals)) for epoch, vals in sorted(by_epoch.items()) if len(vals) == len(seeds)]


def _reaches(curve: list[tuple[float, float]], target: float, higher: bool) -> float | None:
    # a small tolerance so that a curve ending exactly on the target (none's own) counts as reaching it
    tol = 1e-9 * max(1.0, abs(target))
    for epoch, value in curve:
        if (value >= target - tol) if higher else (value <= target + tol):
            return epoch
    return None


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    curves = _curves(rows)
    table = []
    finals: dict[Key, float] = {}
    for key, seeds in curves.items():
        higher = key.higher_is_better
        final_mean, final_std = _mean_std([points[-1][1] for points in seeds.values()])
        pick = max if higher else min
        best_mean, best_std = _mean_std([pick(v for _, v in points) for points in seeds.values()])
        finals[key] = final_mean
        table.append({
            **key._asdict(), "seeds": len(seeds),
            "final_mean": final_mean, "final_std": final_std, "best_mean": best_mean, "best_std": best_std,
            "epochs": max(points[-1][0] for points in seeds.values()),
        })
    for row in table:
        own_key = Key(**{field: row[field] for field in Key._fields})
        base = finals.get(own_key._replace(method="none"))
        row["delta_vs_none"] = None if base is None else row["final_mean"] - base
        row["delta_vs_none_pct"] = None if not base else 100.0 * (row["final_mean"] - base) / abs(base)
        row["epoch_reach_none_final"] = None if base is None else _reaches(
            _mean_curve(curves[own_key]), base, row["higher_is_better"])
    table.sort(key=lambda r: (r["task"], r["preset"], r["variant"], r["split"], r["metric"],
                              METHOD_ORDER.get(r["method"], 9), r["method"]))
    return table


def build(results_dir: Path, job_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
    rows = [row for job in finished_jobs(results_dir, job_ids) for row in job.metrics()]
    return aggregate(rows)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def to_csv(table: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({c: _fmt(r[c]) for c in COLUMNS} for r in table)
    return buffer.getvalue()


def write(table: list[dict[str, Any]], out: Path) -> None:
    write_atomic(Path(out), to_csv(table))


def _pm(mean: float, std: float | None) -> str:
    return f"{mean:.4g}" + (f" ± {std:.2g}" if std is not None else "")


def format_table(table: list[dict[str, Any]]) -> str:
    """A compact console table: mean +- std of final and best, delta vs none, convergence epoch."""
    header = ("task", "preset", "metric", "method", "seeds", "final", "best", "delta", "reach@ep")
    lines = [header]
    for r in table:
        preset = r["preset"] + (f" [{r['variant']}]" if r["variant"] else "")
        lines.append((r["task"], preset, r["metric"] + ("↑" if r["higher_is_better"] else "↓"), r["method"],
                      str(r["seeds"]), _pm(r["final_mean"], r["final_std"]), _pm(r["best_mean"], r["best_std"]),
                      "" if r["delta_vs_none"] is None else f"{r['delta_vs_none']:+.3g}",
                      _fmt(r["epoch_reach_none_final"])))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)
