# Two commands do all the set-up: `make atlas` (the quick atlas) and `make test` (the default tests).
# The CPU torch wheel is installed first; override TORCH_SPEC/PIP_TORCH_ARGS for another build, e.g.
#   make atlas PIP_TORCH_ARGS="--index-url https://download.pytorch.org/whl/cpu"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PIP_TORCH_ARGS ?=
OUT ?= lmech-out
BIN := $(VENV)/bin

.PHONY: atlas test install install-test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -q $(PIP_TORCH_ARGS) "$(TORCH_SPEC)"
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install --disable-pip-version-check -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --disable-pip-version-check -q -e ".[test]"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

atlas: install  # exit status 1 means a law did not pass: a result, reported in the table and report.html
	$(BIN)/lmech check --all --quick --out $(OUT) || [ $$? -eq 1 ]

test: install-test
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python -m pip install --disable-pip-version-check -q -e ".[bench]"
	$(BIN)/python bench/bench_sharpness.py
	$(BIN)/python bench/bench_hessian.py
	$(BIN)/python bench/bench_noise_scale.py
	$(BIN)/python bench/bench_tracker.py
	$(BIN)/python bench/bench_batched.py
	$(BIN)/python bench/bench_sweep.py
	$(BIN)/python bench/bench_atlas.py

clean:
	rm -rf $(VENV) $(OUT) *.egg-info
