"""Every number the README's Results cite is checkable against leaderboard.csv.

A claim is followed by ``<!-- check: selection/task/preset/split/metric/method field=value ... -->``: each value
must equal the leaderboard's (to the precision it is written with) and appear in the sentence before it. A
seventh part names the training setting the row was tuned in (``.../sema/optimizer=sgd``); without it, the
preset's own.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from sema_suite.results.leaderboard import baseline_variant

REPO = Path(__file__).resolve().parent.parent
CHECK = re.compile(r"<!--\s*check:\s*(?P<key>\S+)\s+(?P<fields>.*?)-->", re.S)


def claims() -> list[tuple[str, dict[str, str], str]]:
    text = (REPO / "README.md").read_text()
    found, start, sentence = [], 0, ""
    for match in CHECK.finditer(text):
        fields = dict(part.split("=", 1) for part in match["fields"].split())
        before = text[start:match.start()].replace("−", "-")
        sentence = before if before.strip() else sentence  # checks side by side check one sentence
        found.append((match["key"], fields, sentence))
        start = match.end()
    return found


def test_the_results_cite_checked_numbers() -> None:
    assert len(claims()) >= 10


@pytest.mark.parametrize(("key", "fields", "sentence"), claims(), ids=[c[0] for c in claims()])
def test_a_cited_number_is_the_leaderboards(key: str, fields: dict[str, str], sentence: str) -> None:
    selection, task, preset, split, metric, method, *setting = key.split("/")
    with (REPO / "leaderboard.csv").open() as handle:
        (row,) = [r for r in csv.DictReader(handle) if (r["selection"], r["task"], r["preset"], r["split"],
                                                           r["metric"], r["method"], baseline_variant(r["variant"])) ==
                  (selection, task, preset, split, metric, method, "/".join(setting))]
    for field, written in fields.items():
        decimals = len(written.partition(".")[2])
        assert abs(float(row[field]) - float(written)) <= 0.5 * 10 ** -decimals + 1e-12, (field, row[field], written)
        assert written.lstrip("+-") in sentence[-400:], f"{written} is not in the sentence it checks"
