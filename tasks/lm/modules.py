"""mmengine components of the language-modelling task: token streams cut into blocks, a decoder-only
Transformer, perplexity, and fairseq's inverse-square-root learning-rate schedule."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import INF, _ParamScheduler
from mmengine.registry import DATASETS, METRICS, MODELS, PARAM_SCHEDULERS
from torch import nn
from torch.utils.data import Dataset

from sema_tasks.lm.text import load_split


@DATASETS.register_module()
class TextBlocks(Dataset):
    """A split's token stream cut into consecutive blocks of ``context`` inputs and their next tokens (fairseq's
    ``--sample-break-mode none``); the last partial block is dropped.

    ``metainfo["unigram_ppl"]``: the perplexity, on exactly the targets of these blocks, of the training
    split's token frequencies (add-one smoothed) -- the baseline a model must beat.
    """

    def __init__(self, corpus: str, split: str, context: int, root: str = "", max_tokens: int | None = None) -> None:
        stream, train_counts = load_split(corpus, split, root)
        if max_tokens is not None:  # the start of the split (the long preset's small training text)
            stream = stream[: max_tokens + 1]
        self.context = context
        self.count = (len(stream) - 1) // context
        if self.count < 1:
            raise ValueError(f"the {split} split of {corpus} has {len(stream)} tokens, fewer than one block of "
                             f"{context}: lower --set context=...")
        self.stream = stream[: self.count * context + 1]
        logprob = (train_counts.double() + 1).div(train_counts.sum() + len(train_counts)).log()
        self.metainfo = {"vocab_size": len(train_counts),
                         "unigram_ppl": math.exp(-logprob[self.stream[1:]].mean().item())}

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        block = self.stream[index * self.context: (index + 1) * self.context + 1]
        return {"inputs": block[:-1], "targets": block[1:]}


@DATASETS.register_module()
class SlidingWindows(Dataset):
    """A split scored token by token with up to ``window`` tokens of context, as fairseq's ``eval_lm
    --context-window`` scores its published perplexities: windows of ``context`` inputs every ``context - window``
    tokens, each scoring only the targets the window before did not (the first scores all of its own), and the
    last window ending at the stream's end -- every target is scored exactly once, the final partial block
    included. (A WikiText stream starts with the ``<eos>`` of the file's blank first line, so its first word is
    a target too.)
    """

    def __init__(self, corpus: str, split: str, context: int, window: int, root: str = "") -> None:
        if not 0 <= window < context:
            raise ValueError(f"the context window must be in [0, context={context}), got {window}")
        stream, train_counts = load_split(corpus, split, root)
        targets = len(stream) - 1
        if targets < context:
            raise ValueError(f"the {split} split of {corpus} has {targets} targets, fewer than one window of {context}")
        self.stream, self.context = stream, context
        self.starts = list(range(0, targets - context + 1, context - window))
        if self.starts[-1] + context < targets:
            self.starts.append(targets - context)
        ends = [start + context for start in self.starts]
        self.score_from = [0] + [previous - start for previous, start in zip(ends, self.starts[1:])]
        logprob = (train_counts.double() + 1).div(train_counts.sum() + len(train_counts)).log()
        self.metainfo = {"vocab_size": len(train_counts), "unigram_ppl": math.exp(-logprob[stream[1:]].mean().item())}

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> dict:
        start = self.starts[index]
        block = self.stream[start: start + self.context + 1]
        return {"inputs": block[:-1], "targets": block[1:], "score_from": self.score_from[index]}


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """The fixed position encodings of Vaswani et al. (fairseq's ``transformer_lm`` default)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10_000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


@MODELS.register_module()
class CausalTransformerLM(BaseModel):
    """A decoder-only Transformer (torch's ``TransformerEncoder`` with a causal mask, which runs
    ``scaled_dot_product_attention``): scaled token embeddings plus sinusoidal positions, tied input and
    output embeddings, as fairseq's ``transformer_lm``.

    ``mode="loss"`` returns the mean cross-entropy per token and the batch's token count (``tokens``, which
    the results hook turns into ``tokens_per_s``); ``mode="predict"`` each sequence's summed negative
    log-likelihood, left on the device for :class:`Perplexity`.
    """

    def __init__(self, vocab_size: int, context: int, dim: int, heads: int, layers: int, ffn: int,
                 dropout: float = 0.0, norm_first: bool = False, attention_dropout: float | None = None,
                 activation_dropout: float | None = None, xavier_init: bool = False) -> None:
        """``dropout`` acts on the embeddings and each residual branch; ``attention_dropout`` on the attention
        probabilities and ``activation_dropout`` inside the FFN (None: ``dropout``, as torch's layer does;
        fairseq's ``transformer_lm`` sets both to 0). ``xavier_init``: the attention and FFN projections start
        xavier-uniform with zero biases, as fairseq's."""
        super().__init__()
        self.scale = math.sqrt(dim)
        self.embed = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.embed.weight, std=dim ** -0.5)
        self.register_buffer("positions", sinusoidal_positions(context, dim), persistent=False)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(dim, heads, ffn, dropout, batch_first=True, norm_first=norm_first)
        layer.self_attn.dropout = dropout if attention_dropout is None else attention_dropout
        layer.dropout = nn.Dropout(dropout if activation_dropout is None else activation_dropout)
        self.blocks = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(dim) if norm_first else None,
                                            enable_nested_tensor=False)
        if xavier_init:
            for block in self.blocks.layers:
                for linear in (block.self_attn.out_proj, block.linear1, block.linear2):
                    nn.init.xavier_uniform_(linear.weight)
                    nn.init.zeros_(linear.bias)
                nn.init.xavier_uniform_(block.self_attn.in_proj_weight)
                nn.init.zeros_(block.self_attn.in_proj_bias)
        self.head = nn.Linear(dim, vocab_size, bias=False)
        self.head.weight = self.embed.weight

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        length = inputs.shape[1]
        x = self.dropout(self.embed(inputs) * self.scale + self.positions[:length])
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=inputs.device, dtype=x.dtype)
        return self.head(self.blocks(x, mask=mask, is_causal=True))

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor | None = None, mode: str = "tensor",
                score_from: torch.Tensor | None = None):
        """``score_from`` (predict, :class:`SlidingWindows`): per sequence, the first target position scored."""
        logits = self.logits(inputs)
        if mode == "tensor":
            return logits
        nll = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none")
        if mode == "loss":
            return {"loss": nll.mean(), "tokens": torch.tensor(float(targets.numel()))}
        nll = nll.view_as(targets)
        if score_from is None:
            return [{"nll": value, "tokens": targets.shape[1]} for value in nll.sum(dim=1).detach()]
        scored = torch.arange(targets.shape[1], device=nll.device)[None, :] >= score_from.to(nll.device)[:, None]
        per_sequence = (nll * scored).sum(dim=1).detach()
        return [{"nll": value, "tokens": int(targets.shape[1] - first)} for value, first in
                zip(per_sequence, score_from.tolist())]


@METRICS.register_module()
class Perplexity(BaseMetric):
    """``ppl`` (exp of the mean negative log-likelihood per token), ``loss`` (that mean, nats per token) and
    ``ppl_unigram`` (the dataset's unigram baseline, see :class:`TextBlocks`). Sums stay on the device until
    :meth:`compute_metrics`: no host sync per sequence."""

    default_prefix = "lm"

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        self.results.append((torch.stack([s["nll"] for s in data_samples]).sum(), sum(s["tokens"] for s in data_samples)))

    def compute_metrics(self, results: list) -> dict[str, float]:
        nll = torch.stack([r[0].double().cpu() for r in results]).sum().item()
        tokens = sum(r[1] for r in results)
        loss = nll / tokens
        return {"ppl": math.exp(loss), "loss": loss, "ppl_unigram": self.dataset_meta["unigram_ppl"]}


@PARAM_SCHEDULERS.register_module()
class InverseSqrtLR(LRSchedulerMixin, _ParamScheduler):
    """fairseq's ``inverse_sqrt`` decay after a warm-up of ``warmup`` steps: from step ``begin`` (the end of
    the warm-up, chained after a ``LinearLR``) the learning rate is ``lr * sqrt(warmup / (warmup + k))``
    after ``k`` more steps."""

    def __init__(self, optimizer, warmup: int, begin: int = 0, end: int = INF, last_step: int = -1,
                 by_epoch: bool = False, verbose: bool = False) -> None:
        self.warmup = max(warmup, 1)
        super().__init__(optimizer, begin=begin, end=end, last_step=last_step, by_epoch=by_epoch, verbose=verbose)

    def _get_value(self) -> list[float]:
        k = self.last_step
        factor = 1.0 if k == 0 else math.sqrt((self.warmup + k - 1) / (self.warmup + k))
        return [group[self.param_name] * factor for group in self.optimizer.param_groups]
