"""Where task adapters come from: the built-in ``tasks/`` package and the ``suite.tasks`` entry-point group.

A third-party package registers its adapter in its own ``pyproject.toml``::

    [project.entry-points."suite.tasks"]
    mytask = "mypackage.mytask:TASK"

Adapters load lazily, so listing names costs no import of torch.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TypeVar
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


T = TypeVar("T")


def load_target(target: str, kind: str, expected: type[T]) -> T:
    """The object an entry point (``module:attr``) names, a class instantiated; a broken plugin is a SuiteError
    that names it, never a traceback from deep inside its import. ``kind``: what it is, for the message."""
    module_name, _, attr = target.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except Exception as error:
        raise SuiteError(f"the {kind} {target} does not import ({type(error).__name__}: {error}); fix or "
                         "uninstall the package that registers it") from error
    found = found() if isinstance(found, type) else found
    if not isinstance(found, expected):
        raise SuiteError(f"{target} is not a {expected.__module__}.{expected.__name__} (got {type(found).__name__})")
    return found


@cache
def _load(target: str) -> Task:
    return load_target(target, "task adapter", Task)


def get_task(name: str) -> Task:
    if name in _registered:
        return _registered[name]
    sources = _sources()
    if name not in sources:
        raise UnknownChoice("task", name, task_names())
    return _load(sources[name])
