"""The README's table of the long tier's regime, measured from a results folder (default: published/long).

Per task: optimizer steps, epochs (passes; switches at switch_interval=1), steps per switch, the shipped
decay's lag d/(1-d) in steps and as a share of an epoch, the seconds a lone shipped `sema` job took (its own
run; mean over seeds, from status.json), and `none`'s shipped val and test primary metric (its headroom).

    .venv/bin/python scripts/regime_table.py [published/long]
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from sema_suite.results import leaderboard, reading
from sema_suite.results.store import read_json


def main(folder: Path) -> None:
    table = leaderboard.build(folder)
    primary = leaderboard.primary_metrics(table)
    print("| task | steps | epochs (switches) | steps per switch | shipped decay (lag) | s per job | "
          "`none` val | `none` test |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for task in sorted({r["task"] for r in table}):
        jobs = [job for job in reading.finished_jobs(folder) if job.job_id.startswith(f"{task}-long-sema-")]
        shipped = [job for job in jobs if read_json(job.job_json)["spec"]["variant"] == ""]
        if not shipped:
            continue
        status = [job.status() for job in shipped]
        spec = read_json(shipped[0].job_json)["spec"]
        steps = status[0]["progress"]["max_iters"]
        epochs = max(row["epoch"] for row in shipped[0].metrics())
        decay = spec["averaging"]["decay"]
        lag = decay / (1 - decay)
        seconds = statistics.fmean(s["seconds"] for s in status)
        metric = primary[task, "long"]

        def none(split: str) -> str:
            row = next(r for r in table if (r["selection"], r["task"], r["split"], r["metric"], r["method"]) ==
                       ("shipped", task, split, metric, "none"))
            return f"{row['final_mean']:.4g} ± {row['final_std'] or 0:.2g} ({row['seeds']})"

        print(f"| {task} | {steps:,} | {epochs:g} | {steps / epochs:.0f} | {decay} ({lag:.0f} steps, "
              f"{lag / (steps / epochs):.0%}) | {seconds:.0f} | {metric} {none('val')} | {none('test')} |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "published/long"))
