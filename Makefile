# The two commands of the README. Both set everything up first (idempotent, fast the second time).
.PHONY: setup demo test test-quick gpu-check

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/suite run --task det --method sema

test: setup
	@bash scripts/install_chromium.sh
	.venv/bin/python -m pytest

# Not what CI runs: the inner loop, everything but the tests marked slow (real training runs), in under 3 minutes
test-quick: setup
	.venv/bin/python -m pytest -m "not slow"

# Not one of the two commands: every paper preset for a few iterations on stand-in data (CUDA; a CPU runs less)
gpu-check: setup
	.venv/bin/suite gpu-check
