"""Static powder spectra: analytic edges and singularities, moments, invariance, mrsimulator."""

import numpy as np
import pytest

from dynnmr import tensors as T
from dynnmr.isotopes import ISOTOPES
from dynnmr.spectrum import static_spectrum

from helpers import csv_rows, load_csv

AXIS = np.linspace(-300, 150, 1801)  # ppm, 0.25 ppm bins
STEP = AXIS[1] - AXIS[0]


def support(y, frac=1e-3):
    on = y > frac * y.max()
    return AXIS[on].min(), AXIS[on].max()


def test_csa_pattern_edges_and_peak():
    sigma = T.tensor_from_haeberlen(400.0, -60.0, 0.4, (10, 20, 30))
    shift = T.shift_tensor(sigma, 300.0)
    d11, d22, d33 = np.sort(np.linalg.eigvalsh(shift))[::-1]
    y = static_spectrum(AXIS, "29Si", 14.1, shift=shift[None], zcw_index=16)
    lo, hi = support(y)
    assert lo == pytest.approx(d33, abs=2 * STEP) and hi == pytest.approx(d11, abs=2 * STEP)
    assert AXIS[np.argmax(y)] == pytest.approx(d22, abs=2 * STEP)
    assert y.sum() * STEP == pytest.approx(1.0)
    assert (y * AXIS).sum() * STEP == pytest.approx(np.trace(shift) / 3, abs=0.5)


def ct_prefactor_ppm(cq_hz, field_t=14.1, iso="17O"):
    i = ISOTOPES[iso]
    nu0 = abs(i.larmor_mhz(field_t)) * 1e6
    nu_q = 3 * cq_hz / (2 * i.spin * (2 * i.spin - 1))
    return nu_q**2 / (6 * nu0) * (i.spin * (i.spin + 1) - 0.75) / nu0 * 1e6


def test_central_transition_eta0_singularities():
    """eta = 0: the pattern spans -2/3 P .. +3/8 P, with singularities at both ends
    (theta = 41.8 deg and theta = 90 deg) and a step at 0 (theta = 0)."""
    cq = 6e6
    vzz = cq / T.quadrupolar_coupling_hz(1.0, -25.58)
    y = static_spectrum(AXIS, "17O", 14.1, efg=T.tensor_from_efg(vzz, 0.0, (5, 40, 70))[None], zcw_index=16)
    p = ct_prefactor_ppm(cq)
    lo, hi = support(y)
    assert lo == pytest.approx(-2 / 3 * p, abs=2 * STEP) and hi == pytest.approx(3 / 8 * p, abs=2 * STEP)
    on = y[y > 0]
    for position in (-2 / 3 * p, 3 / 8 * p):
        near = np.abs(AXIS - position) <= 2 * STEP
        assert y[near].max() > 3 * on.mean()


@pytest.mark.parametrize("eta", [0.0, 0.35, 1.0])
def test_central_transition_centre_of_gravity_is_the_isotropic_quadrupolar_shift(eta):
    cq = 5e6
    vzz = cq / T.quadrupolar_coupling_hz(1.0, -25.58)
    y = static_spectrum(AXIS, "17O", 14.1, efg=T.tensor_from_efg(vzz, eta, (0, 0, 0))[None], zcw_index=16)
    nu0 = abs(ISOTOPES["17O"].larmor_mhz(14.1)) * 1e6
    qis = -3 / 40 * (cq / nu0) ** 2 * (8.75 - 0.75) / (6.25 * 16) * (1 + eta**2 / 3) * 1e6
    assert (y * AXIS).sum() * STEP == pytest.approx(qis, rel=0.01)


def test_rotating_all_tensors_together_leaves_the_powder_spectrum():
    rng = np.random.default_rng(2)
    sig = T.tensor_from_haeberlen(250.0, rng.uniform(-40, 40, 5), rng.uniform(0, 1, 5), rng.uniform(0, 180, (3, 5)))
    efg = T.tensor_from_efg(rng.uniform(0.6, 1.0, 5), rng.uniform(0, 1, 5), rng.uniform(0, 180, (3, 5)))
    shift = T.shift_tensor(sig, 290.0)
    y = static_spectrum(AXIS, "17O", 14.1, shift=shift, efg=efg, zcw_index=16, broadening_ppm=2.0)
    rot = T.rotation_from_euler(33.0, 71.0, 12.0)
    yr = static_spectrum(AXIS, "17O", 14.1, shift=rot @ shift @ rot.T, efg=rot @ efg @ rot.T, zcw_index=16,
                         broadening_ppm=2.0)  # fmt: skip
    assert np.abs(y - yr).sum() * STEP < 0.01


def test_all_transitions_first_order_satellites():
    """I = 3/2 (23Na), eta = 0: satellites span -nu_Q/2 .. +nu_Q (horns at +-nu_Q/2); intensities 3:4:3."""
    cq = 1.0e6
    vzz = cq / T.quadrupolar_coupling_hz(1.0, ISOTOPES["23Na"].quadrupole_moment_mb)
    nu0 = abs(ISOTOPES["23Na"].larmor_mhz(9.4)) * 1e6
    nu_q_ppm = 3 * cq / (2 * 1.5 * 2) / nu0 * 1e6
    axis = np.linspace(-6000, 6000, 6001)
    y = static_spectrum(axis, "23Na", 9.4, efg=T.tensor_from_efg(vzz, 0.0, (0, 0, 0))[None], transitions="all",
                        zcw_index=16)  # fmt: skip
    on = axis[y > 1e-4 * y.max()]
    assert on.min() == pytest.approx(-nu_q_ppm, rel=0.01) and on.max() == pytest.approx(nu_q_ppm, rel=0.01)
    step = axis[1] - axis[0]
    central = np.abs(axis) < 0.05 * nu_q_ppm
    # the central transition's 4 / (3 + 4 + 3), plus the satellites crossing zero at the magic angle:
    # each spreads 1 / (sqrt(3) nu_Q) of its intensity per unit frequency there
    assert y[central].sum() * step == pytest.approx(0.4 + 2 * 0.3 * 0.1 / np.sqrt(3), abs=0.01)


def test_agrees_with_mrsimulator():
    """Static 29Si CSA and 17O central-transition spectra against mrsimulator (L1 stated below)."""
    from mrsimulator import Simulator, Site, SpinSystem
    from mrsimulator.method import SpectralDimension
    from mrsimulator.method.lib import BlochDecayCTSpectrum, BlochDecaySpectrum
    from scipy.ndimage import gaussian_filter1d

    def mrs(site, iso, ct):
        nu0 = abs(ISOTOPES[iso].larmor_mhz(14.1)) * 1e6
        method = (BlochDecayCTSpectrum if ct else BlochDecaySpectrum)(
            channels=[iso], magnetic_flux_density=14.1, rotor_frequency=0,
            spectral_dimensions=[SpectralDimension(count=1024, spectral_width=300 * nu0 * 1e-6,
                                                   reference_offset=-100 * nu0 * 1e-6)])  # fmt: skip
        sim = Simulator(spin_systems=[SpinSystem(sites=[site])], methods=[method])
        sim.config.integration_density = 120
        sim.run()
        x = np.asarray(sim.methods[0].simulation.x[0].coordinates.to("ppm").value)
        y = np.asarray(sim.methods[0].simulation.y[0].components[0]).real
        dx = abs(x[1] - x[0])
        return x, gaussian_filter1d(y / (y.sum() * dx), 1.0 / dx / 2.355), dx

    # mrsimulator: isotropic part as a shift, anisotropy as the *shielding* zeta
    sigma = T.tensor_from_haeberlen(400.0, -60.0, 0.4, (10, 20, 30))
    x, ref, dx = mrs(Site(isotope="29Si", isotropic_chemical_shift=-100.0,
                          shielding_symmetric={"zeta": -60.0, "eta": 0.4}), "29Si", ct=False)  # fmt: skip
    ours = static_spectrum(x, "29Si", 14.1, shift=T.shift_tensor(sigma, 300.0)[None], zcw_index=18, broadening_ppm=1.0)
    assert np.abs(ours - ref).sum() * dx / 2 < 0.02  # measured 0.008
    vzz = 6e6 / T.quadrupolar_coupling_hz(1.0, -25.58)
    x, ref, dx = mrs(
        Site(isotope="17O", isotropic_chemical_shift=0.0, quadrupolar={"Cq": 6e6, "eta": 0.3}), "17O", ct=True
    )
    ours = static_spectrum(x, "17O", 14.1, efg=T.tensor_from_efg(vzz, 0.3, (0, 0, 0))[None], zcw_index=18,
                           broadening_ppm=1.0)  # fmt: skip
    assert np.abs(ours - ref).sum() * dx / 2 < 0.04  # measured 0.021


def test_fused_kernel_equals_the_reference_functions():
    """The numba histogram kernel bins exactly the frequencies of the numpy reference functions."""
    from dynnmr.spectrum import central_transition_second_order_hz, shift_frequencies_ppm, zcw_directions

    rng = np.random.default_rng(4)
    efg = T.tensor_from_efg(rng.uniform(0.5, 1, 4), rng.uniform(0, 1, 4), rng.uniform(0, 180, (3, 4)))
    shift = T.shift_tensor(T.tensor_from_haeberlen(250, rng.uniform(-40, 40, 4), rng.uniform(0, 1, 4),
                                                   rng.uniform(0, 180, (3, 4))), 290.0)  # fmt: skip
    nu0 = abs(ISOTOPES["17O"].larmor_mhz(14.1)) * 1e6
    dirs = zcw_directions(10)
    freqs = (
        shift_frequencies_ppm(shift, dirs) + central_transition_second_order_hz(efg, -25.58, 2.5, nu0, dirs) / nu0 * 1e6
    )
    ref, _ = np.histogram(freqs.ravel(), bins=np.concatenate([AXIS - STEP / 2, [AXIS[-1] + STEP / 2]]))
    y = static_spectrum(AXIS, "17O", 14.1, shift=shift, efg=efg, zcw_index=10)
    np.testing.assert_allclose(y, ref / (ref.sum() * STEP), rtol=1e-12, atol=1e-12)


def test_spectrum_command_on_a_castep_file_and_a_store(tmp_path, capsys):

    from dynnmr.cli import main
    from dynnmr.store import TensorStore

    from conftest import MAGRES

    out, png = tmp_path / "o.csv", tmp_path / "o.png"
    assert main(["spectrum", str(MAGRES / "ethanol.magres"), "--species", "O", "--reference", "O=290",
                 "--range=-500:300", "-o", str(out), "--plot", str(png)]) == 0  # fmt: skip
    rows = csv_rows(out)
    assert list(rows[0]) == ["ppm", "intensity"] and len(rows) == 2048
    ppm = np.array([float(r["ppm"]) for r in rows])
    y = np.array([float(r["intensity"]) for r in rows])
    assert ppm[0] > ppm[-1] and abs(y.sum() * (ppm[0] - ppm[1]) - 1) < 1e-6
    assert png.stat().st_size > 5000
    assert main(["spectrum", str(MAGRES / "ethanol.magres"), "--species", "C"]) == 2
    assert "no shift reference for C" in capsys.readouterr().err
    # a store of tensors that do not move: run-averaged and instantaneous spectra coincide
    ms = T.tensor_from_haeberlen([400.0, 380.0], [-40.0, 30.0], [0.2, 0.7], [[0, 40], [30, 60], [0, 90]]).reshape(2, 9)
    store = TensorStore.create(tmp_path / "s.zarr", targets=["ms"], numbers=[14, 14], atom_index=[0, 1],
                               chunk_frames=4, attrs={"shift_reference": {"Si": {"sigma_ref_ppm": 300.0}}})  # fmt: skip
    store.write_chunk(0, {"ms": np.repeat(ms[None], 4, 0), "time_ps": np.arange(4.0), "frame_index": np.arange(4),
                          "cell": np.full((4, 3, 3), np.nan)})  # fmt: skip
    store.finish()
    spectra = []
    for average in ("run", "none"):
        f = tmp_path / f"{average}.csv"
        assert main(["spectrum", str(tmp_path / "s.zarr"), "--species", "Si", "--average", average,
                     "--range=-200:0", "-o", str(f)]) == 0  # fmt: skip
        spectra.append(load_csv(f)[:, 1])
    np.testing.assert_allclose(spectra[0], spectra[1], rtol=1e-9, atol=1e-12)
    assert main(["spectrum", str(tmp_path / "s.zarr"), "--species", "Si", "--plot", str(tmp_path / "s.png")]) == 0
    from PIL import Image

    text = Image.open(tmp_path / "s.png").text  # the figure says what made it
    assert text["Software"].startswith("dynnmr ") and "from s.zarr" in text["Description"]
    head = open(tmp_path / "none.csv").readlines()[:2]  # what made it, and what was averaged
    assert head[0].startswith("# dynnmr ") and "from s.zarr" in head[0] and "every frame's tensors" in head[1]


def test_central_transition_formula_against_exact_diagonalisation():
    """Zeeman + quadrupolar Hamiltonian of a spin 5/2, diagonalised for arbitrary field directions:
    the central transition's shift equals the second-order formula (to third-order terms)."""
    from dynnmr.spectrum import central_transition_second_order_hz

    spin, q = 2.5, -25.58
    m = np.arange(spin, -spin - 1, -1)
    raise_op = np.diag(np.sqrt(spin * (spin + 1) - m[1:] * (m[1:] + 1)), 1)
    ops = [(raise_op + raise_op.T) / 2, (raise_op - raise_op.T) / 2j, np.diag(m)]
    v = T.tensor_from_efg(1.0, 0.6, (30, 50, 70))
    scale = T.quadrupolar_coupling_hz(1.0, q) / (2 * spin * (2 * spin - 1))
    rng = np.random.default_rng(0)
    for nu0 in (400e6, 400e6, 400e6, -400e6, -400e6, -400e6):  # gamma > 0 and gamma < 0 (17O, 29Si)
        b = rng.normal(size=3)
        b /= np.linalg.norm(b)
        x = np.cross(b, [1.0, 0.0, 0.0])
        x /= np.linalg.norm(x)
        lab = np.stack([x, np.cross(b, x), b], axis=1)  # lab axes in crystal coordinates, z along B0
        vl = lab.T @ v @ lab
        h = nu0 * ops[2] + scale * sum(vl[i, j] * ops[i] @ ops[j] for i in range(3) for j in range(3))
        e = np.linalg.eigvalsh(h)
        exact = np.sign(nu0) * (e[3] - e[2]) - nu0  # E(+1/2) - E(-1/2) - nu0 (the middle levels swap with the sign)
        formula = central_transition_second_order_hz(v[None], q, spin, nu0, b[None])[0, 0]
        assert formula == pytest.approx(exact, abs=0.05)  # third-order terms ~ 0.01 Hz here
