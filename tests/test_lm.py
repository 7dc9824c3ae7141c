"""The language-modelling adapter: its splits and readers, the model's starting perplexity, a short real run
that beats the unigram baseline, the inverse-sqrt schedule, bad input, and resume after a kill."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sema_suite.cli import main
from sema_suite.errors import DatasetMissing
from sema_suite.results.store import JobDir
from sema_suite.running.jobs import JobSpec
from sema_tasks.lm import TASK
from sema_tasks.lm.modules import CausalTransformerLM, InverseSqrtLR, Perplexity, TextBlocks
from sema_tasks.lm.text import CHUNK_BYTES, _wikitext_streams, load_split, pydoc_text

SMALL = {"iters": 150, "val_interval": 50, "lr_warmup_iters": 10, "context": 64, "dim": 64, "heads": 2, "layers": 1,
         "ffn": 128, "batch_size": 16, "switch_interval_iters": 75}


def small_args(results: Path, method: str = "sema", **extra) -> list[str]:
    sets = [x for k, v in {**SMALL, **extra}.items() for x in ("--set", f"{k}={v}")]
    return ["run", "--task", "lm", "--method", method, "--results-dir", str(results), *sets]


def test_tiny_splits_are_fixed_disjoint_chunks_of_the_help_text() -> None:
    train, counts = load_split("pydoc-topics", "train")
    val, _ = load_split("pydoc-topics", "val")
    test, _ = load_split("pydoc-topics", "test")
    text = pydoc_text()
    assert len(train) + len(val) + len(test) == len(text) and 0.04 < len(val) / len(text) < 0.06
    assert torch.equal(counts, torch.bincount(train, minlength=256)) and counts.sum() == len(train)
    chunks = {bytes(text[i:i + CHUNK_BYTES]) for i in range(0, len(text), CHUNK_BYTES)}
    val_chunks = {bytes(val[i:i + CHUNK_BYTES].to(torch.uint8).tolist()) for i in range(0, len(val), CHUNK_BYTES)}
    assert val_chunks <= chunks  # whole chunks of the text, in reading order
    blocks = TextBlocks("pydoc-topics", "val", context=128)
    item = blocks[3]
    assert torch.equal(item["inputs"][1:], item["targets"][:-1]) and len(blocks) == (len(val) - 1) // 128
    assert 15 < blocks.metainfo["unigram_ppl"] < 40  # English bytes carry ~4.5 bits each


def perplexity(model: CausalTransformerLM, blocks: TextBlocks) -> float:
    metric = Perplexity()
    metric.dataset_meta = blocks.metainfo
    loader = torch.utils.data.DataLoader(blocks, batch_size=64)
    model.eval()
    with torch.no_grad():
        for batch in loader:
            metric.process(batch, model(batch["inputs"], batch["targets"], mode="predict"))
    return metric.compute_metrics(metric.results)["ppl"]


def test_an_untrained_model_is_about_as_unsure_as_the_vocabulary_is_large() -> None:
    torch.manual_seed(0)
    model = CausalTransformerLM(256, 64, dim=64, heads=2, layers=2, ffn=128, norm_first=True)
    ppl = perplexity(model, TextBlocks("pydoc-topics", "val", context=64))
    assert 256 / 2 < ppl < 256 * 2


def test_the_model_is_causal() -> None:
    torch.manual_seed(0)
    model = CausalTransformerLM(256, 16, dim=32, heads=2, layers=2, ffn=64).eval()
    tokens = torch.randint(0, 256, (1, 16))
    changed = tokens.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % 256
    with torch.no_grad():
        assert torch.allclose(model(tokens)[0, :10], model(changed)[0, :10], atol=1e-5)
        assert not torch.allclose(model(tokens)[0, 10:], model(changed)[0, 10:], atol=1e-5)


def test_inverse_sqrt_follows_fairseq_after_the_warm_up() -> None:
    from mmengine.optim.scheduler import LinearLR

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedulers = [LinearLR(optimizer, start_factor=1e-3, by_epoch=False, begin=0, end=4),
                  InverseSqrtLR(optimizer, warmup=4, begin=4)]
    lrs = []
    for _ in range(12):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        for scheduler in schedulers:
            scheduler.step()
    assert lrs[0] == pytest.approx(1e-3) and lrs[4] == pytest.approx(1.0)
    for step in range(4, 12):
        assert lrs[step] == pytest.approx(math.sqrt(4 / step), rel=1e-6)


def test_wikitext_is_read_word_level_with_the_training_vocabulary(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SEMA_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "wikitext-2"
    folder.mkdir()
    (folder / "wiki.train.tokens").write_text(" = Title = \n\n the cat sat on the mat \n")
    (folder / "wiki.valid.tokens").write_text(" the dog sat \n")
    (folder / "wiki.test.tokens").write_text(" <unk> the \n")
    job = JobSpec("lm", "wikitext2", "none", 0).resolve()
    TASK.check_data(job.preset, job.context(tmp_path, tmp_path / "work"))  # all three files there: no error
    streams = _wikitext_streams("wikitext-2", str(tmp_path))
    # vocabulary by frequency: the (2), <eos> (3 lines: 3), then alphabetical among the words seen once
    # the vocabulary by frequency, ties alphabetically: <eos> (one per line: 3), "=" and "the" (2), then once each
    # "Title", "cat", "mat", "on", "sat"; <unk> last, as the training file lacks it
    assert streams["train"].tolist() == [1, 3, 1, 0, 0, 2, 4, 7, 6, 2, 5, 0]
    assert streams["val"].tolist() == [2, 8, 7, 0] and streams["test"].tolist() == [8, 2, 0]
    assert int(streams["vocab_size"]) == 9
    assert list((tmp_path / "cache" / "datasets").glob("wikitext-2-v1-*.pt"))


def test_a_missing_wikitext_file_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "wikitext-103"
    folder.mkdir()
    (folder / "wiki.train.tokens").write_text("a\n")
    job = JobSpec("lm", "wikitext103", "none", 0).resolve()
    with pytest.raises(DatasetMissing, match=r"wikitext-103/wiki\.valid\.tokens"):
        TASK.check_data(job.preset, job.context(tmp_path, tmp_path / "work"))


@pytest.mark.parametrize("preset", sorted(TASK.presets))
def test_dry_run_builds_every_preset(preset: str, tmp_path: Path, capsys) -> None:
    assert main(["run", "--task", "lm", "--preset", preset, "--method", "sema", "--dry-run",
                 "--results-dir", str(tmp_path), "--data-root", str(tmp_path)]) == 0
    assert "CausalTransformerLM" in capsys.readouterr().out


def test_a_warm_up_longer_than_the_run_is_refused(tmp_path: Path, capsys) -> None:
    results = tmp_path / "results"
    assert main(["run", "--task", "lm", "--set", "iters=20", "--results-dir", str(results)]) != 0
    assert "lr_warmup_iters=50" in capsys.readouterr().err and not results.exists()


def val_rows(results: Path) -> list[tuple[int, str, float]]:
    (job,) = [JobDir(results, p.name) for p in results.iterdir() if p.is_dir()]
    return [(r["iter"], r["metric"], r["value"]) for r in job.metrics() if r["split"] == "val"]


@pytest.mark.slow
def test_a_short_run_beats_the_unigram_baseline_and_resumes_exactly(tmp_path: Path) -> None:
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    done = subprocess.run([sys.executable, "-m", "sema_suite.cli", *small_args(clean)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (job,) = [JobDir(clean, p.name) for p in clean.iterdir() if p.is_dir()]
    rows = job.metrics()
    last = {(r["split"], r["metric"]): r["value"] for r in rows if r["iter"] == 150}
    assert last[("val", "ppl")] < last[("val", "ppl_unigram")] / 1.3
    assert last[("test", "ppl")] < last[("test", "ppl_unigram")] / 1.3
    assert last[("val", "loss")] == pytest.approx(math.log(last[("val", "ppl")]))
    status = job.status()
    assert status["tokens_per_s"] > 0 and status["averaging"]["switches"] >= 1

    proc = subprocess.Popen([sys.executable, "-m", "sema_suite.cli", *small_args(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and (not list(killed.glob("*/metrics.csv")) or len(val_rows(killed)) < 3):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 3 <= len(val_rows(killed)) < 9
    again = subprocess.run([sys.executable, "-m", "sema_suite.cli", *small_args(killed)], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert val_rows(killed) == val_rows(clean)


def test_the_wikitext_model_drops_out_as_fairseqs_transformer_lm(tmp_path: Path) -> None:
    """Dropout 0.1 on the embeddings and residual branches, 0 on attention probabilities and inside the FFN,
    xavier-uniform projections with zero biases; the tiny preset keeps torch's dropout everywhere."""
    from mmengine.registry import MODELS

    from sema_suite.running.config import build_config
    from sema_tasks.lm import modules  # noqa: F401

    def model(preset: str):
        job = JobSpec("lm", preset, "none", 0, (("layers", 1), ("dim", 32), ("heads", 2), ("ffn", 64))).resolve()
        cfg = build_config(job, job.context(tmp_path, tmp_path / "work", dry_run=True), tmp_path)
        return MODELS.build(cfg.model)

    block = model("wikitext2").blocks.layers[0]
    assert (block.dropout1.p, block.dropout2.p, block.self_attn.dropout, block.dropout.p) == (0.3, 0.3, 0.0, 0.0)
    assert block.linear1.bias.abs().max() == 0 and block.linear1.weight.abs().max() <= (6 / (32 + 64)) ** 0.5
    tiny = model("tiny").blocks.layers[0]
    assert tiny.self_attn.dropout == tiny.dropout.p == tiny.dropout1.p


def test_sliding_windows_score_every_token_once_with_context() -> None:
    """fairseq's --context-window: each target scored once, the tail included, by a window that gives it up to
    `window` tokens of context; the model's predict scores exactly the targets it is given."""
    from sema_tasks.lm.modules import CausalTransformerLM, SlidingWindows, TextBlocks
    from sema_tasks.lm.text import load_split

    stream, _ = load_split("pydoc-topics", "test")
    windows = SlidingWindows("pydoc-topics", "test", context=64, window=48)
    scored = torch.zeros(len(stream) - 1, dtype=torch.long)
    for i in range(len(windows)):
        item = windows[i]
        start = windows.starts[i]
        scored[start + item["score_from"]: start + 64] += 1
        assert item["score_from"] == 0 or item["score_from"] >= 48  # at least `window` tokens of context
    assert bool((scored == 1).all())  # every target, once
    assert len(TextBlocks("pydoc-topics", "test", 64)) * 64 < len(stream) - 1  # blocks drop the tail

    torch.manual_seed(0)
    model = CausalTransformerLM(256, 64, 16, 2, 1, 32).eval()
    batch = [windows[i] for i in (0, 1)]
    inputs, targets = torch.stack([b["inputs"] for b in batch]), torch.stack([b["targets"] for b in batch])
    first = torch.tensor([b["score_from"] for b in batch])
    with torch.no_grad():
        out = model(inputs, targets, mode="predict", score_from=first)
        logprobs = torch.log_softmax(model(inputs), -1).gather(-1, targets[..., None])[..., 0]
    assert [o["tokens"] for o in out] == [64, 64 - int(first[1])]
    assert torch.allclose(out[1]["nll"], -logprobs[1, int(first[1]):].sum(), atol=1e-4)
    job = JobSpec("lm", "wikitext2", "none", 0, (("context", 64), ("eval_context_window", 64))).resolve()
    with pytest.raises(Exception, match="eval_context_window=64 must be in"):
        TASK.check_data(job.preset, job.context(Path("/nonexistent"), Path("/nonexistent/work")))
