"""Where a run's time goes (sema_suite.running.costs), what was cut from a tiny job's fixed cost, and `suite bench matrix`."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from sema_suite.data import _digits
from sema_suite.running.costs import CostLedger


def test_a_members_cost_leaves_out_the_other_members_own_work() -> None:
    ledger = CostLedger()
    ledger.add("train", 10.0)
    ledger.add("eval", 1.0, "none")
    ledger.add("eval", 2.0, "ema-a")
    ledger.add("averaging", 0.5, "ema-a")
    ledger.add("checkpoint", 0.25)
    assert ledger.others("none") == 2.5 and ledger.others("ema-a") == 1.0
    assert ledger.summary("ema-a", startup=3.0) == {"startup_s": 3.0, "train_s": 10.0, "eval_s": 2.0,
                                                    "averaging_s": 0.5, "checkpoint_s": 0.25}
    assert ledger.summary()["eval_s"] == 3.0  # the run's total
    again = CostLedger()
    again.load_state_dict(ledger.state_dict())  # a resumed run continues its ledger from the checkpoint
    assert again.summary("ema-a") == ledger.summary("ema-a")


def test_the_tiny_digits_are_scikit_learns_without_importing_it() -> None:
    code = "from sema_suite.data import _digits; import sys; _digits(); print('sklearn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images, labels = _digits()
    assert torch.equal(images, torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0)
    assert torch.equal(labels, torch.as_tensor(bunch.target))


@pytest.mark.slow
def test_bench_matrix_runs_both_ways_and_prints_the_ratios() -> None:
    done = subprocess.run([sys.executable, "-m", "sema_suite.cli", "bench", "matrix", "--decays", "0.9,0.99",
                           *[x for s in ("epochs=1", "depths=[1]", "width=4", "image_size=8", "batch_size=128")
                             for x in ("--set", s)]], check=False, capture_output=True, text=True, timeout=900,
                          env={**__import__("os").environ, "SUITE_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.strip()}
    assert lines["separate"][1] == "5" and lines["shared"][1] == "3"  # none+2 ema+2 sema: 5 runs, or 1 + 2
    assert all(float(v) > 0 for v in lines["shared"][2:5])  # wall, startup, build: measured
    assert "0.60x the trainings" in done.stdout
    assert float(done.stdout.split("trainings, ")[1].split("x")[0]) == pytest.approx(
        float(lines["shared"][2]) / float(lines["separate"][2]), abs=0.01)
