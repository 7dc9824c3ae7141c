"""Aggregation over seeds, higher- and lower-is-better, and corrupt input, on files from the real writer."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats

from sema_suite.results import leaderboard
from sema_suite.results.store import JobDir


def write_job(results: Path, method: str, seed: int, values: list[float], higher: bool = True,
              metric: str = "top1", state: str = "done", variant: str = "", split: str = "val",
              job_id: str | None = None, stamp: str = "2026-01-01T00:00:00") -> JobDir:
    job = JobDir(results, job_id or f"t-{metric}-{method}-s{seed}-{variant}")
    job.append_metrics([
        {"job_id": job.job_id, "task": "t", "preset": "tiny", "dataset": "d", "model": "m", "method": method,
         "seed": seed, "variant": variant, "epoch": epoch, "iter": 10 * epoch, "split": split, "metric": metric,
         "value": v, "higher_is_better": higher, "wall_time_s": 2.0 * epoch, "timestamp": stamp}
        for epoch, v in enumerate(values, start=1)
    ])
    job.update_status(state=state)
    return job


def rows_by_method(results: Path, selection: str = "shipped") -> dict[str, dict]:
    return {r["method"]: r for r in leaderboard.build(results) if r["selection"] == selection}


def test_higher_is_better_with_paired_statistics(tmp_path: Path) -> None:
    for seed, (none, sema) in enumerate([([50, 60, 70], [55, 72, 74]), ([52, 64, 72], [61, 70, 76]),
                                         ([51, 61, 71], [60, 70, 71])]):
        write_job(tmp_path, "none", seed, none)
        write_job(tmp_path, "sema", seed, sema)
    write_job(tmp_path, "ema", 0, [10, 20, 90], state="failed")  # only finished jobs count
    rows = rows_by_method(tmp_path)
    assert set(rows) == {"none", "sema"}
    none, sema = rows["none"], rows["sema"]
    assert (none["seeds"], none["final_mean"], none["final_std"]) == (3, 71, pytest.approx(1.0))
    assert sema["final_mean"] == pytest.approx(221 / 3) and sema["best_mean"] == pytest.approx(221 / 3)
    diffs = [4, 4, 0]  # per seed: 74-70, 76-72, 71-71
    assert sema["delta_vs_none"] == pytest.approx(8 / 3)
    low, high = stats.t.interval(0.95, 2, loc=8 / 3, scale=stats.sem(diffs))
    assert (sema["delta_ci_low"], sema["delta_ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert sema["p_value"] == pytest.approx(stats.ttest_rel([74, 76, 71], [70, 72, 71]).pvalue)
    assert sema["win_rate"] == pytest.approx(2.5 / 3) and sema["paired_seeds"] == 3
    # each seed's none improves by 20: 90% targets 68, 70, 69; 99% targets 69.8, 71.8, 70.8
    assert sema["reach90_epoch"] == 2 and sema["reach90_s"] == 4  # 72, 70 and 70 at epoch 2
    assert (sema["reach99_epoch"], sema["reach99_epoch_ci_low"]) == (pytest.approx(8 / 3), pytest.approx(
        stats.t.interval(0.95, 2, loc=8 / 3, scale=stats.sem([2, 3, 3]))[0]))  # 72 >= 69.8; 70 < 71.8; 70 < 70.8
    assert none["reach90_epoch"] == 3
    # the mean height of the curve over the run: trapezoids over epochs 1..3, divided by 2
    assert sema["auc_epoch"] == pytest.approx(sum((a + 2 * b + c) / 4 for a, b, c in
                                                  ([55, 72, 74], [61, 70, 76], [60, 70, 71])) / 3)
    assert sema["auc_s"] == pytest.approx(sema["auc_epoch"])  # evaluations evenly spaced in time too


def test_lower_is_better(tmp_path: Path) -> None:
    write_job(tmp_path, "none", 0, [9, 5, 4, 6], higher=False, metric="mae")
    write_job(tmp_path, "ema", 0, [8, 6, 5, 5], higher=False, metric="mae")
    write_job(tmp_path, "sema", 0, [7, 4, 3, 3], higher=False, metric="mae")
    rows = rows_by_method(tmp_path)
    assert rows["none"]["best_mean"] == 4  # the minimum, not the maximum
    assert rows["ema"]["delta_vs_none"] == -1 and rows["ema"]["win_rate"] == 1
    assert rows["sema"]["delta_vs_none"] == -3 and rows["sema"]["delta_ci_low"] is None  # one seed: no interval
    assert rows["sema"]["reach90_epoch"] == 2  # none goes 9 -> 6: 90% of that is 6.3
    assert [r["method"] for r in leaderboard.build(tmp_path)] == ["none", "ema", "sema"]


def test_convergence_targets_are_paired_with_each_seeds_none(tmp_path: Path) -> None:
    """Seeds that end far apart: against the mean gain, the weak seed's none would never reach its target and
    the measure would be empty; against its own pair's none, every seed has one."""
    for seed, none, ema in ((0, [10, 50, 60], [10, 58, 60]), (1, [10, 20, 30], [10, 28, 30])):
        write_job(tmp_path, "none", seed, none)
        write_job(tmp_path, "ema", seed, ema)
    rows = rows_by_method(tmp_path)
    assert rows["none"]["reach90_epoch"] == 3 and rows["ema"]["reach90_epoch"] == 2  # targets 55 and 28


def test_never_reaching_and_no_baseline(tmp_path: Path) -> None:
    write_job(tmp_path, "none", 0, [50, 80])
    write_job(tmp_path, "ema", 0, [40, 70])
    write_job(tmp_path, "sema", 0, [1, 2], metric="other")
    rows = {(r["metric"], r["method"]): r for r in leaderboard.build(tmp_path)}
    assert rows[("top1", "ema")]["reach90_epoch"] is None and rows[("top1", "ema")]["auc_epoch"] == 55
    assert rows[("other", "sema")]["delta_vs_none"] is None


def test_variants_stay_apart_and_pair_with_the_none_of_their_training_knobs(tmp_path: Path) -> None:
    write_job(tmp_path, "none", 0, [50, 60])
    write_job(tmp_path, "sema", 0, [50, 64])
    write_job(tmp_path, "sema", 0, [50, 58], variant="decay=0.8")
    write_job(tmp_path, "none", 0, [50, 70], variant="epochs=2")
    write_job(tmp_path, "sema", 0, [50, 75], variant="decay=0.8,epochs=2")
    rows = {(r["selection"], r["variant"], r["method"]): r for r in leaderboard.build(tmp_path)}
    assert rows[("shipped", "", "sema")]["delta_vs_none"] == 4
    assert rows[("sweep", "decay=0.8", "sema")]["delta_vs_none"] == -2  # against the one shipped none
    assert rows[("sweep", "decay=0.8,epochs=2", "sema")]["delta_vs_none"] == 5  # against none at epochs=2
    assert len(rows) == 5


def test_duplicate_jobs_of_one_seed_are_never_mixed(tmp_path: Path) -> None:
    write_job(tmp_path, "none", 0, [50, 60, 70], job_id="old", stamp="2026-01-01T00:00:00")
    write_job(tmp_path, "none", 0, [40, 55, 62, 66, 68], job_id="new", stamp="2026-02-01T00:00:00")
    rows = leaderboard.load(tmp_path)
    (message,) = leaderboard.conflicts(rows)
    assert "using the newest, new" in message and "ignoring old" in message
    (row,) = leaderboard.aggregate(rows)
    assert (row["seeds"], row["final_mean"], row["epochs"]) == (1, 68, 5)


def test_tuned_selects_on_val_and_reports_test(tmp_path: Path) -> None:
    """decay=0.8 is best on val, decay=0.9 on test: the tuned table must report decay=0.8's test result."""
    for seed in (0, 1):
        write_job(tmp_path, "none", seed, [50, 60 + seed])
        write_job(tmp_path, "none", seed, [58 + seed], split="test")
        for variant, val, test in (("", 62, 59), ("decay=0.8", 66, 60), ("decay=0.9", 64, 70)):
            write_job(tmp_path, "sema", seed, [50, val + seed], variant=variant)
            write_job(tmp_path, "sema", seed, [test + seed], variant=variant, split="test")
    table = leaderboard.aggregate(leaderboard.load(tmp_path), {("t", "tiny"): "top1"})
    tuned = {r["method"]: r for r in table if r["selection"] == "tuned"}
    assert set(tuned) == {"none", "sema"}
    assert tuned["sema"]["variant"] == "decay=0.8" and tuned["sema"]["split"] == "test"
    assert tuned["sema"]["final_mean"] == 60.5 and tuned["sema"]["delta_vs_none"] == 2
    assert tuned["none"]["variant"] == ""
    assert not [r for r in leaderboard.aggregate(leaderboard.load(tmp_path)) if r["selection"] == "tuned"]


def test_cli_writes_csv_and_skips_corrupt_input_naming_it(tmp_path: Path) -> None:
    results, out = tmp_path / "results", tmp_path / "leaderboard.csv"
    write_job(results, "none", 0, [50, 60])
    job = write_job(results, "sema", 0, [55, 66])
    cli = [sys.executable, "-m", "sema_suite.cli", "leaderboard", "--results-dir", str(results), "--out", str(out)]
    assert subprocess.run(cli, capture_output=True).returncode == 0
    with out.open() as handle:
        table = list(csv.DictReader(handle))
    assert tuple(table[0]) == leaderboard.COLUMNS
    assert [(r["selection"], r["method"], r["final_mean"], r["delta_vs_none"]) for r in table] == [
        ("shipped", "none", "60", "0"), ("shipped", "sema", "66", "6")]

    with job.metrics_csv.open("a") as handle:
        handle.write("half a row,\n")
    result = subprocess.run(cli, capture_output=True, text=True)
    assert result.returncode == 0  # the rest of the table stands, and the bad file is named with what to do
    assert f"skipped unreadable results file {job.metrics_csv}: line 4 has the wrong number of fields" in result.stderr
    assert "re-run" in result.stderr
    with out.open() as handle:
        assert [(r["method"], r["seeds"]) for r in csv.DictReader(handle)] == [("none", "1")]


def test_results_files_are_readable_by_others(tmp_path: Path) -> None:
    """A shared results directory (cluster, Docker dashboard) gets the usual umask modes, not owner-only ones."""
    umask = os.umask(0o022)
    os.umask(umask)
    job = write_job(tmp_path, "none", 0, [1.0])
    for path in (job.metrics_csv, job.status_json):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


def test_every_preset_names_a_primary_metric_of_its_task() -> None:
    from sema_suite.registry import get_task, task_names

    for name in task_names():
        task = get_task(name)
        for preset in task.presets:
            assert task.primary_metric_for(preset) in task.metrics, (name, preset)
    assert leaderboard.primary_metric("gen", "tiny") == "fid_digits"
    assert leaderboard.primary_metric("gen", "cifar10") == "fid"


def test_a_learning_rate_warm_up_sweep_is_compared_with_its_own_none(tmp_path: Path) -> None:
    """``lr_warmup_epochs`` is a training knob: ``ema`` under it is paired with ``none`` under it, never with
    the shipped ``none`` (which the old shared name ``warmup_epochs`` did, reporting -9 for a +1 gain)."""
    for seed in range(3):
        write_job(tmp_path, "none", seed, [80, 90 + seed])
        write_job(tmp_path, "none", seed, [70, 80 + seed], variant="lr_warmup_epochs=3")
        write_job(tmp_path, "ema", seed, [71, 81 + seed], variant="lr_warmup_epochs=3")
    sweep = {r["method"]: r for r in leaderboard.build(tmp_path) if r["selection"] == "sweep"}
    assert sweep["ema"]["delta_vs_none"] == pytest.approx(1.0) and sweep["ema"]["win_rate"] == 1


def _tuned(results: Path) -> dict[str, dict]:
    rows = leaderboard.load(results)
    table = leaderboard.aggregate(rows, {("t", "tiny"): "top1"})
    return {r["method"]: r for r in table if r["selection"] == "tuned" and r["split"] == "test"}


def _val_and_test(results: Path, method: str, seed: int, value: float, variant: str = "") -> None:
    for split in ("val", "test"):
        write_job(results, method, seed, [value - 10, value], variant=variant, split=split,
                  job_id=f"t-{method}-s{seed}-{variant}")


def test_tuning_compares_candidates_on_the_seeds_they_share(tmp_path: Path) -> None:
    """A variant missing the hard seed 4 must not win on an inflated mean: shipped ema is +2 on every seed,
    the variant -1 on every seed it has; the tuned ema is the shipped one, and the uneven seeds are reported."""
    for seed, base in enumerate([80, 80, 80, 80, 50]):
        _val_and_test(tmp_path, "none", seed, base)
        _val_and_test(tmp_path, "ema", seed, base + 2)
        if seed < 4:
            _val_and_test(tmp_path, "ema", seed, base - 1, variant="decay=0.9")
    tuned = _tuned(tmp_path)
    assert tuned["ema"]["variant"] == "" and tuned["ema"]["delta_vs_none"] == pytest.approx(2.0)
    assert tuned["ema"]["tuned_over"] == 2
    (warning,) = leaderboard.tuning_warnings(leaderboard.load(tmp_path), {("t", "tiny"): "top1"})
    assert "different seeds" in warning and "the 4 seed(s) they share" in warning


def test_a_variant_that_changes_training_is_never_a_tuning_candidate(tmp_path: Path) -> None:
    """``epochs=20`` run for ema only is its own training setting (no none to pair with), not tuned ema."""
    for seed in range(3):
        _val_and_test(tmp_path, "none", seed, 80)
        _val_and_test(tmp_path, "ema", seed, 81)
        _val_and_test(tmp_path, "ema", seed, 85, variant="epochs=20")
    tuned = {r["variant"]: r for r in leaderboard.aggregate(leaderboard.load(tmp_path), {("t", "tiny"): "top1"})
             if r["selection"] == "tuned" and r["method"] == "ema" and r["split"] == "test"}
    assert tuned[""]["delta_vs_none"] == pytest.approx(1.0) and tuned[""]["tuned_over"] == 1
    assert tuned["epochs=20"]["delta_vs_none"] is None  # its own setting, with no none of its own to pair with


def test_a_tuned_value_at_the_edge_of_its_grid_is_flagged(tmp_path: Path) -> None:
    for seed in range(3):
        _val_and_test(tmp_path, "none", seed, 80)
        for decay, gain in ((0.5, 3), (0.7, 2), (0.9, 1)):  # the smallest decay is best: the grid does not bracket it
            _val_and_test(tmp_path, "ema", seed, 80 + gain, variant=f"decay={decay}")
        for decay, gain in ((0.5, 1), (0.7, 3), (0.9, 2)):  # sema's optimum is inside
            _val_and_test(tmp_path, "sema", seed, 80 + gain, variant=f"decay={decay}")
    tuned = _tuned(tmp_path)
    assert tuned["ema"]["tuned_at_edge"] == "decay=0.5 (lowest of 0.5, 0.7, 0.9)" and tuned["ema"]["tuned_over"] == 3
    assert tuned["sema"]["variant"] == "decay=0.7" and tuned["sema"]["tuned_at_edge"] == ""
    (note,) = leaderboard.edge_notes([tuned["ema"] | {"task": "cls", "preset": "tiny", "metric": "top1"}])
    assert "lowest value swept (0.5, 0.7, 0.9)" in note and "--set decay=0.3333,0.2" in note  # lags 1/2, 1/4
    assert "at that end it becomes none (decay 0 keeps no average)" in note  # the row that brackets it
    assert leaderboard.grid_extension("switch_interval", 5, "highest") == [10, 20]
    assert leaderboard.grid_extension("switch_interval", 1, "lowest") == []  # nothing below 1
    assert leaderboard.grid_extension("lookahead_alpha", 0.8, "highest") == [0.9, 0.95]  # alpha stops at 1
    assert leaderboard.grid_extension("lookahead_alpha", 1.0, "highest") == []
    assert leaderboard.grid_extension("swa_start", 0.9, "highest") == [0.95, 0.975]  # a fraction stays one
    assert leaderboard.grid_extension("swa_start", 0.5, "lowest") == [0.25, 0.125]
    (sgd,) = leaderboard.edge_notes([tuned["ema"] | {"task": "cls", "preset": "tiny", "metric": "top1",
                                                     "variant": "decay=0.5,optimizer=sgd"}])
    assert sgd.startswith("cls/tiny [optimizer=sgd] ema:")  # the training setting it was tuned in
    # the shipped variant counts with its preset's value (cls tiny ships decay 0.95), other knobs held
    candidates = ["", "decay=0.9", "decay=0.9,switch_interval=2", "decay=0.99,switch_interval=2"]
    shipped = leaderboard.shipped_method_knobs("cls", "tiny")
    assert leaderboard.grid_edges("", candidates, shipped) == "decay=0.95 (highest of 0.9, 0.95)"
    assert leaderboard.grid_edges("decay=0.9,switch_interval=2", candidates, shipped) == (
        "decay=0.9 (lowest of 0.9, 0.99); switch_interval=2 (highest of 1, 2)")


def test_the_jobs_behind_the_shipped_and_tuned_rows_are_selected(tmp_path: Path) -> None:
    """What `suite analyze --selection` measures: each method as shipped and its val-tuned variant, no other
    sweep point."""
    for seed in range(2):
        _val_and_test(tmp_path, "none", seed, 80)
        _val_and_test(tmp_path, "ema", seed, 80)
        for decay, gain in ((0.5, 1), (0.7, 3), (0.9, 2)):
            _val_and_test(tmp_path, "ema", seed, 80 + gain, variant=f"decay={decay}")
    rows, primary = leaderboard.load(tmp_path), {("t", "tiny"): "top1"}
    shipped = {f"t-{m}-s{s}-" for m in ("none", "ema") for s in range(2)}
    tuned = {f"t-none-s{s}-" for s in range(2)} | {f"t-ema-s{s}-decay=0.7" for s in range(2)}
    assert leaderboard.selected_jobs(rows, ["shipped"], primary) == shipped
    assert leaderboard.selected_jobs(rows, ["tuned"], primary) == tuned
    assert leaderboard.selected_jobs(rows, ["shipped", "tuned"], primary) == shipped | tuned


def test_a_constant_paired_difference_has_no_p_value_and_no_interval(tmp_path: Path) -> None:
    """Every seed 0.279 points ahead (one cls test digit): the paired t-test is undefined, never p = 0 and a
    zero-width interval that reads as significant."""
    for seed in range(3):
        write_job(tmp_path, "none", seed, [90, 95 + seed])
        write_job(tmp_path, "ema", seed, [90, 95.279 + seed])
    ema = rows_by_method(tmp_path)["ema"]
    assert ema["delta_vs_none"] == pytest.approx(0.279) and ema["win_rate"] == 1
    assert ema["p_value"] is None and ema["delta_ci_low"] is None and ema["delta_ci_high"] is None
    assert "every seed equal: no interval" in leaderboard.format_table(leaderboard.build(tmp_path))


def test_an_old_job_analysed_later_does_not_become_the_newest(tmp_path: Path) -> None:
    """Two jobs claim ema seed 0: the one trained later wins, even when the other was analysed after it."""
    write_job(tmp_path, "none", 0, [80, 90])
    old = write_job(tmp_path, "ema", 0, [80, 70], job_id="t-ema-s0-old", stamp="2026-01-01T00:00:00")
    write_job(tmp_path, "ema", 0, [80, 91], job_id="t-ema-s0-new", stamp="2026-02-01T00:00:00")
    row = {**old.metrics()[-1], "split": "train", "metric": "hessian_trace", "value": 5.0,
           "timestamp": "2026-03-01T00:00:00"}
    old.write_analysis([row], None)
    rows = leaderboard.load(tmp_path)
    (message,) = leaderboard.conflicts(rows)
    assert "using the newest, t-ema-s0-new" in message
    assert rows_by_method(tmp_path)["ema"]["final_mean"] == 91


def test_a_plugin_that_does_not_import_leaves_the_leaderboard_standing(tmp_path: Path, monkeypatch) -> None:
    """Results of a task whose adapter is installed but broken: no tuned selection for it, no crash."""
    from sema_suite import registry

    monkeypatch.setattr(registry, "_sources", lambda: {"t": "no_such_plugin_module:TASK"})
    assert leaderboard.primary_metric("t", "tiny") is None
    for seed in range(2):
        write_job(tmp_path, "none", seed, [80, 90])
    assert {r["selection"] for r in leaderboard.build(tmp_path)} == {"shipped"}


def test_head_to_head_pairs_each_methods_tuned_variant_seed_by_seed(tmp_path: Path) -> None:
    """sema's tuned variant (decay=0.5) against ema's (decay=0.9) and swa's, per seed, within each training
    setting; none is the leaderboard's own baseline and gets no row, and sgd's methods meet only each other."""
    from sema_suite.results import versus

    for seed in range(3):
        _val_and_test(tmp_path, "none", seed, 80)
        _val_and_test(tmp_path, "ema", seed, 81, variant="decay=0.5")
        _val_and_test(tmp_path, "ema", seed, 82 + seed, variant="decay=0.9")  # tuned ema
        _val_and_test(tmp_path, "sema", seed, 84, variant="decay=0.5")  # tuned sema
        _val_and_test(tmp_path, "sema", seed, 79, variant="decay=0.9")
        _val_and_test(tmp_path, "swa", seed, 86)
        _val_and_test(tmp_path, "none", seed, 70, variant="optimizer=sgd")
        _val_and_test(tmp_path, "sema", seed, 75, variant="optimizer=sgd")
        _val_and_test(tmp_path, "ema", seed, 77 - seed, variant="optimizer=sgd")
    rows = versus.head_to_head(leaderboard.load(tmp_path), "sema", {("t", "tiny"): "top1"})
    got = {(r["setting"], r["versus"]): r for r in rows}
    assert set(got) == {("", "ema"), ("", "swa"), ("optimizer=sgd", "ema")}
    vs_ema = got["", "ema"]
    assert (vs_ema["method_knobs"], vs_ema["versus_knobs"], vs_ema["seeds"]) == ("decay=0.5", "decay=0.9", 3)
    diffs = [84 - (82 + seed) for seed in range(3)]  # 2, 1, 0
    assert vs_ema["delta"] == pytest.approx(1.0) and vs_ema["win_rate"] == pytest.approx(2.5 / 3)
    low, high = stats.t.interval(0.95, 2, loc=1.0, scale=stats.sem(diffs))
    assert (vs_ema["ci_low"], vs_ema["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert vs_ema["p_value"] == pytest.approx(stats.ttest_rel([84] * 3, [82, 83, 84]).pvalue)
    assert got["", "swa"]["delta"] == pytest.approx(-2.0) and got["", "swa"]["win_rate"] == 0
    assert got["", "swa"]["ci_low"] is None  # every seed 2 behind: no spread, no interval
    assert got["optimizer=sgd", "ema"]["delta"] == pytest.approx(-1.0)  # 75 against 77, 76, 75
    table = versus.format_markdown(rows)
    assert "| t | tiny | optimizer=sgd | top1↑ | sema | ema | 3 | -1 [" in table
    assert "+1 [" in table and "(every seed equal: no interval)" in table


def test_head_to_head_refuses_an_unknown_method(tmp_path: Path) -> None:
    write_job(tmp_path, "none", 0, [50, 60])
    out = tmp_path / "board.csv"
    result = subprocess.run([sys.executable, "-m", "sema_suite.cli", "leaderboard", "--results-dir", str(tmp_path),
                             "--out", str(out), "--versus", "semma"], capture_output=True, text=True)
    assert result.returncode == 2 and "--versus semma: no such method" in result.stderr and "sema" in result.stderr
    assert not out.exists()
