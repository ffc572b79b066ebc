"""Tensor algebra against analytic cases, e3nn's basis and soprano's conventions (float64)."""

import warnings

import numpy as np
import pytest
import torch
from e3nn import io as e3io
from e3nn import o3

from dynnmr import tensors as T

from helpers import random_rotations as _random_rotations

RNG = np.random.default_rng(1234)


def random_rotations(n):
    return _random_rotations(n, RNG)


def test_spherical_basis_is_e3nn_cartesian_tensor():
    a = RNG.normal(size=(7, 3, 3))
    ref = e3io.CartesianTensor("ij").from_cartesian(torch.tensor(a, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(T.to_spherical(a), ref, atol=1e-14)
    assert str(e3io.CartesianTensor("ij")) == "1x0e+1x1e+1x2e"


def test_spherical_round_trip_and_orthonormality():
    a = RNG.normal(size=(4, 5, 3, 3))
    np.testing.assert_allclose(T.from_spherical(T.to_spherical(a)), a, atol=1e-14)
    np.testing.assert_allclose(T.CART_TO_SPH @ T.CART_TO_SPH.T, np.eye(9), atol=1e-15)


def test_irreps_are_trace_antisymmetric_and_traceless_symmetric_parts():
    a = RNG.normal(size=(3, 3))
    assert T.irrep(a, 0)[0] == pytest.approx(np.trace(a) / np.sqrt(3))
    sym_traceless = T.symmetric_part(a) - np.eye(3) * np.trace(a) / 3
    only2 = np.zeros(9)
    only2[4:] = T.irrep(a, 2)
    np.testing.assert_allclose(T.from_spherical(only2), sym_traceless, atol=1e-14)
    only1 = np.zeros(9)
    only1[1:4] = T.irrep(a, 1)
    np.testing.assert_allclose(T.from_spherical(only1), 0.5 * (a - a.T), atol=1e-14)


def test_rotation_acts_as_wigner_d_on_each_irrep():
    a = RNG.normal(size=(3, 3))
    rot = random_rotations(1)[0]
    rotated = rot @ a @ rot.T
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # e3nn builds D in the default dtype
    try:
        d = o3.Irreps("0e+1e+2e").D_from_matrix(torch.tensor(rot)).numpy()
    finally:
        torch.set_default_dtype(old)
    np.testing.assert_allclose(T.to_spherical(rotated), d @ T.to_spherical(a), atol=1e-13)


def test_haeberlen_and_herzfeld_berger_analytic():
    t = np.diag([10.0, 20.0, 60.0])  # iso 30; devs -20, -10, +30
    h = T.haeberlen(t)
    assert h["iso"] == pytest.approx(30.0)
    assert h["zeta"] == pytest.approx(30.0)
    assert h["delta_aniso"] == pytest.approx(45.0)
    assert h["eta"] == pytest.approx(1 / 3)
    hb = T.herzfeld_berger(t)
    assert hb["span"] == pytest.approx(50.0)
    assert hb["skew"] == pytest.approx(3 * (30 - 20) / 50)
    # negative zeta: the lone value below the mean
    h2 = T.haeberlen(np.diag([0.0, 50.0, 55.0]))
    assert h2["zeta"] == pytest.approx(0.0 - 35.0)
    assert h2["eta"] == pytest.approx(5.0 / 35.0)


def test_parameters_are_rotation_invariant_and_vectorised():
    a = RNG.normal(size=(6, 3, 3)) * 40 + np.eye(3) * 300
    rots = random_rotations(6)
    b = rots @ a @ np.swapaxes(rots, -1, -2)
    for f in (T.haeberlen, T.herzfeld_berger, T.efg_parameters):
        pa, pb = f(a), f(b)
        for key in pa:
            np.testing.assert_allclose(pa[key], pb[key], rtol=1e-10, atol=1e-10)


def test_shift_conventions():
    sigma = np.diag([10.0, 20.0, 60.0])
    d = T.shift_tensor(sigma, 100.0)
    np.testing.assert_allclose(np.diag(d), [90.0, 80.0, 40.0])
    assert T.haeberlen(d)["zeta"] == pytest.approx(-T.haeberlen(sigma)["zeta"])
    assert T.haeberlen(d)["eta"] == pytest.approx(T.haeberlen(sigma)["eta"])
    # the skew of the shift tensor from d22 equals the shielding's from s22
    dv = np.sort(np.diag(d))[::-1]
    assert 3 * (dv[1] - dv.mean()) / (dv[0] - dv[2]) == pytest.approx(T.herzfeld_berger(sigma)["skew"])
    assert T.herzfeld_berger(d, shift=True)["skew"] == pytest.approx(T.herzfeld_berger(sigma)["skew"])
    assert T.herzfeld_berger(d, shift=True)["skew"] != pytest.approx(T.herzfeld_berger(d)["skew"])
    assert T.shift_iso(30.0, 100.0) == 70.0
    assert T.shift_iso(30.0, 100.0, exact=True) == pytest.approx(70.0 / (1 - 100e-6))
    np.testing.assert_allclose(T.isotropic(T.shift_tensor(sigma, 100.0, exact=True)), 70.0 / (1 - 1e-4))


def test_efg_analytic_and_quadrupolar_constants():
    v = np.diag([-0.3, -0.7, 1.0])
    p = T.efg_parameters(v)
    assert p["Vzz"] == pytest.approx(1.0)
    assert p["eta_Q"] == pytest.approx(0.4)
    # C_Q = e Q Vzz / h by hand for 17O (Q = -25.58 mb), Vzz = 1 au
    by_hand = 1.602176634e-19 * (-25.58e-31) * 9.7173624e21 / 6.62607015e-34
    assert T.quadrupolar_coupling_hz(1.0, -25.58) == pytest.approx(by_hand, rel=1e-12)
    assert by_hand / 1e6 == pytest.approx(-6.0108, abs=1e-3)  # the often-quoted 6.01 MHz/au for 17O
    assert T.quadrupolar_product(5.0, 0.0) == 5.0
    assert T.quadrupolar_product(5.0, 1.0) == pytest.approx(5.0 * np.sqrt(4 / 3))
    assert T.quadrupolar_frequency(6.0, 2.5) == pytest.approx(3 * 6.0 / 20)
    with pytest.raises(ValueError):
        T.quadrupolar_frequency(1.0, 0.5)
    np.testing.assert_allclose(T.efg_si_to_au(T.efg_au_to_si(v)), v)


@pytest.mark.parametrize("euler", [(30, 40, 50), (200, 60, 100), (0, 0, 0), (300, 170, 10), (123, 90, 45)])
def test_euler_round_trip_shielding_and_efg(euler):
    t = T.tensor_from_haeberlen(300.0, -40.0, 0.35, euler)
    h = T.haeberlen(t)
    back = T.tensor_from_haeberlen(h["iso"], h["zeta"], h["eta"], T.shielding_euler(t))
    np.testing.assert_allclose(back, t, atol=1e-10)
    e = T.tensor_from_efg(-0.9, 0.6, euler)
    p = T.efg_parameters(e)
    assert p["Vzz"] == pytest.approx(-0.9) and p["eta_Q"] == pytest.approx(0.6)
    np.testing.assert_allclose(T.tensor_from_efg(p["Vzz"], p["eta_Q"], T.efg_euler(e)), e, atol=1e-12)
    a, b, g = T.shielding_euler(t)
    assert 0 <= b <= 90 and 0 <= g < 180 and 0 <= a < 360


def test_euler_of_random_tensors_rebuild_them():
    a = RNG.normal(size=(50, 3, 3))
    sym = T.symmetric_part(a)
    h = T.haeberlen(sym)
    rebuilt = T.tensor_from_haeberlen(h["iso"], h["zeta"], h["eta"], T.shielding_euler(sym))
    np.testing.assert_allclose(rebuilt, sym, atol=1e-9)
    p = T.efg_parameters(sym)
    traceless = sym - np.eye(3) * T.isotropic(sym)[:, None, None]
    p = T.efg_parameters(traceless)
    rebuilt = T.tensor_from_efg(p["Vzz"], p["eta_Q"], T.efg_euler(traceless))
    np.testing.assert_allclose(rebuilt, traceless, atol=1e-9)


@pytest.mark.parametrize(
    ("principal", "tol"),
    [((10.0, 10.0, 40.0), 1e-6), ((-20.0, 5.0, 5.0), 1e-6), ((300.0, 300.0, 300.0), 1e-10),
     ((3.0, 11.0, 42.0), 1e-10)],
)  # fmt: skip
def test_closed_form_eigenvalues_against_lapack(principal, tol):
    """The closed-form eigenvalues (the GPU alternative to a solver) of rotated tensors,
    NumPy and torch: LAPACK's to 1e-10 ppm when the eigenvalues are apart and to 1e-6 ppm
    (digits lost, about 4e-8 of the anisotropy) when two meet, on top of 300 ppm."""
    rot = random_rotations(500)
    tensors = rot @ np.diag(np.asarray(principal) + 300.0) @ np.swapaxes(rot, -1, -2)
    want = np.linalg.eigvalsh(tensors)
    np.testing.assert_allclose(want, np.broadcast_to(np.sort(principal) + 300.0, want.shape), atol=1e-10)
    for got in (T.closed_form_eigvalsh(tensors), T.closed_form_eigvalsh(torch.from_numpy(tensors)).numpy()):
        np.testing.assert_allclose(got, want, rtol=0, atol=tol)


def test_degenerate_tensors_give_no_nan():
    iso = np.eye(3) * 7.0
    axial = T.tensor_from_haeberlen(10.0, 5.0, 0.0, (40, 30, 77))
    for t in (iso, axial, np.zeros((3, 3))):
        for f in (T.haeberlen, T.herzfeld_berger, T.efg_parameters):
            assert all(np.all(np.isfinite(v)) for v in f(t).values())
        assert np.all(np.isfinite(T.shielding_euler(t))) and np.all(np.isfinite(T.efg_euler(t)))
    assert T.shielding_euler(iso) == (0.0, 0.0, 0.0)
    a, b, g = T.shielding_euler(axial)
    assert (a, b, g) == pytest.approx((40, 30, 0))  # gamma is undefined: set to 0
    np.testing.assert_allclose(T.tensor_from_haeberlen(10.0, 5.0, 0.0, (a, b, g)), axial, atol=1e-12)


def test_misorientation():
    t = T.tensor_from_haeberlen(0.0, 10.0, 0.5, (0, 0, 0))
    for angle in (0.0, 5.0, 33.0, 60.0):
        rot = T.rotation_from_euler(0.0, angle, 0.0)
        assert T.misorientation_deg(t, rot @ t @ rot.T) == pytest.approx(angle, abs=1e-6)
    # an eigenvector sign choice is not a misorientation: 180 deg about a principal axis
    flip = T.rotation_from_euler(0.0, 180.0, 0.0)
    assert T.misorientation_deg(t, flip @ t @ flip.T) == pytest.approx(0.0, abs=1e-6)
    # axial: rotation about the unique axis changes nothing; tilt of the axis is measured
    ax = T.tensor_from_haeberlen(0.0, 10.0, 0.0, (0, 0, 0))
    spin = T.rotation_from_euler(70.0, 0.0, 0.0)
    assert T.misorientation_deg(ax, spin @ ax @ spin.T) == pytest.approx(0.0, abs=1e-6)
    tilt = T.rotation_from_euler(0.0, 25.0, 0.0)
    assert T.misorientation_deg(ax, tilt @ ax @ tilt.T) == pytest.approx(25.0, abs=1e-6)
    efg = T.tensor_from_efg(1.0, 0.3, (10, 20, 30))
    r = T.rotation_from_euler(0.0, 0.0, 12.0)
    assert T.misorientation_deg(efg, r @ efg @ r.T, kind="efg") == pytest.approx(12.0, abs=1e-6)
    assert T.misorientation_deg(np.eye(3), t) == 0.0
    with pytest.raises(ValueError):
        T.misorientation_deg(t, t, kind="dipolar")


def test_against_soprano_conventions():
    """soprano's tensor parameters and (active ZYZ) Euler angles agree with ours."""
    pytest.importorskip("soprano", reason="soprano is a test dependency (pip install -e .[test])")
    from soprano.nmr.tensor import ElectricFieldGradient, NMRTensor

    a = RNG.normal(size=(20, 3, 3)) * 30 + np.eye(3) * 400
    for t in T.symmetric_part(a):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = NMRTensor(t, order="h")
            h = T.haeberlen(t)
            assert h["iso"] == pytest.approx(ref.isotropy)
            assert h["zeta"] == pytest.approx(ref.reduced_anisotropy)
            assert h["delta_aniso"] == pytest.approx(ref.anisotropy)
            assert h["eta"] == pytest.approx(ref.asymmetry)
            hb = T.herzfeld_berger(t)
            assert hb["span"] == pytest.approx(ref.span)
            assert hb["skew"] == pytest.approx(ref.skew)
            equivalent = np.degrees(ref.equivalent_euler_angles())
            ours = np.array(T.shielding_euler(t))
            assert np.min(np.abs((equivalent - ours + 180) % 360 - 180).max(axis=1)) < 1e-6
            traceless = t - np.eye(3) * np.trace(t) / 3
            efg = ElectricFieldGradient(traceless / 100, species="17O")
            p = T.efg_parameters(traceless / 100)
            cq = T.quadrupolar_coupling_hz(p["Vzz"], -25.58)
            assert cq == pytest.approx(efg.Cq, rel=1e-6)
            assert p["eta_Q"] == pytest.approx(efg.eta)
            equivalent = np.degrees(efg.equivalent_euler_angles())
            ours = np.array(T.efg_euler(traceless))
            assert np.min(np.abs((equivalent - ours + 180) % 360 - 180).max(axis=1)) < 1e-6


def test_nan_rows_give_nan_parameters_and_leave_the_others_alone():
    """NaN rows are the missing-label marker (predict output, label files): parameters of those
    rows are NaN, the other rows are what they are alone, and nothing warns or raises."""
    import warnings

    good = T.tensor_from_efg(np.array([1.0, -0.5]), np.array([0.3, 0.8]), np.array([[10, 40], [20, 50], [30, 60]]))
    x = np.stack([good[0], np.full((3, 3), np.nan), good[1]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for f in (T.haeberlen, T.herzfeld_berger, T.efg_parameters):
            mixed, alone = f(x), f(good)
            for key in mixed:
                np.testing.assert_allclose(mixed[key][[0, 2]], alone[key], rtol=1e-12)
                assert np.isnan(mixed[key][1])
        for f in (T.shielding_euler, T.efg_euler):
            mixed, alone = f(x), f(good)
            for m, a in zip(mixed, alone):
                np.testing.assert_allclose(m[[0, 2]], a, atol=1e-9)
                assert np.isnan(m[1])


def test_docstring_examples_run():
    """The examples in tensors.py's docstrings are right (doctest), so they stay true."""
    import doctest

    result = doctest.testmod(T, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 10 and result.failed == 0


def test_default_isotopes_are_the_usual_nmr_nuclei():
    from dynnmr.isotopes import get_isotope, isotope_for

    usual = {"H": "1H", "C": "13C", "N": "15N", "O": "17O", "Si": "29Si", "Al": "27Al", "Na": "23Na"}
    assert {el: isotope_for(el).name for el in usual} == usual
    assert get_isotope("N").spin == 0.5 and get_isotope("14N").spin == 1.0
    assert isotope_for("N", {"N": "14N"}).quadrupole_moment_mb == pytest.approx(20.44)
