"""The Python API: ``dynnmr.analyze``, ``dynnmr.open_store``, ``dynnmr.predict``."""

import numpy as np
import pytest
import torch

import dynnmr
from dynnmr import engine, spec

from helpers import QUARTZ, make_traj

torch.set_num_threads(2)


def test_api_names_are_the_pipeline_functions():
    assert dynnmr.analyze is engine.analyze and dynnmr.AnalysisSpec is spec.AnalysisSpec
    assert set(dynnmr.__all__) >= {"analyze", "open_store", "predict", "AnalysisSpec", "DEFAULT_MODEL"}
    with pytest.raises(AttributeError, match="no attribute 'analyse'"):
        dynnmr.analyse  # noqa: B018


def test_predict_gives_copies_with_tensors_and_nan_where_not_covered(tiny_model):
    atoms = QUARTZ.copy()
    out = dynnmr.predict(atoms, model=str(tiny_model))
    assert "ms" not in atoms.arrays and out is not atoms  # the input is left as it was
    si, o = atoms.numbers == 14, atoms.numbers == 8
    assert out.arrays["ms"].shape == (len(atoms), 3, 3) and np.isfinite(out.arrays["ms"]).all()
    assert np.isnan(out.arrays["efg"][si]).all() and np.isfinite(out.arrays["efg"][o]).all()  # EFG: O only
    # a list gives a list, in order, with the same numbers as one at a time
    both = dynnmr.predict([atoms, atoms.repeat((1, 1, 2))], model=str(tiny_model))
    assert isinstance(both, list) and len(both[1]) == 2 * len(atoms)
    np.testing.assert_allclose(both[0].arrays["ms"], out.arrays["ms"], atol=1e-4)
    np.testing.assert_allclose(both[1].arrays["ms"][: len(atoms)], out.arrays["ms"], atol=1e-4)  # supercell


def test_predict_and_analyze_agree_on_the_same_frame(tmp_path, tiny_model):
    """The static and the streaming paths are one inference: the same tensors for a frame."""
    frames = make_traj(tmp_path / "t.extxyz", n_frames=3)
    out = dynnmr.analyze(
        tmp_path / "t.extxyz", tmp_path / "s.zarr", model=str(tiny_model), progress=False, device="cpu"
    )
    ds = dynnmr.open_store(out)
    static = dynnmr.predict(frames[2], model=str(tiny_model))
    np.testing.assert_allclose(ds.ms.isel(frame=2).values, static.arrays["ms"].reshape(-1, 9), atol=1e-3)
    o = frames[2].numbers == 8
    np.testing.assert_allclose(ds.efg.sel(element="O").isel(frame=2).values, static.arrays["efg"][o].reshape(-1, 9),
                               atol=1e-5)  # fmt: skip


def test_mdanalysis_analysis_gives_the_engine_tensors(tmp_path, tiny_model):
    """NMRTensors over a Universe built in memory: the same tensors as analyze on the file."""
    import MDAnalysis as mda
    from MDAnalysis.coordinates.memory import MemoryReader

    frames = make_traj(tmp_path / "t.extxyz", n_frames=5)
    u = mda.Universe.empty(len(frames[0]), trajectory=False)
    u.add_TopologyAttr("elements", frames[0].get_chemical_symbols())
    coords = np.stack([f.positions for f in frames]).astype(np.float32)
    u.load_new(coords, format=MemoryReader, dimensions=frames[0].cell.cellpar(), dt=0.002)
    res = dynnmr.NMRTensors(u, model=str(tiny_model), chunk_frames=2).run().results
    assert res.ms.shape == (5, len(frames[0]), 3, 3) and res.efg.shape == res.ms.shape
    np.testing.assert_allclose(res.times, 0.002 * np.arange(5), atol=1e-9)
    ds = dynnmr.open_store(dynnmr.analyze(tmp_path / "t.extxyz", tmp_path / "s.zarr", model=str(tiny_model),
                                          progress=False, device="cpu"))  # fmt: skip
    np.testing.assert_allclose(res.ms.reshape(5, -1, 9), ds.ms.values, atol=2e-3)  # float32 coordinates
    si = frames[0].numbers == 14
    assert np.isnan(res.efg[:, si]).all() and np.isfinite(res.efg[:, ~si]).all()  # EFG: O only
    # a selection and a subset of frames: the model still sees every atom (the Si around each O)
    o = u.select_atoms("element O")
    sub = dynnmr.NMRTensors(o, model=str(tiny_model)).run(start=1, step=2).results
    assert sub.ms.shape == (2, len(o), 3, 3) and list(sub.frames) == [1, 3]
    np.testing.assert_allclose(sub.ms, res.ms[1::2][:, o.indices], atol=1e-5)
    np.testing.assert_allclose(sub.efg, res.efg[1::2][:, o.indices], atol=1e-5)


def test_importing_dynnmr_shortens_openmp_spinning_unless_set():
    """GOMP_SPINCOUNT defaults to 10,000 when dynnmr is imported before torch (benchmarks:
    beside one busy process libgomp's 300,000 made analyze 5x slower); a user's value stays."""
    import os
    import subprocess
    import sys

    code = "import dynnmr, os, sys; sys.stdout.write(os.environ['GOMP_SPINCOUNT'])"
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout == "10000"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "GOMP_SPINCOUNT": "5"}, capture_output=True,
                         text=True, check=True)  # fmt: skip
    assert out.stdout == "5"
