"""Performance profiles (sema_suite.results.profiles): which rows are scored, the gap in both metric directions, the steps."""

from __future__ import annotations

import math

import pytest

from sema_suite.results import profiles


def row(task: str, metric: str, higher: bool, method: str, value: float | None, selection: str | None = "shipped",
        variant: str = "", split: str = "test") -> dict:
    out = {"task": task, "preset": "tiny", "metric": metric, "higher_is_better": higher, "method": method,
           "final_mean": value, "variant": variant, "split": split}
    if selection is not None:  # None: a row from a leaderboard written before the selection column
        out["selection"] = selection
    return out


def PRIMARY(task: str, preset: str) -> str | None:
    return {"cls": "top1", "gen": "fid"}.get(task)

ROWS = [
    # cls, higher is better: tuned rows on test win over the shipped ones; val rows and other metrics are ignored
    row("cls", "top1", True, "none", 79.0), row("cls", "top1", True, "none", 79.0, "tuned"),
    row("cls", "top1", True, "ema", 80.0), row("cls", "top1", True, "ema", 81.0, "tuned", "decay=0.9"),
    row("cls", "top1", True, "sema", 81.5), row("cls", "top1", True, "sema", 82.5, "tuned", "decay=0.9"),
    row("cls", "top1", True, "sema", 99.0, "tuned", "decay=0.9", split="val"),
    row("cls", "top1", True, "sema", 90.0, "sweep", "decay=0.8"),
    row("cls", "top5", True, "none", 99.0, "tuned"),
    # gen, lower is better: ema has no tuned row (its shipped one stands in), sema none at all
    row("gen", "fid", False, "none", 30.0, "tuned"), row("gen", "fid", False, "ema", 28.0),
    row("gen", "fid", False, "ema", 1.0, "shipped", split="val"),
]


def test_scores_take_tuned_on_test_and_fall_back_to_shipped() -> None:
    chosen = {(s.task, s.method): (s.selection, s.variant, s.split, s.value) for s in profiles.scores(ROWS, PRIMARY)}
    assert chosen == {
        ("cls", "none"): ("tuned", "", "test", 79.0), ("cls", "ema"): ("tuned", "decay=0.9", "test", 81.0),
        ("cls", "sema"): ("tuned", "decay=0.9", "test", 82.5),
        ("gen", "none"): ("tuned", "", "test", 30.0), ("gen", "ema"): ("shipped", "", "test", 28.0),
    }


def test_gaps_are_relative_to_the_best_in_either_direction() -> None:
    gaps = profiles.gaps(profiles.scores(ROWS, PRIMARY))
    assert gaps["sema"][("cls", "tiny")] == 0.0
    assert gaps["none"][("cls", "tiny")] == pytest.approx(3.5 / 82.5)
    assert gaps["ema"][("gen", "tiny")] == 0.0  # lowest fid is best
    assert gaps["none"][("gen", "tiny")] == pytest.approx(2.0 / 28.0)
    assert gaps["sema"][("gen", "tiny")] == math.inf  # never ran there: never within any tau


def test_profile_is_the_fraction_of_problems_within_tau() -> None:
    gaps = profiles.gaps(profiles.scores(ROWS, PRIMARY))
    taus = profiles.breakpoints(gaps)
    assert taus == pytest.approx([0.0, 1.5 / 82.5, 3.5 / 82.5, 2.0 / 28.0])
    curves = profiles.profile(gaps, taus)
    assert curves["sema"] == [0.5, 0.5, 0.5, 0.5]  # best on cls, absent on gen
    assert curves["ema"] == [0.5, 1.0, 1.0, 1.0]
    assert curves["none"] == [0.0, 0.0, 0.5, 1.0]


def test_a_leaderboard_without_selections_uses_its_shipped_rows_and_val_when_it_has_no_test() -> None:
    old = [row("cls", "acc", True, m, v, None, split="val") for m, v in (("none", 50.0), ("sema", 60.0))]
    old.append(row("cls", "acc", True, "sema", 70.0, None, "decay=0.9", split="val"))  # a sweep row: not scored
    scores = profiles.scores(old, lambda task, preset: None)  # no primary known: the problem's only metric
    assert [(s.method, s.selection, s.split, s.value) for s in scores] == [("none", "shipped", "val", 50.0),
                                                                          ("sema", "shipped", "val", 60.0)]


def test_a_best_of_zero_gives_the_absolute_gap() -> None:
    gaps = profiles.gaps(profiles.scores([row("reg", "mse", False, "none", 0.5), row("reg", "mse", False, "sema", 0.0),
                                          row("reg", "mse", False, "ema", None)], PRIMARY))
    assert gaps == {"none": {("reg", "tiny"): 0.5}, "sema": {("reg", "tiny"): 0.0}}
