"""The Streamlit dashboard, driven by Streamlit's AppTest on results written by the suite's own writer."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
pyarrow = pytest.importorskip("pyarrow")
from results_fixture import make_results  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from dashboard.store import ResultsStore  # noqa: E402
from suite import cli, leaderboard  # noqa: E402
from suite.results import JobDir  # noqa: E402

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


def snapshot_files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(root.rglob("*"))}


def test_every_view_renders(results: Path, monkeypatch) -> None:
    at = run_app(results, monkeypatch)
    assert [s.value for s in at.subheader] == ["Convergence: top1 (higher is better)",
                                               "Leaderboard: cls / tiny · top1 (higher is better)"]
    assert {r["method"] for r in chart_data(at)} == {"none", "ema", "sema"}

    at = run_app(results, monkeypatch, view="Across tasks")
    across = at.dataframe[0].value
    assert list(across.index) == ["none", "ema", "sema"]
    assert across.loc["sema", "mean rank"] == 1.0  # the fixture makes sema best on every task
    assert across.loc["sema", "gen/tiny · fid ↓"] > 0  # lower fid is an improvement: shown positive

    at = run_app(results, monkeypatch, view="Jobs")
    jobs = at.dataframe[0].value
    assert len(jobs) == 21
    assert dict(jobs["state"].value_counts()) == {"done": 18, "running": 1, "failed": 1, "pending": 1}
    sema = jobs[(jobs.method == "sema") & (jobs.state == "done")].iloc[0]
    assert (sema["updates"], sema["switches"]) == (120, 5)
    failed = jobs[jobs.state == "failed"].iloc[0]
    assert failed["error"].startswith("NonFiniteLoss") and failed["position"] == "epoch 2/6"

    at = run_app(results, monkeypatch, view="Samples", task="gen")
    assert len(at.get("image")) == 3  # one image per method at the chosen epoch


def test_leaderboard_numbers_equal_the_cli(results: Path, monkeypatch, tmp_path: Path) -> None:
    out = tmp_path / "leaderboard.csv"
    assert cli.main(["leaderboard", "--results-dir", str(results), "--out", str(out)]) == 0
    with out.open() as handle:
        expected = list(csv.DictReader(handle))

    full = run_app(results, monkeypatch, view="Across tasks").dataframe[1].value
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

    board = run_app(results, monkeypatch, task="gen", metric="fid").dataframe[0].value
    cli_rows = {r["method"]: r for r in expected if r["task"] == "gen" and r["metric"] == "fid"}
    assert list(board["method"]) == ["sema", "ema", "none"]  # lower fid ranks first
    for _, shown in board.iterrows():
        assert shown["final_mean"] == pytest.approx(float(cli_rows[shown["method"]]["final_mean"]), rel=1e-5)
        assert shown["delta_vs_none"] == pytest.approx(float(cli_rows[shown["method"]]["delta_vs_none"]), abs=1e-4)


def test_switching_task_metric_and_axis_changes_the_chart(results: Path, monkeypatch) -> None:
    at = run_app(results, monkeypatch)
    cls_data = chart_data(at)
    at.selectbox(key="task").set_value("gen").run()
    assert at.selectbox(key="metric").value == "fid"
    fid_data = chart_data(at)
    at.selectbox(key="metric").set_value("loss").run()
    loss_data = chart_data(at)
    assert at.subheader[0].value == "Convergence: loss (lower is better)"
    means = [sorted(round(r["mean"], 6) for r in data if "mean" in r) for data in (cls_data, fid_data, loss_data)]
    assert means[0] != means[1] != means[2]
    at.button_group(key="x").set_value("wall-clock").run()
    xs = {r["x"] for r in chart_data(at) if "mean" in r}
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
    assert "Skipped 2 unreadable results file(s)" in at.warning[0].value
    assert any("metrics.csv" in t.value for t in at.text) and any("status.json" in t.value for t in at.text)
    board = at.dataframe[0].value
    assert dict(zip(board["method"], board["seeds"])) == {"sema": 2, "ema": 3, "none": 3}


def test_the_dashboard_never_writes_into_the_results(results: Path, monkeypatch) -> None:
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


def test_empty_results_dir_explains_what_to_do(tmp_path: Path, monkeypatch) -> None:
    at = run_app(tmp_path / "nothing-yet", monkeypatch)
    assert "No jobs under" in at.info[0].value and "suite run" in at.info[0].value


def test_cli_dashboard_command_binds_localhost_and_keeps_startup_light(tmp_path: Path) -> None:
    argv, env = cli.dashboard_command(tmp_path / "r", 8599, "127.0.0.1")
    assert argv[1:5] == ["-m", "streamlit", "run", str(APP)]
    assert argv[argv.index("--server.address") + 1] == "127.0.0.1" and argv[argv.index("--server.port") + 1] == "8599"
    assert env["SUITE_RESULTS_DIR"] == str((tmp_path / "r").resolve())
    code = ("import sys, suite.cli as c; c.parser().parse_args(['dashboard', '--port', '1']); "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('streamlit', 'pandas', 'torch'))))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], cwd=REPO, capture_output=True, text=True,
                         check=True, env={**env, "PYTHONPATH": str(REPO)})
    assert json.loads(out.stdout) == []


@pytest.mark.slow
def test_a_real_tiny_run_shows_up(tmp_path: Path, monkeypatch) -> None:
    """One real cls job (2 epochs) through `suite run`: its curve, leaderboard row and hook counts."""
    results = tmp_path / "results"
    subprocess.run([sys.executable, "-m", "suite.cli", "run", "--task", "cls", "--method", "sema", "--seeds", "0",
                    "--set", "epochs=2", "--results-dir", str(results)], cwd=REPO, check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(REPO), "SUITE_THREADS": "1"})
    at = run_app(results, monkeypatch)
    board = at.dataframe[0].value
    expected = leaderboard.build(results)
    assert list(board["final_mean"]) == [pytest.approx(expected[0]["final_mean"])]
    assert {r["x"] for r in chart_data(at) if "mean" in r} == {1.0, 2.0}
    jobs = run_app(results, monkeypatch, view="Jobs").dataframe[0].value
    job = jobs.iloc[0]
    assert (job["state"], job["position"], job["switches"]) == ("done", "epoch 2/2", 1)  # switch_start=2 in tiny
    assert job["updates"] > 0
