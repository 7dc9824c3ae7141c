"""The ``--method`` axis: a method is one small :class:`Method` class, registered like tasks are.

A method says which knobs it takes (with defaults and help), which of them matter in a given setting, whether
it changes the training trajectory (if not, its jobs can share one run with ``none``), and the mmengine hook
that does its work -- what happens after each optimizer step and at each epoch end, and which weights it
reports -- for a run of its own and, where it can share, for its member of a shared run.

Built in: ``none``, ``ema``, ``sema``, ``swa`` and ``lookahead`` (:mod:`sema_suite.method.builtin`). A package
adds one through the ``suite.methods`` entry-point group::

    [project.entry-points."suite.methods"]
    mymethod = "mypackage.mymethod:METHOD"

A knob a method does not use (``decay`` for ``none``) is dropped from the job's resolved spec, so it neither
changes the job's id nor retrains an identical job; the CLI says so. Import-light: the CLI plans with it.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import Any, ClassVar, NamedTuple

from sema_suite.errors import BadOverride, SuiteError, UnknownChoice
from sema_suite.knobs import Rule


class Knob(NamedTuple):
    default: Any
    help: str
    highest: float | None = None  # the largest value that means anything (a sweep is never extended past it)
    past_lowest: str = ""  # what the method becomes past its lowest value, when that is another method's row
    past_highest: str = ""  # ... past its highest (a grid edge there is bracketed by that row)
    fraction_below_one: bool = False  # a value under 1 is a fraction of training (a sweep of them stays under 1)
    rule: Rule | None = None  # the values it takes, checked when a matrix is planned (None: its default's type)


class Method:
    """One averaging method. Subclasses set the class attributes and :meth:`hook`; the rest has defaults.

    ``knobs``: the ``--set`` keys it reads, with defaults (a preset's ``averaging`` dict overrides them). Two
    methods may share a knob (``decay``) only with the same default. ``changes_trajectory``: whether the trained
    weights differ from ``none``'s with the same seed; a method that does not change them can join a shared run
    (:meth:`member`).
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    knobs: ClassVar[dict[str, Knob]] = {}
    changes_trajectory: ClassVar[bool] = True

    def effective(self, knobs: dict[str, Any]) -> dict[str, Any]:
        """The knobs that change what a job does (inert ones left out, contradictions refused)."""
        return {key: knobs[key] for key in self.knobs}

    def hook(self, job_id: str, knobs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any] | None:
        """The mmengine hook config of a run of this job alone (``knobs`` as :meth:`effective` leaves them,
        ``params`` the job's training knobs), or None when plain training is all it does."""
        raise NotImplementedError

    def member(self, job_id: str, knobs: dict[str, Any]) -> dict[str, Any]:
        """Its member of a shared run's :class:`~sema_suite.method.hooks.SemaHook` (``{"name", "average"}``)."""
        raise SuiteError(f"method {self.name} changes the trajectory; it has no member in a shared run")


BUILTIN = {name: f"sema_suite.method.builtin:{cls}" for name, cls in (
    ("none", "Plain"), ("ema", "Ema"), ("sema", "Sema"), ("swa", "Swa"), ("lookahead", "Lookahead"))}
ENTRY_POINT_GROUP = "suite.methods"


@cache  # reading the installed packages' entry points costs milliseconds; they do not change in a process
def _sources() -> dict[str, str]:
    plugins = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return {**plugins, **BUILTIN}  # a plugin cannot shadow a built-in


def method_names() -> list[str]:
    """Built-in methods first, in their order, then plugins'."""
    return [*BUILTIN, *sorted(set(_sources()) - set(BUILTIN))]


@cache
def _load(name: str, target: str) -> Method:
    from sema_suite.registry import load_target

    method = load_target(target, "method", Method)
    if method.name != name:
        raise SuiteError(f"{target} is registered as method {name!r} but is named {method.name!r}")
    return method


def get_method(name: str) -> Method:
    sources = _sources()
    if name not in sources:
        raise UnknownChoice("method", name, method_names())
    return _load(name, sources[name])


@cache
def knob_table() -> dict[str, Knob]:
    """Every method's knobs: the ``--set`` keys that belong to methods, not to training."""
    table: dict[str, Knob] = {}
    for name in method_names():
        for key, knob in get_method(name).knobs.items():
            if key in table and table[key].default != knob.default:
                raise SuiteError(f"method {name} gives knob {key} the default {knob.default!r}, another method "
                                 f"{table[key].default!r}: a knob has one default; rename it")
            table.setdefault(key, knob)
    return table


def averaging_defaults() -> dict[str, Any]:
    """Every method knob's default (a preset's ``averaging`` dict overrides them)."""
    return {key: knob.default for key, knob in knob_table().items()}


def effective_averaging(method: str, averaging: dict[str, Any]) -> dict[str, Any]:
    """The knobs of ``averaging`` that change what a job of ``method`` does."""
    return get_method(method).effective(averaging)


def averaging_hook(members: list[tuple[str, str, dict[str, Any]]], params: dict[str, Any]) -> dict[str, Any] | None:
    """The method hook config for a run's members, each ``(job id, method, knobs)`` (``knobs`` as
    :func:`effective_averaging` leaves them), or None for a lone job of a method without one (``none``).

    One member: its method's hook. Several (a shared run): one SemaHook keeping each member's weights."""
    if len(members) > 1:
        return {"type": "SemaHook", "members": [get_method(method).member(name, knobs)
                                                for name, method, knobs in members]}
    ((name, method, knobs),) = members
    return get_method(method).hook(name, knobs, params)


def require(condition: bool, message: str) -> None:
    """A knob value a method cannot use: a clear error (``BadOverride``) naming it and the fix."""
    if not condition:
        raise BadOverride(message)
