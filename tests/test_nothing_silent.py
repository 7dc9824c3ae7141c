"""Nothing silent: a results folder, a plan or a bad value never changes a number without a word, and every value
is checked where it is typed. On constructed folders (the suite's own writer, no training) and in-process CLI calls;
the checkpoint cases (safe loading, strict analysis) are in test_safe_loading.py."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from sema_suite import cli
from sema_suite.bench.synthetic import write_job
from sema_suite.errors import BadOverride
from sema_suite.knobs import Rule, count
from sema_suite.method.methods import knob_table
from sema_suite.registry import get_task, task_names
from sema_suite.results.reading import read_results
from sema_suite.results.store import JobDir
from sema_suite.running.jobs import JobSpec

from sema_dashboard.store import ResultsStore


def suite(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """``suite ARGS`` in this process: (exit code, stdout, stderr). argparse's own errors exit 2 too."""
    try:
        code = cli.main(list(args))
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


def matrix(results: Path, seeds: int = 3) -> Path:
    """cls none and sema, ``seeds`` seeds each, done, with val and test rows (what a real run leaves)."""
    for method in ("none", "sema"):
        for seed in range(seeds):
            write_job(results, "cls", method, seed, test=True)
    return results


def warnings_of(results: Path) -> tuple[list[str], list[str]]:
    """What the CLI's reader and the dashboard's say about ``results``: they must be the same."""
    return read_results(results).warnings(), ResultsStore(results).snapshot().problems


# -- results a reader could lose ------------------------------------------------------------------------------------

def test_a_job_with_rows_but_no_status_is_named(tmp_path: Path, capsys) -> None:
    results = matrix(tmp_path / "results")
    lost = JobDir(results, "cls-tiny-sema-s1-fixture")
    lost.status_json.unlink()
    cli_says, dashboard_says = warnings_of(results)
    assert cli_says == dashboard_says
    assert any(w.startswith(f"{lost.job_id} has metrics rows but no status.json") for w in cli_says), cli_says
    code, _, err = suite(capsys, "leaderboard", "--results-dir", str(results), "--out", str(tmp_path / "lb.csv"))
    assert code == 0 and f"{lost.job_id} has metrics rows but no status.json" in err


def test_a_seed_missing_its_test_rows_is_named(tmp_path: Path, capsys) -> None:
    results = matrix(tmp_path / "results")
    short = JobDir(results, "cls-tiny-sema-s2-fixture")
    short.drop_metrics(lambda row: row["split"] != "test")
    cli_says, dashboard_says = warnings_of(results)
    assert cli_says == dashboard_says
    assert [w for w in cli_says if short.job_id in w] == [
        f"{short.job_id} (cls/tiny sema seed 2) has no test top1 rows that its other seeds have: those rows are "
        "averaged over one seed fewer; delete its folder and re-run the same `suite run`"]
    code, _, err = suite(capsys, "leaderboard", "--results-dir", str(results), "--out", str(tmp_path / "lb.csv"))
    assert code == 0 and f"{short.job_id} (cls/tiny sema seed 2) has no test top1 rows" in err


def test_a_done_job_without_rows_and_a_task_without_test_are_named(tmp_path: Path, capsys) -> None:
    results = matrix(tmp_path / "results")
    empty = JobDir(results, "cls-tiny-none-s0-fixture")
    empty.drop_metrics(lambda row: False)
    write_job(results, "reg", "none", 0)  # val rows only: no test split
    cli_says, dashboard_says = warnings_of(results)
    assert cli_says == dashboard_says
    assert any(w.startswith(f"{empty.job_id} is done but recorded no metric rows") for w in cli_says), cli_says
    assert any(w.startswith("reg/tiny has no test rows, so the leaderboard has no tuned rows") for w in cli_says)
    assert not any("cls/tiny has no test rows" in w for w in cli_says)


def test_a_consistent_folder_has_nothing_to_say(tmp_path: Path) -> None:
    assert warnings_of(matrix(tmp_path / "results")) == ([], [])


@pytest.mark.parametrize("damage", ["truncated metrics.csv", "garbage job.json", "garbage status.json"])
def test_a_bad_file_is_skipped_and_named_the_same_way_everywhere(tmp_path: Path, capsys, damage: str) -> None:
    results = matrix(tmp_path / "results")
    bad = JobDir(results, "cls-tiny-sema-s1-fixture")
    name = damage.split()[1]
    path = bad.path / name
    path.write_text(path.read_text()[:-40] + "\n1,2\n" if name == "metrics.csv" else "{not json")
    code, out, err = suite(capsys, "leaderboard", "--results-dir", str(results), "--out", str(tmp_path / "lb.csv"))
    assert code == 0 and "cls" in out and (tmp_path / "lb.csv").exists(), err  # the rest of the table stands
    cli_says, dashboard_says = warnings_of(results)
    assert cli_says == dashboard_says and len(cli_says) == 1, cli_says
    assert cli_says[0].startswith(f"skipped unreadable results file {path}:") and cli_says[0] in err
    seeds = {row["method"]: row["seeds"] for row in csv.DictReader((tmp_path / "lb.csv").open())
             if row["selection"] == "shipped" and row["split"] == "test"}
    if name == "job.json":  # only the spec is lost: its rows still count, and nothing says to delete them
        assert "Restore it from a copy" in cli_says[0] and seeds == {"none": "3", "sema": "3"}
    else:  # the job is left out, and the warning said so
        assert "left out" in cli_says[0] and seeds == {"none": "3", "sema": "2"}


def test_a_printed_table_of_sweep_rows_only_says_why_it_is_empty(tmp_path: Path, capsys) -> None:
    results = tmp_path / "results"
    for seed in range(2):
        write_job(results, "cls", "sema", seed, decay=0.9)  # every job a variant, and no none to tune against
    code, out, err = suite(capsys, "leaderboard", "--results-dir", str(results), "--out", str(tmp_path / "lb.csv"))
    assert code == 0 and "each row is a sweep row" in err and "in the CSV" in err, err


# -- output and results folders ---------------------------------------------------------------------------------------

def test_an_output_in_a_missing_folder_is_refused_and_not_created(tmp_path: Path, capsys) -> None:
    results = matrix(tmp_path / "results")
    code, _, err = suite(capsys, "leaderboard", "--results-dir", str(results), "--out", str(tmp_path / "no" / "x.csv"))
    assert code == 2 and "does not exist" in err and not (tmp_path / "no").exists()


def test_a_results_dir_that_is_a_file_is_refused(tmp_path: Path, capsys) -> None:
    file = tmp_path / "results"
    file.write_text("not a folder")
    code, _, err = suite(capsys, "run", "--task", "cls", "--method", "none", "--results-dir", str(file))
    assert code == 2 and "is a file, not a folder" in err and file.read_text() == "not a folder"


def test_a_job_id_is_never_a_path(tmp_path: Path, capsys) -> None:
    results = matrix(tmp_path / "results")
    (tmp_path / "other" / "x").mkdir(parents=True)
    for job_id in ("../other/x", "..", "a/b"):
        code, _, err = suite(capsys, "export", job_id, "--results-dir", str(results), "-o", str(tmp_path / "w.pth"))
        assert code == 2 and "is not a job id" in err, (job_id, err)
    assert not (tmp_path / "w.pth").exists()


# -- values checked where they are typed ------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "says"), [
    (["--method", "none,ema", "--set", "decay=1.5"], "decay=1.5: decay takes a number in [0, 1)"),
    (["--method", "ema", "--set", "decay=-0.1"], "decay=-0.1: decay takes a number in [0, 1)"),
    (["--method", "none", "--set", "epochs=0"], "epochs=0: epochs takes a whole number >= 1"),
    (["--method", "none", "--set", "epochs=-3"], "epochs=-3: epochs takes a whole number >= 1"),
    (["--method", "none", "--set", "lr=0"], "lr=0.0: lr takes a number > 0"),
    (["--method", "sema", "--set", "switch_interval=2.5"], "switch_interval=2.5: switch_interval takes a whole number"),
    (["--method", "none", "--set", "optimizer=rmsprop"], "optimizer='rmsprop': optimizer takes one of sgd, adam, adamw"),
    (["--task", "lm", "--method", "none", "--set", "schedule=constant"],
     "schedule='constant': schedule takes one of cosine, inverse_sqrt"),
    (["--method", "lookahead", "--set", "lookahead_alpha=0"], "lookahead_alpha=0.0: lookahead_alpha takes a number in"),
    (["--method", "none", "--workers", "0"], "give a whole number of at least 1"),
    (["--method", "none", "--workers", "-2"], "give a whole number of at least 1"),
    (["--method", "none", "--seeds", "-1"], "seeds are whole numbers >= 0"),
])
def test_a_bad_value_is_refused_before_anything_is_written(tmp_path: Path, capsys, args: list[str], says: str) -> None:
    results = tmp_path / "results"
    code, _, err = suite(capsys, "run", *(["--task", "cls"] if "--task" not in args else []), *args,
                         "--results-dir", str(results))
    assert code == 2 and says in err, err
    assert not results.exists()


@pytest.mark.parametrize(("plan", "says"), [
    ('[[matrix]]\ntasks = "cls"\nmethods = "none"\nseeds = "abc"\n', "[[matrix]] #1 seeds = 'abc': expected a seed"),
    ('[[matrix]]\ntasks = "cls"\nmethods = "none"\nseeds = [0.5]\n', "seeds = [0.5]: expected a seed"),
    ('[[matrix]]\ntasks = "cls"\nmethods = "none"\nseeds = [true]\n', "seeds = [True]: expected a seed"),
    ('[[matrix]]\ntasks = "cls"\nmethods = "none"\nseeds = [-1]\n', "seeds = [-1]: expected seeds >= 0"),
    ('[[matrix]]\ntasks = []\nmethods = "none"\n', "tasks = []: expected a task name or a non-empty list"),
    ('[[matrix]]\ntasks = 3\nmethods = "none"\n', "tasks = 3: expected a task name"),
    ('[[matrix]]\ntasks = "cls"\nmethods = "none"\nset = 3\n', "set = 3: expected a table of knob = value"),
    ('[[matrix]]\ntasks = "cls"\nmethods = "none"\n[matrix.set]\ndecay = []\n', "set.decay = []: expected a value"),
    ('defaults = 3\n[[matrix]]\ntasks = "cls"\nmethods = "none"\n', "[defaults]  = 3: expected a table"),
    ('matrix = 3\n', "the matrix = 3: expected [[matrix]] tables"),
    ('matrix = ["cls"]\n', "[[matrix]] #1  = 'cls': expected a table"),
])
def test_a_bad_plan_names_its_file_key_and_type(tmp_path: Path, capsys, plan: str, says: str) -> None:
    path = tmp_path / "plan.toml"
    path.write_text(plan)
    code, _, err = suite(capsys, "run", "--plan", str(path), "--results-dir", str(tmp_path / "results"))
    assert code == 2 and f"{path}: " in err and says in err and "Traceback" not in err, err
    assert not (tmp_path / "results").exists()


def test_every_preset_knob_declares_the_values_it_takes() -> None:
    """Each knob of each preset has a rule (its own or a shared training knob's), and the preset's own values and
    its optimizers' pass it: a default that its own check would refuse cannot ship."""
    for name in task_names():
        task = get_task(name)
        for preset in task.presets.values():
            for key, value in preset.knobs.items():
                rule = task.rule(key)
                assert rule is not None, f"{name}/{preset.name}: knob {key} declares no rule (Task.rules)"
                assert rule.check(key, value) == value
            for table in preset.optimizers.values():
                for key, value in table.items():
                    task.rule(key).check(key, value)
            JobSpec(name, preset.name, "sema", 0).resolve()  # the shipped method knobs pass theirs


def test_every_method_knob_declares_the_values_it_takes() -> None:
    for key, knob in knob_table().items():
        assert knob.rule is not None, f"method knob {key} declares no rule (Knob(rule=...))"
        assert knob.rule.check(key, knob.default) == knob.default


def test_a_rule_takes_exactly_its_values() -> None:
    unit = Rule(float, low=0, high=1, high_open=True)
    assert [unit.check("d", v) for v in (0, 0.5, 0.999)] == [0.0, 0.5, 0.999]
    for bad in (1, 1.5, -0.1, float("nan"), True, "0.5", None):
        with pytest.raises(BadOverride, match=r"d takes a number in \[0, 1\)"):
            unit.check("d", bad)
    assert count().check("k", 3.0) == 3 and Rule(int, low=1, none=True).check("k", None) is None
    with pytest.raises(BadOverride, match="k takes a whole number >= 1"):
        count().check("k", 2.5)
    with pytest.raises(BadOverride, match="s takes one of a, b"):
        Rule(str, choices=("a", "b")).check("s", "c")
