# The README's two commands: `make train` (install + the main job) and `make test` (install + tests).
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
CONFIG ?= configs/fashion_mnist_mlp.yaml
FASHION_DIR := /usr/share/datasets/fashion-mnist

.PHONY: install install-dev data train test lint bench

install:
	$(PIP) install --quiet -e .

# the optional extras too, so their tests run instead of being skipped
install-dev:
	$(PIP) install --quiet -e '.[dev,export,images,plot,tensorboard,mlflow,tune,mpi]'

# Fashion-MNIST from Debian's package where apt-get exists; elsewhere dlcli downloads it itself.
data:
	@if [ ! -f $(FASHION_DIR)/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	fi

# the plot extra too: the run directory gets curves.png
train: install data
	$(PIP) install --quiet -e '.[plot]'
	$(PYTHON) -m dlcli train $(CONFIG)

test: install-dev
	$(PYTHON) -m pytest

lint: install-dev
	$(PYTHON) -m ruff check dlcli tests benchmarks

# Benchmarks only: torch and keras are never runtime dependencies. The OpenBLAS overrides slow
# numpy's BLAS, so they are unset for these commands alone (never in tests or CI).
bench: install data
	$(PIP) install --quiet -e '.[bench]'
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PYTHON) benchmarks/bench_core.py
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PYTHON) benchmarks/bench_epoch.py
