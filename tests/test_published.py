"""The published matrices (published/<tier>/): leaderboard.csv is exactly what `suite leaderboard` computes
from all of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sema_suite.results import leaderboard, reading, versus
from sema_suite.results.store import JobDir

REPO = Path(__file__).resolve().parent.parent
PUBLISHED = REPO / "published"
TIERS = sorted(p.name for p in PUBLISHED.iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return leaderboard.load(PUBLISHED)


@pytest.fixture(scope="module")
def table(rows: list[dict]) -> list[dict]:
    return leaderboard.aggregate(rows, leaderboard.primary_metrics(rows))


def test_leaderboard_csv_is_reproducible_from_the_committed_results(table: list[dict]) -> None:
    assert reading.result_folders(PUBLISHED) == [PUBLISHED / tier for tier in TIERS]
    assert (REPO / "leaderboard.csv").read_text() == leaderboard.to_csv(table)


def test_the_readme_tables_are_what_suite_leaderboard_prints(table: list[dict]) -> None:
    """Each results table in the README is one of `suite leaderboard --results-dir published --markdown`'s,
    verbatim: a table edited by hand, or left behind by new results, fails here."""
    printed = leaderboard.format_markdown(table).split("\n\n")
    readme = re.findall(r"^\| selection \|.*?(?=\n\n|\Z)", (REPO / "README.md").read_text(), re.M | re.S)
    assert len(readme) == len(TIERS)
    for block in readme:
        assert block in printed, f"the README's table starting {block.splitlines()[2]!r} is not suite's"


def test_the_readme_head_to_head_is_what_suite_leaderboard_versus_prints(rows: list[dict]) -> None:
    """The README's SEMA-against-each-method table is `suite leaderboard --results-dir published --versus sema`'s."""
    printed = versus.format_markdown(versus.head_to_head(rows, "sema", leaderboard.primary_metrics(rows)))
    readme = re.findall(r"^\| task \| preset \| setting \| metric \| sema \[knobs\] \|.*?(?=\n\n|\Z)",
                        (REPO / "README.md").read_text(), re.M | re.S)
    assert readme, "the README lost its head-to-head table"
    for block in readme:
        assert block in printed.split("\n\n"), f"the README's head-to-head row {block.splitlines()[2]!r} is not suite's"


@pytest.mark.parametrize("tier", TIERS)
def test_only_small_finished_files_are_committed(tier: str) -> None:
    kinds = {p.suffix for p in (PUBLISHED / tier).rglob("*") if p.is_file()}
    assert kinds <= {".json", ".csv", ".png"}, kinds
    assert all(JobDir(PUBLISHED / tier, d.name).status()["state"] == "done"
               for d in (PUBLISHED / tier).iterdir())


@pytest.mark.parametrize("tier", TIERS)
def test_every_published_preset_has_a_tuned_selection(tier: str) -> None:
    """Every task is published, each with tuned rows ranked by its preset's own primary metric (gen's offline
    presets report fid_digits, not fid)."""
    table = leaderboard.build(PUBLISHED / tier)
    problems = {(r["task"], r["preset"]) for r in table}
    tuned = {(r["task"], r["preset"]) for r in table if r["selection"] == "tuned"}
    assert {preset for _, preset in problems} == {tier} and tuned == problems
    assert len(problems) == 7
