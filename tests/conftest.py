"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from matrix import board, jobs, run_matrix


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The leaderboard of the tiny matrix (tests/matrix.py) run once without interruption."""
    results: Path = tmp_path_factory.mktemp("reference") / "results"
    result = run_matrix(results, "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert [j.status()["attempts"] for j in jobs(results)] == [1, 1, 1]
    return board(results)
