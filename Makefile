# Two commands do all the set-up: `make atlas` (the quick atlas) and `make test` (the default tests).
# The CPU torch wheel is installed first; override TORCH_SPEC/PIP_TORCH_ARGS for another build, e.g.
#   make atlas PIP_TORCH_ARGS="--index-url https://download.pytorch.org/whl/cpu"
# pip runs with --no-compile: byte-compiling every file of torch and its neighbours took 10 s of torch's 15 s install;
# Python compiles the modules it imports on first use instead.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PIP_TORCH_ARGS ?=
OUT ?= lmech-out
BIN := $(VENV)/bin
# With pip's --no-compile, Python byte-compiles each module when it is first imported and caches the result, here
# under the venv (not in the checkout). A shell that sets PYTHONDONTWRITEBYTECODE would make every process compile
# torch's, scipy's and lmech's modules again: 2.7 s per process, 26 CPU-seconds of the quick atlas (bench/README.md).
unexport PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX ?= $(abspath $(VENV))/pycache

.PHONY: atlas test test-slow install install-test install-ray bench catalogue clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check --no-compile -q $(PIP_TORCH_ARGS) "$(TORCH_SPEC)"
	touch $@

# While pip installs lmech's dependencies (one core), a second process imports torch once so that its modules are
# byte-compiled into the cache on the other core: `import lmech.cli, lmech.laws` plus a torch.optim optimizer (which
# imports torch._dynamo) took 10.8 s in a new venv, 5.6 s after this, 3.5 s cached: the atlas's driver pays it before
# its workers start, and both workers compiled torch._dynamo at their first optimizer. numpy is blocked there (pip
# may be writing it).
$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/python -c "import sys; sys.modules['numpy'] = None; import torch, torch.func, torch._dynamo" >/dev/null 2>&1 & \
	$(BIN)/python -m pip install --disable-pip-version-check --no-compile -q -e . ; status=$$?; wait; exit $$status
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --disable-pip-version-check --no-compile -q -e ".[test]"
	touch $@

$(VENV)/.installed-ray: pyproject.toml $(VENV)/.installed-test
	$(BIN)/python -m pip install --disable-pip-version-check --no-compile -q -e ".[test,ray,integrations,browser]"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test
install-ray: $(VENV)/.installed-ray

atlas: install  # exit status 1 means a law did not pass: a result, reported in the table and report.html
	$(BIN)/lmech check --all --quick --out $(OUT) || [ $$? -eq 1 ]

test: install-test  # the default suite (under 5 minutes on 2 cores)
	$(BIN)/python -m pytest -q

test-slow: install-ray  # marked slow: Ray on a real local cluster, kill -9 of a driver, the integrations with their
                       # libraries installed (TensorBoard, MLflow, W&B, Lightning, transformers), the report in
                       # chromium (Playwright); CI runs it after `make test`
	$(BIN)/python -m pytest -q -m slow

catalogue: install  # regenerate README.md's law catalogue after a law's claim or tolerance changes
	$(BIN)/python .ci/catalogue.py

bench: install
	# torch is named again so that pip keeps the CPU build: backpack (a curvlinops dependency) asks for torchvision,
	# whose newest builds require a newer (CUDA) torch; that torchvision is removed again (nothing here imports it).
	$(BIN)/python -m pip install --disable-pip-version-check --no-compile -q $(PIP_TORCH_ARGS) -e ".[bench]" "$(TORCH_SPEC)"
	$(BIN)/python -m pip uninstall -y -q torchvision
	$(BIN)/python bench/bench_sharpness.py
	$(BIN)/python bench/bench_sharpness_suite.py
	$(BIN)/python bench/bench_hessian.py
	$(BIN)/python bench/bench_noise_scale.py
	$(BIN)/python bench/bench_hvp_rows.py
	$(BIN)/python bench/bench_tracker.py
	$(BIN)/python bench/bench_tracker_observables.py
	$(BIN)/python bench/bench_batched.py --models 16
	$(BIN)/python bench/bench_batched.py
	$(BIN)/python bench/bench_batched.py --models 256
	$(BIN)/python bench/bench_sweep.py
	$(BIN)/python bench/bench_atlas.py
	$(BIN)/python bench/atlas_profile.py
	$(BIN)/python bench/atlas_timeline.py
	$(BIN)/python -m pip install --disable-pip-version-check --no-compile -q -e ".[ray]"
	$(BIN)/python bench/bench_executor.py --atlas

clean:
	rm -rf $(VENV) $(OUT) *.egg-info
