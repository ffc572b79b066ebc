"""A store as an xarray Dataset: the tensor time series with their coordinates, and the
analysis results with their lag axis.

``open_store(path)`` gives the frames and sites of ``dynnmr analyze`` labelled the way an
NMR user asks for them::

    ds = dynnmr.open_store("run.zarr")
    ds.ms.sel(time_ps=1.0, method="nearest")          # shielding tensors at 1 ps (ppm)
    ds.efg.sel(element="O")                            # every O site, every frame (a.u.)
    ds.ms.sel(atom_index=12, component="zz")           # one component of one atom

``open_store(path, "analysis")`` gives what ``dynnmr dynamics`` (and ``analyze
--correlate``) stored: per species, time-averaged tensors on ``site_El``, normalised
l=2 correlation functions on ``lag`` (coordinate ``lag_ps``), and the per-site
``tau_c_ps``, ``R1_per_s`` and ``R1_ct_per_s``; the species summaries with their error
bars are in ``attrs["species"]``.

Arrays stay lazy (dask-backed where dask is installed): opening a long run costs nothing
until values are used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputError
from .formats import is_store

#: Labels of the 9 row-major Cartesian components of a 3x3 tensor.
COMPONENTS = ("xx", "xy", "xz", "yx", "yy", "yz", "zx", "zy", "zz")


def open_store(path, group=None):
    """The store at ``path`` as an ``xarray.Dataset`` (``group="analysis"``: its analysis results).

    Data: ``ms`` (ppm) and ``efg`` (atomic units) [frame, site, component], ``cell`` (A)
    [frame, vector, xyz], ``positions`` (A) where saved, and with a committee model the
    spread ``ms_std``/``efg_std`` [frame, site, component] and ``ms_param_std``
    [frame, site, ms_parameter] / ``efg_param_std`` [frame, site, efg_parameter]
    (:mod:`dynnmr.uncertainty`; ``ds.ms_param_std.sel(ms_parameter="sigma_iso_ppm")``). Coordinates: ``time_ps`` and
    ``frame_index`` on frames; ``element``, ``numbers`` and ``atom_index`` on sites;
    ``component`` (``"xx"`` .. ``"zz"``). ``time_ps``, ``element`` and ``atom_index`` are
    indexed, so ``.sel`` works on them. The store's attributes (model, conventions,
    units, source) are the Dataset's.
    """
    import xarray as xr

    path = Path(path)
    if not is_store(path):
        raise InputError(path, "not a dynnmr store (made by dynnmr analyze or predict)")
    if group is None:
        return _frames(xr.open_zarr(path, consolidated=False, zarr_format=3))
    if group != "analysis":
        raise ValueError(f"group must be None or 'analysis', not {group!r}")
    if not (path / "analysis").is_dir():
        raise InputError(path, "no analysis results: run dynnmr dynamics on it (or analyze with --correlate)")
    return _analysis(xr.open_zarr(path, group="analysis", consolidated=False, zarr_format=3))


def _frames(ds):
    from ase.data import chemical_symbols

    ds = ds.drop_vars([v for v in ("chunk_done",) if v in ds])
    ds = ds.set_coords([v for v in ("time_ps", "frame_index", "numbers", "atom_index") if v in ds])
    numbers = np.asarray(ds["numbers"].values)
    ds = ds.assign_coords(element=("site", [chemical_symbols[int(z)] for z in numbers]))
    if "component" in ds.dims:
        ds = ds.assign_coords(component=list(COMPONENTS))
    from .uncertainty import PARAMETERS

    for t, names in PARAMETERS.items():  # the committee spread's parameters, by name
        if f"{t}_parameter" in ds.dims:
            ds = ds.assign_coords({f"{t}_parameter": list(names)})
    for dim in ("vector", "xyz"):
        if dim in ds.dims:
            ds = ds.assign_coords({dim: ["x", "y", "z"] if dim == "xyz" else ["a", "b", "c"]})
    for name in ("time_ps", "element", "atom_index"):
        ds = ds.set_xindex(name)
    return ds


def _analysis(ds):
    ds = ds.set_coords([v for v in ds.data_vars if v.startswith("atom_index_") or v in ("lag_ps", "mtau_lag_frames")])
    if "lag_ps" in ds.coords:
        ds = ds.set_xindex("lag_ps")
    if "component" in ds.dims:
        ds = ds.assign_coords(component=list(COMPONENTS))
    return ds
