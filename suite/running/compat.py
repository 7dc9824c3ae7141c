"""How mmengine 0.10.7 loads and finds checkpoints inside the suite: safely, and inside the work dir.

torch 2.6 made ``torch.load(weights_only=True)`` the default, and mmengine calls ``torch.load`` without the
argument. Its checkpoints hold a few objects besides tensors (its message hub's history buffers and numpy values),
so a plain weights-only load fails. Unpickling them in full would run whatever a file in a results
folder says (a shared or downloaded folder can hold a crafted one), so mmengine's local-file loader is replaced by
:func:`sema_suite.method.checkpoints.read_checkpoint`: weights-only, with those few types allowed.

Two things mmengine saves pickle as calls of ``getattr`` (a door to any code): the message hub's log history
(``HistoryBuffer`` objects and their statistics methods) and a learning-rate scheduler's annealing function (a bound
method, e.g. ``OneCycleLR``'s). :class:`PlainCheckpointHook` saves the first as plain values, rebuilt on load, and
leaves the second out: the scheduler rebuilt from the config already holds it.

mmengine also follows its ``last_checkpoint`` marker as a path relative to the process's directory; the suite's
marker names the checkpoint relative to the work dir (:func:`sema_suite.results.store.marked_checkpoint`), and
mmengine's runner finds it through that function.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import mmengine.runner.runner as mmengine_runner
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.registry import HOOKS
from mmengine.runner.checkpoint import CheckpointLoader

from sema_suite.method.checkpoints import read_checkpoint
from sema_suite.results.store import marked_checkpoint


@CheckpointLoader.register_scheme(prefixes="", force=True)
def load_from_local(filename: str, map_location=None):
    path = Path(filename).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{filename} can not be found.")
    return read_checkpoint(path, map_location=map_location)


def find_latest_checkpoint(work_dir: str) -> str | None:
    """The checkpoint a work dir's marker names (inside it), for the runner's resume."""
    path = marked_checkpoint(Path(work_dir))
    return str(path) if path is not None else None


mmengine_runner.find_latest_checkpoint = find_latest_checkpoint

_PLAIN = "plain_history_buffer"  # marks a HistoryBuffer saved as plain values


@HOOKS.register_module()
class PlainCheckpointHook(Hook):
    """Saves a checkpoint with no object whose loading calls code (see the module's docstring); a resumed run's
    logs and schedules go on as before (the log buffers' statistics methods are mmengine's defaults)."""

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        scalars = checkpoint.get("message_hub", {}).get("log_scalars", {})
        for key, buffer in scalars.items():
            if isinstance(buffer, HistoryBuffer):
                scalars[key] = {_PLAIN: True, "log_history": buffer._log_history,
                                "count_history": buffer._count_history, "max_length": buffer.max_length}
        schedulers = checkpoint.get("param_schedulers", [])
        for state in [s for group in schedulers.values() for s in group] if isinstance(schedulers, dict) else schedulers:
            for key in [key for key, value in state.items() if inspect.ismethod(value) or inspect.isfunction(value)]:
                del state[key]  # the scheduler built from the config has it

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        scalars = checkpoint.get("message_hub", {}).get("log_scalars", {})
        for key, saved in scalars.items():
            if isinstance(saved, dict) and saved.get(_PLAIN):
                buffer = HistoryBuffer(max_length=saved["max_length"])
                buffer._log_history, buffer._count_history = saved["log_history"], saved["count_history"]
                scalars[key] = buffer
