"""`dynnmr params` on every supported format, its options and its failure modes."""

import subprocess
import sys

import numpy as np
import pytest

import dynnmr
from dynnmr import tensorfiles
from dynnmr.cli import main
from dynnmr.params import COLUMNS

from conftest import MAGRES
from helpers import csv_rows, load_csv, make_traj, run

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def read_csv(path):
    return csv_rows(path)


def test_params_csv_for_castep_file(tmp_path):
    out = tmp_path / "eth.csv"
    assert main(["params", str(MAGRES / "ethanol.magres"), "-o", str(out)]) == 0
    rows = read_csv(out)
    assert list(rows[0]) == COLUMNS and len(rows) == 9
    o = next(r for r in rows if r["species"] == "O")
    assert o["isotope"] == "17O" and float(o["Cq_MHz"]) / float(o["Vzz_au"]) < 0  # sign of Q V_zz; Q(17O) < 0
    c = next(r for r in rows if r["species"] == "C")
    assert c["isotope"] == "13C" and c["Cq_MHz"] == "" and c["Vzz_au"] != ""
    h = next(r for r in rows if r["species"] == "H")
    assert h["isotope"] == "1H" and h["Cq_MHz"] == ""  # the natural isotope, not 2H
    for r in rows:
        assert 0 <= float(r["eta_sigma"]) <= 1 and 0 <= float(r["eta_Q"]) <= 1
        assert -1 <= float(r["skew"]) <= 1 and float(r["span_ppm"]) >= 0


def test_isotope_override_and_reference(tmp_path):
    out = tmp_path / "eth.csv"
    args = ["params", str(MAGRES / "ethanol.magres"), "-o", str(out)]
    assert main(args + ["--isotope", "H=1H", "--reference", "H=31.0,C=170"]) == 0
    rows = read_csv(out)
    h = next(r for r in rows if r["species"] == "H")
    assert h["isotope"] == "1H" and h["Cq_MHz"] == ""
    assert float(h["delta_iso_ppm"]) == pytest.approx(31.0 - float(h["sigma_iso_ppm"]))
    o = next(r for r in rows if r["species"] == "O")
    assert o["delta_iso_ppm"] == ""  # no reference given for O


def test_params_table_on_stdout(capsys):
    assert main(["params", str(MAGRES / "nacl.magres")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["structure", "index", "species", "sigma_iso_ppm"]
    assert len(out) == 1 + 8


def test_params_on_extxyz_and_json(tmp_path, shared_data):
    atoms = tensorfiles.read_magres(MAGRES / "ethanol.magres")
    atoms.arrays["ms"][:6] = np.nan
    del atoms.arrays["efg"]
    path = tmp_path / "t.extxyz"
    tensorfiles.write_extxyz(path, atoms)
    out = tmp_path / "t.csv"
    assert main(["params", str(path), "-o", str(out)]) == 0
    rows = read_csv(out)
    assert [r["species"] for r in rows] == ["C", "C", "O"] and rows[0]["Vzz_au"] == ""
    out = tmp_path / "s.csv"
    assert main(["params", str(shared_data / "silicate_29si_gipaw.json"), "-o", str(out)]) == 0
    rows = read_csv(out)
    assert len(rows) == 1228 and {r["species"] for r in rows} == {"Si"}
    assert {r["isotope"] for r in rows} == {"29Si"}


def test_errors_are_one_line_and_nonzero(tmp_path, capsys):
    assert main(["params", str(tmp_path / "nope.magres")]) == 2
    assert "nope.magres: no such file" in capsys.readouterr().err
    assert main(["params", str(MAGRES / "ethanol.magres"), "--isotope", "O=99O"]) == 2
    assert "99O" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["params", str(MAGRES / "ethanol.magres"), "--isotope", "O17O"])


def test_console_entry_point_runs():
    r = subprocess.run(
        [sys.executable, "-m", "dynnmr.cli", "params", str(MAGRES / "nacl.magres")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "Na" in r.stdout and "Cl" in r.stdout


@pytest.mark.parametrize("argv, message", [
    (["analyze", "x.extxyz", "--frames", "a:b"], "--frames: expects whole numbers"),
    (["analyze", "x.extxyz", "--dt", "0"], "--dt: must be > 0"),
    (["analyze", "x.extxyz", "--dt", "-1"], "--dt: must be > 0"),
    (["analyze", "x.extxyz", "--chunk-frames", "0"], "--chunk-frames: must be >= 1"),
    (["analyze", "x.extxyz", "--species", ""], "--species: unknown element"),
    (["dynamics", "s.zarr", "--field", "nan"], "--field: must be finite"),
    (["dynamics", "s.zarr", "--max-lag", "-5"], "--max-lag: must be > 0"),
    (["dynamics", "s.zarr", "--window", "0"], "--window: must be > 0"),
    (["dynamics", "s.zarr", "--species", "Xx"], "unknown element(s): 'Xx'"),
    (["spectrum", "s.zarr", "--species", "O", "--range=5:5"], "--range: expects LO < HI"),
    (["spectrum", "s.zarr", "--species", "O", "--range", "200:-100"], "--range: expects LO < HI"),
    (["spectrum", "s.zarr", "--species", "O", "--points", "0"], "--points: must be >= 2"),
    (["spectrum", "s.zarr", "--species", "O", "--zcw", "40"], "--zcw: must be <= 22"),
])  # fmt: skip
def test_options_are_checked_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_negative_range_needs_no_equals_sign(tmp_path):
    out = tmp_path / "c.csv"
    assert main(["spectrum", str(REPO / "dynnmr" / "data" / "ethanol.magres"), "--species", "C", "--range", "-200:600",
                 "--reference", "C=170", "-o", str(out)]) == 0  # fmt: skip
    ppm = load_csv(out)[:, 0]
    assert ppm.min() == pytest.approx(-200, abs=0.5) and ppm.max() == pytest.approx(600, abs=0.5)


def test_the_shift_reference_travels_from_the_model_to_params_and_spectrum(tmp_path, tiny_model, capsys):
    """predict records the model's sigma_ref in its output; params and spectrum use it
    without --reference (before: "no shift reference for Si")."""
    quartz = REPO / "dynnmr" / "data" / "alpha_quartz.extxyz"
    out = tmp_path / "q.extxyz"
    assert main(["predict", str(quartz), "-o", str(out), "--model", str(tiny_model)]) == 0
    (atoms,) = tensorfiles.read(out)
    assert atoms.info["sigma_ref_ppm_Si"] == 300.0 and atoms.info["model"] == "tiny"  # the tiny model's reference
    assert main(["params", str(out), "-o", str(tmp_path / "p.csv")]) == 0
    si = [r for r in read_csv(tmp_path / "p.csv") if r["species"] == "Si"]
    assert all(float(r["delta_iso_ppm"]) == pytest.approx(300.0 - float(r["sigma_iso_ppm"]), abs=1e-6) for r in si)
    assert main(["spectrum", str(out), "--species", "Si", "-o", str(tmp_path / "s.csv")]) == 0
    # a reference given on the command line wins
    assert main(["params", str(out), "--reference", "Si=310", "-o", str(tmp_path / "p2.csv")]) == 0
    si2 = [r for r in read_csv(tmp_path / "p2.csv") if r["species"] == "Si"]
    assert float(si2[0]["delta_iso_ppm"]) == pytest.approx(310.0 - float(si2[0]["sigma_iso_ppm"]), abs=1e-6)


def test_params_reads_a_store_as_time_averaged_tensors(tmp_path, tiny_model):
    make_traj(tmp_path / "t.extxyz", n_frames=6)
    store = run(tmp_path / "t.extxyz", tmp_path / "s.zarr", tiny_model, species="O")
    assert main(["params", str(store), "-o", str(tmp_path / "p.csv")]) == 0
    rows = read_csv(tmp_path / "p.csv")
    ds = dynnmr.open_store(store)
    assert [int(r["index"]) for r in rows] == ds.atom_index.values.tolist()  # the sites' indices in the structure
    mean_iso = ds.ms.values.reshape(6, -1, 3, 3).mean(axis=0).trace(axis1=1, axis2=2) / 3
    np.testing.assert_allclose([float(r["sigma_iso_ppm"]) for r in rows], mean_iso, rtol=1e-5)
    assert all(r["Cq_MHz"] not in ("", None) for r in rows)


def test_a_missing_optional_extra_names_the_install_command(tmp_path, monkeypatch, capsys):
    """--mas without mrsimulator: one line saying what to install, not a traceback."""
    atoms = tensorfiles.read(MAGRES / "ethanol.magres")
    monkeypatch.setitem(sys.modules, "mrsimulator", None)  # as if not installed
    argv = ["spectrum", str(MAGRES / "ethanol.magres"), "--species", "C", "--reference", "C=170", "--mas", "10000"]
    assert atoms and main(argv + ["-o", str(tmp_path / "s.csv")]) == 2
    assert "pip install 'dynnmr[mrsim]'" in capsys.readouterr().err


def test_plots_draw_on_given_axes_and_leave_the_backend_alone(tmp_path):
    import matplotlib

    from dynnmr.spectrum import plot_spectrum

    before = matplotlib.get_backend()
    matplotlib.use("pdf")  # a backend of the user's that is not the Agg the old code forced
    try:
        ppm = np.linspace(-50, 50, 101)
        ax = plot_spectrum(ppm, np.exp(-(ppm**2) / 50), "29Si", 14.1, tmp_path / "s.png")
        assert (tmp_path / "s.png").stat().st_size > 0 and matplotlib.get_backend() == "pdf"
        from PIL import Image

        assert Image.open(tmp_path / "s.png").text["Software"] == f"dynnmr {dynnmr.__version__}"
    finally:
        matplotlib.use(before)
    from matplotlib.figure import Figure

    mine = Figure().subplots()
    assert plot_spectrum(ppm, ppm * 0 + 1, "17O", 9.4, ax=mine) is mine and len(mine.lines) == 1
    assert ax is not mine and ax.get_xlim()[0] > ax.get_xlim()[1]  # ppm runs right to left


def _read_spectrum(path):
    rows = read_csv(path)
    return np.array([float(r["ppm"]) for r in rows]), np.array([float(r["intensity"]) for r in rows])


def test_spectrum_range_follows_the_data_and_warns_when_a_given_one_clips(tmp_path, capsys):
    """13C of ethanol (shifts near 20 and 60 ppm): the axis covers the lines, not -300:200;
    a --range that cuts the lines off says how much; MAS sidebands stay inside the range."""
    magres, ref = str(MAGRES / "ethanol.magres"), ["--reference", "C=170"]
    assert main(["spectrum", magres, "--species", "C", *ref, "-o", str(tmp_path / "a.csv")]) == 0
    ppm, y = _read_spectrum(tmp_path / "a.csv")
    assert ppm.max() - ppm.min() < 250 and y[0] < 1e-3 * y.max() and y[-1] < 1e-3 * y.max()  # nothing cut
    assert main(["spectrum", magres, "--species", "C", *ref, "--range", "-20:30", "-o", str(tmp_path / "b.csv")]) == 0
    assert "of the intensity lies outside --range -20:30 ppm" in capsys.readouterr().err
    # slow MAS: the centre of gravity of centre band and sidebands is the isotropic one
    cog = []
    for rate in ("2000", "inf"):
        assert main(["spectrum", magres, "--species", "C", *ref, "--mas", rate, "-o", str(tmp_path / "m.csv")]) == 0
        ppm, y = _read_spectrum(tmp_path / "m.csv")
        cog.append((ppm * y).sum() / y.sum())
    assert cog[0] == pytest.approx(cog[1], abs=0.5)


def test_one_vocabulary_across_commands(tmp_path, capsys):
    """-q and -v on every command, --device auto by default, defaults shown in --help, -o for the
    dynamics JSON, --species for elements everywhere (the old --sites and --nucleus still
    accepted, with a warning)."""
    from dynnmr.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, sub in commands.items():
        assert "--quiet" in sub.format_help() and "--verbose" in sub.format_help(), name
    for name in ("analyze", "predict"):
        assert commands[name].parse_args(["x", "-o", "y"]).device == "auto"
        assert "(default: auto)" in commands[name].format_help()
    assert commands["dynamics"].parse_args(["s.zarr", "-o", "d.json"]).json == "d.json"
    assert commands["label"].parse_args(["x", "-o", "y", "--species", "Si"]).species == "Si"
    assert commands["label"].parse_args(["x", "-o", "y", "--sites", "Si"]).sites == "Si"  # the old name
    # elements by --species everywhere; the spectrum observes their usual isotope unless --isotope
    for name in ("analyze", "dynamics", "spectrum", "label", "params"):
        assert "--species" in commands[name].format_help(), name
    magres = str(MAGRES / "ethanol.magres")
    ref = ["--reference", "C=170", "--reference", "H=31", "--reference", "O=300", "-o"]
    assert main(["spectrum", magres, "--species", "C", *ref, str(tmp_path / "a.csv")]) == 0
    assert main(["spectrum", magres, "--nucleus", "13C", *ref, str(tmp_path / "b.csv")]) == 0  # deprecated
    assert "--nucleus is deprecated" in capsys.readouterr().err
    np.testing.assert_array_equal(load_csv(tmp_path / "a.csv"), load_csv(tmp_path / "b.csv"))
    assert main(["spectrum", magres, "--species", "O", "--isotope", "13C", *ref, str(tmp_path / "c.csv")]) == 2
    assert "not an isotope of --species O" in capsys.readouterr().err
    assert main(["params", magres, "--species", "O"]) == 0
    assert [ln.split()[2] for ln in capsys.readouterr().out.splitlines()[1:]] == ["O"]
    # -v adds the traceback of an error to its one line; without it there is only the line
    assert main(["params", str(tmp_path / "none.magres")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"dynnmr: error: {tmp_path / 'none.magres'}: no such file"]
    assert main(["params", str(tmp_path / "none.magres"), "-v"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().endswith("no such file")
    # -q silences the information lines, not the results
    atoms_file = str(MAGRES / "ethanol.magres")
    assert main(["params", atoms_file, "-o", str(tmp_path / "p.csv"), "-q"]) == 0
    assert capsys.readouterr().err == ""


def test_parameter_value_objects_against_hand_values():
    from dynnmr.params import QuadrupolarParameters, ShieldingParameters

    ms = np.array([np.diag([10.0, 20.0, 40.0]), np.full((3, 3), np.nan)])
    ms[0, 0, 1] = 3.0  # an antisymmetric part: (0, 1) entry 3, (1, 0) entry 0
    ms[0, 1, 0] = 0.0
    p = ShieldingParameters.of(ms)
    # symmetric part of row 0: diag(10, 20, 40) with 1.5 off the diagonal, eigenvalues by hand
    lo, mid = 15 - np.sqrt(25 + 2.25), 15 + np.sqrt(25 + 2.25)
    assert p.sigma_iso_ppm[0] == pytest.approx(70 / 3)
    assert p.zeta_ppm[0] == pytest.approx(40 - 70 / 3)
    assert p.eta[0] == pytest.approx((mid - lo) / (40 - 70 / 3))
    assert p.span_ppm[0] == pytest.approx(40 - lo) and p.skew[0] == pytest.approx(3 * (70 / 3 - mid) / (40 - lo))
    assert p.antisym_ppm[0] == pytest.approx(1.5)
    assert p.delta_iso_ppm(100.0)[0] == pytest.approx(100 - 70 / 3)
    assert all(np.isnan(getattr(p, f)[1]) for f in ("sigma_iso_ppm", "zeta_ppm", "eta", "span_ppm", "skew"))
    # C_Q = e Q Vzz / h: 17O, Q = -25.58 mb, Vzz = 1 au = 9.7173624e21 V/m^2
    q = QuadrupolarParameters.of(np.array([np.diag([-0.4, -0.6, 1.0]), np.diag([0.5, 0.5, -1.0])]), -25.58)
    e, h = 1.602176634e-19, 6.62607015e-34
    assert q.Cq_MHz[0] == pytest.approx(e * -25.58e-31 * 9.7173624e21 / h * 1e-6, rel=1e-6)
    assert q.eta_Q[0] == pytest.approx(0.2) and q.eta_Q[1] == pytest.approx(0.0)
    assert q.abs_Cq_MHz[1] == pytest.approx(abs(q.Cq_MHz[0]))
    assert np.isnan(QuadrupolarParameters.of(np.diag([-0.4, -0.6, 1.0]), 0.0).Cq_MHz)  # I = 1/2: no C_Q
