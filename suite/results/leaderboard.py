"""Aggregate finished jobs over seeds into the leaderboard: what a careful reviewer would accept.

One row per (selection, task, preset, variant, split, metric, method):

- ``selection``: ``shipped`` (the preset's knobs, variant ''), ``sweep`` (every other variant: the
  sensitivity data) and ``tuned`` (per task, preset, training setting and method, the variant of the method's
  own knobs with the best mean ``val`` primary metric over the seeds every candidate has, reported on
  ``test``; the row's ``variant`` names the chosen knobs, ``tuned_over`` counts the candidates and
  ``tuned_at_edge`` names a chosen value at the edge of its grid, see :func:`grid_edges`).
- Aggregation is by job: one curve per finished job, never a mixture. When two finished jobs claim the same
  (task, preset, variant, method, seed) -- e.g. one left from an older version of a preset -- the newest
  (latest training evaluation, :func:`trained_at`) is used and :func:`conflicts` says so.
- Against ``none`` the seeds are pairs (same initial weights and data order, see the README): the mean of
  the per-seed differences with a 95% Student-t interval, the paired t-test's p-value and the win rate
  (ties count half). ``none``'s row for a variant is the one with the same training knobs: a decay sweep is
  compared with the one ``none`` it shares.
- Convergence: per seed, the first evaluation reaching 90% / 99% of the improvement ``none`` of the same seed
  made from its first to its final evaluation (paired, as the deltas are, so the spread between seeds sets no
  target; epochs and wall seconds; empty when a seed never gets there), and the
  normalised area under the curve (the curve's mean height over the run, against epochs and against wall
  time), each as a mean over seeds with a 95% t interval.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from sema_suite.method.methods import BUILTIN, averaging_defaults, knob_table
from sema_suite.results.reading import MEASURED, Reading, read_results
from sema_suite.results.store import write_atomic
from sema_suite.running.variants import format_value, format_variant, parse_variant

TARGETS = (90, 99)  # percent of none's improvement over its first evaluation
_INTERVAL = ("", "_ci_low", "_ci_high")
COLUMNS = (
    "selection", "task", "preset", "variant", "dataset", "model", "split", "metric", "higher_is_better", "method",
    "seeds", "final_mean", "final_std", "best_mean", "best_std",
    "delta_vs_none", "delta_vs_none_pct", "delta_ci_low", "delta_ci_high", "p_value", "win_rate", "paired_seeds",
    "epochs",
    *(f"reach{q}_{unit}{part}" for unit in ("epoch", "s") for q in TARGETS for part in _INTERVAL),
    *(f"auc_{unit}{part}" for unit in ("epoch", "s") for part in _INTERVAL),
    "tuned_over", "tuned_at_edge",
)
METHOD_ORDER = {name: rank for rank, name in enumerate(BUILTIN)}  # built-in methods first, in their order
SELECTION_ORDER = {"shipped": 0, "tuned": 1, "sweep": 2}


def provenance_warnings(envs: list[dict[str, Any]]) -> list[str]:
    """What to say when the jobs a table is built from (the newest of each claim; ``envs``, their recorded
    environments) ran different code or different package versions: each job.json records its code hash (or git
    commit), package versions and lock."""
    warnings = []
    code = Counter(env.get("code") or (env.get("git_commit") or "")[:12] or "not recorded" for env in envs)
    if len(code) > 1:
        listed = ", ".join(f"{state}: {n} job(s)" for state, n in code.most_common())
        warnings.append(f"the jobs come from {len(code)} code states ({listed}): a method's numbers may not compare "
                        "across them (each job.json records its code hash and git commit)")
    versions: dict[str, Counter] = defaultdict(Counter)
    for env in envs:
        for name, installed in (env.get("packages") or {}).items():
            versions[name][installed] += 1
    moved = [f"{name} " + ", ".join(f"{v} ({n} jobs)" for v, n in counts.most_common())
             for name, counts in sorted(versions.items()) if len(counts) > 1]
    if moved:
        warnings.append(f"the jobs ran with different package versions: {'; '.join(moved)}")
    locks = Counter(env["lock"] for env in envs if env.get("lock"))
    if len(locks) > 1:
        listed = ", ".join(f"{lock}: {n} job(s)" for lock, n in locks.most_common())
        warnings.append(f"the jobs were produced under {len(locks)} different dependency locks ({listed}): other "
                        "pinned packages may differ too")
    return warnings


class Cell(NamedTuple):
    """What one leaderboard row aggregates over seeds: a metric of one method in one setting."""

    task: str
    preset: str
    variant: str
    dataset: str
    model: str
    split: str
    metric: str
    higher_is_better: bool
    method: str


@dataclass(frozen=True)
class Curve:
    """One job's evaluations of one metric on one split, in order."""

    epochs: tuple[float, ...]
    seconds: tuple[float, ...]
    values: tuple[float, ...]


def _claim(row: dict[str, Any]) -> tuple:
    return row["task"], row["preset"], row.get("variant", ""), row["method"], row["seed"]



def trained_at(rows: list[dict[str, Any]]) -> str:
    """When a job last recorded a training evaluation: the rule that settles two jobs claiming one seed, in the
    leaderboard and the dashboard alike (a later `suite analyze` of an old job does not make it newer)."""
    return max((r["timestamp"] for r in rows if not r.get(MEASURED)), default="")


def newest_jobs(rows: list[dict[str, Any]]) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Rows grouped by job, one job per claim (the newest); and a message for every claim made twice."""
    by_job: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_job[row["job_id"]].append(row)
    claims: dict[tuple, list[str]] = defaultdict(list)
    for job_id, job_rows in by_job.items():
        claims[_claim(job_rows[0])].append(job_id)
    messages = []
    for claim, job_ids in claims.items():
        if len(job_ids) > 1:
            job_ids.sort(key=lambda j: (trained_at(by_job[j]), j))
            task, preset, variant, method, seed = claim
            messages.append(f"{len(job_ids)} finished jobs are {task}/{preset} {method} seed {seed}"
                            f"{f' [{variant}]' if variant else ''}: using the newest, {job_ids[-1]}; ignoring "
                            f"{', '.join(job_ids[:-1])} (delete them if they are stale)")
            for stale in job_ids[:-1]:
                del by_job[stale]
    return by_job, messages


def conflicts(rows: list[dict[str, Any]]) -> list[str]:
    """What :func:`aggregate` will say about jobs that claim the same (task, preset, variant, method, seed)."""
    return newest_jobs(rows)[1]


def seed_curves(rows: list[dict[str, Any]]) -> dict[Cell, dict[int, Curve]]:
    """Cell -> seed -> that seed's job's curve."""
    by_job, _ = newest_jobs(rows)
    cells: dict[Cell, dict[int, Curve]] = defaultdict(dict)
    for job_rows in by_job.values():
        series: dict[Cell, list[tuple[float, float, float]]] = defaultdict(list)
        for r in job_rows:
            cell = Cell(r["task"], r["preset"], r.get("variant", ""), r["dataset"], r["model"], r["split"],
                        r["metric"], r["higher_is_better"], r["method"])
            series[cell].append((r["epoch"], r["wall_time_s"], r["value"]))
        seed = job_rows[0]["seed"]
        for cell, points in series.items():
            points.sort()
            cells[cell][seed] = Curve(*(tuple(p[i] for p in points) for i in range(3)))
    return cells


def mean_ci(values: list[float], confidence: float = 0.95) -> tuple[float | None, float | None, float | None]:
    """Mean and its Student-t confidence interval (None where undefined: no values, or one)."""
    if not values:
        return None, None, None
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None, None
    from scipy import stats

    sem = stats.sem(values)
    if sem == 0:
        return mean, mean, mean
    low, high = stats.t.interval(confidence, len(values) - 1, loc=mean, scale=sem)
    return mean, float(low), float(high)


def _std(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


class Paired(NamedTuple):
    """One method against another over the seeds both have (each seed a pair: same initial weights and data
    order): the mean per-seed difference with its 95% t interval, the paired t-test's p-value and the share of
    seeds on which the first is better (ties count half)."""

    delta: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    win_rate: float | None
    seeds: int
    base_mean: float | None  # the second's mean over those seeds


def paired(own: dict[int, Curve], base: dict[int, Curve], higher: bool) -> Paired:
    """``own``'s final values against ``base``'s, seed by seed (see :class:`Paired`)."""
    seeds = sorted(set(own) & set(base))
    if not seeds:
        return Paired(None, None, None, None, None, 0, None)
    diffs = [own[s].values[-1] - base[s].values[-1] for s in seeds]
    delta, low, high = mean_ci(diffs)
    p_value = None
    if len(seeds) > 1 and any(d != diffs[0] for d in diffs):
        from scipy import stats

        p_value = float(stats.ttest_rel([own[s].values[-1] for s in seeds], [base[s].values[-1] for s in seeds]).pvalue)
    elif len(seeds) > 1:  # every seed differs by the same amount: the t-test and its interval are undefined
        low = high = None
    wins = sum(1.0 if (d > 0) == higher and d != 0 else 0.5 if d == 0 else 0.0 for d in diffs)
    return Paired(delta, low, high, p_value, wins / len(seeds), len(seeds),
                  statistics.fmean(base[s].values[-1] for s in seeds))


def _against_none(own: dict[int, Curve], base: dict[int, Curve], higher: bool) -> dict[str, Any]:
    """The leaderboard's columns of :func:`paired` against ``none``."""
    pair = paired(own, base, higher)
    if not pair.seeds:
        return {"paired_seeds": 0}
    return {"delta_vs_none": pair.delta, "delta_ci_low": pair.ci_low, "delta_ci_high": pair.ci_high,
            "p_value": pair.p_value, "win_rate": pair.win_rate, "paired_seeds": pair.seeds,
            "delta_vs_none_pct": 100.0 * pair.delta / abs(pair.base_mean) if pair.base_mean else None}


def _first_reaching(curve: Curve, target: float, higher: bool) -> tuple[float, float] | None:
    tol = 1e-9 * max(1.0, abs(target))  # a curve ending exactly on the target reaches it
    for epoch, seconds, value in zip(curve.epochs, curve.seconds, curve.values):
        if (value >= target - tol) if higher else (value <= target + tol):
            return epoch, seconds
    return None


def _area(xs: tuple[float, ...], ys: tuple[float, ...]) -> float:
    """Mean height of the piecewise-linear curve over its x range (its only value for a single point)."""
    if len(xs) < 2 or xs[-1] == xs[0]:
        return statistics.fmean(ys)
    area = sum((xs[i + 1] - xs[i]) * (ys[i + 1] + ys[i]) / 2 for i in range(len(xs) - 1))
    return area / (xs[-1] - xs[0])


def _with_interval(name: str, values: list[float] | None) -> dict[str, Any]:
    return dict(zip((name + part for part in _INTERVAL), mean_ci(values or [])))


def _convergence(own: dict[int, Curve], base: dict[int, Curve], higher: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if all(len(c.values) > 1 for c in own.values()):
        out |= _with_interval("auc_epoch", [_area(c.epochs, c.values) for c in own.values()])
        out |= _with_interval("auc_s", [_area(c.seconds, c.values) for c in own.values()])
    seeds = sorted(set(own) & set(base or {}))
    if not seeds or any(len(base[s].values) < 2 for s in seeds):
        return out
    gains = {s: base[s].values[-1] - base[s].values[0] for s in seeds}
    if any((gain > 0) != higher or gain == 0 for gain in gains.values()):
        return out  # none did not improve on some seed: no meaningful target
    for q in TARGETS:  # each seed against its own pair's none: the spread between seeds sets no target
        reached = [_first_reaching(own[s], base[s].values[0] + q / 100 * gains[s], higher) for s in seeds]
        if all(reached):
            out |= _with_interval(f"reach{q}_epoch", [r[0] for r in reached])
            out |= _with_interval(f"reach{q}_s", [r[1] for r in reached])
    return out


def baseline_variant(variant: str) -> str:
    """The variant of the ``none`` job a variant is compared with: the same knobs, less the averaging ones."""
    return format_variant({k: v for k, v in parse_variant(variant).items() if k not in averaging_defaults()})


def _row(selection: str, cell: Cell, seeds: dict[int, Curve], base: dict[int, Curve] | None) -> dict[str, Any]:
    higher = cell.higher_is_better
    finals = [c.values[-1] for c in seeds.values()]
    bests = [max(c.values) if higher else min(c.values) for c in seeds.values()]
    row = {column: None for column in COLUMNS} | cell._asdict() | {
        "selection": selection, "seeds": len(seeds),
        "final_mean": statistics.fmean(finals), "final_std": _std(finals),
        "best_mean": statistics.fmean(bests), "best_std": _std(bests),
        "epochs": max(c.epochs[-1] for c in seeds.values()),
    }
    if base is not None:
        none = {"delta_vs_none": 0.0, "delta_vs_none_pct": 0.0}
        row |= _against_none(seeds, base, higher) if cell.method != "none" else none
        row |= _convergence(seeds, base, higher)
    return row


class Tuning(NamedTuple):
    """How a (task, preset, training setting, method)'s tuned variant was chosen."""

    variant: str
    candidates: int  # the variants tuned over
    at_edge: str  # "decay=0.5 (lowest of 0.5, 0.7, 0.9)": a chosen value the grid does not bracket; '' if none


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def shipped_method_knobs(task: str, preset: str) -> dict[str, str]:
    """A preset's averaging knobs as shipped, written as variants write them; {} for a task not installed here."""
    from sema_suite.errors import SuiteError
    from sema_suite.registry import get_task

    try:
        shipped = get_task(task).presets[preset].averaging
    except (SuiteError, KeyError):
        return {}
    return {key: format_value(value) for key, value in {**averaging_defaults(), **shipped}.items()}


def grid_edges(chosen: str, candidates: list[str], shipped: dict[str, str]) -> str:
    """The knobs whose chosen value lies at the edge of the values swept for them (with the chosen variant's
    other knobs held), e.g. ``decay=0.5 (lowest of 0.5, 0.7, 0.9)``; '' when the grid brackets every choice."""
    knobs = {key for variant in candidates for key in parse_variant(variant)}
    full = {variant: {**{k: shipped.get(k) for k in knobs}, **parse_variant(variant)} for variant in candidates}
    marks = []
    for knob in sorted(knobs):
        others = {k: v for k, v in full[chosen].items() if k != knob}
        values = sorted({x for variant, knob_values in full.items()
                         if {k: v for k, v in knob_values.items() if k != knob} == others
                         and knob_values[knob] is not None and (x := _number(knob_values[knob])) is not None})
        mine = _number(full[chosen][knob] or "")
        if len(values) >= 2 and mine in (values[0], values[-1]):
            side = "lowest" if mine == values[0] else "highest"
            marks.append(f"{knob}={full[chosen][knob]} ({side} of {', '.join(f'{v:g}' for v in values)})")
    return "; ".join(marks)


def tuned_choices(cells: dict[Cell, dict[int, Curve]], primary: dict[tuple[str, str], str]
                   ) -> tuple[dict[tuple, Tuning], list[str]]:
    """(task, preset, training setting, method) -> its tuned variant; and a warning wherever candidates were run
    on different seeds.

    Tuning is over the method's own knobs within one training setting (``baseline_variant``): a variant that
    changes training (epochs, optimizer, ...) is a setting of its own with its own ``none``, never a candidate.
    Candidates are ranked by their mean final val primary metric over the seeds they all have, so a variant that
    lacks a hard seed is not favoured; ties go to the preset as shipped.
    """
    groups: dict[tuple, dict[str, tuple[dict[int, float], bool]]] = defaultdict(dict)
    for cell, seeds in cells.items():
        if cell.split == "val" and primary.get((cell.task, cell.preset)) == cell.metric:
            key = (cell.task, cell.preset, baseline_variant(cell.variant), cell.method)
            groups[key][cell.variant] = ({s: c.values[-1] for s, c in seeds.items()}, cell.higher_is_better)
    choices, warnings = {}, []
    for key, candidates in groups.items():
        seed_sets = [set(finals) for finals, _ in candidates.values()]
        common = set.intersection(*seed_sets)
        if len({frozenset(s) for s in seed_sets}) > 1:
            task, preset, setting, method = key
            warnings.append(f"{task}/{preset} {method}{f' [{setting}]' if setting else ''}: its {len(candidates)} "
                            f"tuning candidates were run on different seeds; the tuned choice compares them on the "
                            f"{len(common)} seed(s) they share" + ("" if common else " (none: on each one's own)"))

        def score(variant: str) -> tuple[float, bool]:
            finals, higher = candidates[variant]
            mean = statistics.fmean(finals[s] for s in (common or finals))
            return (mean if higher else -mean), variant == ""

        best = max(candidates, key=score)
        edges = grid_edges(best, list(candidates), shipped_method_knobs(key[0], key[1]))
        choices[key] = Tuning(best, len(candidates), edges)
    return choices, warnings


def tuning_warnings(rows: list[dict[str, Any]], primary: dict[tuple[str, str], str] | None = None) -> list[str]:
    """What to say about tuning candidates run on different seeds (see :func:`tuned_choices`)."""
    return tuned_choices(seed_curves(rows), primary_metrics(rows) if primary is None else primary)[1]


def grid_extension(knob: str, value: float, side: str) -> list[float]:
    """Two values past ``value`` on ``side`` ("lowest" or "highest") of a grid: a decay by halving (doubling) its
    lag d/(1-d) twice, a knob with a largest meaningful value (``lookahead_alpha``'s 1, or a fraction of training
    such as ``swa_start=0.9``) by halving the gap to it twice (none at it), any other knob by halving (doubling) it
    twice (whole numbers stay whole, at least 1)."""
    factors = (0.5, 0.25) if side == "lowest" else (2.0, 4.0)
    spec = knob_table().get(knob)
    highest = spec.highest if spec else None
    if spec and spec.fraction_below_one and 0 < value < 1:
        highest = 1.0
    if side == "highest" and highest is not None:
        return [round(highest - (highest - value) * f, 4) for f in (0.5, 0.25)] if value < highest else []
    if knob == "decay":
        lag = value / (1 - value)
        return [round(lag * f / (1 + lag * f), 4) for f in factors]
    if float(value).is_integer():
        return sorted({max(1, round(value * f)) for f in factors} - {value})
    return [value * f for f in factors]


def edge_notes(table: list[dict[str, Any]]) -> list[str]:
    """One line per tuned choice at the edge of its grid, with the values to add to the sweep."""
    notes = []
    for r in table:
        if r["selection"] != "tuned" or not r["tuned_at_edge"] or r["split"] != "test" or r["metric"] != primary_metric(
                r["task"], r["preset"]):
            continue
        for mark in r["tuned_at_edge"].split("; "):
            knob, _, rest = mark.partition("=")
            value, _, grid = rest.partition(" (")
            side, _, swept = grid.rstrip(")").partition(" of ")
            extra = ",".join(f"{v:g}" for v in grid_extension(knob, float(value), side))
            advice = f"extend it (e.g. --set {knob}={extra})" if extra else "it cannot go further"
            spec = knob_table().get(knob)
            if beyond := spec and (spec.past_lowest if side == "lowest" else spec.past_highest):
                advice += f"; at that end it becomes {beyond}: compare with that row first"
            setting = baseline_variant(r["variant"])  # the training setting it was tuned in (optimizer=sgd)
            where = f"{r['task']}/{r['preset']}" + (f" [{setting}]" if setting else "")
            notes.append(f"{where} {r['method']}: the tuned {knob}={value} is the {side} value swept "
                         f"({swept}): the optimum may lie outside the grid; {advice}")
    return notes


def aggregate(rows: list[dict[str, Any]], primary: dict[tuple[str, str], str] | None = None) -> list[dict[str, Any]]:
    """The leaderboard of ``rows`` (every metrics row of the finished jobs).

    ``primary``: (task, preset) -> its primary metric, which the tuned selection ranks by (see
    :func:`primary_metrics`); presets without one get no tuned rows.
    """
    cells = seed_curves(rows)
    table = []
    for cell, seeds in cells.items():
        base = cells.get(cell._replace(method="none", variant=baseline_variant(cell.variant)))
        table.append(_row("shipped" if cell.variant == "" else "sweep", cell, seeds, base))
    choices, _ = tuned_choices(cells, primary or {})
    for cell, seeds in cells.items():
        setting = baseline_variant(cell.variant)
        tuning = choices.get((cell.task, cell.preset, setting, cell.method))
        if cell.split != "test" or tuning is None or tuning.variant != cell.variant:
            continue
        none = choices.get((cell.task, cell.preset, setting, "none"))
        base = None if none is None else cells.get(cell._replace(method="none", variant=none.variant))
        table.append(_row("tuned", cell, seeds, base) | {"tuned_over": tuning.candidates,
                                                          "tuned_at_edge": tuning.at_edge})
    table.sort(key=lambda r: (SELECTION_ORDER[r["selection"]], r["task"], r["preset"], r["split"], r["metric"],
                              r["variant"] if r["selection"] == "sweep" else baseline_variant(r["variant"]),
                              METHOD_ORDER.get(r["method"], 9), r["method"]))
    return table


def selected_jobs(rows: list[dict[str, Any]], selections: Iterable[str],
                  primary: dict[tuple[str, str], str] | None = None) -> set[str]:
    """The ids of the jobs behind the table's ``shipped`` rows (every method's job as the preset ships it) and/or
    its ``tuned`` rows (each method's val-tuned variant in each training setting, ``none`` included): the jobs a
    reviewer measures further (``suite analyze --selection``) without measuring every sweep point."""
    selections = set(selections)
    tuned = set()
    if "tuned" in selections:
        choices, _ = tuned_choices(seed_curves(rows), primary_metrics(rows) if primary is None else primary)
        tuned = {(task, preset, tuning.variant, method) for (task, preset, _, method), tuning in choices.items()}
    chosen = set()
    for job_id, job_rows in newest_jobs(rows)[0].items():
        first = job_rows[0]
        key = (first["task"], first["preset"], first.get("variant", ""), first["method"])
        if ("shipped" in selections and key[2] == "") or key in tuned:
            chosen.add(job_id)
    return chosen


def primary_metric(task: str, preset: str) -> str | None:
    """The metric a (task, preset) is ranked by, from its adapter; None for results of a task that is not
    installed here (no torch import)."""
    from sema_suite.errors import SuiteError
    from sema_suite.registry import get_task

    try:
        return get_task(task).primary_metric_for(preset).name
    except SuiteError:
        return None


def primary_metrics(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """(task, preset) -> primary metric, for the registered tasks among ``rows``."""
    out = {}
    for key in {(r["task"], r["preset"]) for r in rows}:
        if (metric := primary_metric(*key)) is not None:
            out[key] = metric
    return out


def load(results_dir: Path, job_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Every metrics row of the finished jobs under ``results_dir`` (or of ``job_ids``), their flatness rows
    (``suite analyze``, split ``train``) and a ``sema`` job's interpolation barriers (splits ``train``, ``val``);
    unreadable files skipped (:func:`sema_suite.results.reading.read_results` names them)."""
    return read_results(results_dir, job_ids).rows


def used_environments(reading: Reading) -> list[dict[str, Any]]:
    """The recorded environments of the jobs a table uses: the newest of each claim (:func:`newest_jobs`)."""
    return [reading.environments.get(job_id, {}) for job_id in newest_jobs(reading.rows)[0]]


def printed_table_note(table: list[dict[str, Any]]) -> str | None:
    """Why the printed table (its shipped and tuned rows) is empty while the CSV is not, if it is."""
    if table and not any(r["selection"] in ("shipped", "tuned") for r in table):
        return ("no row is shipped or tuned: every job ran with knobs set (--set), so each row is a sweep row, which "
                "the printed table leaves out, and no tuned row could be chosen (it needs each method's variants "
                "scored on val and test): the sweep rows are in the CSV; run the preset as shipped too to compare")
    return None


def build(results_dir: Path, job_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
    rows = load(results_dir, job_ids)
    return aggregate(rows, primary_metrics(rows))


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
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


def _delta(r: dict[str, Any]) -> str:
    if r["delta_vs_none"] is None or r["method"] == "none":
        return ""
    return delta_text(r["delta_vs_none"], r["delta_ci_low"], r["delta_ci_high"], r["paired_seeds"] or 0)


def delta_text(delta: float, low: float | None, high: float | None, seeds: int) -> str:
    """A paired difference as the tables print it: ``+0.12 [-0.03, +0.27]``."""
    if low is not None:
        return f"{delta:+.3g} [{low:+.3g}, {high:+.3g}]"
    # one seed, or every seed differing by the same amount (no spread: no t interval, no p)
    return f"{delta:+.3g}" + (" (every seed equal: no interval)" if seeds > 1 else "")


def method_knobs(variant: str) -> str:
    """A variant less its training setting: what a method was tuned to (``decay=0.9`` of ``decay=0.9,optimizer=sgd``)."""
    setting = parse_variant(baseline_variant(variant))
    return format_variant({k: v for k, v in parse_variant(variant).items() if k not in setting})


def _texts(r: dict[str, Any]) -> dict[str, str]:
    """A row's columns as the console and Markdown tables print them."""
    return {
        "selection": r["selection"], "task": r["task"], "split": r["split"], "method": r["method"],
        "preset": r["preset"] + (f" [{r['variant']}]" if r["variant"] else ""),
        "preset [knobs]": r["preset"] + (f" [{knobs}]" if (knobs := method_knobs(r["variant"])) else ""),
        "setting": baseline_variant(r["variant"]) or "as shipped",
        "metric": r["metric"] + ("↑" if r["higher_is_better"] else "↓"), "tuned over": _fmt(r["tuned_over"]),
        "seeds": str(r["seeds"]), "final": _pm(r["final_mean"], r["final_std"]), "delta [95% CI]": _delta(r),
        "p": "" if r["p_value"] is None else f"{r['p_value']:.2g}",
        "win": "" if r["win_rate"] is None else f"{r['win_rate']:.2g}", "ep→90%": _fmt(r["reach90_epoch"]),
    }


CONSOLE = ("selection", "task", "preset", "split", "metric", "method", "seeds", "final", "delta [95% CI]", "p", "win",
           "ep→90%")
MARKDOWN = ("selection", "task", "preset [knobs]", "setting", "metric", "method", "tuned over", "seeds", "final",
            "delta [95% CI]", "p", "win")


def _table_lines(table: list[dict[str, Any]], keep, columns: tuple[str, ...]) -> list[tuple[str, ...]]:
    return [columns, *(tuple(_texts(r)[c] for c in columns) for r in filter(keep, table))]


def format_table(table: list[dict[str, Any]], selections: tuple[str, ...] = ("shipped", "tuned")) -> str:
    """A compact console table of the shipped and tuned selections: mean ± std over seeds, the paired delta
    against none with its 95% interval, p-value, win rate, and epochs to 90% of none's improvement."""
    lines = _table_lines(table, lambda r: r["selection"] in selections, CONSOLE)
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def format_markdown(table: list[dict[str, Any]], split: str = "test") -> str:
    """The README's tables, one per preset (tier): each task's primary metric on one split, shipped and tuned
    selections; ``preset [knobs]`` names the method's chosen knobs, ``setting`` the training setting it was tuned
    in, ``tuned over`` how many variants it was chosen from."""
    primary = primary_metrics(table)
    blocks = []
    for preset in sorted({r["preset"] for r in table}):
        lines = _table_lines(table, lambda r: r["selection"] in ("shipped", "tuned") and r["split"] == split
                             and r["preset"] == preset and r["metric"] == primary.get((r["task"], r["preset"])),
                             MARKDOWN)
        if len(lines) > 1:
            blocks.append(markdown(lines))
    return "\n\n".join(blocks)


def markdown(lines: list[tuple[str, ...]]) -> str:
    """A Markdown table of a header line and its rows."""
    rows = [lines[0], tuple("---" for _ in lines[0]), *lines[1:]]
    return "\n".join("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows)
