# itsr: `make run` trains the quick experiment, `make test` runs the test suite.
# Both create .venv and fetch the data on first use, and reuse them afterwards.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.itsr-installed
DATA   := $(or $(ITSR_DATA_DIR),data)
# The CPU build of torch; pinned first so that no multi-GB CUDA build is pulled.
TORCH_PIN := torch==2.13.0

.PHONY: install data run test bench lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_PIN)"
	$(BIN)/python -m pip install --quiet -e ".[dev]" "$(TORCH_PIN)"
	touch $(STAMP)

install: $(STAMP)

data: $(STAMP)
	ITSR_DATA_DIR=$(DATA) $(BIN)/python -m itsr.data fetch mnist fmnist

run: data
	$(BIN)/python -m itsr.run experiment=quick

test: data
	$(BIN)/python -m pytest -q

bench: data
	$(BIN)/python -m itsr.bench

lint: $(STAMP)
	$(BIN)/ruff check itsr tests scripts
	$(BIN)/ruff format --check itsr tests scripts

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
