"""dynnmr.open_store: a store as an xarray Dataset with coordinates, and its analysis results."""

import numpy as np
import pytest
import torch
import zarr

import dynnmr
import dynnmr.tensors
from dynnmr.cli import main
from dynnmr.errors import InputError

from helpers import make_traj, run

torch.set_num_threads(2)


def test_open_store_labels_frames_sites_and_components(tmp_path, tiny_model):
    frames = make_traj(tmp_path / "t.extxyz", n_frames=12)
    out = run(tmp_path / "t.extxyz", tmp_path / "s.zarr", tiny_model)  # times from the file: 2 fs apart
    g = zarr.open_group(str(out), mode="r")
    ds = dynnmr.open_store(out)
    assert ds.ms.dims == ("frame", "site", "component") and ds.sizes["frame"] == 12
    np.testing.assert_allclose(ds.time_ps.values, 0.002 * np.arange(12))
    # selecting by time, element, atom and component gives the stored numbers
    np.testing.assert_array_equal(ds.ms.sel(time_ps=0.0061, method="nearest").values, g["ms"][3])
    o = np.flatnonzero(frames[0].numbers == 8)
    np.testing.assert_array_equal(ds.efg.sel(element="O").values, g["efg"][:][:, o])
    np.testing.assert_array_equal(ds.ms.sel(atom_index=int(o[1]), component="zz").values, g["ms"][:][:, o[1], 8])
    assert list(ds.component.values) == ["xx", "xy", "xz", "yx", "yy", "yz", "zx", "zy", "zz"]
    assert ds.attrs["complete"] and "conventions" in ds.attrs
    with pytest.raises(InputError, match="no analysis results"):
        dynnmr.open_store(out, "analysis")
    with pytest.raises(InputError, match="not a dynnmr store"):
        dynnmr.open_store(tmp_path)


def test_open_store_analysis_has_its_lag_axis_and_one_site_axis_per_species(tmp_path, tiny_model):
    make_traj(tmp_path / "t.extxyz", n_frames=40)
    out = run(tmp_path / "t.extxyz", tmp_path / "s.zarr", tiny_model, correlate=True)
    assert main(["dynamics", str(out), "--max-lag", "0.02"]) == 0
    an = dynnmr.open_store(out, "analysis")
    np.testing.assert_allclose(an.lag_ps.values, 0.002 * np.arange(11))
    assert an.acf_efg_O.dims == ("lag", "site_O") and an.mean_ms_Si.dims == ("site_Si", "component")
    ds = dynnmr.open_store(out)
    np.testing.assert_array_equal(an.atom_index_O.values, ds.atom_index.sel(element="O").values)
    # lag 0 is each site's mean square l=2 fluctuation (a.u.^2), from the stored tensors
    efg = ds.efg.sel(element="O").values.astype(np.float64)
    sph = dynnmr.tensors.to_spherical((efg - efg.mean(axis=0)).reshape(efg.shape[:2] + (3, 3)))[..., 4:9]
    np.testing.assert_allclose(an.acf_efg_O.sel(lag_ps=0.0).values, (sph**2).sum(-1).mean(0), rtol=1e-5)
    assert an.R1_per_s_O.dims == ("site_O",) and "mtau_ms_l2" in an and "mtau_lag_frames" in an.coords
    # a second run with other lags and species replaces the first, nothing conflicts
    assert main(["dynamics", str(out), "--max-lag", "0.01", "--species", "O"]) == 0
    an = dynnmr.open_store(out, "analysis")
    assert an.sizes["lag"] == 6 and "acf_ms_Si" not in an
