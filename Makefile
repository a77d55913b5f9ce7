# The two commands a newcomer needs: `make test` and `make reproduce`.
# Each creates the environment (.venv, pip, from pyproject.toml) when it is missing.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= local
NOTEBOOKS ?=
PYTEST_ARGS ?=

.PHONY: test reproduce lab env clean-env

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

env: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

reproduce: $(STAMP)
	$(PY) -m eta reproduce --profile $(PROFILE) $(if $(NOTEBOOKS),--notebooks $(NOTEBOOKS),)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean-env:
	rm -rf $(VENV)
