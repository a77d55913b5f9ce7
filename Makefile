# The two commands a newcomer needs: `make test` and `make reproduce`.
# Each creates the environment (.venv, pip, from pyproject.toml) when it is missing.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= local
NOTEBOOKS ?=
DRY_RUN ?=
RUN_ID ?=
RUNS ?=
PYTEST_ARGS ?=
BENCH ?=
DATA_DIR ?=
ONLY_NEEDED ?=

.PHONY: test reproduce data compare sync lab env clean-env speed

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

env: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

reproduce: $(STAMP)
	$(PY) -m eta reproduce --profile $(PROFILE) $(if $(NOTEBOOKS),--notebooks $(NOTEBOOKS),) \
		$(if $(DRY_RUN),--dry-run,) $(if $(RUN_ID),--run-id $(RUN_ID),)

# Benchmark data for the paper profile, pinned and checked: make data [BENCH="figstep vlsafe"]
# [DATA_DIR=...] (default $ETA_DATA_DIR) [ONLY_NEEDED=1] [DRY_RUN=1]
data: $(STAMP)
	$(PY) -m eta data fetch $(BENCH) $(if $(DATA_DIR),--dir $(DATA_DIR),) \
		$(if $(ONLY_NEEDED),--only-needed,) $(if $(DRY_RUN),--dry-run,)

# Headline metrics of local runs side by side: make compare RUNS="id1 id2"
compare: $(STAMP)
	$(PY) -m eta compare $(RUNS)

# Upload the offline W&B runs of every reproduce run (needs `wandb login` or WANDB_API_KEY).
sync: $(STAMP)
	@for run in results/*/wandb/offline-run-* results/*/*/wandb/offline-run-*; do \
		if [ -d "$$run" ]; then $(VENV)/bin/wandb sync "$$run"; fi; \
	done

# Speed benchmarks: one response (speed/decoding.py) and a whole benchmark's inputs (speed/throughput.py)
speed: $(STAMP)
	$(PY) speed/decoding.py --quick
	$(PY) speed/throughput.py

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean-env:
	rm -rf $(VENV)
