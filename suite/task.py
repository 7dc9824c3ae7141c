"""The narrow interface every task adapter implements (in the spirit of AlgoPerf's workload spec).

An adapter says what it measures (:class:`Metric`), which setups it offers (:class:`Preset`), and builds
the task-specific part of an mmengine config for one job. Everything else -- the averaging hook, the
results hook, checkpoints, seeds, logging -- the suite adds the same way for every task.

This module must stay import-light (no torch): ``suite list`` and ``suite --help`` read it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from sema_suite.knobs import TRAINING, Rule


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    primary: bool = False
    description: str = ""


@dataclass(frozen=True)
class Preset:
    """One experimental setup of a task.

    ``params`` are the task's own knobs (epochs, lr, ...); ``averaging`` the defaults for the ``ema`` and
    ``sema`` methods (decay, warm-up, switch interval, ...). Both can be overridden with ``--set key=value``.
    """

    name: str
    description: str
    dataset: str
    model: str
    params: dict[str, Any]
    averaging: dict[str, Any] = field(default_factory=dict)
    offline: bool = False  # needs no download and no --data-root (the tiny presets)
    # the metric this preset is judged by, when it is not the task's primary one (gen's offline preset has no
    # Inception weights and reports fid_digits instead of fid)
    primary_metric: str | None = None
    # the optimizer axis (a preset whose params name an ``optimizer``): each alternative optimizer's own
    # hyper-parameters, e.g. {"sgd": {"lr": 0.1, "weight_decay": 5e-4}} (see sema_suite.optim)
    optimizers: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def knobs(self) -> dict[str, Any]:
        """``params`` and, for a GPU preset, the knobs every GPU preset has (:data:`GPU_KNOBS`)."""
        return self.params if self.offline else {**GPU_KNOBS, **self.params}


# Knobs of every paper (GPU) preset, applied by the suite for every task: ``amp`` trains in mixed precision
# through mmengine's AmpOptimWrapper ("bf16" or "fp16" with dynamic loss scaling; "none": float32). It is a job
# parameter, so every method of a comparison trains with the same one, and variants never mix precisions.
GPU_KNOBS: dict[str, Any] = {"amp": "none"}
AMP_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}


@dataclass(frozen=True)
class BuildContext:
    """What an adapter needs to know about the job it builds a config for."""

    params: dict[str, Any]  # the preset's params with the job's overrides applied
    seed: int
    data_root: Path
    work_dir: Path
    download: bool = False
    dry_run: bool = False


def require_torchvision_folder(dataset: str, ctx: BuildContext, folder: str) -> None:
    """Fail early unless torchvision's ``folder`` of ``dataset`` is under the data root (or may be downloaded)."""
    from sema_suite.errors import DatasetMissing

    if not ctx.download and not (Path(ctx.data_root) / folder).is_dir():
        raise DatasetMissing(dataset, ctx.data_root, f"  {ctx.data_root}/{folder}/  (torchvision's version of the "
                             "dataset)", hint="add --download to fetch it")


class Task(ABC):
    """A task adapter. Subclass it, fill in the class attributes, implement :meth:`build_config`."""

    name: str
    description: str
    metrics: tuple[Metric, ...]
    presets: dict[str, Preset]
    default_preset: str = "tiny"
    # False for iteration-based training (the hook then switches every N iterations). A config whose train_cfg
    # names its loop (EpochBasedTrainLoop / IterBasedTrainLoop) decides for itself, per preset.
    by_epoch: bool = True
    # whether a job may train on several processes (DDP, suite run --gpus-per-job): its metrics must be gathered
    # across processes by mmengine (everything they need in ``self.results``)
    multi_gpu: bool = False
    # the values each of the task's own knobs takes (the training knobs of :data:`sema_suite.knobs.TRAINING` need
    # none here), checked when a matrix is planned, before anything is written
    rules: ClassVar[dict[str, Rule]] = {}

    def rule(self, key: str) -> Rule | None:
        """The values knob ``key`` takes: the task's own rule, or the shared training knob's."""
        return self.rules.get(key) or TRAINING.get(key)

    @property
    def primary_metric(self) -> Metric:
        return next(m for m in self.metrics if m.primary)

    def primary_metric_for(self, preset: str) -> Metric:
        """The metric a preset's results are ranked and tuned by."""
        name = self.presets[preset].primary_metric if preset in self.presets else None
        return self.primary_metric if name is None else next(m for m in self.metrics if m.name == name)

    def metric(self, name: str) -> Metric | None:
        return next((m for m in self.metrics if m.name == name), None)

    def val_split(self, preset: Preset, params: dict[str, Any]) -> str:
        """Which split the val loop evaluates: "val" (held out from training), or "test" when a final run
        trains on the whole training set (a paper preset's ``val_size=0``) and curves are drawn on test."""
        return "val"

    def check_data(self, preset: Preset, ctx: BuildContext) -> None:
        """Fail early, before anything is built or written, when the preset's data is not there.

        Raise :class:`sema_suite.errors.DatasetMissing` naming the expected layout. The default accepts anything.
        """

    def analysis_loss(self, model: Any, batches: list[Any], seed: int) -> Callable[[], Any]:
        """The deterministic training loss that ``suite analyze`` differentiates (see :mod:`sema_suite.analysis.measure`).

        ``batches`` is a fixed list of collated training batches; ``model`` is in eval mode (BatchNorm uses
        its running statistics, dropout is off). The default is the model's own training loss (``mode="loss"``,
        every loss term summed as mmengine does) averaged over the batches, with every random draw inside the
        model (DDPM noise and timesteps, detection samplers) fixed by re-seeding before each batch's call, as a
        :class:`sema_suite.analysis.flatness.BatchedLoss` (Hessian-vector products then hold one batch's graph at
        a time). Override it when a task's loss needs more than that.
        """
        from mmengine.runner.utils import set_random_seed

        from sema_suite.analysis.flatness import BatchedLoss

        set_random_seed(seed)
        processed = [model.data_preprocessor(batch, True) for batch in batches]

        def term(index: int) -> Callable[[], Any]:
            def loss() -> Any:
                set_random_seed(seed + index)  # each batch's draws fixed, whether measured alone or with the others
                data = processed[index]
                losses = model(**data, mode="loss") if isinstance(data, dict) else model(*data, mode="loss")
                return model.parse_losses(losses)[0]

            return loss

        return BatchedLoss([term(i) for i in range(len(processed))])

    @abstractmethod
    def build_config(self, preset: Preset, ctx: BuildContext) -> dict[str, Any]:
        """The task's part of an mmengine config: ``model``, ``train_dataloader``, ``train_cfg``,
        ``val_dataloader``, ``val_cfg``, ``val_evaluator``, ``optim_wrapper``, ``param_scheduler``...

        The evaluator's metric names must be the names in :attr:`metrics` (without any prefix).
        """
