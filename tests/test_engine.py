"""`dynnmr analyze`: the store's layout and values, selections, resume after kill -9, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import zarr
from ase.io import write

from dynnmr.analysis import format_summary, summarize
from dynnmr.cli import main
from dynnmr.engine import analyze
from dynnmr.errors import InputError
from dynnmr.inference import predict_images
from dynnmr.modelfile import load_model

from helpers import make_traj, run


def test_store_layout_and_values_match_predict(tmp_path, tiny_model):
    frames = make_traj(tmp_path / "t.extxyz")
    out = run(tmp_path / "t.extxyz", tmp_path / "s.zarr", tiny_model)
    g = zarr.open_group(str(out), mode="r")
    n = len(frames[0])
    assert g["ms"].shape == (24, n, 9) and g["efg"].shape == (24, n, 9)
    assert g["ms"].dtype == np.float32 and g["ms"].chunks[0] == 5
    assert tuple(g["ms"].metadata.dimension_names) == ("frame", "site", "component")
    assert g.attrs["complete"] is True and g.attrs["frames_done"] == 24
    assert g.attrs["units"]["ms"] == "ppm" and g.attrs["units"]["efg"] == "au"
    assert g.attrs["source"]["name"] == "t.extxyz" and len(g.attrs["model_sha256"]) == 64
    np.testing.assert_allclose(g["time_ps"][:], 0.002 * np.arange(24))
    np.testing.assert_allclose(g["cell"][3], frames[3].cell.array)
    net, info = load_model(tiny_model)
    ref = predict_images(net, info, [f.copy() for f in frames[:7]])
    for k in range(7):
        np.testing.assert_allclose(g["ms"][k].reshape(-1, 3, 3), ref[k].arrays["ms"], rtol=2e-5, atol=1e-3)
        efg = g["efg"][k].reshape(-1, 3, 3)
        si = frames[k].numbers == 14
        assert np.isnan(efg[si]).all()  # EFG not covered for Si by this model
        np.testing.assert_allclose(efg[~si], ref[k].arrays["efg"][~si], rtol=2e-5, atol=1e-6)
    xr = pytest.importorskip("xarray", reason="xarray is a test dependency")
    ds = xr.open_zarr(str(out), consolidated=False)
    assert ds["ms"].dims == ("frame", "site", "component")


def test_species_and_frame_selection(tmp_path, tiny_model):
    make_traj(tmp_path / "t.extxyz")
    with open(tmp_path / "t.extxyz") as fh:  # strip the times: --dt gives them
        text = fh.read().replace(" time=", " t_other=")
    (tmp_path / "u.extxyz").write_text(text)
    out = run(tmp_path / "u.extxyz", tmp_path / "s.zarr", tiny_model, species="Si", frames="3:20:4", dt_ps=0.5)
    g = zarr.open_group(str(out), mode="r")
    assert set(g["numbers"][:]) == {14} and g["ms"].shape[:2] == (5, 24)
    np.testing.assert_array_equal(g["frame_index"][:], [3, 7, 11, 15, 19])
    np.testing.assert_allclose(g["time_ps"][:], 0.5 * np.array([3, 7, 11, 15, 19]))
    stats = summarize(out)
    assert set(stats) == {"Si"}
    si = stats["Si"]
    assert si["delta_iso_ppm"]["instantaneous"][0] == pytest.approx(300.0 - si["sigma_iso_ppm"]["instantaneous"][0])
    # the time-averaged tensor's parameters come from the averaged tensor: narrower spread
    assert si["sigma_iso_ppm"]["time_averaged"][1] <= si["sigma_iso_ppm"]["instantaneous"][1]
    # the mean isotropic shielding is linear in the tensor: the same either way
    assert si["sigma_iso_ppm"]["time_averaged"][0] == pytest.approx(si["sigma_iso_ppm"]["instantaneous"][0])
    lines = format_summary(stats).splitlines()
    assert lines[2].split() == ["species", "parameter", "instantaneous", "time-averaged"]
    row = next(line.split() for line in lines if line.split()[:2] == ["Si", "sigma_iso_ppm"])
    assert float(row[2]) == pytest.approx(si["sigma_iso_ppm"]["instantaneous"][0], abs=1e-3)


def test_refuses_overwrite_and_mismatched_resume(tmp_path, tiny_model):
    make_traj(tmp_path / "t.extxyz", n_frames=6)
    out = run(tmp_path / "t.extxyz", tmp_path / "s.zarr", tiny_model)
    with pytest.raises(FileExistsError, match="--overwrite"):
        run(tmp_path / "t.extxyz", out, tiny_model)
    run(tmp_path / "t.extxyz", out, tiny_model, overwrite=True)
    other = tmp_path / "other.pt"
    other.write_bytes(tiny_model.read_bytes() + b"\0")  # same weights, another file: another hash
    with pytest.raises(ValueError, match="different model_sha256"):
        run(tmp_path / "t.extxyz", out, other, resume=True)
    make_traj(tmp_path / "t.extxyz", n_frames=6, seed=1)  # a different input
    with pytest.raises(ValueError, match="different source"):
        run(tmp_path / "t.extxyz", out, tiny_model, resume=True)


def test_resume_with_every_frame_stored_only_marks_the_store_complete(tmp_path, tiny_model):
    """A run killed after its last chunk but before it was marked complete (10 frames,
    chunks of 5: nothing is left to read)."""
    make_traj(tmp_path / "t.extxyz", n_frames=10)
    out = run(tmp_path / "t.extxyz", tmp_path / "s.zarr", tiny_model)
    g = zarr.open_group(str(out), mode="r+")
    g.attrs["complete"] = False
    before = g["ms"][:]
    run(tmp_path / "t.extxyz", out, tiny_model, resume=True)
    g = zarr.open_group(str(out), mode="r")
    assert g.attrs["complete"] is True and g.attrs["frames_done"] == 10
    np.testing.assert_array_equal(g["ms"][:], before)


def test_resume_after_kill_gives_identical_store(tmp_path, tiny_model):
    traj = tmp_path / "t.extxyz"
    make_traj(traj, n_frames=250, repeat=(2, 2, 2))
    ref = run(traj, tmp_path / "ref.zarr", tiny_model)
    out = tmp_path / "killed.zarr"
    cmd = [sys.executable, "-m", "dynnmr.cli", "analyze", str(traj), "-o", str(out), "--model", str(tiny_model),
           "--chunk-frames", "5", "--device", "cpu", "-q"]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        meta = out / "zarr.json"
        if meta.exists() and json.loads(meta.read_text())["attributes"].get("frames_done", 0) >= 50:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = zarr.open_group(str(out), mode="r").attrs["frames_done"]
    assert 0 < done < 250, "the run must be killed mid-way for this test to mean anything"
    assert main(["analyze", str(traj), "-o", str(out), "--model", str(tiny_model), "--chunk-frames", "5",
                 "--device", "cpu", "--resume", "-q"]) == 0  # fmt: skip
    a, b = zarr.open_group(str(ref), mode="r"), zarr.open_group(str(out), mode="r")
    assert b.attrs["complete"] is True
    for name in ("ms", "efg", "time_ps", "cell", "frame_index", "numbers", "atom_index"):
        np.testing.assert_array_equal(a[name][:], b[name][:])


GOOD = '3\nLattice="8 0 0 0 8 0 0 0 8" Properties=species:S:1:pos:R:3 time=0.0\nSi 0 0 0\nO 1.6 0 0\nO 0 1.6 0\n'


@pytest.mark.parametrize(
    "text, message",
    [
        (GOOD * 7 + "3\nh\nSi 0 0 0\n", ":36: frame 7: truncated frame"),
        (GOOD * 7 + GOOD.replace("3\n", "2\n", 1).replace("O 0 1.6 0\n", ""), ":36: frame 7: atom count changed"),
        (GOOD * 7 + GOOD.replace("1.6 0 0", "1.6 zz 0"), ":39: frame 7: atom 2: non-numeric"),
        (GOOD * 7 + GOOD.replace("1.6 0 0", "nan 0 0"), ":39: frame 7: atom 2: non-finite"),
        (GOOD * 7 + GOOD.replace('Lattice="8 0 0 0 8 0 0 0 8" ', ""), ":36: frame 7: missing cell"),
    ],
)
def test_bad_input_keeps_good_frames_and_fails(tmp_path, tiny_model, capsys, text, message):
    traj = tmp_path / "bad.extxyz"
    traj.write_text(text)
    out = tmp_path / "bad.zarr"
    rc = main(["analyze", str(traj), "-o", str(out), "--model", str(tiny_model), "--chunk-frames", "5", "-q"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in err and str(traj) in err
    g = zarr.open_group(str(out), mode="r")
    assert g.attrs["frames_done"] == 7 and g["ms"].shape[0] == 7 and np.isfinite(g["ms"][:]).all()
    assert g.attrs["complete"] is False and message.split(": ", 1)[1] in g.attrs["error"]


def test_unknown_element_empty_and_missing_files(tmp_path, tiny_model, capsys):
    traj = tmp_path / "na.extxyz"
    traj.write_text(GOOD.replace("Si 0 0 0", "Na 0 0 0"))
    assert main(["analyze", str(traj), "--model", str(tiny_model), "-q"]) == 2
    assert "frame 0: element(s) Na unknown to the model" in capsys.readouterr().err
    (tmp_path / "empty.extxyz").write_text("")
    assert main(["analyze", str(tmp_path / "empty.extxyz"), "--model", str(tiny_model), "-q"]) == 2
    assert "empty.extxyz: file is empty" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path / "missing.extxyz"), "--model", str(tiny_model), "-q"]) == 2
    assert "missing.extxyz: no such file" in capsys.readouterr().err
    traj.write_text(GOOD)
    assert main(["analyze", str(traj), "--model", "silicate-29si", "--species", "O", "-q"]) == 2
    assert "predicts ms only for Si, not for the selected O" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # refused while parsing the options, before any work
        main(["analyze", str(traj), "--model", "silicate-29si", "--species", "Si,Qx", "-q"])
    assert exit_.value.code == 2 and "--species: unknown element(s): 'Qx'" in capsys.readouterr().err
    assert main(["analyze", str(tmp_path / "missing.extxyz"), "--model", str(tiny_model), "-q"]) == 2
    assert "missing.extxyz: no such file" in capsys.readouterr().err
    with pytest.raises(InputError):
        analyze(tmp_path / "missing.extxyz", model=str(tiny_model), progress=False)


def test_dcd_with_topology_matches_extxyz(tmp_path, tiny_model):
    """Binary trajectories go through MDAnalysis; the tensors agree with the extxyz run."""
    import warnings

    import MDAnalysis as mda

    frames = make_traj(tmp_path / "t.extxyz", n_frames=6)
    write(tmp_path / "top.pdb", frames[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = mda.Universe(str(tmp_path / "top.pdb"))
        with mda.Writer(str(tmp_path / "t.dcd"), len(frames[0])) as w:
            for f in frames:
                u.atoms.positions = f.positions
                u.dimensions = f.cell.cellpar()
                w.write(u.atoms)
    a = run(tmp_path / "t.extxyz", tmp_path / "a.zarr", tiny_model)
    b = run(tmp_path / "t.dcd", tmp_path / "b.zarr", tiny_model, topology=tmp_path / "top.pdb")
    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    np.testing.assert_allclose(gb["ms"][:], ga["ms"][:], rtol=1e-4, atol=1e-2)  # DCD stores float32
    with pytest.raises(InputError, match="need --topology"):
        run(tmp_path / "t.dcd", tmp_path / "c.zarr", tiny_model)


def test_profile_separates_start_up_from_throughput(tmp_path, tiny_model):
    """The profile's start-up (model load, store creation) is part of the wall time, and
    the rate after it counts the same atoms over the rest."""
    from dynnmr.engine import Profile

    make_traj(tmp_path / "t.extxyz", n_frames=6)
    prof = Profile()
    run(tmp_path / "t.extxyz", tmp_path / "s.zarr", tiny_model, profile=prof)
    assert prof.frames == 6 and prof.atoms == 6 * 72
    assert 0 < prof.startup < prof.wall
    assert prof.rate(startup=False) == pytest.approx(prof.atoms / (prof.wall - prof.startup))
    assert prof.rate() == pytest.approx(prof.atoms / prof.wall) and prof.rate(startup=False) > prof.rate()
    assert f"{prof.startup:.2f} s start-up" in prof.report()


def test_device_graphs_match_reader_thread_graphs(tmp_path, tiny_model):
    """The on-device (vesin torch) graph path, used on GPUs, gives the same store as the CPU path."""
    make_traj(tmp_path / "t.extxyz", n_frames=7)
    a = run(tmp_path / "t.extxyz", tmp_path / "a.zarr", tiny_model, graphs="cpu")
    b = run(tmp_path / "t.extxyz", tmp_path / "b.zarr", tiny_model, graphs="device")
    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    np.testing.assert_allclose(gb["ms"][:], ga["ms"][:], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(gb["efg"][:], ga["efg"][:], rtol=1e-5, atol=1e-6)


def test_files_written_by_lammps(tmp_path, tiny_model):
    """LAMMPS's own extxyz (Time= in ps) and its text dump (step numbers, --md-timestep)."""
    from ase.io import iread as ase_iread

    from dynnmr.reader import iread_extxyz

    data = __import__("pathlib").Path(__file__).parent / "data"
    for ref, got in zip(ase_iread(str(data / "lammps.extxyz")), iread_extxyz(data / "lammps.extxyz")):
        np.testing.assert_array_equal(got.positions, ref.positions)
    a = run(data / "lammps.extxyz", tmp_path / "a.zarr", tiny_model)
    b = run(data / "lammps.dump", tmp_path / "b.zarr", tiny_model, fmt="lammps-dump-text", md_timestep_ps=0.001)
    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    np.testing.assert_allclose(ga["time_ps"][:], [0.0, 0.005, 0.01])
    np.testing.assert_allclose(gb["time_ps"][:], [0.0, 0.005, 0.01])
    np.testing.assert_allclose(gb["ms"][:], ga["ms"][:], rtol=1e-5, atol=1e-3)  # same frames, same tensors


def test_ase_trajectory_file(tmp_path, tiny_model):
    """ASE's binary .traj goes through ase.io.iread and gives the same store as extxyz."""
    from ase.io import Trajectory

    frames = make_traj(tmp_path / "t.extxyz", n_frames=4)
    with Trajectory(str(tmp_path / "t.traj"), "w") as tr:
        for f in frames:
            tr.write(f)
    a = run(tmp_path / "t.extxyz", tmp_path / "a.zarr", tiny_model)
    b = run(tmp_path / "t.traj", tmp_path / "b.zarr", tiny_model, dt_ps=0.002)
    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    np.testing.assert_allclose(gb["ms"][:], ga["ms"][:], rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(gb["time_ps"][:], ga["time_ps"][:])


def test_correlate_during_analyze_matches_fft_of_store(tmp_path, tiny_model):
    """--correlate's multiple-tau result equals the FFT autocorrelation of the stored series."""
    from dynnmr import dynamics as D

    make_traj(tmp_path / "t.extxyz", n_frames=40)
    out = run(tmp_path / "t.extxyz", tmp_path / "s.zarr", tiny_model, correlate=True)
    g = zarr.open_group(str(out), mode="r")
    lags = g["analysis/mtau_lag_frames"][:]
    level0 = lags < 32
    for t in ("ms", "efg"):
        x = np.asarray(g[t][:], dtype=np.float64)
        ok = np.isfinite(x).all(axis=(0, 2))
        ref = D.correlation_functions(x[:, ok])
        scale = max(np.abs(r).max() for r in ref.values())  # EFG l=0 and l=1 are zero up to round-off
        for l in (0, 1, 2):
            got = g[f"analysis/mtau_{t}_l{l}"][:][level0][:, ok]
            np.testing.assert_allclose(got, ref[l][lags[level0]], rtol=1e-6, atol=1e-9 * scale)
    # the same analysis on a store written without --correlate, in blocks of 7 frames
    from dynnmr.correlator import MultipleTau

    plain = run(tmp_path / "t.extxyz", tmp_path / "p.zarr", tiny_model)
    MultipleTau(plain, chunk_frames=7).run()
    gp = zarr.open_group(str(plain), mode="r")
    np.testing.assert_array_equal(gp["analysis/mtau_lag_frames"][:], lags)
    for t in ("ms", "efg"):
        np.testing.assert_allclose(gp[f"analysis/mtau_{t}_l2"][:], g[f"analysis/mtau_{t}_l2"][:], rtol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the device machine)")
@pytest.mark.parametrize("graphs", ["device", "cpu"])
def test_cuda_store_matches_cpu_store(tmp_path, tiny_model, graphs):
    """analyze on the GPU (graphs on the GPU or in the reader thread) stores what the CPU run stores."""
    make_traj(tmp_path / "t.extxyz", n_frames=12)
    a = run(tmp_path / "t.extxyz", tmp_path / "a.zarr", tiny_model)
    b = analyze(tmp_path / "t.extxyz", tmp_path / "b.zarr", model=str(tiny_model), chunk_frames=5, progress=False,
                device="cuda", graphs=graphs)  # fmt: skip
    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    np.testing.assert_allclose(gb["ms"][:], ga["ms"][:], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(gb["efg"][:], ga["efg"][:], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(gb["time_ps"][:], ga["time_ps"][:])


def test_progress_line_says_what_it_counts():
    """Frames done, and the share of the file behind them (not of the selection)."""
    import io

    from dynnmr.engine import _Progress

    out = io.StringIO()
    bar = _Progress(True, stream=out)
    bar.update(64, 64 * 72, 0.81, force=True)
    line = out.getvalue().strip()
    assert line.startswith("64 frames done | 81% of the file |") and "atoms/s" in line
