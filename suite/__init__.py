"""SEMA Bench: measure Switch EMA against EMA and plain training on the same jobs.

``sema_suite.averaging`` is plain PyTorch and usable on its own; ``sema_suite.hooks`` is the one mmengine hook.
"""

__version__ = "0.1.0"
