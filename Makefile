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
# VITON (research use only, never committed) is fetched only where a copy is named or lies beside the project.
LOCAL_VITON := $(wildcard $(CURDIR)/../shared/datasets/VITON)
export SEGLIB_VITON_SOURCE ?= $(LOCAL_VITON)
export NO_ALBUMENTATIONS_UPDATE := 1
# Python writes its bytecode cache on first import (setup installs without compiling every file of the wheels:
# a minute saved, and only the modules imported are compiled), also where the environment says otherwise.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: help setup data test test-slow reports lab lint bench mediapipe-anchor labelstudio-env publish-reference clean-reports

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

data: setup ## fetch the data set into data/raw (or copy $SEGLIB_DATASET_SOURCE) and check it; Penn-Fudan (and VITON, when a copy is named) into data/external
	$(BIN)/seglib data fetch
	$(BIN)/seglib data check
	$(BIN)/seglib data fetch pennfudan
	@if [ -n "$$SEGLIB_VITON_DIR" ]; then echo "VITON: read from \$$SEGLIB_VITON_DIR ($$SEGLIB_VITON_DIR)"; \
	elif [ -n "$$SEGLIB_VITON_SOURCE" ] || [ -d data/external/VITON ]; then $(BIN)/seglib data fetch viton; \
	else echo "VITON skipped (research use only): set SEGLIB_VITON_SOURCE to a copy, or run seglib data fetch viton"; fi

# Tests that time signals, locks or stopped kernels, and the notebooks (in order: 03 trains what 04-07 read), run
# on their own; the rest run on two workers (pytest-xdist, one file per worker at a time, one torch thread each).
SERIAL_TESTS := $(addprefix tests/test_,engine.py signals.py locks.py report.py fuzz.py)
PARALLEL_TESTS := $(filter-out $(SERIAL_TESTS),$(sort $(wildcard tests/test_*.py)))

test: data ## run the test suite and the seven notebooks (smoke profile, runs in a temporary folder) — fast checks only
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

test-slow: data $(BROWSER_STAMP) $(LS_VENV)/.installed ## run every check: the matrices of signal and kill points, the full fuzz budget, the reference re-scored, the browser
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	SEGLIB_PROFILE=smoke SEGLIB_RUNS_DIR=$$tmp/runs SEGLIB_REPORTS_DIR=$$tmp/reports SEGLIB_CACHE_DIR=$$tmp/cache \
		$(BIN)/python -m pytest --durations=15 tests

reports: data ## train, evaluate and render notebooks 01-07 to reports/RUN/ (PROFILE=auto|cpu|gpu|cpu-unet|cpu-scratch|smoke, RUN=name)
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

# Label Studio, for the slow round trip of pre-labels (tests/test_labelstudio_roundtrip.py), in its own environment:
# it pins Django and a hundred packages seglib does not need (about 800 MB). sentry-sdk 3 stops it at start-up.
LS_VENV := .venv-labelstudio
LS_PACKAGES := label-studio==1.23.2 'sentry-sdk<3'
$(LS_VENV)/.installed: $(STAMP)
	$(PYTHON) -m venv $(LS_VENV)
	if [ -x $(BIN)/uv ]; then eval "$(BIN)/uv pip install --quiet --python $(LS_VENV)/bin/python \
		$$($(BIN)/python tools/uv_pip_args.py) $(LS_PACKAGES)"; else $(LS_VENV)/bin/pip install --quiet $(LS_PACKAGES); fi
	touch $@

labelstudio-env: $(LS_VENV)/.installed ## install Label Studio into .venv-labelstudio (the slow test's annotation tool)

mediapipe-anchor: data $(MP_VENV)/.installed ## score MediaPipe selfie and Pose off the shelf on every registered set's val and test splits on this machine and all of Penn-Fudan (own venv: it needs numpy<2); what is scored is kept
	$(BIN)/seglib anchor --python $(MP_VENV)/bin/python --dataset all --external pennfudan

publish-reference: ## copy runs/reference's checkpoint, quality estimator, settings, history and scores into reports/reference (after make reports RUN=reference PROFILE=cpu)
	test -f runs/reference/best.pt && test -f reports/reference/index.html
	mkdir -p reports/reference/metrics
	cp runs/reference/best.pt reports/reference/best.pt
	if [ -f runs/reference/best.quality.json ]; then cp runs/reference/best.quality.json reports/reference/; fi
	cp runs/reference/config.yaml runs/reference/history.csv runs/reference/train_summary.json reports/reference/metrics/
	for s in val test pennfudan pennfudan-test; do \
	  if [ -f runs/reference/eval/$$s/metrics.json ]; then \
	    cp runs/reference/eval/$$s/metrics.json reports/reference/metrics/$${s}_metrics.json; \
	    cp runs/reference/eval/$$s/per_image.csv reports/reference/metrics/$${s}_per_image.csv; fi; done

clean-reports: ## remove generated reports: only files git ignores (committed results in reports/ are kept)
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then git clean -fdX -q -- reports; \
	else find reports -mindepth 1 -maxdepth 1 ! -name reference ! -name reference-256 ! -name cv \
	  ! -name experiments.csv ! -name bench ! -name anchors ! -name crossdata ! -name generality \
	  ! -name quality ! -name label_curve ! -name mp-selfie-448-3sets-cpu ! -name mp-selfie-448-3sets-40ep-cpu -exec rm -rf {} +; fi
