"""dynnmr: dynamic solid-state NMR from molecular dynamics.

The pipeline, one module per stage::

    reader (streaming trajectories) -> graphs (periodic neighbour lists, vesin)
      -> model (equivariant tensor GNN) -> engine (chunked, prefetching inference)
      -> store (zarr time series) -> correlator, dynamics (averages, correlations, relaxation)

Around it: tensors (NMR tensor algebra and conventions), isotopes, io (tensor file
formats), params (parameter tables), train / evaluate / modelfile (models), inference (running a
model, for analyze, predict and the dask workers), spec (AnalysisSpec), cli,
dataset (a store as xarray: ``dynnmr.open_store(path)``).
"""

__version__ = "0.1.0"

#: The bundled model used when none is named (dynnmr/data/models/sio2.pt).
DEFAULT_MODEL = "sio2"


def __getattr__(name):
    """The Python API, imported on first use (``dynnmr --help`` stays fast)."""
    if name == "open_store":
        from .dataset import open_store

        return open_store
    raise AttributeError(f"module 'dynnmr' has no attribute {name!r}")
