"""BatchNorm statistics recomputed for a given set of weights: SWA's ``update_bn`` before its average is evaluated,
and REPAIR-style re-estimation at each point of an interpolation (``suite analyze``, ``interpolation_bn=1``).

One pass over the training data through the model's own training forward (data preprocessor, loss mode), with
``torch.optim.swa_utils.update_bn`` doing the re-estimation, in order, without workers and with the random state
restored afterwards, so measuring never changes training.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import update_bn


class LossForward(nn.Module):
    """An mmengine model seen as ``update_bn`` sees a model: ``forward(batch)`` runs the training forward (data
    preprocessor, then loss mode), whatever the task's batches hold."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any) -> Any:
        return self.model._run_forward(self.model.data_preprocessor(batch, True), mode="loss")


@contextlib.contextmanager
def random_state_kept() -> Iterator[None]:
    """Python's, numpy's and torch's random states as they were before the block (data augmentation draws)."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def recompute_bn(model: nn.Module, loader: torch.utils.data.DataLoader) -> None:
    """``torch.optim.swa_utils.update_bn`` over one pass of ``loader``'s data, in order and without workers.

    BatchNorm layers the model keeps frozen in training mode (``norm_eval``) keep their statistics: ``update_bn``
    would reset them and, as they stay in eval mode, never re-estimate them."""
    was_training = model.training
    model.train()
    frozen = {name: {k: v.clone() for k, v in m.state_dict().items()} for name, m in model.named_modules()
              if isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.training}
    model.train(was_training)
    size = loader.batch_size or getattr(loader.batch_sampler, "batch_size", 1)
    ordered = torch.utils.data.DataLoader(loader.dataset, batch_size=size, collate_fn=loader.collate_fn, num_workers=0)
    with random_state_kept():
        update_bn(((batch,) for batch in ordered), LossForward(model))  # update_bn unwraps a tuple's first item
    modules = dict(model.named_modules())
    for name, state in frozen.items():
        modules[name].load_state_dict(state)
