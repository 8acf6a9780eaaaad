# The two commands of the README:
#   make demo   set-up (idempotent) + the main job on the built-in synthetic data
#   make test   set-up (idempotent) + the test suite
PYTHON := .venv/bin/python
OUT ?= outputs/main_job

.PHONY: setup demo test test-fast

setup:
	bash tools/setup_env.sh

demo: setup
	$(PYTHON) tools/main_job.py --out $(OUT)

test: setup
	$(PYTHON) -m pytest tests -v --durations=15

test-fast: setup
	$(PYTHON) -m pytest tests -v -m "not slow"
