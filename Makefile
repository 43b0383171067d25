# The two commands of the README: `make demo` and `make test`. Both create the
# virtual environment in .venv on first use, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint type tox clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(PY) examples/quickstart.py

test: $(VENV)/.installed
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(PY) -m pip install --quiet ruff==0.17.6
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

type: $(VENV)/.installed
	$(PY) -m pip install --quiet mypy
	$(VENV)/bin/mypy

tox: $(VENV)/.installed
	$(PY) -m pip install --quiet tox
	$(VENV)/bin/tox run-parallel

clean:
	rm -rf $(VENV) .tox .rankigi
