"""Weight averaging (EMA) and the Switch-EMA copy-back, in plain PyTorch.

This module imports nothing but torch, so it works in any training loop::

    avg = WeightAverager(model, decay=0.999)
    for batch in data:
        loss(model, batch).backward(); optimizer.step()
        avg.update(model)               # after optimizer.step(); the first update copies
    with avg.swapped(model):            # evaluate the averaged weights ...
        evaluate(model)                 # ... then the trained ones come back bit-exactly
    avg.copy_to(model)                  # SEMA's switch: trained weights <- averaged weights

Conventions (timm / ema-pytorch): ``avg <- d * avg + (1 - d) * w`` with ``d`` close to 1. Floating-point
parameters and buffers (BatchNorm statistics) are averaged; integer buffers are copied. Low-precision
parameters (fp16/bf16) are averaged in a float32 copy, because a 1e-3 step vanishes in bf16's 8-bit
mantissa. The update is one fused ``torch._foreach_lerp_`` per (device, dtype) group.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

_LOW_PRECISION = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class DecayWarmup:
    """Linear warm-up of the decay: from ``start_factor * decay`` to ``decay`` over ``steps`` updates.

    Early weights are far from the optimum, so a full-strength average would drag them along for too long.
    """

    steps: int
    start_factor: float = 0.9

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"warm-up steps must be >= 0, got {self.steps}")
        if not 0.0 <= self.start_factor <= 1.0:
            raise ValueError(f"warm-up start_factor must be in [0, 1], got {self.start_factor}")

    def factor(self, position: int) -> float:
        if self.steps == 0 or position >= self.steps:
            return 1.0
        return self.start_factor + (1.0 - self.start_factor) * position / self.steps


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module under DDP / DataParallel / mmengine wrappers (they all keep it as ``.module``)."""
    while isinstance(getattr(model, "module", None), nn.Module):
        model = model.module
    return model


@dataclass(frozen=True)
class _Slot:
    """Where a model keeps one tensor: a module's parameter or buffer of a given name."""

    owner: nn.Module
    attr: str
    parameter: bool

    @classmethod
    def of(cls, module: nn.Module, name: str) -> _Slot:
        path, _, attr = name.rpartition(".")
        owner = module.get_submodule(path)
        return cls(owner, attr, attr in owner._parameters)

    def get(self) -> torch.Tensor:
        return (self.owner._parameters if self.parameter else self.owner._buffers)[self.attr]


@dataclass
class _Group:
    """Averaged tensors that share (device, dtype), so one fused kernel updates them all."""

    names: list[str]
    averaged: list[torch.Tensor]


class WeightAverager:
    """An exponential moving average of a model's weights, with SEMA's copy-back.

    Args:
        model: the model being trained (wrappers such as DDP are unwrapped).
        decay: ``d`` in ``avg <- d * avg + (1 - d) * w``; close to 1.
        warmup: optional linear warm-up of the decay (a :class:`DecayWarmup` or a number of updates).
        average_buffers: average floating-point buffers too (BatchNorm statistics); otherwise copy them.
        update_interval: average once every this many :meth:`update` calls (optimizer steps).
        exclude: name prefixes left out entirely (e.g. an SSL method's momentum target network).
    """

    def __init__(
        self,
        model: nn.Module,
        decay: float = 0.999,
        warmup: DecayWarmup | int | None = None,
        average_buffers: bool = True,
        update_interval: int = 1,
        exclude: Sequence[str] = (),
    ) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1] (close to 1, e.g. 0.999), got {decay}")
        if update_interval < 1:
            raise ValueError(f"update_interval must be >= 1, got {update_interval}")
        self.decay = decay
        self.warmup = DecayWarmup(warmup) if isinstance(warmup, int) else warmup
        self.average_buffers = average_buffers
        self.update_interval = update_interval
        self.exclude = tuple(exclude)
        self.num_calls = 0  # update() calls, i.e. optimizer steps seen
        self.num_updates = 0  # averaging updates made (the first one copies)

        module = unwrap_model(model)
        param_names = {name for name, _ in module.named_parameters()}
        averaged: dict[tuple[torch.device, torch.dtype], _Group] = {}
        copied: dict[str, torch.Tensor] = {}
        for name, tensor in self._tensors(module):
            if tensor.is_floating_point() and (self.average_buffers or name in param_names):
                dtype = torch.float32 if tensor.dtype in _LOW_PRECISION else tensor.dtype
                group = averaged.setdefault((tensor.device, dtype), _Group([], []))
                group.names.append(name)
                group.averaged.append(tensor.detach().to(dtype=dtype, copy=True))
            else:
                copied[name] = tensor.detach().clone()
        self._groups = list(averaged.values())
        self._copied = copied
        self.aliases = self._alias_names(module)
        self._slot_model: weakref.ref[nn.Module] | None = None
        self._slots: tuple[list[list[_Slot]], list[_Slot]] = ([], [])

    # -- what is averaged ---------------------------------------------------------------------------------

    def _tensors(self, module: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
        for name, tensor in (*module.named_parameters(), *module.named_buffers()):
            if not name.startswith(self.exclude):
                yield name, tensor

    def _alias_names(self, module: nn.Module) -> dict[str, str]:
        """Second names of a tensor (tied weights: an LM's ``head.weight`` is its ``embed.weight``) -> the name
        it is averaged under, so everything reported or saved gives every alias the average."""
        first: dict[int, str] = {}
        aliases = {}
        for name, tensor in (*module.named_parameters(remove_duplicate=False),
                             *module.named_buffers(remove_duplicate=False)):
            if name.startswith(self.exclude):
                continue
            if id(tensor) in first and first[id(tensor)] != name:
                aliases[name] = first[id(tensor)]
            first.setdefault(id(tensor), name)
        return aliases

    def _sources(self, model: nn.Module) -> tuple[list[list[torch.Tensor]], list[torch.Tensor]]:
        """The model's current tensors in the order of the averaged ones.

        Walking ``named_parameters()`` costs ~10% of a ResNet-50 update on CPU, so where each tensor lives (its
        module and attribute) is resolved once per model object; the tensors themselves are fetched from there
        at every call, so the average follows ``model.to(...)`` and ``load_state_dict(..., assign=True)``, which
        replace them.
        """
        module = unwrap_model(model)
        if self._slot_model is None or self._slot_model() is not module:
            self._slots = ([[_Slot.of(module, n) for n in g.names] for g in self._groups],
                           [_Slot.of(module, n) for n in self._copied])
            self._slot_model = weakref.ref(module)
        grouped, copied = self._slots
        return [[slot.get() for slot in slots] for slots in grouped], [slot.get() for slot in copied]

    @staticmethod
    def _follow(group: _Group, current: list[torch.Tensor]) -> None:
        """Move the group's averages to the model's device: the average follows a model moved after it was built."""
        if current[0].device != group.averaged[0].device:
            group.averaged = [t.to(current[0].device) for t in group.averaged]

    def _aligned(self, group: _Group, current: list[torch.Tensor]) -> list[torch.Tensor]:
        """``current`` on the group's device and in its dtype (a group may hold fp32 and fp16 parameters, in any
        order: fp16 ones are averaged in float32)."""
        self._follow(group, current)
        dtype = group.averaged[0].dtype
        return [t if t.dtype == dtype else t.to(dtype) for t in current]

    # -- the method ---------------------------------------------------------------------------------------

    def current_decay(self) -> float:
        """``d_t``: the configured decay scaled by the warm-up at the current update."""
        warm = self.warmup.factor(max(self.num_updates - 1, 0)) if self.warmup else 1.0
        return self.decay * warm

    @torch.no_grad()
    def update(self, model: nn.Module) -> bool:
        """Fold the model's current weights into the average; call after every optimizer step.

        Returns whether an averaging update happened (``update_interval`` may skip calls).
        """
        self.num_calls += 1
        if self.num_calls % self.update_interval:
            return False
        grouped, copied = self._sources(model)
        weight = 1.0 if self.num_updates == 0 else 1.0 - self.current_decay()
        for group, current in zip(self._groups, grouped):
            torch._foreach_lerp_(group.averaged, self._aligned(group, current), weight)
        if copied:
            torch._foreach_copy_(list(self._copied.values()), copied)
        self.num_updates += 1
        return True

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """SEMA's switch: overwrite the model's weights with the averaged ones (optimizer state untouched)."""
        grouped, copied = self._sources(model)
        for group, current in zip(self._groups, grouped):
            self._follow(group, current)
            torch._foreach_copy_(current, group.averaged)  # casts where a parameter is fp16/bf16
        if copied:
            torch._foreach_copy_(copied, list(self._copied.values()))

    @contextlib.contextmanager
    def swapped(self, model: nn.Module) -> Iterator[nn.Module]:
        """Put the averaged weights into ``model`` for the block, then restore the trained ones exactly."""
        grouped, copied = self._sources(model)
        live = [t for current in grouped for t in current] + copied
        with torch.no_grad():
            saved = [t.clone() for t in live]
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                torch._foreach_copy_(live, saved)

    def averaged_state(self, aliases: bool = True) -> dict[str, torch.Tensor]:
        """The averaged tensors by name (float32 where the model is fp16/bf16), each alias of a tied tensor
        (:attr:`aliases`) naming the same average unless ``aliases=False``."""
        state = {n: t for g in self._groups for n, t in zip(g.names, g.averaged)}
        state |= self._copied
        return state | ({alias: state[name] for alias, name in self.aliases.items()} if aliases else {})

    # -- checkpointing ------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "decay": self.decay,
            "num_calls": self.num_calls,
            "num_updates": self.num_updates,
            "averaged": {name: t.clone() for name, t in self.averaged_state(aliases=False).items()},
            "aliases": dict(self.aliases),
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        mine = self.averaged_state(aliases=False)
        theirs = state["averaged"]
        if set(mine) != set(theirs):
            missing, extra = sorted(set(mine) - set(theirs)), sorted(set(theirs) - set(mine))
            raise KeyError(f"averaged state does not match the model: missing {missing[:5]}, unexpected {extra[:5]}")
        for name, tensor in mine.items():
            tensor.copy_(theirs[name])
        self.num_calls = int(state["num_calls"])
        self.num_updates = int(state["num_updates"])
