"""Language modelling: perplexity of a decoder-only Transformer -- the paper's language experiments (fairseq).

Splits (see :mod:`sema_tasks.lm.text`): ``tiny`` holds 5% + 5% of the help-topic text out for ``val`` and
``test``; the WikiText presets use the release's own ``wiki.valid.tokens`` (``val``) and ``wiki.test.tokens``
(``test``). Every split is scored on consecutive, non-overlapping blocks of ``context`` tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sema_suite.data import dataloader, evaluation_config
from sema_suite.errors import BadOverride, DatasetMissing
from sema_suite.knobs import FLAG, FRACTION, POSITIVE, Rule, count
from sema_suite.optim import optimizer_config
from sema_suite.task import BuildContext, Metric, Preset, Task

# fairseq's examples/language_model recipe for WikiText-103 (``--arch transformer_lm``: 6 layers, 512 wide, 8
# heads, FFN 2048, post-norm, tied embeddings, dropout 0.1 with attention and activation dropout 0, xavier-uniform
# projections; Adam (0.9, 0.98), weight decay 0.01, lr 5e-4, inverse-sqrt after 4,000 warm-up updates from 1e-7;
# 512-token blocks). The recipe "assumes 2 GPUs": 2 x 2,048 tokens x update-freq 16 = 65,536 tokens per update,
# 50,000 updates, ~3.3B tokens. One suite job is one GPU without gradient accumulation: a step here is 16 blocks
# (8,192 tokens, an eighth of the recipe's update) at the recipe's peak learning rate, 200,000 steps (1.64B
# tokens, half the recipe's), the warm-up 16,000 steps. The averager sees every optimizer step. The README's
# recipe table states the difference.
_FAIRSEQ_LM = {"context": 512, "dim": 512, "heads": 8, "layers": 6, "ffn": 2048, "dropout": 0.1,
               "norm_first": False, "batch_size": 16, "eval_batch_size": 16, "lr": 5e-4, "betas": [0.9, 0.98],
               "weight_decay": 0.01, "lr_warmup_iters": 16_000, "warmup_init_lr": 1e-7, "schedule": "inverse_sqrt",
               "grad_clip": 0.0, "num_workers": None, "attention_dropout": 0.0, "activation_dropout": 0.0,
               "xavier_init": True, "eval_context_window": 400}
# the vocabulary of the standard releases (every training word and <eos>): the model's size in a --dry-run,
# which reads no data; a real run counts the words of the training file it is given.
_RELEASE_VOCAB = {"wikitext-103": 267_736, "wikitext-2": 33_278}


class LanguageModelling(Task):
    name = "lm"
    description = "language modelling, decoder-only Transformer (CPython's help text offline; WikiText-2/103)"
    metrics = (
        Metric("ppl", higher_is_better=False, primary=True, description="perplexity per token"),
        Metric("loss", higher_is_better=False, description="negative log-likelihood, nats per token"),
        Metric("ppl_unigram", higher_is_better=False,
               description="perplexity of the training split's token frequencies on the same tokens: the baseline"),
    )
    by_epoch = False
    rules = {**{key: count() for key in ("context", "dim", "heads", "layers", "ffn", "train_tokens")},
             "eval_context_window": count(0), "norm_first": FLAG, "xavier_init": FLAG, "warmup_init_lr": POSITIVE,
             "schedule": Rule(str, choices=("cosine", "inverse_sqrt")), "attention_dropout": FRACTION,
             "activation_dropout": FRACTION}
    presets = {
        # Byte-level, 128-byte context, 2 pre-norm layers 128 wide (0.4M parameters), AdamW 3e-3 with 50
        # warm-up steps and a cosine decay over 600 steps of 32 blocks (4,096 bytes): ~6 passes over the
        # 413 kB of training text, scored on val every 100 steps. Averaging scaled to the run as in the other
        # tiny presets: decay 0.98 (a horizon of ~50 steps, half a pass), switching after every pass (101 steps).
        "tiny": Preset(
            name="tiny",
            description="CPython's help topics, byte-level, 2-layer Transformer, 600 iterations (CPU, offline)",
            dataset="pydoc-topics",
            model="transformer-lm-tiny",
            params={"iters": 600, "val_interval": 100, "context": 128, "dim": 128, "heads": 4, "layers": 2,
                    "ffn": 512, "dropout": 0.0, "norm_first": True, "batch_size": 32, "eval_batch_size": 64,
                    "lr": 3e-3, "betas": [0.9, 0.98], "weight_decay": 0.01, "lr_warmup_iters": 50,
                    "warmup_init_lr": 3e-6, "schedule": "cosine", "grad_clip": 1.0, "num_workers": 0,
                    "optimizer": "adamw"},
            averaging={"decay": 0.98},
            optimizers={"sgd": {"lr": 0.3, "weight_decay": 0.0, "momentum": 0.9}},
            offline=True,
        ),
        # One pass over WikiText-103 is ~12,600 steps; 16 passes in all. Averaging: decay 0.9998 (a horizon of
        # 5,000 steps, 0.4 of a pass), warmed up over the first pass, switching after every pass from the second.
        "wikitext103": Preset(
            name="wikitext103",
            description="WikiText-103 word-level, fairseq transformer_lm (6x512), 200k iterations (GPU)",
            dataset="wikitext-103",
            model="transformer-lm-fairseq",
            params={**_FAIRSEQ_LM, "iters": 200_000, "val_interval": 10_000},
            averaging={"decay": 0.9998, "ema_warmup_epochs": 1, "ema_warmup_factor": 0.9, "switch_start": 2},
        ),
        # The paper's regime on a CPU: the first 40,960 training bytes (640 blocks of 64, 40 steps of 16 a pass)
        # for 100 passes (4,000 iterations, 100 switches), a 2-layer Transformer 64 wide with dropout 0.1, scored
        # on the whole val split every 2 passes. Decay 0.8 lags ~4 steps, a tenth of a pass.
        "long": Preset(
            name="long",
            description="CPython's help topics (first 40 kB), byte-level, 2-layer Transformer 64 wide, 100 passes of "
                        "40 iterations (CPU, offline)",
            dataset="pydoc-topics",
            model="transformer-lm-tiny",
            params={"iters": 4000, "val_interval": 80, "context": 64, "train_tokens": 40_960, "dim": 64, "heads": 2,
                    "layers": 2, "ffn": 256, "dropout": 0.1, "norm_first": True, "batch_size": 16,
                    "eval_batch_size": 64, "optimizer": "adamw", "lr": 3e-3, "betas": [0.9, 0.98],
                    "weight_decay": 0.01, "momentum": 0.9, "lr_warmup_iters": 100, "warmup_init_lr": 3e-6,
                    "schedule": "cosine", "grad_clip": 1.0, "num_workers": 0},
            averaging={"decay": 0.8},
            optimizers={"adam": {"lr": 3e-3, "weight_decay": 0.0}, "sgd": {"lr": 0.3, "weight_decay": 0.0, "momentum": 0.9}},
            offline=True,
        ),
        # The same model and optimizer on WikiText-2 (2.1M training tokens, ~255 steps a pass) for a quick GPU
        # run: dropout 0.3 against over-fitting, 10,000 steps (~39 passes), warm-up 1,000. Decay 0.99 (a
        # horizon of 100 steps, 0.4 of a pass), warmed up over the first pass, switching after every pass from
        # the second.
        "wikitext2": Preset(
            name="wikitext2",
            description="WikiText-2 word-level, fairseq transformer_lm (6x512), 10k iterations (GPU, quick)",
            dataset="wikitext-2",
            model="transformer-lm-fairseq",
            params={**_FAIRSEQ_LM, "dropout": 0.3, "lr_warmup_iters": 1_000, "iters": 10_000, "val_interval": 500},
            averaging={"decay": 0.99, "ema_warmup_epochs": 1, "ema_warmup_factor": 0.9, "switch_start": 2},
        ),
    }

    def check_data(self, preset: Preset, ctx: BuildContext) -> None:
        from sema_tasks.lm.text import WIKITEXT_FILES, wikitext_folder

        p = ctx.params
        if not 0 <= p.get("eval_context_window", 0) < p["context"]:
            raise BadOverride(f"eval_context_window={p['eval_context_window']} must be in [0, context={p['context']}): "
                              "the tokens of context a scored token may have (0: blocks, none shared)")
        if p["lr_warmup_iters"] >= p["iters"]:
            raise BadOverride(f"lr_warmup_iters={p['lr_warmup_iters']} leaves no training after the warm-up of a run of "
                              f"iters={p['iters']}: set lr_warmup_iters below iters")
        if preset.dataset in _RELEASE_VOCAB:
            folder = wikitext_folder(preset.dataset, ctx.data_root)
            missing = [name for name in WIKITEXT_FILES.values() if not (folder / name).is_file()]
            if missing:
                raise DatasetMissing(preset.dataset, Path(ctx.data_root),
                                     "\n".join(f"  {folder / name}" for name in WIKITEXT_FILES.values())
                                     + "\n  (the word-level release, not the -raw one)")

    def build_config(self, preset: Preset, ctx: BuildContext) -> dict[str, Any]:
        from sema_tasks.lm import modules  # noqa: F401  (registers the components)
        from sema_tasks.lm.text import vocab_size

        p = ctx.params
        corpus = preset.dataset
        if ctx.dry_run and corpus in _RELEASE_VOCAB:
            vocab = _RELEASE_VOCAB[corpus]
        else:
            vocab = vocab_size(corpus, str(ctx.data_root))

        def loader(split: str) -> dict[str, Any]:
            train = split == "train"
            dataset = {"type": "TextBlocks", "corpus": corpus, "split": split, "context": p["context"],
                       "root": str(ctx.data_root)}
            if train and p.get("train_tokens"):
                dataset["max_tokens"] = p["train_tokens"]
            if split == "test" and p.get("eval_context_window"):  # every token scored with up to that much context
                dataset = {**dataset, "type": "SlidingWindows", "window": p["eval_context_window"]}
            return dataloader(dataset, p, train, batch_size=p["batch_size" if train else "eval_batch_size"])

        warmup = {"type": "LinearLR", "start_factor": p["warmup_init_lr"] / p["lr"], "by_epoch": False,
                  "begin": 0, "end": p["lr_warmup_iters"]}
        if p["schedule"] == "inverse_sqrt":
            decay = {"type": "InverseSqrtLR", "warmup": p["lr_warmup_iters"], "begin": p["lr_warmup_iters"]}
        else:
            decay = {"type": "CosineAnnealingLR", "by_epoch": False, "begin": p["lr_warmup_iters"], "end": p["iters"],
                     "T_max": p["iters"] - p["lr_warmup_iters"]}
        optim = {"type": "OptimWrapper", "optimizer": optimizer_config(p, "adamw")}
        if p["grad_clip"]:
            optim["clip_grad"] = {"max_norm": p["grad_clip"]}
        return {
            "model": {"type": "CausalTransformerLM", "vocab_size": vocab, "context": p["context"], "dim": p["dim"],
                      "heads": p["heads"], "layers": p["layers"], "ffn": p["ffn"], "dropout": p["dropout"],
                      "norm_first": p["norm_first"],
                      **{key: p[key] for key in ("attention_dropout", "activation_dropout", "xavier_init") if key in p}},
            "train_dataloader": loader("train"),
            **evaluation_config(p, loader, {"type": "Perplexity"}),
            "train_cfg": {"type": "IterBasedTrainLoop", "max_iters": p["iters"], "val_interval": p["val_interval"]},
            "optim_wrapper": optim,
            "param_scheduler": [warmup, decay],
        }


TASK = LanguageModelling()
