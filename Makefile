# mnas: set-up, tests, data and benchmarks. Every target creates the virtual environment
# (.venv in this folder) and installs mnas into it when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= data/embedded

.PHONY: install test lint data benchmarks clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py setup.cfg
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

test: install
	$(PY) -m pytest -q tests

lint: install
	$(VENV)/bin/ruff check mnas tests benchmarks examples

data: $(DATA)/kws/MANIFEST.json $(DATA)/ad/MANIFEST.json $(DATA)/vww/MANIFEST.json

# One task's embedded data, generated when missing (the generator keeps complete tasks).
$(DATA)/%/MANIFEST.json: | install
	$(PY) -m mnas.datasets.generate --out $(DATA) --tasks $*

benchmarks: install
	$(PY) benchmarks/search_overhead.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
