"""SEMA Bench: measure Switch EMA against EMA and plain training on the same jobs.

Rooms by the path the data takes: ``method`` (the averager and the hooks that apply none/ema/sema), ``running``
(jobs, runs, configs, the scheduler, backends and worker), ``results`` (job folders, leaderboard, statistics),
``analysis`` (flatness, sharpness, interpolation) and ``bench`` (speed, cost, the GPU check). ``task``,
``registry``, ``data`` and ``nets`` are what a task adapter builds on; ``cli`` is the ``suite`` command.
``sema_suite.method.averaging`` is plain PyTorch and usable on its own.
"""

__version__ = "0.1.0"
