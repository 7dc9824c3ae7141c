"""The published tiny matrix: leaderboard.csv is exactly what `suite leaderboard` computes from it."""

from __future__ import annotations

from pathlib import Path

from sema_suite.results import leaderboard

REPO = Path(__file__).resolve().parent.parent
PUBLISHED = REPO / "published" / "tiny"


def test_leaderboard_csv_is_reproducible_from_the_committed_results() -> None:
    assert (REPO / "leaderboard.csv").read_text() == leaderboard.to_csv(leaderboard.build(PUBLISHED))


def test_only_small_files_are_committed() -> None:
    kinds = {p.suffix for p in PUBLISHED.rglob("*") if p.is_file()}
    assert kinds <= {".json", ".csv", ".png"}, kinds
    assert all(leaderboard.JobDir(PUBLISHED, d.name).status()["state"] == "done" for d in PUBLISHED.iterdir())


def test_every_published_preset_has_a_tuned_selection() -> None:
    """The tuned rows rank by each preset's own primary metric (gen's tiny preset reports fid_digits, not fid)."""
    table = leaderboard.build(PUBLISHED)
    problems = {(r["task"], r["preset"]) for r in table}
    tuned = {(r["task"], r["preset"]) for r in table if r["selection"] == "tuned"}
    assert len(problems) == 7 and tuned == problems
