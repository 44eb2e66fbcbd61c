# mnas: set-up, tests, data and benchmarks. Every target creates the virtual environment
# (.venv in this folder) and installs mnas into it when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= data/embedded

.PHONY: install test lint data benchmarks fidelity latency-linearity clean kws ad vww kws-full ad-full vww-full

install: $(VENV)/.installed

$(VENV)/.installed: setup.py setup.cfg
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# Two test processes: much of a test's time is single-threaded (tracing, conversion).
test: install
	$(PY) -m pytest -q -n 2 tests

lint: install
	$(VENV)/bin/ruff check mnas tests benchmarks examples

data: $(DATA)/kws/MANIFEST.json $(DATA)/ad/MANIFEST.json $(DATA)/vww/MANIFEST.json

# One task's embedded data, generated when missing (the generator keeps complete tasks).
$(DATA)/%/MANIFEST.json: | install
	$(PY) -m mnas.datasets.generate --out $(DATA) --tasks $*

benchmarks: install
	$(PY) benchmarks/search_overhead.py

# Estimated arena and flatbuffer bytes, and the search's one-hot costs, against TFLite Micro and
# the converter: 200 random architectures per search space (about an hour on 2 cores).
fidelity: install
	$(PY) benchmarks/cost_model_fidelity.py --samples=200

# Host TFLite Micro latency of 30 random KWS-space models against their ops (~8 min).
latency-linearity: install
	$(PY) benchmarks/latency_linearity.py --samples=30

# The main job's demos on the embedded data (generated first when missing); outputs in runs/.
kws: $(DATA)/kws/MANIFEST.json
	$(PY) -m mnas.train --flagfile=experiments/kws_demo.flags

ad: $(DATA)/ad/MANIFEST.json
	$(PY) -m mnas.train --flagfile=experiments/ad_demo.flags

vww: $(DATA)/vww/MANIFEST.json
	$(PY) -m mnas.train --flagfile=experiments/vww_demo.flags

# The paper's recipes on the real datasets: make kws-full SIZE=s DATA_DIR=/data/speech_commands
# (SIZE: s, m, l for kws and ad; 1, 2, 3, 4 for vww).
SIZE ?= s
kws-full ad-full vww-full: install
	test -n "$(DATA_DIR)" || (echo "error: set DATA_DIR to the real dataset's folder" >&2; exit 2)
	$(PY) -m mnas.train --flagfile=experiments/$(@:-full=)_$(SIZE).flags --data_dir=$(DATA_DIR)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
