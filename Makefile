# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# torch and torchvision are installed pinned and first: those two releases are on this machine's disk, and an
# unpinned torch would pull several GB of CUDA wheels instead.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  := torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[test,export,tensorboard,serve,ablate]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/alexnet demo

# -n auto: one pytest worker per core (each test keeps torch to one thread, tests/conftest.py); --dist loadfile
# keeps a test file on one worker, so its module-scoped trained runs are made once.
test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q -n auto --dist loadfile

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadfile -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)
	$(BIN)/alexnet bench

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
