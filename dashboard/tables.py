"""The dashboard's tables, as pandas frames built from a :class:`~dashboard.store.Snapshot`.

Leaderboard numbers are never recomputed here: they come from :func:`suite.leaderboard.aggregate` (via
``Snapshot.leaderboard``), so the page shows what ``suite leaderboard`` writes. What is added on top is
presentation: ranking, the speed-up ratio, and the across-task summary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd

from dashboard.store import JobRecord
from suite.leaderboard import COLUMNS, METHOD_ORDER

X_AXES = {"epoch": "epoch", "iteration": "iter", "wall-clock": "wall_time_s"}


def method_key(method: str) -> tuple[int, str]:
    return METHOD_ORDER.get(method, 9), method


def select(rows: Iterable[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


def curve_points(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (job, evaluation): the individual seed curves."""
    columns = ["method", "seed", "job_id", "epoch", "iter", "wall_time_s", "value"]
    frame = pd.DataFrame([{c: r[c] for c in columns} for r in rows], columns=columns)
    return frame.sort_values(["method", "job_id", "iter"], ignore_index=True)


def curve_summary(points: pd.DataFrame, x: str) -> pd.DataFrame:
    """Mean and std over seeds per method and evaluation; ``x`` is a key of :data:`X_AXES`.

    Seeds are aligned by epoch (or iteration); against wall-clock time each point sits at the seeds' mean
    wall time for that evaluation, since seeds do not finish an epoch at the same second.
    """
    by = "iter" if x == "iteration" else "epoch"
    grouped = points.groupby(["method", by], sort=True)
    summary = grouped.agg(mean=("value", "mean"), std=("value", "std"), n=("value", "size"),
                          wall_time_s=("wall_time_s", "mean")).reset_index()
    summary["std"] = summary["std"].fillna(0.0)
    summary["lo"] = summary["mean"] - summary["std"]
    summary["hi"] = summary["mean"] + summary["std"]
    summary["x"] = summary[X_AXES[x]]
    return summary


def leaderboard_rows(table: list[dict[str, Any]], task: str, preset: str, metric: str | None = None
                     ) -> list[dict[str, Any]]:
    return [r for r in table
            if r["task"] == task and r["preset"] == preset and (metric is None or r["metric"] == metric)]


def leaderboard_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One metric's leaderboard rows ranked best first, with the convergence speed-up against ``none``.

    Speed-up = epochs ``none`` takes to first reach its own final mean / epochs the method takes to reach
    it (both from the seed-mean curves); empty when the method never gets there.
    """
    if not rows:
        return pd.DataFrame(columns=["rank", *COLUMNS, "speedup"])
    higher = rows[0]["higher_is_better"]
    ranked = sorted(rows, key=lambda r: (-r["final_mean"] if higher else r["final_mean"], method_key(r["method"])))
    none_reach = next((r["epoch_reach_none_final"] for r in rows if r["method"] == "none"), None)
    records = []
    for rank, r in enumerate(ranked, start=1):
        reach = r["epoch_reach_none_final"]
        speedup = none_reach / reach if none_reach and reach else None
        records.append({"rank": rank, **{c: r[c] for c in COLUMNS}, "speedup": speedup})
    return pd.DataFrame.from_records(records)


def full_leaderboard(table: list[dict[str, Any]]) -> pd.DataFrame:
    """The leaderboard with exactly ``suite leaderboard``'s columns."""
    return pd.DataFrame.from_records([{c: r[c] for c in COLUMNS} for r in table], columns=list(COLUMNS))


def across_tasks(table: list[dict[str, Any]], primary: Callable[[str], str | None]) -> pd.DataFrame:
    """Per method (rows) and task/preset (columns): the relative improvement of the primary metric's final
    mean over ``none``, in percent and signed so that positive is better; plus the mean rank over tasks."""
    columns: dict[str, dict[str, float | None]] = {}
    ranks: dict[str, list[float]] = {}
    for task, preset in sorted({(r["task"], r["preset"]) for r in table}):
        rows = leaderboard_rows(table, task, preset)
        metric = primary(task)
        if metric not in {r["metric"] for r in rows}:
            metric = min(r["metric"] for r in rows)
        rows = [r for r in rows if r["metric"] == metric]
        higher = rows[0]["higher_is_better"]
        sign = 1.0 if higher else -1.0
        name = f"{task}/{preset} · {metric} {'↑' if higher else '↓'}"
        columns[name] = {r["method"]: None if r["delta_vs_none_pct"] is None else sign * r["delta_vs_none_pct"] + 0.0
                         for r in rows}
        order = pd.Series({r["method"]: sign * r["final_mean"] for r in rows}).rank(ascending=False)
        for method, rank in order.items():
            ranks.setdefault(method, []).append(float(rank))
    methods = sorted(ranks, key=method_key)
    frame = pd.DataFrame(columns, index=methods, dtype="float64")
    frame["mean rank"] = [sum(ranks[m]) / len(ranks[m]) for m in methods]
    frame["tasks"] = [len(ranks[m]) for m in methods]
    frame.index.name = "method"
    return frame


def _position(status: dict[str, Any], state: str) -> tuple[float | None, str]:
    """How far a job got: a 0..1 fraction and a text like ``epoch 3/10``."""
    progress = status.get("progress") or {}
    if progress.get("max_epochs"):
        done, total, unit = progress.get("epoch") or 0, progress["max_epochs"], "epoch"
    elif progress.get("max_iters"):
        done, total, unit = progress.get("iter") or 0, progress["max_iters"], "iter"
    else:
        return (1.0 if state == "done" else None), ""
    return (1.0 if state == "done" else min(1.0, done / total)), f"{unit} {done:g}/{total:g}"


def _last_metrics(job: JobRecord) -> str:
    if not job.rows:
        return ""
    last = max(r["iter"] for r in job.rows)
    rows = [r for r in job.rows if r["iter"] == last]
    values = ", ".join(f"{r['metric']}={r['value']:.4g}" for r in rows)
    return f"{values} ({rows[0]['split']}, epoch {rows[0]['epoch']:g})"


def jobs_frame(jobs: list[JobRecord]) -> pd.DataFrame:
    """The status of every job: state, progress, last metrics, averaging-hook counts, error."""
    records = []
    for job in jobs:
        status = job.status
        fraction, position = _position(status, job.state)
        averaging = status.get("averaging") or {}
        updated = status.get("updated")
        records.append({
            "job_id": job.job_id, "task": job.get("task"), "preset": job.get("preset"),
            "method": job.get("method"), "seed": job.get("seed"), "state": job.state,
            "progress": fraction, "position": position, "last metrics": _last_metrics(job),
            "updated": pd.to_datetime(updated, unit="s", utc=True) if isinstance(updated, (int, float)) else pd.NaT,
            "updates": averaging.get("updates"), "switches": averaging.get("switches"),
            "error": status.get("error") or "",
        })
    return pd.DataFrame.from_records(records, columns=[
        "job_id", "state", "progress", "position", "last metrics", "updates", "switches", "error", "updated",
        "task", "preset", "method", "seed"])
