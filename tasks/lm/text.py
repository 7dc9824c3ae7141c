"""The language-modelling corpora as token streams, split three ways, with the training split's token counts.

- ``pydoc-topics`` (the tiny preset, offline): the English prose of CPython's bundled help topics
  (``pydoc_data.topics``, ~466 kB), byte-level (256 tokens). The text is cut into 2,048-byte chunks and a
  fixed permutation (seed 0) holds 5% of them out for ``val`` and 5% for ``test``; each split keeps its
  chunks in reading order. The text is the running Python's: its version is in every job's ``job.json``.
- ``wikitext-103`` / ``wikitext-2`` (from ``--data-root``): the standard word-level release
  (``wiki.{train,valid,test}.tokens``), each line's whitespace-separated words then ``<eos>`` (as PyTorch's
  word-language-model example and fairseq do); the vocabulary is every word of the training file, most
  frequent first (ties alphabetically), and ``<unk>`` for words the training file lacks. The encoded streams are cached once under the suite's cache directory.
"""

from __future__ import annotations

from array import array
from collections import Counter
from functools import cache
from pathlib import Path

import torch

from sema_suite.data import SPLIT_SEED, cache_dir

CHUNK_BYTES = 2048
HELD_OUT = {"val": 0.05, "test": 0.05}
WIKITEXT_FILES = {"train": "wiki.train.tokens", "val": "wiki.valid.tokens", "test": "wiki.test.tokens"}
EOS, UNK = "<eos>", "<unk>"
VERSION = 1  # bump when the encoding changes: the cache file name carries it


def pydoc_text() -> bytes:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name] for name in sorted(topics)).encode("utf-8")


def chunk_splits(chunks: int) -> dict[str, list[int]]:
    """Chunk indices of each split, each in reading order: a fixed permutation, the first 5% val, the next test."""
    order = torch.randperm(chunks, generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
    sizes = {split: max(1, round(fraction * chunks)) for split, fraction in HELD_OUT.items()}
    val, test = order[: sizes["val"]], order[sizes["val"]: sizes["val"] + sizes["test"]]
    train = order[sizes["val"] + sizes["test"]:]
    return {split: sorted(indices) for split, indices in (("train", train), ("val", val), ("test", test))}


@cache
def _pydoc_streams() -> dict[str, torch.Tensor]:
    data = torch.frombuffer(bytearray(pydoc_text()), dtype=torch.uint8).long()
    chunks = data.split(CHUNK_BYTES)
    return {split: torch.cat([chunks[i] for i in indices]) for split, indices in chunk_splits(len(chunks)).items()}


def wikitext_folder(corpus: str, root: str | Path) -> Path:
    return Path(root) / corpus


def _read_words(path: Path):
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            yield from line.split()
            yield EOS


@cache
def _wikitext_streams(corpus: str, root: str) -> dict[str, torch.Tensor]:
    folder = wikitext_folder(corpus, root)
    train = folder / WIKITEXT_FILES["train"]
    cached = cache_dir() / "datasets" / f"{corpus}-v{VERSION}-{train.stat().st_size}.pt"
    if cached.exists():
        return torch.load(cached, weights_only=True)
    counts = Counter(_read_words(train))
    vocab = {word: index for index, (word, _) in enumerate(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))}
    unk = vocab.setdefault(UNK, len(vocab))  # WikiText's training file has <unk>; another corpus gets it last
    streams = {split: torch.tensor(array("i", (vocab.get(w, unk) for w in _read_words(folder / name))), dtype=torch.long)
               for split, name in WIKITEXT_FILES.items()}
    streams["vocab_size"] = torch.tensor(len(vocab))
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f".{cached.name}.tmp")
    torch.save(streams, tmp)
    tmp.replace(cached)  # concurrent jobs write the same bytes: the last rename wins
    return streams


def vocab_size(corpus: str, root: str = "") -> int:
    return 256 if corpus == "pydoc-topics" else int(_wikitext_streams(corpus, root)["vocab_size"])


def load_split(corpus: str, split: str, root: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    """(the split's token stream, the training split's count of each token)."""
    streams = _pydoc_streams() if corpus == "pydoc-topics" else _wikitext_streams(corpus, str(root))
    counts = torch.bincount(streams["train"], minlength=vocab_size(corpus, str(root)))
    return streams[split], counts
