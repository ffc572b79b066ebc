"""Accuracy metrics against cases with known answers."""

import numpy as np
import pytest

from dynnmr import evaluate
from dynnmr import tensors as T

RNG = np.random.default_rng(7)


def shielding_set(n=40):
    iso = RNG.normal(400, 10, n)
    zeta = RNG.choice([-1, 1], n) * RNG.uniform(20, 60, n)
    eta = RNG.uniform(0.1, 0.9, n)
    angles = RNG.uniform([0, 0, 0], [360, 180, 360], (n, 3)).T
    return T.tensor_from_haeberlen(iso, zeta, eta, angles)


def test_perfect_prediction_scores_zero():
    ref = shielding_set()
    m = evaluate.shielding_metrics(ref, ref)
    assert m["sigma_iso_ppm"]["mae"] == 0 and m["symmetric_component_mae_ppm"] == 0
    assert all(v["rmse"] == 0 for v in m["irreps"].values())
    assert m["orientation_deg"]["median"] == pytest.approx(0, abs=1e-5)


def test_isotropic_offset_moves_only_l0_and_sigma_iso():
    ref = shielding_set()
    m = evaluate.shielding_metrics(ref + 2.0 * np.eye(3), ref)
    assert m["sigma_iso_ppm"]["mae"] == pytest.approx(2.0)
    assert m["irreps"]["l0"]["rmse"] == pytest.approx(2.0 * np.sqrt(3))  # |(2,2,2)| / sqrt(3) * 3
    assert m["irreps"]["l2"]["rmse"] == pytest.approx(0, abs=1e-9)
    assert m["zeta_ppm"]["mae"] == pytest.approx(0, abs=1e-9)
    assert m["symmetric_component_mae_ppm"] == pytest.approx(2.0 * 3 / 9)  # diagonal only
    assert m["irreps"]["l0"]["pct_rmse"] == pytest.approx(100 * 2.0 / np.std(T.isotropic(ref)))


def test_mae_standard_error_is_that_of_the_mean_over_sites():
    """Isotropic errors of +-1 and +-3 ppm: |error| 1, 1, 3, 3, MAE 2, sample sd
    sqrt(4/3), standard error sqrt(4/3) / 2; one site carries no error bar."""
    ref = shielding_set(4)
    m = evaluate.shielding_metrics(ref + np.array([1, -1, 3, -3])[:, None, None] * np.eye(3), ref)
    assert m["sigma_iso_ppm"]["mae"] == pytest.approx(2.0)
    assert m["sigma_iso_ppm"]["mae_sem"] == pytest.approx(np.sqrt(4 / 3) / 2)
    assert evaluate.shielding_metrics(ref[:1] + np.eye(3), ref[:1])["sigma_iso_ppm"]["mae_sem"] is None


def test_offset_free_errors_remove_each_structures_isotropic_offset():
    """A constant isotropic offset per structure is invisible to the offset-free measure;
    an error that varies within a structure is not, and one-site structures do not count."""
    ref = shielding_set(9)
    groups = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3])  # structure 3 has one site
    offsets = np.array([5.0, -3.0, 0.5, 9.0])[groups]
    pred = ref + offsets[:, None, None] * np.eye(3)
    m = evaluate.shielding_metrics(pred, ref, groups=groups)
    assert m["sigma_iso_ppm"]["mae"] == pytest.approx(np.abs(offsets).mean())
    free = m["offset_free"]
    assert (free["n_sites"], free["n_structures"]) == (8, 3)
    assert free["sigma_iso_mae_ppm"] == pytest.approx(0, abs=1e-12)
    assert free["symmetric_component_mae_ppm"] == pytest.approx(0, abs=1e-12)
    # +-1 ppm isotropic errors around each structure's offset, and a traceless error on one site
    spread = np.array([1, -1, 0, 1, -1, 1, -1, 0, 4.0])
    extra = np.zeros((9, 3, 3))
    extra[2] = np.diag([3.0, -3.0, 0.0])
    free = evaluate.offset_free_metrics(pred + spread[:, None, None] * np.eye(3) + extra, ref, groups)
    assert free["sigma_iso_mae_ppm"] == pytest.approx(6 / 8)
    assert free["symmetric_component_mae_ppm"] == pytest.approx((6 * 3 / 9 + 6 / 9) / 8)
    assert "offset_free" not in evaluate.shielding_metrics(pred, ref)


def test_rotation_is_measured_as_orientation_error():
    ref = shielding_set()
    rot = T.rotation_from_euler(0, 7.0, 0)
    m = evaluate.shielding_metrics(rot @ ref @ rot.T, ref)
    # a rotation of every tensor by 7 deg about y changes no parameter, only orientations
    assert m["sigma_iso_ppm"]["mae"] == pytest.approx(0, abs=1e-9)
    assert m["eta"]["mae"] == pytest.approx(0, abs=1e-9)
    assert m["orientation_deg"]["median"] == pytest.approx(7.0, abs=1e-6)
    assert m["orientation_deg"]["n_sites"] == 40


def test_efg_metrics_cq_eta_and_orientation():
    vzz = RNG.uniform(0.5, 1.2, 30) * RNG.choice([-1, 1], 30)
    eta = RNG.uniform(0.05, 0.95, 30)
    angles = RNG.uniform([0, 0, 0], [360, 180, 360], (30, 3)).T
    ref = T.tensor_from_efg(vzz, eta, angles)
    pred = T.tensor_from_efg(vzz * 1.1, eta, angles)
    m = evaluate.efg_metrics(pred, ref, quadrupole_moment_mb=-25.58)
    cq = np.abs(T.quadrupolar_coupling_hz(vzz, -25.58)) * 1e-6
    assert m["Cq_MHz"]["mae"] == pytest.approx(0.1 * cq.mean())
    assert m["eta_Q"]["mae"] == pytest.approx(0, abs=1e-9)
    assert m["orientation_deg"]["median"] == pytest.approx(0, abs=1e-5)
    rot = T.rotation_from_euler(0, 0, 11.0)
    m = evaluate.efg_metrics(rot @ ref @ rot.T, ref, quadrupole_moment_mb=-25.58)
    assert m["orientation_deg"]["median"] == pytest.approx(11.0, abs=1e-6)
    assert m["Cq_MHz"]["mae"] == pytest.approx(0, abs=1e-9)


def test_spectrum_l1_against_two_gaussian_lines():
    from math import erf, log, sqrt

    from dynnmr.evaluate import SPECTRUM_L1, spectrum_l1

    iso = np.eye(3)[None] * np.array([430.0, 440.0])[:, None, None]  # isotropic: Gaussian lines
    assert spectrum_l1(iso, iso, "ms", "Si")["value"] == pytest.approx(0.0, abs=1e-12)
    # each line moved by d: two unit Gaussians of FWHM w overlap; L1 = 2 erf(d / (2 sqrt(2) s))
    d, w = 1.0, SPECTRUM_L1["broadening_ppm"]
    s = w / (2 * sqrt(2 * log(2)))
    got = spectrum_l1(iso + d * np.eye(3), iso, "ms", "Si")
    assert got["value"] == pytest.approx(2 * erf(d / (2 * sqrt(2) * s)), abs=0.01)
    assert got["isotope"] == "29Si" and got["kind"] == "static CSA"
    assert spectrum_l1(iso + 50 * np.eye(3), iso, "ms", "Si")["value"] == pytest.approx(2.0, abs=1e-3)
    efg = np.array([np.diag([-0.4, -0.6, 1.0])])
    assert spectrum_l1(1.1 * efg, efg, "efg", "O")["value"] == pytest.approx(
        spectrum_l1(efg, 1.1 * efg, "efg", "O")["value"], rel=1e-9)  # fmt: skip
    assert spectrum_l1(efg, efg, "efg", "Si") is None  # 29Si has no quadrupole moment
