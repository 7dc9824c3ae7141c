"""Head to head: one method's tuned choice against each other method's, seed by seed.

The leaderboard compares every method with ``none``. A user choosing an averaging method asks the other
question -- SEMA or EMA, SEMA or SWA? -- and two deltas against ``none`` cannot answer it: the interval of a
difference of differences is not the difference of their intervals. Here each seed is a pair again (same
initial weights and data order for every method): per task, preset and training setting, the reference
method's tuned variant minus each other method's tuned variant on the test split's primary metric, with the
leaderboard's paired statistics (:func:`~sema_suite.results.leaderboard.paired`). Tuning is the leaderboard's
(val, primary metric, the seeds every candidate shares), so the rows are the tuned rows of ``leaderboard.csv``
set against each other.
"""

from __future__ import annotations

from typing import Any

from sema_suite.results.leaderboard import (METHOD_ORDER, Cell, delta_text, markdown, method_knobs, paired,
                                            seed_curves, tuned_choices)


def head_to_head(rows: list[dict[str, Any]], method: str, primary: dict[tuple[str, str], str],
                 split: str = "test") -> list[dict[str, Any]]:
    """``method``'s tuned variant against every other tuned method but ``none`` (the leaderboard's own
    baseline), in each (task, preset, training setting) where both were tuned: one row per pair, ``delta`` =
    ``method`` minus the other on ``split``'s primary metric (``win_rate``: the share of seeds ``method`` wins)."""
    curves = seed_curves(rows)
    by_key = {(c.task, c.preset, c.variant, c.split, c.metric, c.method): (c, seeds) for c, seeds in curves.items()}
    choices, _ = tuned_choices(curves, primary)
    table = []
    for (task, preset, setting, name), mine in sorted(choices.items(), key=lambda c: (c[0][1], c[0][0], c[0][2])):
        own = by_key.get((task, preset, mine.variant, split, primary[task, preset], name))
        if name != method or own is None:
            continue
        cell, own_seeds = own
        others = sorted(((other, tuning) for (t, p, s, other), tuning in choices.items()
                         if (t, p, s) == (task, preset, setting) and other not in (method, "none")),
                        key=lambda pair: (METHOD_ORDER.get(pair[0], 9), pair[0]))
        for other, tuning in others:
            found = by_key.get((task, preset, tuning.variant, split, cell.metric, other))
            if found is None:
                continue
            pair = paired(own_seeds, found[1], cell.higher_is_better)
            table.append(_row(cell, setting, mine.variant, other, tuning.variant) | {
                "seeds": pair.seeds, "delta": pair.delta, "ci_low": pair.ci_low, "ci_high": pair.ci_high,
                "p_value": pair.p_value, "win_rate": pair.win_rate})
    return table


def _row(cell: Cell, setting: str, variant: str, other: str, other_variant: str) -> dict[str, Any]:
    return {"task": cell.task, "preset": cell.preset, "setting": setting, "metric": cell.metric,
            "higher_is_better": cell.higher_is_better, "method": cell.method, "method_knobs": method_knobs(variant),
            "versus": other, "versus_knobs": method_knobs(other_variant)}


def format_markdown(table: list[dict[str, Any]]) -> str:
    """The README's head-to-head tables, one per preset (tier): one row per pair, the difference with its 95%
    interval, p and the reference method's win rate."""
    blocks = []
    method = table[0]["method"] if table else ""
    for preset in sorted({r["preset"] for r in table}):
        lines = [("task", "preset", "setting", "metric", f"{method} [knobs]", "versus [knobs]", "seeds",
                  f"{method} − versus [95% CI]", "p", f"{method} wins")]
        for r in (r for r in table if r["preset"] == preset):
            lines.append((r["task"], r["preset"], r["setting"] or "as shipped",
                          r["metric"] + ("↑" if r["higher_is_better"] else "↓"),
                          f"{method} [{r['method_knobs']}]" if r["method_knobs"] else method,
                          f"{r['versus']} [{r['versus_knobs']}]" if r["versus_knobs"] else r["versus"],
                          str(r["seeds"]),
                          "" if r["delta"] is None else delta_text(r["delta"], r["ci_low"], r["ci_high"], r["seeds"]),
                          "" if r["p_value"] is None else f"{r['p_value']:.2g}",
                          "" if r["win_rate"] is None else f"{r['win_rate']:.2g}"))
        blocks.append(markdown(lines))
    return "\n\n".join(blocks)
