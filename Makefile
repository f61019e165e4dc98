# kdrun: `make run` sets everything up and runs the default job; `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=

.PHONY: venv run test test-all clean bench

venv: $(STAMP)

# pip takes torch/torchvision from this machine's local wheels (uv/poetry would download GBs).
$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

run: venv
	$(BIN)/kdrun $(ARGS)

# The default suite (tests marked slow are skipped); exit 5 (nothing collected) is not a failure.
test: venv
	$(BIN)/python -m pytest -m "not slow" $(ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; exit 0; fi; exit $$rc

test-all: venv
	$(BIN)/python -m pytest $(ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; exit 0; fi; exit $$rc

clean:
	rm -rf outputs multirun .pytest_cache build dist *.egg-info
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +

# Benchmarks: ratios measured side by side, results in benchmarks/results/*.json and SUMMARY.md.
bench: venv
	cd benchmarks && PYTHONPATH=. ../$(BIN)/python bench_steps.py
	cd benchmarks && PYTHONPATH=. ../$(BIN)/python bench_sweep.py
	cd benchmarks && PYTHONPATH=. ../$(BIN)/python bench_torchdistill.py
	cd benchmarks && PYTHONPATH=. ../$(BIN)/python bench_card.py --kdrun ../$(BIN)/kdrun
	cd benchmarks && PYTHONPATH=. ../$(BIN)/python summary.py
