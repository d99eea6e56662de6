# The two commands of the README, each usable alone on a machine that has only Python:
#   make run    the main job: tradewind run on the bundled example (embedded SQLite)
#   make test   the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/tradewind run docs/examples/sma_crossover.toml

# The whole suite, on both cores, under coverage; then the per-folder coverage floors.
test: $(STAMP)
	rm -f .coverage .coverage.*
	$(BIN)/python -m pytest -n 2 -p no:cacheprovider --cov --cov-report=
	$(BIN)/python .ci/coverage_gate.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy cannot follow the editable install's import hook: check through a symlink view.
typecheck: $(STAMP)
	rm -rf .typecheck && mkdir -p .typecheck/tradewind
	for f in tradewind/*; do ln -sfn ../../$$f .typecheck/tradewind/$$(basename $$f); done
	for d in runtime actors storage; do ln -sfn ../../$$d .typecheck/tradewind/$$d; done
	MYPYPATH=.typecheck $(BIN)/mypy --strict -p tradewind
	# tests are checked too, but test functions need not spell out annotations
	MYPYPATH=.typecheck $(BIN)/mypy --strict --allow-untyped-defs --allow-incomplete-defs tests

bench: $(STAMP)
	$(BIN)/python -m pytest tests/benchmarks/bench_*.py -m benchmark -s -p no:cacheprovider

clean:
	rm -rf $(VENV) .typecheck .coverage .coverage.* build *.egg-info
