# Human Figure Segmentation Workbook — `make` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
KERNEL := seglib
PROFILE ?= auto
RUN ?= default
REPORT_ARGS ?= --overwrite
STAMP := $(VENV)/.installed

# A local copy of the data set is used when one lies beside the project (offline machines);
# otherwise `seglib data fetch` downloads it from GitHub. Set SEGLIB_DATASET_SOURCE to override.
LOCAL_DATA := $(wildcard $(CURDIR)/../shared/datasets/Human-Segmentation-Dataset-master)
export SEGLIB_DATASET_SOURCE ?= $(LOCAL_DATA)
# The same for the external test set (Penn-Fudan pedestrians; otherwise downloaded from its authors' site).
LOCAL_PENNFUDAN := $(wildcard $(CURDIR)/../shared/datasets/PennFudanPed)
export SEGLIB_PENNFUDAN_SOURCE ?= $(LOCAL_PENNFUDAN)
export NO_ALBUMENTATIONS_UPDATE := 1
# Python writes its bytecode cache on first import (setup installs without compiling every file of the wheels:
# a minute saved, and only the modules imported are compiled), also where the environment says otherwise.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: help setup data test test-slow reports lab lint bench mediapipe-anchor publish-reference clean-reports

help: ## list the targets
	@if [ -t 1 ]; then on=$$'\033[36m'; off=$$'\033[0m'; else on=; off=; fi; \
	grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
	awk -v on="$$on" -v off="$$off" 'BEGIN {FS = ":.*## "}; {printf "  %s%-16s%s %s\n", on, $$1, off, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@# uv unpacks the wheels in parallel (PyTorch's CUDA build brings several GB); pip when uv cannot be had
	if $(BIN)/pip install --quiet uv==0.13.9 && \
		eval "$(BIN)/uv pip install --quiet --python $(BIN)/python $$($(BIN)/python tools/uv_pip_args.py) -e '.[dev]'"; \
	then :; else $(BIN)/pip install --quiet --no-compile -e '.[dev]'; fi
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (seglib)" >/dev/null
	@if git rev-parse --git-dir >/dev/null 2>&1; then $(BIN)/nbstripout --install --attributes .gitattributes --keep-id >/dev/null 2>&1 || true; fi
	touch $(STAMP)

setup: $(STAMP) ## create .venv, install seglib with its pinned dependencies, register the "seglib" Jupyter kernel

data: setup ## fetch the data set into data/raw (or copy $SEGLIB_DATASET_SOURCE) and check it; Penn-Fudan into data/external
	$(BIN)/seglib data fetch
	$(BIN)/seglib data check
	$(BIN)/seglib data fetch pennfudan

# Tests that time signals, locks or stopped kernels, and the notebooks (in order: 03 trains what 04-06 read), run
# on their own; the rest run on two workers (pytest-xdist, one file per worker at a time, one torch thread each).
SERIAL_TESTS := $(addprefix tests/test_,engine.py signals.py locks.py report.py fuzz.py)
PARALLEL_TESTS := $(filter-out $(SERIAL_TESTS),$(sort $(wildcard tests/test_*.py)))

test: data ## run the test suite and the six notebooks (smoke profile, runs in a temporary folder) — fast checks only
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	export SEGLIB_PROFILE=smoke SEGLIB_RUNS_DIR=$$tmp/runs SEGLIB_REPORTS_DIR=$$tmp/reports SEGLIB_FUZZ_SECONDS=5 \
		SEGLIB_CACHE_DIR=$$tmp/cache && \
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -m "not slow" -n 2 --dist loadfile --durations=10 $(PARALLEL_TESTS) && \
	$(BIN)/python -m pytest -m "not slow" --durations=15 $(SERIAL_TESTS) notebooks --nbval-lax --nbval-current-env

BROWSER_STAMP := $(VENV)/.browser
$(BROWSER_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,browser]'
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; } || \
		echo "make: no chromium (install Debian's chromium package); the browser test will be skipped"
	touch $@

test-slow: data $(BROWSER_STAMP) ## run every check: the matrices of signal and kill points, the full fuzz budget, the reference re-scored, the browser
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	SEGLIB_PROFILE=smoke SEGLIB_RUNS_DIR=$$tmp/runs SEGLIB_REPORTS_DIR=$$tmp/reports SEGLIB_CACHE_DIR=$$tmp/cache \
		$(BIN)/python -m pytest --durations=15 tests

reports: data ## train, evaluate and render notebooks 01-06 to reports/RUN/ (PROFILE=auto|cpu|gpu|cpu-unet|cpu-scratch|smoke, RUN=name)
	$(BIN)/seglib report --profile $(PROFILE) --run $(RUN) $(REPORT_ARGS)

lab: setup ## start Jupyter Lab on the notebooks
	$(BIN)/jupyter lab notebooks/

lint: setup ## ruff over the package, tests and notebooks
	$(BIN)/ruff check seglib tests notebooks

BENCH_ARGS ?=
bench: data ## training and prediction speed; the reference in PyTorch and ONNX Runtime vs MediaPipe on the test photos (BENCH_ARGS="--only prediction --photos 5"); writes reports/bench/
	$(BIN)/seglib bench $(BENCH_ARGS)

MP_VENV := .venv-mediapipe
$(MP_VENV)/.installed:
	$(PYTHON) -m venv $(MP_VENV)
	$(MP_VENV)/bin/pip install --quiet mediapipe==0.10.21
	touch $@

mediapipe-anchor: data $(MP_VENV)/.installed ## score MediaPipe off the shelf on val, test and Penn-Fudan (own venv: it needs numpy<2)
	$(BIN)/seglib anchor --python $(MP_VENV)/bin/python --split val --split test --external pennfudan

publish-reference: ## copy runs/reference's checkpoint, settings, history and scores into reports/reference (after make reports RUN=reference PROFILE=cpu)
	test -f runs/reference/best.pt && test -f reports/reference/index.html
	mkdir -p reports/reference/metrics
	cp runs/reference/best.pt reports/reference/best.pt
	cp runs/reference/config.yaml runs/reference/history.csv runs/reference/train_summary.json reports/reference/metrics/
	for s in val test pennfudan; do \
	  if [ -f runs/reference/eval/$$s/metrics.json ]; then \
	    cp runs/reference/eval/$$s/metrics.json reports/reference/metrics/$${s}_metrics.json; \
	    cp runs/reference/eval/$$s/per_image.csv reports/reference/metrics/$${s}_per_image.csv; fi; done

clean-reports: ## remove generated reports: only files git ignores (committed results in reports/ are kept)
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then git clean -fdX -q -- reports; \
	else find reports -mindepth 1 -maxdepth 1 ! -name reference ! -name reference-256 ! -name cv \
	  ! -name experiments.csv ! -name bench ! -name anchors ! -name crossdata -exec rm -rf {} +; fi
