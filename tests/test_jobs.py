"""Job identity and sweeps: the id hashes what a job runs, a sweep expands to the cartesian product."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sema_suite.errors import BadOverride
from sema_suite.running.jobs import JobSpec, expand_matrix, parse_overrides


def job(method: str, *overrides: tuple[str, object], task: str = "cls"):
    return JobSpec(task, "tiny", method, 0, tuple(sorted(overrides))).resolve()


def test_restating_a_default_is_the_same_job() -> None:
    assert job("sema", ("epochs", 10)).job_id == job("sema").job_id
    assert job("sema", ("decay", 0.95), ("switch_start", 2)).job_id == job("sema").job_id
    assert job("sema", ("epochs", 10)).variant == ""
    assert job("sema", ("epochs", 12)).job_id != job("sema").job_id


@pytest.mark.parametrize(("method", "knob"), [
    ("none", ("decay", 0.9)), ("none", ("switch_interval", 2)), ("ema", ("switch_interval", 2)),
    ("ema", ("switch_start", 5)), ("ema", ("switch_interval_iters", 7)),
])
def test_a_knob_the_method_ignores_does_not_change_its_id(method: str, knob: tuple[str, object]) -> None:
    resolved = job(method, knob)
    assert resolved.job_id == job(method).job_id
    assert resolved.variant == "" and resolved.ignored == (knob[0],)


def test_knobs_that_matter_make_a_new_variant() -> None:
    sema = job("sema", ("decay", 0.8), ("switch_interval", 2))
    assert sema.job_id != job("sema").job_id
    assert sema.variant == "decay=0.8,switch_interval=2"
    assert job("ema", ("decay", 0.8)).variant == "decay=0.8"
    assert job("none", ("depths", [1, 1])).variant == "depths=[1,1]"


def test_a_sweep_is_the_cartesian_product_and_none_is_trained_once() -> None:
    overrides = parse_overrides(["decay=0.9,0.95,0.99", "switch_interval=1,2"])
    assert overrides == {"decay": [0.9, 0.95, 0.99], "switch_interval": [1, 2]}
    matrix = expand_matrix(["cls"], ["none", "ema", "sema"], [0, 1], None, overrides)
    methods = [j.spec.method for j in matrix.jobs]
    # per seed: one none, three ema decays (switch_interval is not an ema knob), 3 x 2 sema points
    assert (methods.count("none"), methods.count("ema"), methods.count("sema")) == (2, 6, 12)
    assert len({j.job_id for j in matrix.jobs}) == len(matrix.jobs)
    assert {j.variant for j in matrix.jobs if j.spec.method == "sema"} == {  # 0.95 is the preset's decay
        "decay=0.9", "decay=0.9,switch_interval=2", "", "switch_interval=2",
        "decay=0.99", "decay=0.99,switch_interval=2"}
    assert any("decay, switch_interval ignored for method none" in n for n in matrix.notes)


def test_list_values_are_not_sweeps() -> None:
    assert parse_overrides(["depths=[1,1,2]"]) == {"depths": [[1, 1, 2]]}
    assert parse_overrides(["depths=[1],[1,1]"]) == {"depths": [[1], [1, 1]]}


@pytest.mark.parametrize(("items", "message"), [
    (["decay=0.9", "decay=0.95"], "decay is set twice"),
    (["decay=0.9,0.9"], "repeats a value"),
])
def test_bad_sweeps(items: list[str], message: str) -> None:
    with pytest.raises(BadOverride, match=message):
        parse_overrides(items)


def test_switch_period_in_epochs_and_in_iterations_is_an_error() -> None:
    with pytest.raises(BadOverride, match="drop one of them"):
        job("sema", ("switch_interval", 2), ("switch_interval_iters", 10))
    assert job("ema", ("switch_interval", 2), ("switch_interval_iters", 10)).job_id == job("ema").job_id


def test_cli_dry_run_prints_the_expanded_list() -> None:
    result = subprocess.run([sys.executable, "-m", "sema_suite.cli", "run", "--task", "cls", "--method", "none,sema",
                             "--seeds", "0,1", "--set", "decay=0.9,0.99", "--set", "depths=[1]", "--set", "width=4",
                             "--dry-run"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    listing = result.stdout[result.stdout.index("6 job(s):"):]
    assert listing.count("sema seed") == 4 and listing.count("none seed") == 2
    assert "decay=0.9,depths=[1],width=4" in listing
    assert "note: decay ignored for method none" in listing


def test_training_and_averaging_warm_ups_have_names_apart() -> None:
    """ssl's learning-rate warm-up and the EMA's decay warm-up are two knobs; the old shared name is an error."""
    lr = job("none", ("lr_warmup_epochs", 0), task="ssl")
    assert lr.params["lr_warmup_epochs"] == 0 and lr.variant == "lr_warmup_epochs=0"
    ema = job("ema", ("ema_warmup_epochs", 2), task="ssl")
    assert ema.averaging["ema_warmup_epochs"] == 2 and ema.params["lr_warmup_epochs"] == 1
    assert job("none", ("ema_warmup_epochs", 2), task="ssl").job_id == job("none", task="ssl").job_id
    with pytest.raises(BadOverride, match="ambiguous.*lr_warmup_epochs.*ema_warmup_epochs"):
        job("ema", ("warmup_epochs", 3), task="ssl")


def test_a_whole_number_written_as_a_float_is_the_same_job() -> None:
    """A knob whose default is None (no type to coerce to): 100.0 and 100 resolve to one job, stored as 100."""
    as_float = job("sema", ("switch_interval_iters", 100.0))
    assert as_float.job_id == job("sema", ("switch_interval_iters", 100)).job_id
    assert type(as_float.averaging["switch_interval_iters"]) is int


def test_the_optimizer_axis_takes_each_optimizers_own_hyper_parameters(tmp_path) -> None:
    """``--set optimizer=sgd,adamw`` on a long preset: each optimizer with its row of the preset's table, the
    variant naming the optimizer only, an explicit lr kept, a knob the optimizer ignores and an optimizer the
    preset does not offer both errors."""
    from sema_suite.optim import OPTIMIZER_KNOBS
    from sema_suite.registry import get_task, task_names
    from sema_suite.running.config import build_config

    def long(*overrides):
        return JobSpec("cls", "long", "sema", 0, tuple(sorted(overrides))).resolve()

    sgd = long(("optimizer", "sgd"))
    assert sgd.variant == "optimizer=sgd" and (sgd.params["lr"], sgd.params["weight_decay"]) == (0.1, 5e-4)
    assert long(("optimizer", "adam")).job_id == long().job_id  # the shipped optimizer restated
    assert long(("optimizer", "sgd"), ("lr", 0.1)).job_id == sgd.job_id  # the table's own value restated
    assert long(("optimizer", "sgd"), ("lr", 0.05)).variant == "lr=0.05,optimizer=sgd"
    cfg = build_config(sgd, sgd.context(tmp_path, tmp_path / "work", dry_run=True), tmp_path)
    assert (cfg.optim_wrapper.optimizer.type, cfg.optim_wrapper.optimizer.lr) == ("SGD", 0.1)
    with pytest.raises(BadOverride, match="momentum does nothing with optimizer=adam"):
        long(("momentum", 0.8))
    with pytest.raises(BadOverride, match="optimizer='lamb': optimizer takes one of sgd, adam, adamw"):
        long(("optimizer", "lamb"))
    matrix = expand_matrix(["cls"], ["none", "sema"], [0], "long", {"optimizer": ["adam", "sgd", "adamw"]})
    assert sorted({job.variant for job in matrix.jobs}) == ["", "optimizer=adamw", "optimizer=sgd"]
    for task in task_names():  # every table row names an optimizer and only what it reads
        for name, row in get_task(task).presets["long"].optimizers.items():
            assert set(row) <= set(OPTIMIZER_KNOBS[name]), (task, name)


def test_a_plan_file_is_the_union_of_its_matrices(tmp_path) -> None:
    from sema_suite.running.plans import expand_plan

    plan = tmp_path / "plan.toml"
    plan.write_text('[defaults]\npreset = "tiny"\nseeds = [0, 1]\n\n'
                    '[[matrix]]\ntasks = ["cls"]\nmethods = ["none", "ema"]\nset = { decay = [0.9, 0.95] }\n\n'
                    '[[matrix]]\ntasks = "cls"\nmethods = "sema"\nseeds = [0]\nset = { decay = 0.9 }\n')
    matrix = expand_plan(plan)
    assert sorted((j.spec.method, j.spec.seed, j.variant) for j in matrix.jobs) == [
        ("ema", 0, ""), ("ema", 0, "decay=0.9"), ("ema", 1, ""), ("ema", 1, "decay=0.9"),
        ("none", 0, ""), ("none", 1, ""), ("sema", 0, "decay=0.9")]
    assert sorted(j.job_id for j in matrix.jobs) == sorted(
        j.job_id for j in expand_matrix(["cls"], ["none", "ema"], [0, 1], "tiny", {"decay": [0.9, 0.95]}).jobs
        + expand_matrix(["cls"], ["sema"], [0], "tiny", {"decay": [0.9]}).jobs)
    plan.write_text('[[matrix]]\ntasks = ["cls"]\nmethod = ["none"]\n')
    with pytest.raises(Exception, match="unknown key.*method"):
        expand_plan(plan)
    done = subprocess.run([sys.executable, "-m", "sema_suite.cli", "run", "--plan", str(plan), "--task", "cls",
                           "--results-dir", str(tmp_path / "results")], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "--plan names the jobs; drop --task" in done.stderr
    assert not (tmp_path / "results").exists()


def test_the_long_plan_names_every_task_on_its_long_preset() -> None:
    from pathlib import Path

    from sema_suite.registry import task_names
    from sema_suite.running.plans import load_plan

    matrices = load_plan(Path(__file__).resolve().parent.parent / "plans" / "long.toml")
    assert {task for m in matrices for task in m["tasks"]} == set(task_names())
    assert {m["preset"] for m in matrices} == {"long"}
    # 5 seeds, 3 for the two costliest tasks (the fallback, said in the plan and the README)
    assert all(len(m["seeds"]) == (3 if set(m["tasks"]) <= {"gen", "video"} else 5) for m in matrices)


def test_a_finished_job_killed_while_measured_stays_done(tmp_path) -> None:
    """Stopping `suite analyze` (its worker killed mid-measurement) fails the measurement, never the training."""
    from sema_suite.results.store import JobDir
    from sema_suite.running.scheduler import job_outcome

    job = JobDir(tmp_path, "cls-tiny-sema-s0-00000000")
    job.path.mkdir()
    job.update_status(state="done", seconds=12.0, analysis={"settings": {"batches": 1}, "state": "running"})
    outcome = job_outcome(job, -2)
    status = job.status()
    assert outcome.state == "failed" and "while measuring it" in outcome.error
    assert status["state"] == "done" and status["seconds"] == 12.0
    assert status["analysis"]["state"] == "failed" and status["analysis"]["settings"] == {"batches": 1}
