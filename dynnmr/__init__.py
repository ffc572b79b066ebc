"""dynnmr: dynamic solid-state NMR from molecular dynamics.

Pipeline, one module per stage::

    io (tensor/structure files) -> graphs (periodic neighbour lists)
      -> model (equivariant tensor GNN) -> train / evaluate
    tensors (NMR tensor algebra and conventions), isotopes, params (parameter tables)
"""

__version__ = "0.1.0"
