"""Make mmengine 0.10.7 resume under torch >= 2.6.

torch 2.6 made ``torch.load(weights_only=True)`` the default; mmengine calls ``torch.load`` without the
argument, and its checkpoints hold pickled objects (message hub buffers, numpy arrays), so resuming fails
with ``UnpicklingError: Weights only load failed``. We replace mmengine's local-file loader with one that
trusts the files *this suite wrote* -- under a job's work dir -- and keeps torch's safe default for every
other checkpoint a user points it at.
"""

from __future__ import annotations

from pathlib import Path

import torch
from mmengine.runner.checkpoint import CheckpointLoader

_trusted: set[Path] = set()


def trust_checkpoints_under(directory: Path) -> None:
    """Allow full unpickling of checkpoints inside ``directory`` (one the suite itself writes to)."""
    _trusted.add(Path(directory).resolve())


def _is_trusted(path: Path) -> bool:
    return any(path.is_relative_to(root) for root in _trusted)


@CheckpointLoader.register_scheme(prefixes="", force=True)
def load_from_local(filename: str, map_location=None):
    path = Path(filename).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{filename} can not be found.")
    return torch.load(path, map_location=map_location, weights_only=not _is_trusted(path.resolve()))
