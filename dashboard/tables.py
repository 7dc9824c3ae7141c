"""The dashboard's tables, as pandas frames built from a :class:`~sema_dashboard.store.Snapshot`.

Leaderboard numbers are never recomputed here: they come from :func:`sema_suite.results.leaderboard.aggregate` (via
``Snapshot.leaderboard``), so the page shows what ``suite leaderboard`` writes. What is added on top is
presentation: ranking, labels for variants, the across-task summary and the points of the sensitivity plot.
Columns are read with ``.get``, so a leaderboard that lacks some (an older suite's) still shows what it has.

A variant is the ``--set`` knobs a job ran with ('' = the preset as shipped); runs of two variants are never
averaged, ranked or summarised together, and every view names the variant.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd

from sema_dashboard.store import JobRecord
from sema_suite.results import profiles
from sema_suite.results.leaderboard import COLUMNS, METHOD_ORDER, SELECTION_ORDER, baseline_variant
from sema_suite.results.profiles import Score, selection_of
from sema_suite.running.variants import format_value, format_variant, parse_variant

X_AXES = {"epoch": "epoch", "iteration": "iter", "wall-clock": "wall_time_s"}
SELECTIONS = tuple(sorted(SELECTION_ORDER, key=SELECTION_ORDER.get))  # shipped, tuned, sweep
SHIPPED = "shipped"  # the label of variant '' (the preset as shipped)
# what a task's leaderboard table shows, in order (those with no value in any row are left out)
IDENTITY = {"rank", "method", "variant", "split", "seeds", "final_mean"}
BOARD_COLUMNS = (
    "rank", "method", "variant", "split", "seeds", "final_mean", "final_std", "best_mean", "best_std",
    "delta_vs_none", "delta_vs_none_pct", "delta_ci", "p_value", "win_rate", "paired_seeds",
    "reach90_epoch", "reach99_epoch", "reach90_s", "reach99_s", "auc_epoch", "auc_s", "epochs",
    "tuned_over", "tuned_at_edge",
)

# what a newcomer does not need first: shown under the task's tables, each row named by DETAIL_KEYS
DETAIL_KEYS = ("rank", "method", "variant", "split")
DETAIL_COLUMNS = ("best_mean", "best_std", "paired_seeds", "reach90_epoch", "reach99_epoch", "reach90_s", "reach99_s",
                  "auc_epoch", "auc_s", "epochs")


def method_key(method: str) -> tuple[int, str]:
    return METHOD_ORDER.get(method, 9), method


def variant_label(variant: str | None) -> str:
    return variant or SHIPPED


def series_label(method: str, variant: str | None) -> str:
    """What a curve is called: its method and variant, e.g. ``sema · decay=0.8`` or ``sema · shipped``."""
    return f"{method} · {variant_label(variant)}"


def series_key(method: str, variant: str | None) -> tuple[int, str, bool, str]:
    """Order of series: by method, the shipped variant first."""
    return (*method_key(method), bool(variant), variant or "")


def select(rows: Iterable[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def curve_points(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (job, evaluation): the individual seed curves, each labelled by its series."""
    columns = ["method", "variant", "seed", "job_id", "epoch", "iter", "wall_time_s", "value"]
    frame = pd.DataFrame([{c: r[c] for c in columns} for r in rows], columns=columns)
    frame["series"] = [series_label(m, v) for m, v in zip(frame["method"], frame["variant"])]
    return frame.sort_values(["series", "job_id", "iter"], ignore_index=True)


def curve_summary(points: pd.DataFrame, x: str) -> pd.DataFrame:
    """Mean and std over seeds per (method, variant) and evaluation; ``x`` is a key of :data:`X_AXES`.

    ``n`` counts jobs (each job is one seed of its series), so two settings are never averaged as two seeds.
    Seeds are aligned by epoch (or iteration); against wall-clock time each point sits at the seeds' mean
    wall time for that evaluation, since seeds do not finish an epoch at the same second.
    """
    by = "iter" if x == "iteration" else "epoch"
    grouped = points.groupby(["series", "method", "variant", by], sort=True)
    summary = grouped.agg(mean=("value", "mean"), std=("value", "std"), n=("job_id", "nunique"),
                          wall_time_s=("wall_time_s", "mean")).reset_index()
    summary["std"] = summary["std"].fillna(0.0)
    summary["lo"] = summary["mean"] - summary["std"]
    summary["hi"] = summary["mean"] + summary["std"]
    summary["x"] = summary[X_AXES[x]]
    return summary


def leaderboard_rows(table: list[dict[str, Any]], task: str, preset: str, metric: str | None = None,
                     selection: str | None = None) -> list[dict[str, Any]]:
    return [r for r in table
            if r["task"] == task and r["preset"] == preset and (metric is None or r["metric"] == metric)
            and (selection is None or selection_of(r) == selection)]


def interval_text(low: float | None, high: float | None) -> str | None:
    if _missing(low) or _missing(high):
        return None
    return f"[{low:+.3g}, {high:+.3g}]"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def leaderboard_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One metric's leaderboard rows ranked best first within each split, variants labelled, ``delta_ci`` the
    95% interval of the paired difference to ``none``. A column no row has a value in (p-values of single-seed
    rows, convergence where ``none`` never improved) is left out: the tables stay narrow enough to read."""
    if not rows:
        return pd.DataFrame(columns=list(BOARD_COLUMNS))
    higher = rows[0]["higher_is_better"]
    ranked = sorted(rows, key=lambda r: (r["split"], -r["final_mean"] if higher else r["final_mean"],
                                         series_key(r["method"], r.get("variant"))))
    records, rank, split = [], 0, None
    for r in ranked:
        rank = 1 if r["split"] != split else rank + 1
        split = r["split"]
        records.append({**r, "rank": rank, "variant": variant_label(r.get("variant")),
                        "delta_ci": interval_text(r.get("delta_ci_low"), r.get("delta_ci_high"))})
    columns = [c for c in BOARD_COLUMNS if c in IDENTITY or any(not _missing(r.get(c)) for r in records)]
    return pd.DataFrame.from_records([{c: r.get(c) for c in columns} for r in records], columns=columns)


def split_details(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A task table (:func:`leaderboard_frame`) as what is read first, and its :data:`DETAIL_COLUMNS` with the
    keys that name each row."""
    details = [c for c in frame.columns if c in DETAIL_COLUMNS]
    return frame.drop(columns=details), frame[[c for c in DETAIL_KEYS if c in frame.columns] + details]


def full_leaderboard(table: list[dict[str, Any]]) -> pd.DataFrame:
    """The leaderboard with exactly ``suite leaderboard``'s columns."""
    return pd.DataFrame.from_records([{c: r.get(c) for c in COLUMNS} for r in table], columns=list(COLUMNS))


def _problem_metric(rows: list[dict[str, Any]], primary: Callable[[str, str], str | None], task: str,
                    preset: str) -> str:
    metric = primary(task, preset)
    return metric if metric in {r["metric"] for r in rows} else min(r["metric"] for r in rows)


def across_tasks(table: list[dict[str, Any]], primary: Callable[[str, str], str | None]) -> pd.DataFrame:
    """One row per (selection, method, variant), one column per task/preset: the relative improvement of the
    primary metric's final mean over ``none``, in percent and signed so that positive is better; plus the mean
    rank over tasks among the rows of the same selection.

    Each task is read on one split (``test`` where it has one, else ``val``), named in its column. The tuned
    rows of one method pick their variant per task, so they share one row (their knobs: :func:`tuned_knobs`).
    """
    cells: dict[tuple[str, str, str], dict[str, float | None]] = {}
    ranks: dict[tuple[str, str, str], list[float]] = {}
    names = []
    for task, preset in sorted({(r["task"], r["preset"]) for r in table}):
        rows = leaderboard_rows(table, task, preset)
        metric = _problem_metric(rows, primary, task, preset)
        rows = [r for r in rows if r["metric"] == metric]
        split = "test" if any(r["split"] == "test" for r in rows) else "val"
        rows = [r for r in rows if r["split"] == split]
        higher = rows[0]["higher_is_better"]
        sign = 1.0 if higher else -1.0
        name = f"{task}/{preset} · {metric} {'↑' if higher else '↓'} ({split})"
        names.append(name)
        for selection in SELECTIONS:
            chosen = [r for r in rows if selection_of(r) == selection]
            keys = [(selection, r["method"], "per task, best on val" if selection == "tuned"
                     else variant_label(r.get("variant"))) for r in chosen]
            for key, r in zip(keys, chosen):
                pct = r.get("delta_vs_none_pct")
                cells.setdefault(key, {})[name] = None if _missing(pct) else sign * pct + 0.0
            order = pd.Series([sign * r["final_mean"] for r in chosen], dtype="float64").rank(ascending=False)
            for key, rank in zip(keys, order):
                ranks.setdefault(key, []).append(float(rank))
    keys = sorted(cells, key=lambda k: (SELECTIONS.index(k[0]), series_key(k[1], "" if k[2] == SHIPPED else k[2])))
    frame = pd.DataFrame([cells[k] for k in keys], columns=names, dtype="float64")
    frame.insert(0, "variant", [k[2] for k in keys])
    frame.insert(0, "method", [k[1] for k in keys])
    frame.insert(0, "selection", [k[0] for k in keys])
    frame["mean rank"] = [sum(ranks[k]) / len(ranks[k]) for k in keys]
    frame["tasks"] = [len(ranks[k]) for k in keys]
    return frame


def tuned_knobs(table: list[dict[str, Any]], primary: Callable[[str, str], str | None]) -> pd.DataFrame:
    """Per method (rows) and task/preset (columns): the variant the ``tuned`` selection chose, marked where a
    chosen value lies at the edge of its grid (the optimum may lie outside it)."""
    knobs: dict[str, dict[str, str]] = {}
    for r in table:
        if selection_of(r) == "tuned":
            task_rows = leaderboard_rows(table, r["task"], r["preset"])
            if r["metric"] == _problem_metric(task_rows, primary, r["task"], r["preset"]):
                edge = f" ⚠ grid edge: {r['tuned_at_edge']}" if r.get("tuned_at_edge") else ""
                knobs.setdefault(r["method"], {})[f"{r['task']}/{r['preset']}"] = variant_label(r.get("variant")) + edge
    methods = sorted(knobs, key=method_key)
    frame = pd.DataFrame([knobs[m] for m in methods], index=pd.Index(methods, name="method"))
    return frame.reindex(sorted(frame.columns), axis=1)


def shipped_knobs(jobs: Iterable[JobRecord], task: str, preset: str) -> dict[str, dict[str, str]]:
    """method -> knob -> its value as shipped (from the specs of the task's shipped jobs), written like variants
    write values, so the sensitivity plot can place the shipped setting on each knob's axis."""
    out: dict[str, dict[str, str]] = {}
    for job in jobs:
        spec = job.spec
        if spec.get("task") == task and spec.get("preset") == preset and not spec.get("variant"):
            knobs = {**(spec.get("params") or {}), **(spec.get("averaging") or {})}
            out.setdefault(str(spec.get("method")), {}).update({k: format_value(v) for k, v in knobs.items()})
    return out


def _as_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def sensitivity_points(rows: list[dict[str, Any]], shipped: dict[str, dict[str, str]]) -> pd.DataFrame:
    """The points of the sensitivity plot from one metric's ``val`` leaderboard rows of one task/preset.

    One point per (knob, row that sets it): x is the knob's value, the line is the method plus the variant's
    other knobs (``sema`` or ``sema · switch_interval=2``). A shipped row adds a point at its shipped value (from
    ``shipped``) to the line with no other knob set. ``order`` sorts each knob's values (numerically if all are
    numbers). Empty when no row of the sweep sets a knob.
    """
    rows = [r for r in rows if r["split"] == "val" and selection_of(r) in ("shipped", "sweep")]
    knobs = sorted({k for r in rows for k in parse_variant(r.get("variant") or "")})
    records = []
    for knob in knobs:
        for r in rows:
            setting = parse_variant(r.get("variant") or "")
            value = setting.pop(knob, None) if setting else shipped.get(r["method"], {}).get(knob)
            if value is None:
                continue
            others = format_variant(setting)
            records.append({"knob": knob, "value": value, "method": r["method"], "others": others,
                            "line": r["method"] + (f" · {others}" if others else ""),
                            "variant": variant_label(r.get("variant")), "mean": r["final_mean"],
                            "std": r.get("final_std"), "seeds": r.get("seeds")})
    frame = pd.DataFrame.from_records(records, columns=["knob", "value", "method", "others", "line", "variant",
                                                         "mean", "std", "seeds"])
    frame["std"] = frame["std"].astype("float64").fillna(0.0)
    frame["lo"] = frame["mean"] - frame["std"]
    frame["hi"] = frame["mean"] + frame["std"]
    frame["order"] = 0.0
    for knob, group in frame.groupby("knob"):
        numbers = [_as_number(v) for v in group["value"]]
        ordered = sorted(set(group["value"]), key=_as_number) if None not in numbers else sorted(set(group["value"]))
        frame.loc[group.index, "order"] = [float(ordered.index(v)) for v in group["value"]]
    return frame


def profile_frames(scores: list[Score]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The performance profile's points (method, tau, fraction), from tau 0 to a little past the largest finite
    gap, and the scores behind it with each one's gap to the best."""
    gaps = profiles.gaps(scores)
    taus = profiles.breakpoints(gaps)
    taus.append(taus[-1] * 1.25 if taus[-1] > 0 else 0.01)  # carry every line on past its last step
    fractions = profiles.profile(gaps, taus)
    methods = sorted(fractions, key=method_key)
    curve = pd.DataFrame([{"method": m, "tau": t, "fraction": f} for m in methods for t, f in zip(taus, fractions[m])])
    behind = pd.DataFrame([{"problem": f"{s.task}/{s.preset}", "metric": s.metric, "split": s.split,
                            "method": s.method, "selection": s.selection, "variant": variant_label(s.variant),
                            "value": s.value, "gap": gaps[s.method][(s.task, s.preset)]} for s in scores])
    return curve, behind


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
    values = ", ".join(f"{r['metric']}={r['value']:.4g} ({r['split']})" for r in rows)  # the end: val and test
    return f"{values} at epoch {rows[0]['epoch']:g}"


# where a finished job's wall time went (status.json "costs", see sema_suite.running.costs): a shared run's jobs show the
# run's start-up, building, training and checkpoints, and their own evaluation and averaging
COST_PHASES = ("wall", "startup", "build", "train", "eval", "averaging", "checkpoint")


def jobs_frame(jobs: list[JobRecord]) -> pd.DataFrame:
    """The status of every job: state, progress, last metrics, averaging-hook counts, error, the run that trained
    it (``own``, or a shared run's id) and where its time went."""
    records = []
    for job in jobs:
        status = job.status
        fraction, position = _position(status, job.state)
        averaging = status.get("averaging") or {}
        updated = status.get("updated")
        records.append({
            "job_id": job.job_id, "task": job.get("task"), "preset": job.get("preset"),
            "method": job.get("method"), "variant": variant_label(job.get("variant")), "seed": job.get("seed"),
            "state": job.state,
            "progress": fraction, "position": position, "last metrics": _last_metrics(job),
            "updated": float(updated) if isinstance(updated, (int, float)) else None,
            "updates": averaging.get("updates"), "switches": averaging.get("switches"),
            "error": status.get("error") or "",
            "run": status.get("run_id") if status.get("run_members") else "own",
            **{f"{phase} s": (status.get("costs") or {}).get(f"{phase}_s") for phase in COST_PHASES},
        })
    frame = pd.DataFrame.from_records(records, columns=[
        "job_id", "state", "progress", "position", "last metrics", "updates", "switches", "error", "updated",
        "run", *(f"{phase} s" for phase in COST_PHASES), "task", "preset", "method", "variant", "seed"])
    frame["updated"] = pd.to_datetime(frame["updated"].astype("float64"), unit="s", utc=True)  # one call, not per job
    return frame


def verdict(row: dict[str, Any]) -> str:
    """``win``, ``tie`` or ``loss`` against ``none`` by the row's 95% interval of the paired difference (``no
    interval`` with one seed or a constant difference), then the difference and the interval."""
    low, high, delta = row.get("delta_ci_low"), row.get("delta_ci_high"), row.get("delta_vs_none")
    if _missing(delta):
        return "no pairs"
    if _missing(low) or _missing(high):
        return f"no interval {delta:+.3g}"
    better = low > 0 if row["higher_is_better"] else high < 0
    worse = high < 0 if row["higher_is_better"] else low > 0
    word = "win" if better else "loss" if worse else "tie"
    return f"{word} {delta:+.3g} {interval_text(low, high)}"


def verdict_grid(table: list[dict[str, Any]], primary: Callable[[str, str], str | None]) -> pd.DataFrame:
    """The first screen's answer: per method (rows) and task/preset (columns; a training setting other than
    the shipped one in brackets), the tuned selection's verdict against ``none`` on each task's primary metric,
    on test (val where a task has no test split); "not run" where a method has no jobs for a task."""
    cells: dict[str, dict[str, str]] = {}
    tuned = [r for r in table if selection_of(r) == "tuned" and r["method"] != "none"]
    for r in tuned:
        splits = {x["split"] for x in tuned if (x["task"], x["preset"]) == (r["task"], r["preset"])}
        if r["split"] != ("test" if "test" in splits else "val") or r["metric"] != primary(r["task"], r["preset"]):
            continue
        setting = baseline_variant(r.get("variant") or "")
        column = f"{r['task']}/{r['preset']}" + (f" [{setting}]" if setting else "")
        cells.setdefault(r["method"], {})[column] = verdict(r)
    methods = sorted(cells, key=method_key)
    frame = pd.DataFrame([cells[m] for m in methods], index=pd.Index(methods, name="method"))
    return frame.reindex(sorted(frame.columns), axis=1).fillna("not run")
