"""dynnmr: dynamic solid-state NMR from molecular dynamics.

The pipeline, one module per stage::

    reader (streaming trajectories) -> graphs (periodic neighbour lists, vesin)
      -> model (equivariant tensor GNN) -> engine (chunked, prefetching inference)
      -> store (zarr time series) -> correlator, dynamics (averages, correlations, relaxation)

Around it: tensors (NMR tensor algebra and conventions), isotopes, tensorfiles (tensor file
formats), params (parameter tables), config / samples / train / evaluate / modelfile (models),
uncertainty (committee spread and calibration), inference (running a
model, for analyze, predict and the dask workers), spec (AnalysisSpec), cli,
dataset (a store as xarray: ``dynnmr.open_store(path)``).
"""

import os as _os

__version__ = "0.1.0"

#: torch's OpenMP threads (libgomp) spin while they wait for each other, by default for
#: 300,000 turns; where other processes share the cores, a spinning thread holds a core
#: that a working one needs, and `analyze` ran four to five times slower beside one busy
#: process. A short spin keeps the speed on an idle machine and avoids the collapse
#: (benchmarks/README.md, "Sharing the two cores"). It must be set before torch loads
#: libgomp (torch is imported lazily here); a value already in the environment wins.
_os.environ.setdefault("GOMP_SPINCOUNT", "10000")

#: The bundled model used when none is named (dynnmr/data/models/sio2.pt).
DEFAULT_MODEL = "sio2"


#: The Python API: name -> (module, attribute), imported on first use (``dynnmr --help``
#: stays fast). ``analyze(trajectory, output, **options)`` or ``analyze(AnalysisSpec(...))``
#: writes a store and returns its path; ``open_store(path)`` reads it as xarray;
#: ``predict(atoms)`` gives tensors for static structures; ``NMRTensors(atomgroup).run()``
#: is an MDAnalysis analysis over a Universe one already has.
_API = {
    "analyze": ("engine", "analyze"),
    "AnalysisSpec": ("spec", "AnalysisSpec"),
    "open_store": ("dataset", "open_store"),
    "predict": ("inference", "predict"),
    "NMRTensors": ("mda", "NMRTensors"),
}
__all__ = ["DEFAULT_MODEL", *_API]


def __getattr__(name):
    if name in _API:
        from importlib import import_module

        module, attr = _API[name]
        return getattr(import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'dynnmr' has no attribute {name!r}")
