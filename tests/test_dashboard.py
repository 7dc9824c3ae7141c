"""The Streamlit dashboard, driven by Streamlit's AppTest on results written by the suite's own writer."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
pyarrow = pytest.importorskip("pyarrow")
from streamlit.testing.v1 import AppTest  # noqa: E402

from sema_dashboard import tables  # noqa: E402
from sema_dashboard.store import ResultsStore  # noqa: E402
from sema_suite import cli  # noqa: E402
from sema_suite.results import leaderboard
from sema_suite.results.profiles import selection_of  # noqa: E402
from sema_suite.results.store import JobDir  # noqa: E402

from results_fixture import make_results  # noqa: E402

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
REPO = APP.parent.parent


@pytest.fixture
def results(tmp_path: Path) -> Path:
    return make_results(tmp_path / "results")


def run_app(results: Path, monkeypatch, **query: str) -> AppTest:
    monkeypatch.setenv("SUITE_RESULTS_DIR", str(results))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params.update(query)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def chart_data(at: AppTest) -> list[dict]:
    """The rows of every dataset behind the page's Vega-Lite charts (Arrow IPC in the element's proto)."""
    rows = []
    for chart in at.get("vega_lite_chart"):
        for dataset in chart.proto.datasets:
            rows += pyarrow.ipc.open_stream(dataset.data.data).read_all().to_pylist()
    return rows


def frame_with(at: AppTest, *columns: str, nth: int = 0):
    """The ``nth`` dataframe on the page that has all of ``columns``."""
    frames = [d.value for d in at.dataframe if set(columns) <= set(d.value.columns)]
    return frames[nth]


def snapshot_files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(root.rglob("*"))}


def test_every_view_renders(results: Path, monkeypatch) -> None:
    at = run_app(results, monkeypatch)
    assert [s.value for s in at.subheader] == ["Convergence: top1 (higher is better)",
                                               "Leaderboard: cls / tiny · top1 (higher is better)"]
    assert {r["method"] for r in chart_data(at)} == {"none", "ema", "sema"}

    at = run_app(results, monkeypatch, view="Across tasks")
    across = frame_with(at, "mean rank").set_index(["selection", "method", "variant"])
    shipped = across.loc["shipped"]
    assert list(shipped.index) == [("none", "shipped"), ("ema", "shipped"), ("sema", "shipped")]
    assert shipped.loc[("sema", "shipped"), "mean rank"] == 1.0  # the fixture makes sema best on every task
    assert shipped.loc[("sema", "shipped"), "gen/tiny · fid_digits ↓ (val)"] > 0  # lower fid is an improvement: positive
    assert "Performance profile" in [s.value for s in at.subheader]

    at = run_app(results, monkeypatch, view="Jobs")
    jobs = at.dataframe[0].value
    assert len(jobs) == 21
    assert dict(jobs["state"].value_counts()) == {"done": 18, "running": 1, "failed": 1, "pending": 1}
    sema = jobs[(jobs.method == "sema") & (jobs.state == "done")].iloc[0]
    assert (sema["updates"], sema["switches"], sema["variant"]) == (120, 5, "shipped")
    failed = jobs[jobs.state == "failed"].iloc[0]
    assert failed["error"].startswith("NonFiniteLoss") and failed["position"] == "epoch 2/6"

    at = run_app(results, monkeypatch, view="Samples", task="gen")
    assert len(at.get("image")) == 3  # one image per method at the chosen epoch


def test_leaderboard_numbers_equal_the_cli(results: Path, monkeypatch, tmp_path: Path) -> None:
    out = tmp_path / "leaderboard.csv"
    assert cli.main(["leaderboard", "--results-dir", str(results), "--out", str(out)]) == 0
    with out.open() as handle:
        expected = list(csv.DictReader(handle))

    full = frame_with(run_app(results, monkeypatch, view="Across tasks"), *leaderboard.COLUMNS)
    assert len(full) == len(expected)
    for shown, row in zip(full.to_dict("records"), expected):
        for column, text in row.items():
            value = shown[column]
            if text == "":
                assert value in (None, "") or math.isnan(value), (column, value)
            elif isinstance(value, float):
                assert value == pytest.approx(float(text), rel=1e-5), column
            else:
                assert str(value) == text, column

    board = run_app(results, monkeypatch, task="gen", metric="fid_digits").dataframe[0].value  # the shipped table
    cli_rows = {r["method"]: r for r in expected if r["task"] == "gen" and r["metric"] == "fid_digits"
                and selection_of(r) == "shipped" and r["split"] == "val"}
    board = board[board["split"] == "val"]
    assert list(board["method"]) == ["sema", "ema", "none"]  # lower fid ranks first
    for _, shown in board.iterrows():
        assert shown["final_mean"] == pytest.approx(float(cli_rows[shown["method"]]["final_mean"]), rel=1e-5)
        assert shown["delta_vs_none"] == pytest.approx(float(cli_rows[shown["method"]]["delta_vs_none"]), abs=1e-4)


def test_switching_task_metric_and_axis_changes_the_chart(results: Path, monkeypatch) -> None:
    at = run_app(results, monkeypatch)
    cls_data = chart_data(at)
    at.selectbox(key="task").set_value("gen").run()
    assert at.selectbox(key="metric").value == "fid_digits"
    fid_data = chart_data(at)
    at.selectbox(key="metric").set_value("loss").run()
    loss_data = chart_data(at)
    assert at.subheader[0].value == "Convergence: loss (lower is better)"
    means = [sorted(round(r["mean"], 6) for r in data if "mean" in r) for data in (cls_data, fid_data, loss_data)]
    assert means[0] != means[1] != means[2]
    at.button_group(key="x").set_value("wall-clock").run()
    xs = {r["x"] for r in chart_data(at) if "series" in r and "mean" in r}
    assert max(xs) == pytest.approx(6 * 2.1)  # mean wall time of seeds 0..2 at epoch 6 (see the fixture)


def test_selections_live_in_the_url(results: Path, monkeypatch) -> None:
    at = run_app(results, monkeypatch, task="gen", metric="loss", view="Task", seeds="true")
    assert at.subheader[0].value == "Convergence: loss (lower is better)"
    assert {r.get("job_id") for r in chart_data(at)} >= {"gen-tiny-sema-s2-fixture"}  # individual seed lines
    # every selection is bound to a query parameter named by its key (the browser writes it into the URL)
    for view in ("Task", "Jobs", "Samples"):
        at = run_app(results, monkeypatch, view=view, task="gen")
        widgets = [*at.selectbox, *at.toggle, *at.button_group, *at.select_slider, *at.multiselect]
        assert widgets and all(w.proto.query_param_key == w.key for w in widgets), view


def test_corrupt_files_warn_and_the_rest_renders(results: Path, monkeypatch) -> None:
    broken = results / "cls-tiny-sema-s0-fixture" / "metrics.csv"
    broken.write_text(broken.read_text() + "cls-tiny-sema-s0-fixture,cls,tiny,half a row\n")
    (results / "gen-tiny-ema-s1-fixture" / "status.json").write_text('{"state": "do')
    at = run_app(results, monkeypatch)
    assert "that the tables leave out (unreadable files" in at.warning[0].value
    skipped = [t.value for t in at.text if t.value.startswith("skipped unreadable results file")]
    assert len(skipped) == 2 and any("metrics.csv" in t for t in skipped) and any("status.json" in t for t in skipped)
    board = at.dataframe[0].value
    assert dict(zip(board["method"], board["seeds"])) == {"sema": 2, "ema": 3, "none": 3}


def test_a_corrupt_sample_is_a_warning_naming_it(results: Path, monkeypatch) -> None:
    torn = sorted((results / "gen-tiny-sema-s0-fixture" / "samples").glob("*.png"))[-1]
    torn.write_bytes(torn.read_bytes()[:40])  # half-copied
    at = run_app(results, monkeypatch, view="Samples", task="gen")  # no exception: run_app asserts it
    assert len(at.get("image")) == 2 and any(f"skipped {torn}: not a readable image" in w.value for w in at.warning)


def test_the_dashboard_never_writes_into_the_results(tmp_path: Path, monkeypatch) -> None:
    results = make_results(tmp_path / "results", sweep=(0.8,))
    before = snapshot_files(results)
    for view in ("Task", "Across tasks", "Jobs", "Samples"):
        run_app(results, monkeypatch, view=view, task="gen")
    assert snapshot_files(results) == before


def test_store_rereads_only_what_changed(results: Path) -> None:
    store = ResultsStore(results)
    first = store.snapshot()
    assert store.snapshot() is first  # nothing changed: same snapshot, no file parsed again
    running = next(j for j in first.jobs if j.state == "running")
    unchanged = next(j for j in first.jobs if j.job_id == "cls-tiny-none-s0-fixture")
    JobDir(results, running.job_id).append_metrics([{**running.rows[-1], "epoch": 3, "iter": 60, "value": 80.0}])
    second = store.snapshot()
    assert second is not first
    now = next(j for j in second.jobs if j.job_id == running.job_id)
    assert [r["value"] for r in now.rows][-1] == 80.0 and len(now.rows) == len(running.rows) + 1
    assert next(j for j in second.jobs if j.job_id == unchanged.job_id).rows is unchanged.rows  # from the cache


def test_the_leaderboard_put_together_per_task_is_the_clis(tmp_path: Path) -> None:
    """The store aggregates each (task, preset) on its own and merges the parts: row for row, value for value,
    what ``suite leaderboard`` writes (shipped, sweep and tuned rows of two tasks)."""
    results = make_results(tmp_path / "results", sweep=(0.8, 0.9), test=True)
    shown = ResultsStore(results).snapshot().leaderboard
    assert {r["task"] for r in shown} == {"cls", "gen"} and {selection_of(r) for r in shown} >= {"tuned", "sweep"}
    assert leaderboard.to_csv(shown) == leaderboard.to_csv(leaderboard.build(results))


def test_a_changed_file_is_read_again_and_only_its_tasks_leaderboard_recomputed(results: Path, monkeypatch) -> None:
    """The page's caches key on each file's modification time and size: a rerun with nothing changed aggregates
    nothing; a job whose metrics.csv was rewritten (same size, newer time) shows its new number, and only its own
    task's leaderboard is computed again."""
    aggregated = []
    real = leaderboard.aggregate
    monkeypatch.setattr("sema_dashboard.store.aggregate",
                        lambda rows, primary=None: aggregated.append(rows[0]["task"]) or real(rows, primary))
    at = run_app(results, monkeypatch)
    assert sorted(aggregated) == ["cls", "gen"]
    before = frame_with(at, "method", "final_mean").set_index("method")["final_mean"]
    aggregated.clear()
    at.run()
    assert aggregated == []  # a widget click or a live refresh over unchanged files: nothing recomputed

    metrics = results / "cls-tiny-sema-s0-fixture" / "metrics.csv"
    lines = metrics.read_text().splitlines()
    header, last = lines[0].split(","), lines[-1].split(",")
    value = last[header.index("value")]
    assert len(value.split(".")[0]) == 2  # a top1 in the tens: one less in its first digit keeps the size
    last[header.index("value")] = str(int(value[0]) - 1) + value[1:]
    stat = metrics.stat()
    metrics.write_text("\n".join([*lines[:-1], ",".join(last)]) + "\n")
    os.utime(metrics, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # newer, whatever the clock's grain
    assert metrics.stat().st_size == stat.st_size
    at.run()
    assert not at.exception
    assert aggregated == ["cls"]  # gen's part of the leaderboard is kept
    after = frame_with(at, "method", "final_mean").set_index("method")["final_mean"]
    assert after["sema"] == pytest.approx(before["sema"] - 10 / 3)  # one of three seeds lost 10 points
    assert after["none"] == before["none"]


def test_empty_results_dir_explains_what_to_do(tmp_path: Path, monkeypatch) -> None:
    at = run_app(tmp_path / "nothing-yet", monkeypatch)
    assert "No jobs under" in at.info[0].value and "suite run" in at.info[0].value


def test_cli_dashboard_command_binds_localhost_and_keeps_startup_light(tmp_path: Path) -> None:
    argv, env = cli.dashboard_command(tmp_path / "r", 8599, "127.0.0.1")
    assert argv[1:5] == ["-m", "streamlit", "run", str(APP)]
    assert argv[argv.index("--server.address") + 1] == "127.0.0.1" and argv[argv.index("--server.port") + 1] == "8599"
    assert env["SUITE_RESULTS_DIR"] == str((tmp_path / "r").resolve())
    code = ("import sys, sema_suite.cli as c; c.parser().parse_args(['dashboard', '--port', '1']); "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('streamlit', 'pandas', 'torch'))))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], cwd=REPO, capture_output=True, text=True,
                         check=True, env={**env, "PYTHONPATH": str(REPO)})
    assert json.loads(out.stdout) == []


def test_variants_are_never_mixed(tmp_path: Path, monkeypatch) -> None:
    """sema as shipped and sema --set decay=0.8 side by side: every view keeps them apart and names them."""
    results = make_results(tmp_path / "results", sweep=(0.8,), extra_states=False)
    at = run_app(results, monkeypatch)
    caption = next(c.value for c in at.caption if "seeds" in c.value)
    assert "sema · shipped: 3" in caption and "sema · decay=0.8: 3" in caption  # not "sema: 6 seeds"
    means = {(r["series"], r["x"]): (r["mean"], r["n"]) for r in chart_data(at) if "series" in r and "mean" in r}
    series = {name for name, _ in means}
    assert series == {"none · shipped", "ema · shipped", "sema · shipped", "sema · decay=0.8"}
    assert {n for _, n in means.values()} == {3}  # three seeds per series, never six
    for name, job_id in (("sema · shipped", "cls-tiny-sema-s{}-fixture"),
                         ("sema · decay=0.8", "cls-tiny-sema-s{}-decay0.8-fixture")):
        values = [_final(results / job_id.format(seed)) for seed in range(3)]
        assert means[(name, 6.0)][0] == pytest.approx(sum(values) / 3)  # each series its own three jobs

    boards = [d.value for d in at.dataframe if "variant" in d.value.columns]
    shipped, sweep = boards[0], next(b for b in boards if "decay=0.8" in set(b["variant"]))
    assert list(shipped["method"]) == ["sema", "ema", "none"] and set(shipped["variant"]) == {"shipped"}
    assert list(zip(sweep["method"], sweep["variant"])) == [("sema", "decay=0.8")]

    across = frame_with(run_app(results, monkeypatch, view="Across tasks"), "mean rank")
    cls = "cls/tiny · top1 ↑ (val)"
    rows = {(r["selection"], r["method"], r["variant"]): r[cls] for r in across.to_dict("records")}
    assert {("shipped", "sema", "shipped"), ("sweep", "sema", "decay=0.8")} <= set(rows)
    assert rows[("shipped", "sema", "shipped")] > 0  # the shipped sema is still there, and better than none


def test_a_seed_run_twice_is_one_seed_of_its_curve(results: Path, monkeypatch) -> None:
    """An older job of the same method, variant and seed (say, from an older version of the preset) is left out,
    as the leaderboard leaves it out: the curve keeps three seeds and the newest job's values."""
    older = JobDir(results, "cls-tiny-sema-s0-older")
    shutil.copytree(results / "cls-tiny-sema-s0-fixture", older.path)
    rows = [{**r, "job_id": older.job_id, "value": r["value"] - 30, "timestamp": "2025-01-01T00:00:00"}
            for r in older.metrics()]
    older.drop_metrics(lambda r: False)
    older.append_metrics(rows)
    at = run_app(results, monkeypatch)
    means = {(r["series"], r["x"]): (r["mean"], r["n"]) for r in chart_data(at) if "series" in r and "mean" in r}
    newest = [_final(results / f"cls-tiny-sema-s{seed}-fixture") for seed in range(3)]
    assert means[("sema · shipped", 6.0)] == (pytest.approx(sum(newest) / 3), 3)
    assert any("cls-tiny-sema-s0-older" in warning.value for warning in at.warning)
    board = at.dataframe[0].value
    assert dict(zip(board["method"], board["seeds"]))["sema"] == 3


def test_the_leaderboards_own_tuned_selection_is_shown(tmp_path: Path, monkeypatch) -> None:
    """A decay sweep evaluated on val and test, through the real leaderboard: its tuned rows fill the tuned table,
    the knobs the across-tasks view lists, and the performance profile."""
    results = make_results(tmp_path / "results", sweep=(0.8, 0.9), test=True, extra_states=False)
    at = run_app(results, monkeypatch)
    tuned = frame_with(at, "variant", "final_mean", nth=1)
    assert set(tuned["split"]) == {"test"}
    assert dict(zip(tuned["method"], tuned["variant"])) == {"sema": "decay=0.9", "ema": "shipped", "none": "shipped"}
    assert tuned.loc[tuned["method"] != "none", "delta_ci"].str.startswith("[").all()  # paired with none's seeds
    assert not any("edge of its grid" in w.value for w in at.warning)  # sema's 0.9 lies inside 0.8, 0.9, 0.95

    at = run_app(results, monkeypatch, view="Across tasks")
    knobs = frame_with(at, "cls/tiny")
    assert knobs.loc["sema", "cls/tiny"] == "decay=0.9"  # inside the grid 0.8, 0.9 and the shipped 0.95
    behind = frame_with(at, "gap", "selection")
    assert set(behind["selection"]) == {"tuned"} and set(behind["split"]) == {"test"}
    jobs = run_app(results, monkeypatch, view="Jobs").dataframe[0].value
    assert jobs["last metrics"].str.contains(r"top1=[\d.]+ \(val\), top1=[\d.]+ \(test\) at epoch 6").sum() == 15

    for job in results.glob("cls-tiny-sema-*"):  # without decay=0.9 the grid 0.8, 0.95 brackets nothing
        if json.loads((job / "job.json").read_text())["spec"]["variant"] == "decay=0.9":
            shutil.rmtree(job)
    at = run_app(results, monkeypatch)
    (warning,) = [w.value for w in at.warning if "edge of its grid" in w.value]
    assert "sema: decay=" in warning and "of 0.8, 0.95)" in warning
    assert "⚠ grid edge: decay=" in frame_with(run_app(results, monkeypatch, view="Across tasks"), "cls/tiny").loc[
        "sema", "cls/tiny"]


def _final(job: Path) -> float:
    """A job's last val top1, read straight from its metrics.csv."""
    with (job / "metrics.csv").open() as handle:
        return float([r for r in csv.DictReader(handle) if r["metric"] == "top1"][-1]["value"])


def board_row(task: str, method: str, final: float, selection: str = "shipped", variant: str = "",
              split: str = "val", **values: float) -> dict:
    """A leaderboard row with every column; None where the test does not care."""
    metric, higher = {"cls": ("top1", True), "gen": ("fid_digits", False)}[task]
    return {**dict.fromkeys(leaderboard.COLUMNS), "selection": selection,
            "task": task, "preset": "tiny", "variant": variant, "dataset": "synthetic", "model": "toy", "split": split,
            "metric": metric, "higher_is_better": higher, "method": method, "seeds": 3, "final_mean": final,
            "final_std": 0.2, "best_mean": final, "best_std": 0.2, "epochs": 6, **values}


def made_board() -> list[dict]:
    """A leaderboard made by hand, with shipped, sweep and tuned rows on val and test and every number chosen."""
    rows = []
    for split, shift in (("val", 0.0), ("test", -1.0)):
        rows += [board_row("cls", "none", 80 + shift, split=split), board_row("cls", "ema", 81 + shift, split=split),
                 board_row("cls", "sema", 82 + shift, split=split, delta_vs_none=2.0, delta_vs_none_pct=2.5,
                           delta_ci_low=1.5, delta_ci_high=2.5, p_value=0.004, win_rate=1.0, paired_seeds=3,
                           reach90_epoch=3.0, auc_epoch=0.8),
                 board_row("cls", "sema", 78 + shift, "sweep", "decay=0.8", split),
                 board_row("cls", "sema", 83 + shift, "sweep", "decay=0.9", split),
                 board_row("cls", "ema", 81.5 + shift, "sweep", "decay=0.9", split),
                 board_row("gen", "none", 30 - shift, split=split), board_row("gen", "ema", 28 - shift, split=split),
                 board_row("gen", "sema", 27 - shift, split=split), board_row("gen", "sema", 26 - shift, "sweep",
                                                                              "decay=0.9", split)]
    rows += [board_row("cls", "none", 79, "tuned", split="test"),
             board_row("cls", "ema", 80.5, "tuned", "decay=0.9", "test"),
             board_row("cls", "sema", 82, "tuned", "decay=0.9", "test", delta_vs_none=3.0, delta_vs_none_pct=3.8,
                       delta_ci_low=2.0, delta_ci_high=4.0, p_value=0.01, win_rate=1.0, paired_seeds=3),
             board_row("gen", "none", 31, "tuned", split="test"),  # gen: ema has no tuned row
             board_row("gen", "sema", 27, "tuned", "decay=0.9", "test")]
    return rows


@pytest.fixture
def made_leaderboard(results: Path, monkeypatch) -> Path:
    """The results fixture, shown with :func:`made_board` as its leaderboard (``Snapshot.leaderboard``, which
    aggregates each task's rows on their own)."""
    monkeypatch.setattr("sema_dashboard.store.aggregate",
                        lambda rows, primary=None: [r for r in made_board() if r["task"] == rows[0]["task"]])
    return results


def test_shipped_and_tuned_tables_show_knobs_and_paired_statistics(made_leaderboard: Path, monkeypatch) -> None:
    at = run_app(made_leaderboard, monkeypatch)
    shipped, tuned, sweep = (frame_with(at, "variant", "final_mean", nth=i) for i in range(3))
    assert list(zip(shipped["split"], shipped["method"])) == [
        ("test", "sema"), ("test", "ema"), ("test", "none"), ("val", "sema"), ("val", "ema"), ("val", "none")]
    sema = shipped.iloc[0]
    assert (sema["variant"], sema["delta_ci"], sema["p_value"], sema["win_rate"]) == (
        "shipped", "[+1.5, +2.5]", 0.004, 1.0)
    assert not {"paired_seeds", "reach90_epoch", "best_mean"} & set(shipped.columns)  # folded under the details
    details = frame_with(at, "reach90_epoch", "paired_seeds")  # the shipped rows', in the same order
    assert list(details["method"]) == list(shipped["method"])
    assert (details.iloc[0]["reach90_epoch"], details.iloc[0]["paired_seeds"]) == (3.0, 3)
    assert list(zip(tuned["method"], tuned["variant"], tuned["split"])) == [
        ("sema", "decay=0.9", "test"), ("ema", "decay=0.9", "test"), ("none", "shipped", "test")]
    assert tuned.iloc[0]["delta_ci"] == "[+2, +4]"
    assert set(sweep["variant"]) == {"decay=0.8", "decay=0.9"}
    assert "auc_s" not in shipped.columns  # a column no row has a value in is not shown


def test_sensitivity_plots_the_val_metric_against_each_swept_knob(made_leaderboard: Path, monkeypatch) -> None:
    at = run_app(made_leaderboard, monkeypatch)
    assert "Sensitivity: val top1 against each swept knob" in [s.value for s in at.subheader]
    data = chart_data(at)
    points = {(r["line"], r["value"]): r["mean"] for r in data if r.get("knob") == "decay"}
    assert points == {("sema", "0.8"): 78, ("sema", "0.9"): 83, ("sema", "0.99"): 82,  # 0.99: the shipped decay
                      ("ema", "0.9"): 81.5, ("ema", "0.99"): 81}
    assert [r["none"] for r in data if "none" in r] == [80]  # none as shipped, on val: the reference line
    assert {r["order"] for r in data if r.get("value") == "0.99"} == {2.0}  # sorted as numbers

    at = run_app(made_leaderboard, monkeypatch, task="gen", metric="loss")  # no sweep of loss: no plot
    assert not any(s.value.startswith("Sensitivity") for s in at.subheader)


def test_across_tasks_keeps_selections_apart_and_plots_the_profile(made_leaderboard: Path, monkeypatch) -> None:
    at = run_app(made_leaderboard, monkeypatch, view="Across tasks")
    across = frame_with(at, "mean rank").set_index(["selection", "method", "variant"])
    cls, gen = "cls/tiny · top1 ↑ (test)", "gen/tiny · fid_digits ↓ (test)"
    assert across.loc[("tuned", "sema", "per task, best on val"), cls] == pytest.approx(3.8)
    assert across.loc[("shipped", "sema", "shipped"), cls] == pytest.approx(2.5)
    assert ("sweep", "sema", "decay=0.8") in across.index and ("sweep", "ema", "decay=0.9") in across.index
    assert across.loc[("tuned", "sema", "per task, best on val"), "mean rank"] == 1.0
    knobs = frame_with(at, "cls/tiny")
    assert dict(knobs["cls/tiny"]) == {"none": "shipped", "ema": "decay=0.9", "sema": "decay=0.9"}
    assert math.isnan(knobs.loc["ema", "gen/tiny"])  # no tuned ema on gen
    assert across.columns.tolist()[:2] == [cls, gen]

    profile = [r for r in chart_data(at) if "fraction" in r]
    at_zero = {r["method"]: r["fraction"] for r in profile if r["tau"] == 0}
    assert at_zero == {"none": 0.0, "ema": 0.0, "sema": 1.0}  # sema is best on both task-presets
    assert {r["fraction"] for r in profile if r["method"] == "ema"} == {0.0, 0.5, 1.0}
    behind = frame_with(at, "gap", "selection")
    ema_gen = behind[(behind.method == "ema") & (behind.problem == "gen/tiny")].iloc[0]
    assert (ema_gen["selection"], ema_gen["value"], ema_gen["gap"]) == ("shipped", 29, pytest.approx(2 / 27))


def test_a_task_table_leaves_out_columns_without_values() -> None:
    """One seed: no interval, p-value or spread; a leaderboard without a column (an older one): not shown."""
    rows = [{k: v for k, v in board_row("cls", m, v, final_std=None, best_std=None).items() if k != "auc_s"}
            for m, v in (("none", 80.0), ("sema", 82.0))]
    frame = tables.leaderboard_frame(rows)
    assert list(frame.columns) == ["rank", "method", "variant", "split", "seeds", "final_mean", "best_mean", "epochs"]
    assert list(frame["method"]) == ["sema", "none"]


def test_sensitivity_points_of_a_two_knob_sweep() -> None:
    rows = [board_row("cls", "sema", 80.0, "sweep", "decay=0.9,switch_interval=2"),
            board_row("cls", "sema", 81.0, "sweep", "decay=0.99,switch_interval=2"),
            board_row("cls", "sema", 79.0, "sweep", "decay=0.9,switch_interval=10"),
            board_row("cls", "sema", 99.0, "tuned", "decay=0.9,switch_interval=2", "test")]
    points = tables.sensitivity_points(rows, {})
    decay = points[points.knob == "decay"]
    assert sorted(zip(decay["line"], decay["value"], decay["mean"])) == [
        ("sema · switch_interval=10", "0.9", 79.0), ("sema · switch_interval=2", "0.9", 80.0),
        ("sema · switch_interval=2", "0.99", 81.0)]
    interval = points[points.knob == "switch_interval"]
    assert sorted(zip(interval["line"], interval["order"], interval["value"])) == [
        ("sema · decay=0.9", 0.0, "2"), ("sema · decay=0.9", 1.0, "10"), ("sema · decay=0.99", 0.0, "2")]  # 2 < 10


@pytest.mark.slow
def test_a_real_tiny_run_shows_up(tmp_path: Path, monkeypatch) -> None:
    """One real cls job (2 epochs) through `suite run`: its curve, leaderboard row and hook counts."""
    results = tmp_path / "results"
    subprocess.run([sys.executable, "-m", "sema_suite.cli", "run", "--task", "cls", "--method", "sema", "--seeds", "0",
                    "--set", "epochs=2", "--results-dir", str(results)], cwd=REPO, check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(REPO), "SUITE_THREADS": "1"})
    at = run_app(results, monkeypatch)
    boards = [d.value.to_dict("records") for d in at.dataframe if {"variant", "final_mean"} <= set(d.value.columns)]
    val = [(r["variant"], r["final_mean"]) for board in boards for r in board if r["split"] == "val"]
    expected = [r for r in leaderboard.build(results) if r["metric"] == "top1" and r["split"] == "val"]
    assert val == [("epochs=2", pytest.approx(expected[0]["final_mean"]))]  # --set epochs=2: a variant, labelled
    assert {r["x"] for r in chart_data(at) if "series" in r and "mean" in r} == {1.0, 2.0}
    jobs = run_app(results, monkeypatch, view="Jobs").dataframe[0].value
    job = jobs.iloc[0]
    assert (job["state"], job["position"], job["switches"]) == ("done", "epoch 2/2", 1)  # switch_start=2 in tiny
    assert job["updates"] > 0


def test_flatness_view_shows_what_suite_analyze_measured(tmp_path: Path, monkeypatch) -> None:
    """On the published cls jobs (flatness of seeds 0-2 as shipped, and their sema jobs' interpolation)."""
    results = tmp_path / "results"
    for job in sorted((REPO / "published" / "tiny").glob("cls-tiny-*")):
        shutil.copytree(job, results / job.name)
    at = run_app(results, monkeypatch, view="Flatness", task="cls")
    assert [s.value for s in at.subheader] == [
        "Flatness and sharpness: cls / tiny (lower is flatter)", "Does flatness track the metric?",
        "1-D loss landscape along filter-normalised random directions", "Linear interpolation to the sema weights"]

    shown = frame_with(at, "metric", "delta_ci")
    cli_rows = {(r["metric"], r["method"]): r for r in leaderboard.build(results)
                if selection_of(r) == "shipped" and (r["split"] == "train" or r["metric"].startswith("barrier_"))}
    assert len(shown) == len(cli_rows)
    for row in shown.to_dict("records"):
        assert row["final_mean"] == pytest.approx(cli_rows[(row["metric"], row["method"])]["final_mean"], rel=1e-9)
    assert {"hessian_trace", "barrier_train_loss_vs_none", "barrier_top1_vs_ema"} <= set(shown["metric"])

    data = chart_data(at)
    scatter = [r for r in data if "y" in r and "job_id" in r]
    measured = [p.name for p in results.iterdir() if (p / "analysis.csv").exists()]
    assert sorted(r["job_id"] for r in scatter) == sorted(measured)  # one point per measured job
    trace = {r["job_id"]: r["x"] for r in scatter}
    for job_id in measured:
        rows = JobDir(results, job_id).analysis()
        assert trace[job_id] == next(r["value"] for r in rows if r["metric"] == "hessian_trace")
    assert "Spearman's rank correlation over the 9 jobs" in " ".join(c.value for c in at.caption)

    curves = {r["series"]: r for r in data if r.get("series", "").endswith("→ sema · shipped") and r["x"] == 1.0}
    assert set(curves) == {"none → sema · shipped", "ema → sema · shipped"}
    assert all(r["n"] == 3 for r in curves.values())  # a band over the three seeds


def test_live_refresh_rests_when_nothing_runs(tmp_path: Path, monkeypatch) -> None:
    """On by default only while a job is pending or running; a finished folder is read once and left alone."""
    finished = make_results(tmp_path / "done", extra_states=False)
    at = run_app(finished, monkeypatch)
    assert at.toggle(key="live").value is False
    assert any("live refresh is off" in c.value for c in at.caption)
    running = make_results(tmp_path / "running")  # holds pending and running jobs
    at = run_app(running, monkeypatch)
    assert at.toggle(key="live").value is True


def test_the_first_screen_answers_with_the_leaderboards_numbers(tmp_path: Path, monkeypatch) -> None:
    """The win/tie/loss grid: one cell per method and task, each the tuned test row of `suite leaderboard`."""
    results = make_results(tmp_path / "results", sweep=(0.8, 0.9), test=True, extra_states=False)
    at = run_app(results, monkeypatch)
    (grid,) = [t.value for t in at.table]
    assert list(grid.index) == ["ema", "sema"]
    table = leaderboard.build(results)
    for method in ("ema", "sema"):
        (row,) = [r for r in table if (r["selection"], r["task"], r["split"], r["metric"], r["method"]) ==
                  ("tuned", "cls", "test", "top1", method)]
        cell = grid.loc[method, "cls/tiny"]
        assert cell == tables.verdict(row) and f"{row['delta_vs_none']:+.3g}" in cell
        low, high = row["delta_ci_low"], row["delta_ci_high"]
        assert cell.startswith("win" if low > 0 else "loss" if high < 0 else "tie")


def test_a_verdict_reads_the_direction_of_the_metric() -> None:
    assert tables.verdict(board_row("gen", "sema", 5.0, delta_vs_none=-1.0, delta_ci_low=-2.0,
                                    delta_ci_high=-0.5)).startswith("win -1")  # lower FID is better
    assert tables.verdict(board_row("cls", "sema", 90.0, delta_vs_none=-1.0, delta_ci_low=-2.0,
                                    delta_ci_high=-0.5)).startswith("loss -1")
    assert tables.verdict(board_row("cls", "ema", 90.0, delta_vs_none=0.2, delta_ci_low=-0.1,
                                    delta_ci_high=0.5)).startswith("tie +0.2")
    assert tables.verdict(board_row("cls", "ema", 90.0, delta_vs_none=0.279)) == "no interval +0.279"


def test_jobs_from_different_code_are_said_to_be(tmp_path: Path, monkeypatch) -> None:
    results = make_results(tmp_path / "results", extra_states=False)
    at = run_app(results, monkeypatch)
    assert not any("Provenance" in w.value for w in at.warning)
    for i, job in enumerate(sorted(p for p in results.iterdir() if (p / "job.json").exists())):
        doc = json.loads((job / "job.json").read_text())
        doc.setdefault("environment", {})["code"] = "c0de" if i % 2 else "f00d"
        (job / "job.json").write_text(json.dumps(doc))
    at = run_app(results, monkeypatch)
    assert any("Provenance: the jobs come from 2 code states" in w.value for w in at.warning)
