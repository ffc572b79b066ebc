"""Motional averages and correlation functions against analytic models."""

import numpy as np
import pytest

from dynnmr import dynamics as D
from dynnmr import tensors as T

RNG = np.random.default_rng(11)


def axial(zeta, beta_deg, alpha_deg):
    return T.tensor_from_haeberlen(0.0, zeta, 0.0, (alpha_deg, beta_deg, 0.0)).reshape(9)


def test_autocorrelation_equals_direct_sum():
    y = RNG.normal(size=(257, 3, 5))
    c = D.autocorrelation(y)
    n = len(y)
    direct = np.array([np.einsum("tsk,tsk->s", y[: n - t], y[t:]) / (n - t) for t in range(n)])
    np.testing.assert_allclose(c, direct, rtol=1e-10, atol=1e-12)
    assert D.autocorrelation(y, max_lag=10).shape == (10, 3)


def test_three_site_jump_average_is_p2_scaled():
    """Unique axis at beta from z, visiting 3 azimuths equally: <T> is axial along z, zeta P2(cos beta)."""
    beta, zeta = 54.0, 30.0
    x = np.array([axial(zeta, beta, a) for a in (0.0, 120.0, 240.0)] * 5)[:, None, :]
    mean = D.mean_tensors(x).reshape(3, 3)
    p2 = 0.5 * (3 * np.cos(np.radians(beta)) ** 2 - 1)
    np.testing.assert_allclose(mean, np.diag([-0.5, -0.5, 1.0]) * zeta * p2, atol=1e-12)
    h = T.haeberlen(mean)
    assert h["eta"] == pytest.approx(0.0, abs=1e-9)


def test_three_site_jump_correlation_time():
    """Markov jumps at rate k to each other site: rank-2 fluctuations decay as exp(-3 k t)."""
    k, dt, n = 0.5, 0.05, 200_000  # 1/ps, ps, frames
    p_jump = k * dt
    state = np.zeros(n, dtype=int)
    moves = RNG.random(n) < 2 * p_jump
    steps = RNG.integers(1, 3, n)
    state = np.cumsum(np.where(moves, steps, 0)) % 3
    sites = np.array([axial(20.0, 70.0, a) for a in (0.0, 120.0, 240.0)])
    x = sites[state][:, None, :]
    c = D.correlation_functions(x, max_lag=400)[2][:, 0]
    tau = D.integrated_correlation_time(c, dt)
    assert tau == pytest.approx(1 / (3 * k), rel=0.06)
    lags = np.array([5, 10, 20])
    np.testing.assert_allclose(c[lags] / c[0], np.exp(-3 * k * dt * lags), atol=0.03)
    assert np.abs(D.correlation_functions(x, max_lag=3)[1]).max() < 1e-20  # symmetric: no l=1


def test_ornstein_uhlenbeck_integrated_time():
    """Independent OU components with correlation time tau_c; averaged over 8 sites, as per species."""
    rng = np.random.default_rng(3)
    tau_c, dt, n, sites = 2.0, 0.1, 50_000, 8
    a = np.exp(-dt / tau_c)
    noise = rng.normal(size=(n, sites, 9)) * np.sqrt(1 - a * a)
    x = np.empty((n, sites, 9))
    x[0] = rng.normal(size=(sites, 9))
    for t in range(1, n):
        x[t] = a * x[t - 1] + noise[t]
    x = x + np.array([100.0, 0, 0, 0, 100.0, 0, 0, 0, 100.0])  # a mean to remove
    for l, c in D.correlation_functions(x, max_lag=300).items():
        c = c.mean(axis=1)
        assert c[0] == pytest.approx(2 * l + 1, rel=0.05)  # unit variance per component
        assert D.integrated_correlation_time(c, dt) == pytest.approx(tau_c, rel=0.05)


def test_window_means():
    x = np.arange(10.0)[:, None, None] * np.ones((10, 2, 9))
    times = 0.5 * np.arange(10)  # 0 .. 4.5 ps
    means, starts = D.window_means(x, times, 2.0)  # windows [0,2) [2,4); [4,6) not complete
    np.testing.assert_allclose(starts, [0.0, 2.0])
    np.testing.assert_allclose(means[:, 0, 0], [1.5, 5.5])
    means, _ = D.window_means(x, times, 5.0)  # the whole run, exactly covered
    np.testing.assert_allclose(means[0], D.mean_tensors(x))
    with pytest.raises(ValueError, match="--dt"):
        D.window_means(x, np.full(10, np.nan), 1.0)


def exponential_correlation(g0, tau_ps, dt_ps, n):
    return g0 * np.exp(-np.arange(n) * dt_ps / tau_ps)


def test_spectral_density_of_exponential():
    tau, dt = 5.0, 0.01
    c = exponential_correlation(1.0, tau, dt, 6000)  # to 12 tau
    for w in (0.0, 1e11, 4e11):
        expected = tau * 1e-12 / (1 + (w * tau * 1e-12) ** 2)
        assert D.spectral_density(c, dt, w) == pytest.approx(expected, rel=2e-3)


def test_oscillating_correlation_gives_no_negative_rates():
    """A vibration-like correlation (cos, no decay over the window) integrates to ~0: rates >= 0."""
    c = np.cos(2 * np.pi * np.arange(100) * 0.01 / 0.033)  # 33 fs period sampled at 10 fs
    assert D.spectral_density(c, 0.01, 0.0) >= 0
    r1, r2 = D.csa_rates(c * 800.0, 0.01, 119.2e6)
    assert r1 >= 0 and r2 >= 0


def test_quadrupolar_rates_textbook_limits_and_bpp_minimum():
    """17O (I = 5/2): extreme narrowing equals the textbook C_Q^2 (1 + eta^2/3) tau formula;
    R1 against tau has its minimum where w0 tau = 0.6158 (for 0.2 J(w0) + 0.8 J(2 w0))."""
    spin, q = 2.5, -25.58
    vzz, eta = 0.8, 0.3
    efg = T.tensor_from_efg(vzz, eta, (10, 20, 30))
    g0 = float(np.sum(efg * efg))  # V : V, au^2
    cq_hz = T.quadrupolar_coupling_hz(vzz, q)
    tau = 0.5  # ps
    c = exponential_correlation(g0, tau, 0.002, 5000)
    r1, r2 = D.quadrupolar_rates(c, 0.002, spin, q, larmor_hz=1e3)  # w0 tau << 1
    textbook = 3 * np.pi**2 / 10 * (2 * spin + 3) / (spin**2 * (2 * spin - 1)) * cq_hz**2 * (1 + eta**2 / 3) * tau * 1e-12
    assert r1 == pytest.approx(textbook, rel=3e-3) and r2 == pytest.approx(textbook, rel=3e-3)
    nu0 = 81.3e6  # 17O at 14.1 T, Hz
    taus = np.geomspace(200.0, 8000.0, 41)  # ps
    r1s = [D.quadrupolar_rates(exponential_correlation(g0, t, t / 200, 2400), t / 200, spin, q, nu0)[0] for t in taus]
    t_min = taus[int(np.argmax(r1s))]
    assert 2 * np.pi * nu0 * t_min * 1e-12 == pytest.approx(0.6158, rel=0.1)
    r1_slow, r2_slow = D.quadrupolar_rates(exponential_correlation(g0, 8000.0, 40.0, 2400), 40.0, spin, q, nu0)
    assert r2_slow > 10 * r1_slow  # beyond extreme narrowing R2 keeps growing with tau, R1 falls


def test_csa_rates_textbook():
    zeta, eta, tau, nu0 = 50.0, 0.4, 20.0, 119.2e6  # ppm, -, ps, Hz (29Si at 14.1 T)
    s = T.tensor_from_haeberlen(0.0, zeta, eta)
    g0 = float(np.sum(s * s))
    c = exponential_correlation(g0, tau, 0.05, 6000)
    r1, r2 = D.csa_rates(c, 0.05, nu0)
    w0, dsig = 2 * np.pi * nu0, 1.5 * zeta * 1e-6
    j = lambda w: tau * 1e-12 / (1 + (w * tau * 1e-12) ** 2)  # noqa: E731
    assert r1 == pytest.approx(2 / 15 * w0**2 * dsig**2 * (1 + eta**2 / 3) * j(w0), rel=3e-3)
    assert r2 == pytest.approx(1 / 45 * w0**2 * dsig**2 * (1 + eta**2 / 3) * (4 * j(0) + 3 * j(w0)), rel=3e-3)


def test_dynamics_command_on_a_jump_model_store(tmp_path):
    """A store holding 17O EFG and shielding tensors that jump among 3 sites: the command's
    averaged C_Q, correlation time and R1 match the analytic values."""
    import json

    from dynnmr.cli import main
    from dynnmr.isotopes import ISOTOPES
    from dynnmr.store import TensorStore

    rng = np.random.default_rng(5)
    k, dt, n, n_sites = 0.5, 0.05, 20_000, 6  # 1/ps, ps
    beta, vzz, zeta = 70.0, 0.9, 40.0
    efg_sites = np.array([T.tensor_from_efg(vzz, 0.0, (a, beta, 0)).reshape(9) for a in (0, 120, 240)])
    ms_sites = np.array([axial(zeta, beta, a) + np.eye(3).reshape(9) * 250 for a in (0, 120, 240)])
    moves = rng.random((n, n_sites)) < 2 * k * dt
    state = np.cumsum(np.where(moves, rng.integers(1, 3, (n, n_sites)), 0), axis=0) % 3
    store = TensorStore.create(tmp_path / "jump.zarr", targets=["ms", "efg"], numbers=[8] * n_sites,
                               atom_index=range(n_sites), chunk_frames=5000, attrs={})  # fmt: skip
    for a in range(0, n, 5000):
        s = state[a : a + 5000]
        store.write_chunk(a, {"ms": ms_sites[s], "efg": efg_sites[s], "time_ps": dt * np.arange(a, a + len(s)),
                              "frame_index": np.arange(a, a + len(s)), "cell": np.full((len(s), 3, 3), np.nan)})  # fmt: skip
    store.finish()
    out = tmp_path / "dyn.json"
    assert main(["dynamics", str(tmp_path / "jump.zarr"), "--field", "14.1", "--max-lag", "20", "--window", "100",
                 "--json", str(out)]) == 0  # fmt: skip
    res = json.loads(out.read_text())
    o = res["species"]["O"]
    p2 = 0.5 * (3 * np.cos(np.radians(beta)) ** 2 - 1)
    q = ISOTOPES["17O"].quadrupole_moment_mb
    assert o["Cq_MHz_avg"] == pytest.approx(T.quadrupolar_coupling_hz(vzz * p2, q) * 1e-6, rel=0.03)
    tau = 1 / (3 * k)
    assert o["tau_c_ps"] == pytest.approx(tau, rel=0.06)
    # 100-ps windows hold ~150 jumps each: their C_Q scatters a little around the run average
    mean_w, std_w = o["window_Cq_MHz"]
    assert mean_w == pytest.approx(o["Cq_MHz_avg"], rel=0.05) and 0 < std_w < 0.1 * abs(mean_w)
    # analytic rates for an exponential G with the model's G(0) (fluctuating part of the tensor)
    fluct = efg_sites - efg_sites.mean(axis=0)
    g0 = float(np.mean(np.sum(fluct**2, axis=1)))
    c = g0 * np.exp(-np.arange(401) * dt / tau)
    r1_q, r2_q = D.quadrupolar_rates(c, dt, 2.5, q, ISOTOPES["17O"].larmor_mhz(14.1) * 1e6)
    fl = ms_sites - ms_sites.mean(axis=0)
    r1_c, r2_c = D.csa_rates(float(np.mean(np.sum(fl**2, axis=1))) * np.exp(-np.arange(401) * dt / tau), dt,
                             ISOTOPES["17O"].larmor_mhz(14.1) * 1e6)  # fmt: skip
    assert o["R1_per_s"] == pytest.approx(r1_q + r1_c, rel=0.1)
    assert o["R2_per_s"] == pytest.approx(r2_q + r2_c, rel=0.1)
    assert len(res["sites"]) == n_sites and {"mean_efg", "Cq_MHz_avg", "tau_c_ps", "R1_per_s"} <= set(res["sites"][0])
    import zarr

    g = zarr.open_group(str(tmp_path / "jump.zarr"), mode="r")
    assert g["analysis/acf_efg_O"].shape == (401, n_sites) and g["analysis/mean_efg_O"].shape == (n_sites, 9)
