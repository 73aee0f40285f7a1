# The README's commands. `make demo` and `make test` work on a fresh machine: they run `setup` first.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
FMNIST  := /usr/share/datasets/fashion-mnist
STAMP   := $(VENV)/.installed
CHROMEDRIVER := /usr/bin/chromedriver

.PHONY: setup demo test lint clean

setup: $(STAMP) $(FMNIST) $(CHROMEDRIVER)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch/torchvision first, pinned: pip takes them from this machine's local wheels.
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev,openvino,executorch]'  # openvino: the fast-path backend (openvino + nncf); executorch: export --format executorch
	# Reference implementations for compatibility tests only; they pin old torch, hence --no-deps.
	$(BIN)/pip install -q --no-deps pretrainedmodels==0.7.4 facenet-pytorch==2.6.0 pytorch-fid==0.3.0 torch-fidelity==0.4.0 clean-fid==0.1.35 prdc==0.2
	$(BIN)/pip install -q six munch
	# The load test's peer (scripts/litserve_peer.py). --no-deps: its uvicorn[standard] would add uvloop and
	# httptools, which uvicorn then picks for inceptionnet serve too (a different server than the one tested).
	$(BIN)/pip install -q --no-deps litserve==0.2.19 pyzmq==27.3.0
	touch $(STAMP)

$(FMNIST):
	apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist

# Debian's browser and driver for tests/serve/test_browser.py (the serve page); installed once (the file is the stamp)
$(CHROMEDRIVER):
	apt-get update -qq && apt-get install -y -qq chromium chromium-driver

demo: setup
	$(BIN)/inceptionnet demo

test: setup
	$(BIN)/python -m pytest -q -n 2 --dist worksteal --durations=15 tests

lint: setup
	$(BIN)/ruff check src tests notebooks
	$(BIN)/mypy src

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
