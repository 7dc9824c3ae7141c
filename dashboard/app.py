"""SEMA Bench dashboard: ``suite dashboard`` runs it (``streamlit run dashboard/app.py`` underneath).

It reads the results directory named by ``SUITE_RESULTS_DIR`` (default ``results``) and never writes there.
Every selection is bound to a URL query parameter, so a view can be shared by copying the address.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from sema_dashboard import charts, flatness, tables
from sema_dashboard.store import ResultsStore, Snapshot
from sema_suite.registry import get_task
from sema_suite.results import leaderboard, profiles
from sema_suite.results.profiles import selection_of

RESULTS_ENV = "SUITE_RESULTS_DIR"
VIEWS = ["Task", "Across tasks", "Flatness", "Jobs", "Samples"]
STATES = ["pending", "running", "done", "failed"]


@st.cache_resource(show_spinner=False)
def store_for(results_dir: str) -> ResultsStore:
    """One store per directory, shared by all sessions: its file cache is what keeps reruns cheap."""
    return ResultsStore(Path(results_dir))


@st.cache_resource(show_spinner=False)
def primary_metric(task: str, preset: str) -> str | None:
    """The preset's primary metric from its adapter; None for results of a task not installed here. Cached: the
    adapters do not change while the server runs, and finding one reads every installed package's entry points."""
    try:
        return get_task(task).primary_metric_for(preset).name
    except Exception:  # noqa: BLE001  (an unknown or broken adapter must not break the page)
        return None


def direction(higher: bool) -> str:
    return "higher is better" if higher else "lower is better"


def show_problems(snapshot: Snapshot) -> None:
    for warning in leaderboard.provenance_warnings([job.environment for job in snapshot.curve_jobs
                                                    if job.state == "done"]):
        st.warning(f"Provenance: {warning}.", icon="⚠️")
    if not snapshot.problems:
        return
    st.warning(f"{len(snapshot.problems)} thing(s) in the results that the tables leave out (unreadable files, jobs "
               "or seeds without rows), each said below with what to do; the rest of the page is complete without "
               "them.", icon="⚠️")
    with st.expander("What is left out, and why"):
        for problem in snapshot.problems[:50]:
            st.text(problem)
        if len(snapshot.problems) > 50:
            st.text(f"... and {len(snapshot.problems) - 50} more")


def choose(label: str, options: list[str], key: str, default: str | None = None) -> str:
    index = options.index(default) if default in options else 0
    return st.selectbox(label, options, index=index, key=key, bind="query-params")


def curves(rows: list[dict], metric: str, higher: bool) -> None:
    """Seed-mean curves per method and variant with a std band, against epoch, iteration or wall-clock time."""
    cols = st.columns([1, 1, 1])
    splits = sorted({r["split"] for r in rows})
    with cols[0]:
        split = choose("split", splits, "split", default="val")
    with cols[1]:
        x = st.segmented_control("x axis", list(tables.X_AXES), default="epoch", key="x", bind="query-params",
                                 required=True)
    with cols[2]:
        show_seeds = st.toggle("show individual seeds", value=False, key="seeds", bind="query-params")
    points = tables.curve_points(tables.select(rows, split=split))
    summary = tables.curve_summary(points, x)
    points["x"] = points[tables.X_AXES[x]]
    x_title = {"epoch": "epoch", "iteration": "iteration", "wall-clock": "wall-clock time (s)"}[x]
    with st.container(key="curves"):
        st.subheader(f"Convergence: {metric} ({direction(higher)})")
        st.altair_chart(charts.curve_chart(summary, points if show_seeds else None, x_title,
                                           f"{metric} ({direction(higher)})", counts=x != "wall-clock"),
                        width="stretch")
        seeds = summary.groupby(["method", "variant"])["n"].max().to_dict()
        counts = ", ".join(f"{tables.series_label(m, v)}: {n}"
                           for (m, v), n in sorted(seeds.items(), key=lambda kv: tables.series_key(*kv[0])))
        st.caption("One curve per method and variant (*shipped*: the preset as shipped; otherwise the `--set` "
                   "knobs it ran with), never averaged together. Line: mean over seeds; shaded band: mean ± 1 "
                   f"standard deviation over seeds ({counts} seeds). Curves include running jobs (not failed ones).")


def task_view(snapshot: Snapshot, task: str, preset: str, metric: str, higher: bool) -> None:
    rows = snapshot.curves.get((task, preset, metric), [])
    if rows:
        curves(rows, metric, higher)
    else:
        st.info(f"No evaluation of {metric} from a done or running job of {task} / {preset} yet.")
    repeated = [j.job_id for j in snapshot.repeated if j.get("task") == task and j.get("preset") == preset]
    if repeated:
        st.warning(f"Left out {len(repeated)} older job(s) that repeat a seed of the same method and variant (the "
                   f"newest is used, as in the leaderboard; delete them if they are stale): {', '.join(repeated)}",
                   icon="⚠️")
    board_rows = tables.leaderboard_rows(snapshot.leaderboard, task, preset, metric)
    with st.container(key="leaderboard"):
        st.subheader(f"Leaderboard: {task} / {preset} · {metric} ({direction(higher)})")
        if not board_rows:
            st.info("No finished jobs for this task and preset yet; the leaderboard fills in as jobs finish.")
            return
        frames = {s: tables.leaderboard_frame(rows) for s in tables.SELECTIONS
                  if (rows := [r for r in board_rows if selection_of(r) == s])}
        first, details = {}, {}
        for selection, frame in frames.items():
            first[selection], details[selection] = tables.split_details(frame)
        st.markdown("##### As shipped: the preset's own knobs")
        if "shipped" in first:
            show_leaderboard(first["shipped"], higher)
        else:
            st.caption("No finished run of the preset as shipped; every run here set some knob (see below).")
        st.markdown(f"##### Tuned: per method, the variant with the best mean val {metric}, reported on test")
        if "tuned" in first:
            show_leaderboard(first["tuned"], higher)
        else:
            st.caption("No tuned rows in this leaderboard: they come from a sweep (`suite run --set decay=0.9,0.99`) "
                       "evaluated on val and test.")
        if "sweep" in first:
            with st.expander(f"Every swept variant ({len(first['sweep'])} rows)"):
                show_leaderboard(first["sweep"], higher)
        if any(len(frame.columns) > len(tables.DETAIL_KEYS) for frame in details.values()):
            with st.expander("Details: best evaluation, paired seeds, convergence speed"):
                for selection, frame in details.items():
                    st.markdown(f"*{selection}*")
                    st.dataframe(frame, hide_index=True, column_config={
                        name: column for name, column in LEADERBOARD_COLUMNS.items() if name in frame.columns})
        st.download_button("Download as CSV", leaderboard.to_csv(board_rows), mime="text/csv", key="download-task",
                           file_name=f"leaderboard-{task}-{preset}-{metric}.csv")
        st.caption("Ranked by the final mean (last evaluation, averaged over seeds) within each split; *variant* "
                   "names the knobs a row ran with. Δ vs none is the mean of the per-seed differences to plain "
                   "training with the same seed (green: better), with its 95% t interval, the paired t-test's "
                   "p-value and the share of seeds on which the method beats `none`. Under *details*: *reach "
                   "90%/99%* is the first epoch (or second) at which the method reaches that share of the "
                   "improvement `none` of the same seed made from its first evaluation to its last; *AUC* is the "
                   "normalised area under the curve. Click a header to sort.")
    sensitivity_view(snapshot, task, preset, metric, board_rows)


LEADERBOARD_COLUMNS = {
    "final_mean": st.column_config.NumberColumn("final mean", format="%.4g"),
    "final_std": st.column_config.NumberColumn("± std", format="%.2g"),
    "best_mean": st.column_config.NumberColumn("best mean", format="%.4g"),
    "best_std": st.column_config.NumberColumn("± std ", format="%.2g"),
    "delta_vs_none": st.column_config.NumberColumn("Δ vs none", format="%+.3g"),
    "delta_vs_none_pct": st.column_config.NumberColumn("Δ vs none %", format="%+.2f%%"),
    "delta_ci": st.column_config.TextColumn("Δ 95% interval"),
    "p_value": st.column_config.NumberColumn("p-value", format="%.3g"),
    "win_rate": st.column_config.NumberColumn("win rate", format="percent"),
    "paired_seeds": st.column_config.NumberColumn("paired seeds", format="%d"),
    "reach90_epoch": st.column_config.NumberColumn("reach 90% (epoch)", format="%.3g"),
    "reach99_epoch": st.column_config.NumberColumn("reach 99% (epoch)", format="%.3g"),
    "reach90_s": st.column_config.NumberColumn("reach 90% (s)", format="%.3g"),
    "reach99_s": st.column_config.NumberColumn("reach 99% (s)", format="%.3g"),
    "auc_epoch": st.column_config.NumberColumn("AUC (epoch)", format="%.4g"),
    "auc_s": st.column_config.NumberColumn("AUC (s)", format="%.4g"),
    "epochs": st.column_config.NumberColumn("epochs", format="%.4g"),
    "tuned_over": st.column_config.NumberColumn("tuned over (variants)", format="%d"),
    "tuned_at_edge": st.column_config.TextColumn("⚠ at grid edge"),
}


def show_leaderboard(frame: pd.DataFrame, higher: bool) -> None:
    sign = 1 if higher else -1

    def colour(value: float | None) -> str:
        if value is None or pd.isna(value) or value == 0:
            return ""
        return "color: #1a7f37" if sign * value > 0 else "color: #cf222e"

    deltas = [c for c in ("delta_vs_none", "delta_vs_none_pct") if c in frame.columns]
    config = {name: column for name, column in LEADERBOARD_COLUMNS.items() if name in frame.columns}
    st.dataframe(frame.style.map(colour, subset=deltas), hide_index=True, column_config=config)


def sensitivity_view(snapshot: Snapshot, task: str, preset: str, metric: str, board_rows: list[dict]) -> None:
    """The val metric against each knob the sweep set, so a reader sees how much tuning matters."""
    points = tables.sensitivity_points(board_rows, tables.shipped_knobs(snapshot.jobs, task, preset))
    if points.empty:
        return
    reference = next((r["final_mean"] for r in board_rows if r["method"] == "none" and r["split"] == "val"
                      and selection_of(r) == "shipped"), None)
    knobs = list(dict.fromkeys(points["knob"]))
    with st.container(key="sensitivity"):
        st.subheader(f"Sensitivity: val {metric} against each swept knob")
        for start in range(0, len(knobs), 2):
            for col, knob in zip(st.columns(2), knobs[start:start + 2]):
                with col:
                    st.altair_chart(charts.sensitivity_chart(points[points["knob"] == knob], knob, f"val {metric}",
                                                             reference), width="stretch")
        st.caption("Each point is a variant's final mean over seeds, with a bar of ± 1 standard deviation; a line "
                   "joins one method's values of the knob (other swept knobs, if any, held as its legend says), "
                   "its shipped setting included. Dashed grey: `none` as shipped.")
        edges = {r["method"]: r["tuned_at_edge"] for r in snapshot.leaderboard
                 if selection_of(r) == "tuned" and r["task"] == task and r["preset"] == preset and r.get("tuned_at_edge")}
        if edges:
            st.warning("Tuned at the edge of its grid (the optimum may lie outside the values swept; extend the "
                       "sweep): " + "; ".join(f"{method}: {edge}" for method, edge in sorted(edges.items())), icon="⚠️")


def across_view(snapshot: Snapshot) -> None:
    table = snapshot.leaderboard
    if not table:
        st.info("No finished jobs yet.")
        return
    st.subheader("All tasks at a glance")
    st.markdown("Each cell is how much a method's final primary metric improves on plain training (`none`) for "
                "that task, in percent of `none`'s value and signed so that **positive is better**. Rows keep "
                "selections and variants apart: *shipped* is the preset as shipped, *tuned* the variant with the "
                "best val metric per task (its knobs below), *sweep* one row per other variant. *Mean rank* "
                "averages the row's place among the rows of its selection over the tasks (1 = best).")
    frame = tables.across_tasks(table, primary_metric)
    task_columns = [c for c in frame.columns if c not in ("selection", "method", "variant", "mean rank", "tasks")]

    def colour(value: float) -> str:
        if pd.isna(value) or value == 0:
            return ""
        return "background-color: #dafbe1" if value > 0 else "background-color: #ffebe9"

    styled = frame.style.map(colour, subset=task_columns).format("{:+.2f}%", subset=task_columns, na_rep="")
    st.dataframe(styled.format("{:.2f}", subset=["mean rank"]), hide_index=True)
    knobs = tables.tuned_knobs(table, primary_metric)
    if not knobs.empty:
        st.markdown("Knobs the *tuned* rows chose (best mean val primary metric):")
        st.dataframe(knobs)
    profile_view(table)
    with st.container(key="full-leaderboard"):
        st.subheader("Full leaderboard (as `suite leaderboard` writes it)")
        st.dataframe(tables.full_leaderboard(table), hide_index=True)
        st.download_button("Download leaderboard.csv", leaderboard.to_csv(table), file_name="leaderboard.csv",
                           mime="text/csv", key="download-all")


def profile_view(table: list[dict]) -> None:
    scores = profiles.scores(table, primary_metric)
    if not scores:
        return
    curve, behind = tables.profile_frames(scores)
    with st.container(key="profile"):
        st.subheader("Performance profile")
        st.altair_chart(charts.profile_chart(curve), width="stretch")
        st.caption(f"For each τ, the fraction of the {behind['problem'].nunique()} task-presets on which a method's "
                   "final primary metric is within τ of the best method's, as a relative gap |best − value| / "
                   "|best| (the best is the highest value, or the lowest where lower is better). Values from the "
                   "*tuned* selection on test, or *shipped* where a method has no tuned row; a method that never "
                   "ran a task-preset never counts there. Higher and further left is better.")
        with st.expander("The values behind the profile"):
            st.dataframe(behind, hide_index=True, column_config={
                "gap": st.column_config.NumberColumn("gap to best", format="percent")})


FLATNESS_COLUMNS = {name: column for name, column in LEADERBOARD_COLUMNS.items()
                    if name in flatness.TABLE_COLUMNS}


def flatness_view(snapshot: Snapshot, task: str, preset: str) -> None:
    """What ``suite analyze`` measured: flatness per method with intervals, against the metric, and its curves."""
    jobs = flatness.measured_jobs(snapshot, task, preset)
    if not jobs:
        st.info(f"No flatness measurements for {task} / {preset} yet: `suite analyze --task {task}` measures the "
                "finished jobs (or `suite run ... --analyze` as they finish).")
        return
    names = flatness.measures(jobs)
    with st.container(key="flatness-table"):
        st.subheader(f"Flatness and sharpness: {task} / {preset} (lower is flatter)")
        selection = st.segmented_control("selection", ["shipped", "sweep"], default="shipped",
                                         key="flat_selection", bind="query-params", required=True)
        st.dataframe(flatness.table(snapshot.leaderboard, task, preset, names, selection), hide_index=True,
                     column_config=FLATNESS_COLUMNS)
        st.caption("Measured on the weights each job reports (averaged for ema/sema), on a fixed subset of the "
                   "training data (split *train*). Δ vs none: mean of the per-seed differences to `none` with its "
                   "95% t interval. *barrier_…_vs_none/ema*: the largest excess over the chord on the straight line "
                   "from that partner's weights to the sema job's (0: no barrier).")
    scatter_view(jobs, names, task, preset)
    with st.container(key="landscape"):
        st.subheader("1-D loss landscape along filter-normalised random directions")
        curve = flatness.landscape(jobs)
        if curve.empty:
            st.caption("No landscape measured.")
        else:
            st.altair_chart(charts.curve_chart(curve, None, "step along the direction (α)", "train loss",
                                               counts=False), width="stretch")
            st.caption("Per job the mean over its directions; line: mean over seeds, band: ± 1 standard deviation.")
    interpolation_view(jobs)


def scatter_view(jobs: list, names: list[str], task: str, preset: str) -> None:
    with st.container(key="flatness-scatter"):
        st.subheader("Does flatness track the metric?")
        splits = sorted({r["split"] for j in jobs for r in j.rows})
        metrics = sorted({r["metric"] for j in jobs for r in j.rows})
        cols = st.columns(3)
        with cols[0]:
            measure = choose("flatness measure", [n for n in names if not n.startswith("barrier_")] or names,
                             "flat_measure", default="hessian_trace")
        with cols[1]:
            metric = choose("against", metrics, "flat_metric", default=primary_metric(task, preset))
        with cols[2]:
            split = choose("split", splits, "flat_split", default="test")
        points = flatness.scatter(jobs, measure, metric, split)
        if points.empty:
            st.caption(f"No job has both {measure} and {metric} on {split}.")
            return
        st.altair_chart(charts.scatter_chart(points, measure, f"{split} {metric}"), width="stretch")
        correlation = flatness.rank_correlation(points)
        said = (f"Spearman's rank correlation over the {correlation[2]} jobs: ρ = {correlation[0]:+.2f} "
                f"(p = {correlation[1]:.2g}). " if correlation else "")
        st.caption(f"One point per job (its final values). {said}Methods and variants are pooled in ρ; colours "
                   "tell them apart.")


def interpolation_view(jobs: list) -> None:
    options = flatness.interpolation_metrics(jobs)
    if not options:
        return
    with st.container(key="interpolation"):
        st.subheader("Linear interpolation to the sema weights")
        measured = choose("measured along the line", options, "interp_metric", default="train_loss")
        curve = flatness.interpolation(jobs, measured)
        st.altair_chart(charts.curve_chart(curve, None, "t (0: the partner's weights, 1: sema's)", measured,
                                           counts=False), width="stretch")
        st.caption("The weights (1 − t) · partner + t · sema, for the none and ema jobs of the same seed and knobs; "
                   "line: mean over seeds, band: ± 1 standard deviation.")


COST_HELP = {
    "wall": "from the worker process's start to the end of the run",
    "startup": "process start and imports (interpreter, torch, mmengine, the task)",
    "build": "runner, model, data and resumed checkpoint, up to the first training step",
    "train": "training steps, data loading and logging",
    "eval": "this job's evaluation passes (val and test)",
    "averaging": "this job's averaging updates and switches (host time)",
    "checkpoint": "writing checkpoints",
}


def jobs_view(snapshot: Snapshot) -> None:
    counts = snapshot.counts
    cols = st.columns(len(STATES))
    for col, state in zip(cols, STATES):
        col.metric(state, counts.get(state, 0))
    other = {s: n for s, n in counts.items() if s not in STATES}
    if other:
        st.caption("Also: " + ", ".join(f"{n} {s}" for s, n in other.items()))
    present = [s for s in STATES if counts.get(s)] + sorted(other)
    states = st.multiselect("show states", present, default=present, key="state", bind="query-params")
    jobs = [j for j in snapshot.jobs if j.state in states]
    with st.container(key="jobs"):
        st.dataframe(tables.jobs_frame(jobs), hide_index=True, column_config={
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
            "updated": st.column_config.DatetimeColumn("updated", format="distance"),
            "updates": st.column_config.NumberColumn("avg updates", help="weight-averaging updates the hook made"),
            "switches": st.column_config.NumberColumn("switches", help="times SEMA copied the average into the model"),
            "run": st.column_config.TextColumn("run", help="the training run that produced the job: its own, or a "
                                               "run shared by the none and ema jobs of one trajectory"),
            **{f"{phase} s": st.column_config.NumberColumn(f"{phase} s", format="%.1f", help=COST_HELP[phase])
               for phase in tables.COST_PHASES},
        })
        st.caption("Where each finished job's time went. A shared run's jobs each show the run's start-up, building, "
                   "training and checkpoints (paid once for all of them) and their own evaluation and averaging.")
    failed = [j for j in jobs if j.state in ("failed", "unreadable") and j.status.get("error")]
    if failed:
        with st.expander(f"Errors of {len(failed)} failed job(s)"):
            for job in failed[:50]:
                st.markdown(f"**{job.job_id}**")
                st.code(job.status["error"], language=None)


def show_sample(path: Path) -> None:
    """One sample image, or a warning naming the file when it cannot be read (a torn or hand-edited PNG)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, UnidentifiedImageError) as err:
        st.warning(f"skipped {path}: not a readable image ({err}); it is rewritten when its job runs again", icon="⚠️")
        return
    st.image(str(path), caption=path.name, width="stretch", output_format="PNG")


def samples_view(snapshot: Snapshot, task: str, preset: str) -> None:
    jobs = [j for j in snapshot.jobs if j.get("task") == task and j.get("preset") == preset and j.samples]
    if not jobs:
        st.info(f"No samples for {task} / {preset}. Generation and video tasks write PNGs to "
                "`results/<job_id>/samples/` (named by epoch or iteration); they appear here as they are written.")
        return
    seeds = sorted({j.get("seed") for j in jobs}, key=str)
    steps = sorted({s.step for j in jobs for s in j.samples if s.step is not None})
    cols = st.columns([1, 3])
    with cols[0]:
        seed = st.selectbox("seed", seeds, key="sample_seed", bind="query-params")
    step = steps[-1] if steps else None
    if len(steps) > 1:
        with cols[1]:
            step = st.select_slider("epoch / iteration", steps, value=steps[-1], key="sample_step",
                                    format_func=lambda v: f"{v:g}", bind="query-params")
    chosen = sorted((j for j in jobs if j.get("seed") == seed),
                    key=lambda j: tables.series_key(str(j.get("method")), j.get("variant")))
    for col, job in zip(st.columns(max(1, len(chosen))), chosen):
        with col:
            match = [s for s in job.samples if s.step == step] or ([] if steps else list(job.samples[-1:]))
            st.markdown(f"**{tables.series_label(str(job.get('method')), job.get('variant'))}** · seed {seed}")
            if match:
                show_sample(match[-1].path)
            else:
                st.caption(f"no sample at {step:g}")


def answer_view(snapshot: Snapshot) -> None:
    """The first screen: does each averaging method beat plain training, task by task (tuned, on test)?"""
    grid = tables.verdict_grid(snapshot.leaderboard, primary_metric)
    if grid.empty:
        return
    with st.container(key="answer"):
        st.markdown("#### Does averaging beat plain training?")

        def colour(cell: Any) -> str:
            word = str(cell).split(" ")[0]
            return {"win": "background-color: #dafbe1", "loss": "background-color: #ffebe9"}.get(word, "")

        st.table(grid.style.map(colour))  # a small static table, apart from the interactive frames below
        st.caption("Each cell: the *tuned* method against `none` on the task's primary metric (test), by the 95% "
                   "interval of the per-seed paired difference -- *win* or *loss* where it excludes zero, *tie* "
                   "where it does not -- then the mean difference and the interval (higher is better for accuracy "
                   "and k-NN, lower for errors, FID and perplexity). Details below and in the leaderboards.")


def page(store: ResultsStore) -> None:
    snapshot = store.snapshot()
    counts = snapshot.counts
    st.caption(f"`{snapshot.results_dir}` · {len(snapshot.jobs)} job(s): "
               + (", ".join(f"{counts[s]} {s}" for s in [*STATES, *sorted(set(counts) - set(STATES))] if counts.get(s))
                  or "none yet") + ". Selections are kept in the address bar: copy it to share this view.")
    show_problems(snapshot)
    if not snapshot.jobs:
        st.info(f"No jobs under `{snapshot.results_dir}` yet. Start some with "
                "`suite run --task cls --method none,ema,sema --seeds 0,1,2`; this page picks them up as they run.")
        return
    answer_view(snapshot)
    specs = {(j.get("task"), j.get("preset")) for j in snapshot.jobs if j.get("task")}
    cols = st.columns(3)
    with cols[0]:
        task = choose("task", sorted({t for t, _ in specs}), "task")
    with cols[1]:
        preset = choose("preset", sorted(p for t, p in specs if t == task), "preset", default="tiny")
    metrics = snapshot.metrics.get((task, preset), {})
    with cols[2]:
        metric = choose("metric", sorted(metrics), "metric", default=primary_metric(task, preset)) if metrics else None
    view = st.tabs(VIEWS, key="view", bind="query-params")
    with view[0]:
        if view[0].open:
            if metric is None:
                st.info(f"No evaluations recorded for {task} / {preset} yet.")
            else:
                task_view(snapshot, task, preset, metric, metrics[metric])
    with view[1]:
        if view[1].open:
            across_view(snapshot)
    with view[2]:
        if view[2].open:
            flatness_view(snapshot, task, preset)
    with view[3]:
        if view[3].open:
            jobs_view(snapshot)
    with view[4]:
        if view[4].open:
            samples_view(snapshot, task, preset)


def main() -> None:
    st.set_page_config(page_title="SEMA Bench", page_icon="📈", layout="wide")
    results_dir = Path(os.environ.get(RESULTS_ENV, "results")).expanduser().resolve()
    store = store_for(str(results_dir))
    # refreshing a finished results folder would recompute the same page forever: on only while something runs
    active = any(job.state in ("pending", "running") for job in store.snapshot().jobs)
    head = st.columns([4, 1, 1], vertical_alignment="bottom")
    head[0].title("SEMA Bench")
    live = head[1].toggle("live refresh", value=active, key="live", bind="query-params",
                          help="Re-read the results every few seconds; only files that changed are parsed again. "
                               "On by default while a job is pending or running.")
    every = head[2].selectbox("every (s)", [2, 5, 10, 30, 60], index=1, key="every", bind="query-params",
                              disabled=not live)
    if not live and not active:
        head[0].caption("Every job has finished, so live refresh is off; turn it on to watch new runs.")
    st.fragment(page, run_every=every if live else None)(store)


main()
