# Two commands from a fresh clone: `make demo` and `make test` (both set up .venv first).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test setup clean benchmarks system-deps

# What the report tests look with: headless Chromium and poppler's pdftoppm; WeasyPrint needs
# Pango. Installed with apt when missing (root or sudo); when that fails, `make test` fails.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
system-deps:
	@if ! command -v chromium >/dev/null || ! command -v pdftoppm >/dev/null \
	    || ! ldconfig -p | grep -q libpangoft2-1.0; then \
	  echo "installing chromium, poppler-utils and WeasyPrint's libraries (apt)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium poppler-utils \
	    libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python requirements.txt requirements-test.txt pyproject.toml
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-test.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/brainage predict --sample

# Two test processes, one test file each at a time (module fixtures run once): CI stays within
# its 15 minutes on 2 cores.
test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q -n 2 --dist loadfile Testing

benchmarks: $(STAMP)
	$(BIN)/python benchmarks/segmentation.py
	$(BIN)/python benchmarks/pipeline.py
	$(BIN)/python benchmarks/age.py
	$(BIN)/python benchmarks/report.py
	$(BIN)/python benchmarks/cohort.py

clean:
	rm -rf $(VENV) .pytest_cache
