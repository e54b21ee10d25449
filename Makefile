# Two commands from a fresh clone: `make demo` and `make test` (both set up .venv first).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test setup clean benchmarks

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python requirements.txt requirements-test.txt pyproject.toml
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-test.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/brainage predict --sample

test: $(STAMP)
	$(BIN)/python -m pytest -q Testing

benchmarks: $(STAMP)
	$(BIN)/python benchmarks/segmentation.py
	$(BIN)/python benchmarks/pipeline.py
	$(BIN)/python benchmarks/age.py

clean:
	rm -rf $(VENV) .pytest_cache
