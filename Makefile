# Two entry points for a fresh machine: `make demo` (main job) and `make test` (test suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch 2.13.0 first: on this machine it is a local CPU wheel; any other pin pulls CUDA packages.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo test bench clean

$(BIN)/robustal: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev,eval,fast,ray,label]"
	touch $@

install: $(BIN)/robustal

demo: install
	$(BIN)/robustal demo --out demo-out

test: install
	ROBUSTAL_DATA=$${ROBUSTAL_DATA:-$(abspath ../shared/data)} $(BIN)/python -m pytest -n 2 -q

clean:
	rm -rf $(VENV) demo-out runs
