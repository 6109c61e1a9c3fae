# Set-up and checks. `make test` and `make demo` create .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first: 2.13.0 resolves to the local CPU wheel; the package only asks for a range
TORCH ?= torch==2.13.0

.PHONY: install lint test test-fast demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[all,dev]"
	touch $@

install: $(VENV)/.installed

# the gates CI runs before the tests: lint (the project's rules, McCabe <= 15), formatting, types
lint: install
	$(BIN)/ruff check lossbench tests benchmarks
	$(BIN)/ruff format --check lossbench tests benchmarks
	$(BIN)/mypy lossbench

test: install
	$(BIN)/python -m pytest -q

# the quick loop: without the slow end-to-end tests (CI runs everything, through `make test`)
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

demo: install
	$(BIN)/lossbench compare digits_tuned --output runs/demo
	@echo "report: runs/demo/report.md (plots in runs/demo/plots/; re-render with: $(BIN)/lossbench report runs/demo)"

bench: install
	$(BIN)/python benchmarks/heads.py
	$(BIN)/python benchmarks/parity.py

clean:
	rm -rf $(VENV) build *.egg-info
