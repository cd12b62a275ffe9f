# The two commands of the README. Each does all the set-up it needs and is idempotent.
VENV ?= .venv
BIN := $(VENV)/bin
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup demo test lint unit clean
setup:
	bash scripts/setup.sh

demo: setup
	$(BIN)/candle run workflows/nt3_grid_small.yaml
	$(BIN)/candle summary workflows/runs/nt3-grid-small
	$(BIN)/candle status workflows/runs/nt3-grid-small
	$(BIN)/candle report workflows/runs/nt3-grid-small --out workflows/runs/nt3-grid-small/report
	$(BIN)/candle best workflows/runs/nt3-grid-small
	$(BIN)/candle train --from workflows/runs/nt3-grid-small --best --replicas 3 \
		--out workflows/runs/models/nt3-best
	$(BIN)/candle data synth nt3 --out workflows/runs/data/nt3-small \
		--set features=400 --set samples=800
	$(BIN)/candle predict workflows/runs/models/nt3-best \
		--data workflows/runs/data/nt3-small/nt_test2.csv \
		--out workflows/runs/models/nt3-best/predictions.csv

lint: setup
	$(BIN)/ruff check candle benchmarks tests workflows scripts
	$(BIN)/mypy candle benchmarks/candle_benchmarks
	$(BIN)/lint-imports --no-logo

test: lint
	$(BIN)/python -m pytest -q

unit: setup
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf workflows/runs .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
