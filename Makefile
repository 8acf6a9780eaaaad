# The two commands of the README:
#   make demo   set-up (idempotent) + the main job on the built-in synthetic data
#   make test   set-up (idempotent) + the test suite, on upstream OpenMMLab (.venv) then on OneDL (.venv-onedl)
#   make setup STACK=onedl   the OneDL venv alone; make test-onedl   its set-up + the OneDL tests alone
#   make gpu-check  set-up + the GPU check (tools/analysis/gpu_check.sh; DEVICE=cpu for tiny sizes on CPU)
#   make gpu-wheels the wheels for a GPU machine with no registry (.whl/; there: gpu_check.sh --wheels .whl)
PYTHON := .venv/bin/python
OUT ?= outputs/main_job
STACK ?= openmmlab
ONEDL_PYTHON := .venv-onedl/bin/python
# On OneDL: its own tests and the upstream suite's that hold on any stack (registration, every config built
# through mmdet:: / mmseg:: bases, the hostile-checkpoint attacks)
ATTACKS := tests/test_checkpoint_attacks.py
ONEDL_TESTS ?= tests/onedl tests/test_registry.py \
	$(ATTACKS)::test_hostile_files_are_refused_and_nothing_runs_changes_or_costs \
	$(ATTACKS)::test_every_entry_point_refuses $(ATTACKS)::test_a_legitimate_file_beside_the_hostile_ones_loads \
	tests/test_configs/test_inherit.py::test_every_config_inherited_builds_with_the_upstream_registries

.PHONY: setup setup-onedl demo test test-onedl test-fast gpu-check gpu-wheels

setup:
	GB_STACK=$(STACK) bash tools/setup_env.sh

setup-onedl:
	GB_STACK=onedl bash tools/setup_env.sh

demo: setup
	$(PYTHON) tools/main_job.py --out $(OUT)

test: setup
	$(PYTHON) -m pytest tests -v --durations=15
	$(MAKE) --no-print-directory test-onedl

test-onedl: setup-onedl
	$(ONEDL_PYTHON) -m pytest $(ONEDL_TESTS) -v --durations=10

test-fast: setup
	$(PYTHON) -m pytest tests -v -m "not slow"

DEVICE ?= cuda
gpu-check:
	bash tools/analysis/gpu_check.sh --device $(DEVICE)

gpu-wheels:
	bash tools/analysis/gpu_wheels.sh
