"""mrsimulator export: tensors rebuilt from what is exported, spectra against dynnmr's own."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation

from dynnmr import mrsim
from dynnmr import tensors as T
from dynnmr.isotopes import get_isotope
from dynnmr.spectrum import static_spectrum

from helpers import load_csv

RNG = np.random.default_rng(7)
O17 = get_isotope("17O")


def random_pair(seed):
    """A 17O shielding tensor (ppm) and an EFG tensor (au), principal frames not collinear."""
    r1, r2 = Rotation.random(2, random_state=seed).as_matrix()
    ms = r1 @ np.diag([150.0, 220.0, 330.0]) @ r1.T
    vzz = 7e6 / T.quadrupolar_coupling_hz(1.0, O17.quadrupole_moment_mb)
    efg = r2 @ np.diag([-(1 - 0.3) / 2 * vzz, -(1 + 0.3) / 2 * vzz, vzz]) @ r2.T
    return ms, efg


def test_exported_numbers_rebuild_the_tensors():
    ms = np.stack([random_pair(s)[0] for s in range(20)])
    efg = np.stack([random_pair(s)[1] for s in range(20)])
    ms[3] = np.diag([200.0, 200.0, 260.0])  # axial and
    efg[4] = np.diag([-0.5, -0.5, 1.0])  # axial EFG: Euler angles degenerate
    for k, site in enumerate(mrsim.site_dicts("17O", ms, 287.5, efg)):
        got_ms, got_efg = mrsim.tensors_from_site(site, sigma_ref=287.5)
        np.testing.assert_allclose(got_ms, ms[k], atol=1e-9)
        np.testing.assert_allclose(got_efg, efg[k], atol=1e-12)


def _broadened(y, dx, fwhm=1.0):
    return gaussian_filter1d(y / (y.sum() * dx), fwhm / dx / 2.355)


@pytest.mark.parametrize("seed", [11, 12])
def test_static_spectrum_with_shielding_and_efg_agrees_with_ours(seed):
    """Non-collinear CSA + second-order quadrupolar CT: the convention test that pins the
    Euler angles and the quadrupolar frame's x/y (the wrong ones give L1 0.08-0.3)."""
    ms, efg = random_pair(seed)
    ppm, y = mrsim.simulate("17O", 14.1, ms[None], 287.5, efg[None], ppm_range=(-350, 250), points=1024,
                            integration_density=100)  # fmt: skip
    dx = abs(ppm[1] - ppm[0])
    ours = static_spectrum(ppm, "17O", 14.1, shift=T.shift_tensor(ms, 287.5)[None], efg=efg[None], zcw_index=16,
                           broadening_ppm=1.0)  # fmt: skip
    assert np.abs(ours - _broadened(y, dx)).sum() * dx / 2 < 0.04  # measured 0.025


def test_mas_centre_of_gravity_is_the_isotropic_quadrupolar_shift():
    """Fast MAS of a 17O CT: the centre of gravity sits at delta_iso + delta_QIS, with
    delta_QIS = -(3/40) (C_Q/nu0)^2 (I(I+1) - 3/4) / (I^2 (2I-1)^2) (1 + eta^2/3) 1e6 ppm."""
    ms, efg = random_pair(3)
    ppm, y = mrsim.simulate("17O", 14.1, ms[None], 287.5, efg[None], spinning_hz=np.inf, ppm_range=(-150, 150))
    nu0 = abs(O17.larmor_mhz(14.1)) * 1e6
    i = O17.spin
    qis = -3 / 40 * (7e6 / nu0) ** 2 * (i * (i + 1) - 0.75) / (i**2 * (2 * i - 1) ** 2) * (1 + 0.3**2 / 3) * 1e6
    delta_iso = 287.5 - np.trace(ms) / 3
    assert (ppm * y).sum() / y.sum() == pytest.approx(delta_iso + qis, abs=0.3)
    assert ppm[0] > ppm[-1]  # descending, as plotted


def test_29si_mas_collapses_the_csa_and_slow_spinning_gives_sidebands():
    ms = T.tensor_from_haeberlen(400.0, -60.0, 0.4, (10, 20, 30))
    ppm, y = mrsim.simulate("29Si", 14.1, ms[None], 292.12, spinning_hz=np.inf, ppm_range=(-250, 50), points=3000)
    assert ppm[np.argmax(y)] == pytest.approx(292.12 - 400.0, abs=0.2)
    nu0 = abs(get_isotope("29Si").larmor_mhz(14.1)) * 1e6
    ppm, y = mrsim.simulate("29Si", 14.1, ms[None], 292.12, spinning_hz=2000.0, ppm_range=(-250, 50), points=3000)
    peaks = ppm[(y > 0.01 * y.max()) & (y >= np.roll(y, 1)) & (y >= np.roll(y, -1))]
    spacing = 2000.0 / nu0 * 1e6  # sidebands every spinning frequency, in ppm
    offsets = (peaks - (292.12 - 400.0)) / spacing
    assert len(peaks) >= 3 and np.allclose(offsets, np.round(offsets), atol=0.05)


def test_mqmas_direct_projection_is_the_mas_spectrum():
    ms, efg = random_pair(5)
    kw = dict(ppm_range=(-150, 150), points=512)
    ppm, y = mrsim.simulate("17O", 14.1, ms[None], 287.5, efg[None], spinning_hz=np.inf, **kw)
    direct, iso, z = mrsim.simulate("17O", 14.1, ms[None], 287.5, efg[None], experiment="mqmas", iso_range=(-150, 150),
                                    iso_points=128, **kw)  # fmt: skip
    proj = np.interp(ppm, direct, z.sum(axis=0))  # direct axis ascending
    dx = abs(ppm[1] - ppm[0])
    assert np.abs(_broadened(proj, dx, 2.0) - _broadened(y, dx, 2.0)).sum() * dx / 2 < 0.1
    assert np.ptp(iso) > 0 and z.shape == (128, 512)


def test_saved_spin_systems_load_in_mrsimulator(tmp_path):
    from mrsimulator import Simulator

    ms, efg = random_pair(1)
    path = tmp_path / "systems.mrsys"
    mrsim.save_spin_systems(path, "17O", ms[None], 287.5, efg[None])
    sim = Simulator()
    sim.load_spin_systems(str(path))
    site = sim.spin_systems[0].sites[0]
    assert site.quadrupolar.Cq == pytest.approx(
        mrsim.site_dicts("17O", ms[None], 287.5, efg[None])[0]["quadrupolar"]["Cq"]
    )
    assert site.shielding_symmetric.zeta == pytest.approx(T.haeberlen(ms)["zeta"])


def test_spectrum_command_mas_mqmas_and_export(tmp_path, capsys):
    from dynnmr.cli import main

    from conftest import MAGRES

    magres = str(MAGRES / "ethanol.magres")
    mas, mq, sys_json, png = tmp_path / "mas.csv", tmp_path / "mq.csv", tmp_path / "s.mrsys", tmp_path / "mq.png"
    assert main(["spectrum", magres, "--species", "O", "--reference", "O=290", "--range=-300:300", "--mas", "inf",
                 "-o", str(mas), "--export-mrsim", str(sys_json)]) == 0  # fmt: skip
    ppm, y = load_csv(mas).T
    assert ppm[0] > ppm[-1] and y.sum() == pytest.approx(1.0) and sys_json.stat().st_size > 100
    static = tmp_path / "static.csv"
    assert (
        main(["spectrum", magres, "--species", "O", "--reference", "O=290", "--range=-300:300", "-o", str(static)]) == 0
    )
    _, ys = load_csv(static).T
    assert y.max() / y.sum() > 2 * ys.max() / ys.sum()  # spinning narrows the line
    assert main(["spectrum", magres, "--species", "O", "--reference", "O=290", "--range=-300:300", "--mqmas",
                 "--points", "128", "--iso-points", "64", "-o", str(mq), "--plot", str(png)]) == 0  # fmt: skip
    table = load_csv(mq)
    assert table.shape == (128 * 64, 3) and png.stat().st_size > 5000
    assert main(["spectrum", magres, "--species", "C", "--reference", "C=170", "--mqmas"]) == 2
    assert "half-integer quadrupolar" in capsys.readouterr().err
