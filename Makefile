# One-command set-up: a virtual environment with the CPU build of torch installed first
# (an unpinned torch would pull a multi-GB CUDA build), then dynnmr and its test extras.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: install test demo clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[test]'
	touch $@

test: install
	$(PY) -m pytest -q

demo: install
	$(VENV)/bin/dynnmr params dynnmr/data/ethanol.magres

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
