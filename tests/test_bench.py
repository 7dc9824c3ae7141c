"""The benchmark runs every contender on a real parameter set (its timings are printed, never asserted)."""

import pytest

from sema_suite.bench.update import bench_ema


def test_bench_times_every_contender(capsys) -> None:
    results = bench_ema(["resnet18"], repeats=1)
    assert set(results["resnet18"]) >= {"flat lerp_ (floor)", "suite WeightAverager",
                                         "mmengine ExponentialMovingAverage", "torch AveragedModel (multi_avg_fn)"}
    assert all(seconds > 0 for seconds in results["resnet18"].values())
    assert "x floor" in capsys.readouterr().out


def test_bench_step_prints_averagings_share_of_a_training_step(capsys) -> None:
    from sema_suite.bench.update import bench_step

    results = bench_step(["resnet18"], repeats=1, batch=2, image_size=32)
    times = results["resnet18"]
    assert {"training step", "step + averaging update", "switch (copy_to)", "overhead"} <= set(times)
    assert times["overhead"] == times["step + averaging update"] / times["training step"] - 1
    assert "averaging adds" in capsys.readouterr().out


def test_bench_dashboard_times_every_view(capsys) -> None:
    """A few synthetic jobs (any method name: swa and lookahead too) through every view, cold, warm and changed."""
    pytest.importorskip("streamlit")
    from sema_suite.bench.dashboard import VIEWS, bench_dashboard

    times = bench_dashboard([12], epochs=3)
    assert set(times[12]) == {"read", *VIEWS}
    assert all(times[12][view][case] > 0 for view in VIEWS for case in ("cold", "warm", "changed"))
    out = capsys.readouterr().out
    for view in VIEWS:
        assert f"| 12 | {view} |" in out
