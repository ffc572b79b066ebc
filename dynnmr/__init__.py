"""dynnmr: dynamic solid-state NMR from molecular dynamics.

The pipeline, one module per stage::

    reader (streaming trajectories) -> graphs (periodic neighbour lists, vesin)
      -> model (equivariant tensor GNN) -> engine (chunked, prefetching inference)
      -> store (zarr time series) -> correlator, dynamics (averages, correlations, relaxation)

Around it: tensors (NMR tensor algebra and conventions), isotopes, io (tensor file
formats), params (parameter tables), train / evaluate / modelfile (models), predict, cli.
"""

__version__ = "0.1.0"

#: The bundled model used when none is named (dynnmr/data/models/sio2.pt).
DEFAULT_MODEL = "sio2"
