# The two commands of the README. Both set everything up first (idempotent, fast the second time).
.PHONY: setup demo test

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/suite run --task det --method sema

test: setup
	@bash scripts/install_chromium.sh
	.venv/bin/python -m pytest
