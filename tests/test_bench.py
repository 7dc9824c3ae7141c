"""The benchmark runs every contender on a real parameter set (its timings are printed, never asserted)."""

from sema_suite.bench import bench_ema


def test_bench_times_every_contender(capsys) -> None:
    results = bench_ema(["resnet18"], repeats=1)
    assert set(results["resnet18"]) >= {"flat lerp_ (floor)", "suite WeightAverager",
                                         "mmengine ExponentialMovingAverage", "torch AveragedModel (multi_avg_fn)"}
    assert all(seconds > 0 for seconds in results["resnet18"].values())
    assert "x floor" in capsys.readouterr().out
