"""The frames of the dashboard's Flatness view, from what ``suite analyze`` wrote (see :mod:`sema_suite.analysis.measure`).

Per task and preset: each method's flatness figures with intervals (the leaderboard's own rows, never
recomputed), one point per job for the scatter of a flatness measure against a metric (with Spearman's rank
correlation over the jobs), the 1-D landscape and the interpolation curves as mean and band over seeds.
Jobs come from :attr:`Snapshot.curve_jobs` (one per seed, the leaderboard's rule), done ones only.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from sema_dashboard.store import JobRecord, Snapshot
from sema_dashboard.tables import interval_text, leaderboard_rows, series_key, series_label, variant_label

TABLE_COLUMNS = ("metric", "split", "method", "variant", "seeds", "final_mean", "final_std", "delta_vs_none",
                 "delta_ci", "p_value", "win_rate")
_CURVE_COLUMNS = ["series", "method", "variant", "x", "mean", "std", "n", "lo", "hi"]


def measured_jobs(snapshot: Snapshot, task: str, preset: str) -> list[JobRecord]:
    """The done jobs of a task/preset that ``suite analyze`` measured."""
    return [j for j in snapshot.curve_jobs if j.state == "done" and j.analysis
            and j.get("task") == task and j.get("preset") == preset]


def measures(jobs: list[JobRecord]) -> list[str]:
    """The flatness measures and barriers the jobs have, flatness first, in the order they were written."""
    names = dict.fromkeys(r["metric"] for j in jobs for r in j.analysis)
    return sorted(names, key=lambda m: m.startswith("barrier_"))


def table(board: list[dict[str, Any]], task: str, preset: str, names: list[str], selection: str) -> pd.DataFrame:
    """The leaderboard's rows of the flatness measures (one per measure, method and variant), lower is flatter."""
    rows = [r for r in leaderboard_rows(board, task, preset, selection=selection) if r["metric"] in names]
    rows.sort(key=lambda r: (names.index(r["metric"]), series_key(r["method"], r.get("variant"))))
    records = [{**r, "variant": variant_label(r.get("variant")),
                "delta_ci": interval_text(r.get("delta_ci_low"), r.get("delta_ci_high"))} for r in rows]
    return pd.DataFrame.from_records([{c: r.get(c) for c in TABLE_COLUMNS} for r in records],
                                     columns=list(TABLE_COLUMNS))


def _final(rows: list[dict[str, Any]], metric: str, split: str | None = None) -> float | None:
    matching = [r for r in rows if r["metric"] == metric and (split is None or r["split"] == split)]
    return max(matching, key=lambda r: r["iter"])["value"] if matching else None


def scatter(jobs: list[JobRecord], measure: str, metric: str, split: str) -> pd.DataFrame:
    """One point per job: its final ``measure`` (x) and its final ``metric`` on ``split`` (y)."""
    records = []
    for job in jobs:
        x, y = _final(job.analysis, measure), _final(job.rows, metric, split)
        if x is not None and y is not None:
            method, variant = str(job.get("method")), job.get("variant")
            records.append({"job_id": job.job_id, "method": method, "variant": variant_label(variant),
                            "series": series_label(method, variant), "seed": job.get("seed"), "x": x, "y": y})
    return pd.DataFrame.from_records(records, columns=["job_id", "method", "variant", "series", "seed", "x", "y"])


def rank_correlation(points: pd.DataFrame) -> tuple[float, float, int] | None:
    """Spearman's rho between the scatter's x and y over its jobs, its p-value and the number of jobs."""
    from scipy.stats import spearmanr

    if len(points) < 3 or points["x"].nunique() < 2 or points["y"].nunique() < 2:
        return None
    result = spearmanr(points["x"], points["y"])
    return float(result.statistic), float(result.pvalue), len(points)


def _summary(frame: pd.DataFrame, x: str) -> pd.DataFrame:
    """Mean and std over jobs (seeds) per series and ``x``, in :func:`sema_dashboard.charts.curve_chart`'s columns."""
    if frame.empty:
        return pd.DataFrame(columns=_CURVE_COLUMNS)
    grouped = frame.groupby(["series", "method", "variant", x], sort=True)
    out = grouped.agg(mean=("value", "mean"), std=("value", "std"), n=("job_id", "nunique")).reset_index()
    out["std"] = out["std"].fillna(0.0)
    out["lo"], out["hi"] = out["mean"] - out["std"], out["mean"] + out["std"]
    return out.rename(columns={x: "x"})[_CURVE_COLUMNS]


def landscape(jobs: list[JobRecord]) -> pd.DataFrame:
    """The loss along random directions: per job the mean over its directions, then mean and band over seeds."""
    records = []
    for job in jobs:
        method, variant = str(job.get("method")), job.get("variant") or ""
        per_alpha = pd.DataFrame(job.landscape).groupby("alpha")["loss"].mean() if job.landscape else {}
        records += [{"job_id": job.job_id, "method": method, "variant": variant,
                     "series": series_label(method, variant), "alpha": alpha, "value": loss}
                    for alpha, loss in dict(per_alpha).items()]
    return _summary(pd.DataFrame.from_records(records, columns=["job_id", "method", "variant", "series", "alpha",
                                                                "value"]), "alpha")


def interpolation_metrics(jobs: list[JobRecord]) -> list[str]:
    """What the interpolation curves measured: ``train_loss`` and each val metric (``val top1``)."""
    return list(dict.fromkeys(r["metric"] if r["split"] == "train" else f"{r['split']} {r['metric']}"
                              for j in jobs for r in j.interpolation))


def interpolation(jobs: list[JobRecord], measured: str) -> pd.DataFrame:
    """The curves from each partner (t = 0) to the ``sema`` job (t = 1) of ``measured`` (``"train_loss"``,
    ``"val top1"``), one series per partner method and ``sema`` variant, mean and band over seeds."""
    split, _, metric = measured.rpartition(" ")
    split = split or "train"
    records = []
    for job in jobs:
        variant = job.get("variant") or ""
        records += [{"job_id": job.job_id, "method": r["partner_method"], "variant": variant,
                     "series": f"{r['partner_method']} → sema · {variant_label(variant)}", "t": r["t"],
                     "value": r["value"]}
                    for r in job.interpolation if r["split"] == split and r["metric"] == metric]
    return _summary(pd.DataFrame.from_records(records, columns=["job_id", "method", "variant", "series", "t",
                                                                "value"]), "t")
