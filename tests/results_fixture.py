"""Results directories for the tests: the generator lives in :mod:`sema_suite.bench.synthetic`, which
``suite bench dashboard`` shares, so the benchmark reads the same files the tests do."""

from sema_suite.bench.synthetic import make_results, write_job

__all__ = ["make_results", "write_job"]
