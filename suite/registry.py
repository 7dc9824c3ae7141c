"""Where task adapters come from: the built-in ``tasks/`` package and the ``suite.tasks`` entry-point group.

A third-party package registers its adapter in its own ``pyproject.toml``::

    [project.entry-points."suite.tasks"]
    mytask = "mypackage.mytask:TASK"

Adapters load lazily, so listing names costs no import of torch.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points

from sema_suite.errors import SuiteError, UnknownChoice
from sema_suite.task import Task

BUILTIN = {
    "cls": "sema_tasks.cls:TASK",
    "det": "sema_tasks.det:TASK",
    "gen": "sema_tasks.gen:TASK",
    "video": "sema_tasks.video:TASK",
    "reg": "sema_tasks.reg:TASK",
    "ssl": "sema_tasks.ssl:TASK",
    "lm": "sema_tasks.lm:TASK",
}
ENTRY_POINT_GROUP = "suite.tasks"
_registered: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Register an adapter object at run time (tests, notebooks). Entry points are the packaged way."""
    _registered[task.name] = task
    return task


@cache  # reading the installed packages' entry points costs milliseconds; they do not change in a process
def _sources() -> dict[str, str]:
    plugins = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return {**plugins, **BUILTIN}  # a plugin cannot shadow a built-in


def task_names() -> list[str]:
    return sorted({*_sources(), *_registered})


@cache
def _load(target: str) -> Task:
    module_name, _, attr = target.partition(":")
    try:
        task = getattr(importlib.import_module(module_name), attr)
    except Exception as error:  # a broken plugin is named, never a traceback from deep inside its import
        raise SuiteError(f"the task adapter {target} does not import ({type(error).__name__}: {error}); fix or "
                         "uninstall the package that registers it") from error
    task = task() if isinstance(task, type) else task
    if not isinstance(task, Task):
        raise SuiteError(f"{target} is not a sema_suite.task.Task (got {type(task).__name__})")
    return task


def get_task(name: str) -> Task:
    if name in _registered:
        return _registered[name]
    sources = _sources()
    if name not in sources:
        raise UnknownChoice("task", name, task_names())
    return _load(sources[name])
