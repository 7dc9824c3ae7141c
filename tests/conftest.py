"""Shared fixtures, and how the suite runs on pytest-xdist's workers (see the README's Development section)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from cls_jobs import train as train_cls_jobs
from matrix import board, jobs, run_matrix

# One torch thread in each xdist worker and in every job it starts (the suite's workers read SUITE_THREADS): the
# xdist workers already fill the cores, and a second thread on a busy core spins (3x the CPU time). Not
# OMP_NUM_THREADS: `nproc` reads it, and scripts/build_mmcv.sh's test counts the cores with nproc.
os.environ["SUITE_THREADS"] = "1"
torch.set_num_threads(1)


def _group(item: pytest.Item) -> str | None:
    mark = item.get_closest_marker("xdist_group")
    return (mark.args[0] if mark.args else mark.kwargs["name"]) if mark else None


def _name_the_group(item: pytest.Item, group: str) -> None:
    """What xdist's ``--dist loadgroup`` groups by: a test id ending in ``@group``. pytest-xdist 3.8 writes it into
    a field that pytest 9.2's structured ids no longer read (pytest-dev/pytest-xdist#1386), so every grouped test
    would be handed out alone; this writes it where pytest 9.2 reads it, and does nothing once xdist has."""
    if not item.nodeid.endswith(f"@{group}"):
        from _pytest.nodeid import NodeId

        item._id = NodeId.parse(f"{item.nodeid}@{group}")


@pytest.hookimpl(trylast=True)  # after xdist's own hook, which names the groups where it still can
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Units with a slow test first, each unit's tests together in collection order. A unit is what xdist's
    ``--dist loadgroup`` hands to one worker in one piece (an xdist_group, or a test alone); xdist hands units out
    in this order, so the long ones start at once and the quick ones fill in behind them, and a group's module
    and session fixtures are built once (in one process too: `-n 0`)."""
    units = {}
    for item in items:
        group = _group(item)
        if group and config.getoption("loadgroup", False):  # set in xdist's workers under --dist loadgroup
            _name_the_group(item, group)
        units[item] = group or item.nodeid
    slow = {units[item] for item in items if item.get_closest_marker("slow")}
    first = {}
    for unit in units.values():
        first.setdefault(unit, len(first))
    items.sort(key=lambda item: (units[item] not in slow, first[units[item]]))


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The leaderboard of the tiny matrix (tests/matrix.py) run once without interruption. Its tests share the
    xdist group ``matrix``, so one worker runs it once."""
    results: Path = tmp_path_factory.mktemp("reference") / "results"
    result = run_matrix(results, "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert [j.status()["attempts"] for j in jobs(results)] == [1, 1, 1]
    return board(results)


@pytest.fixture(scope="session")
def cls_jobs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The results folder of tests/cls_jobs.py's jobs, trained once. Read-only; its tests share the xdist group
    ``cls_jobs``, so one worker trains them once."""
    results: Path = tmp_path_factory.mktemp("cls_jobs")
    train_cls_jobs(results)
    return results
