"""Motional averages and correlation functions against analytic models."""

import numpy as np
import pytest

import dynnmr
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
    tau = D.integrated_correlation_time(c, dt, n_frames=n)
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
        assert D.integrated_correlation_time(c, dt, n_frames=n) == pytest.approx(tau_c, rel=0.05)


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
    """The window plus its exponential tail gives the Lorentzian at every omega."""
    tau, dt = 5.0, 0.01
    c = exponential_correlation(1.0, tau, dt, 6000)
    for w in (0.0, 1e11, 4e11):
        expected = tau * 1e-12 / (1 + (w * tau * 1e-12) ** 2)
        assert D.spectral_density(c, dt, w) == pytest.approx(expected, rel=1e-3)
    est = D.Correlation.estimate(c, dt, n_frames=10**12)
    assert est.tau_ps == pytest.approx(tau, rel=1e-4) and est.window * dt < 10 * tau


def test_oscillating_correlation_is_not_clamped():
    """A vibration (undamped cos) has no integral: the estimate is small, may be negative, and is
    flagged as unresolved by the frames (it decays by more than half within a frame)."""
    c = np.cos(2 * np.pi * np.arange(100) * 0.01 / 0.033)  # 33 fs period sampled at 10 fs
    est = D.Correlation.estimate(c, 0.01, n_frames=100)
    assert abs(est.tau_ps) < 0.01
    assert any("faster than the frames" in w for w in est.warnings())


def quadrupolar_textbook_r1(spin, cq_hz, eta, tau_ps, nu0_hz):
    """Non-selective R1 for a rigid EFG tumbling isotropically with an exponential correlation."""
    tau = tau_ps * 1e-12
    w0 = 2 * np.pi * nu0_hz
    j = lambda w: tau / (1 + (w * tau) ** 2)  # noqa: E731
    pre = 3 * np.pi**2 / 10 * (2 * spin + 3) / (spin**2 * (2 * spin - 1)) * cq_hz**2 * (1 + eta**2 / 3)
    return pre * (0.2 * j(w0) + 0.8 * j(2 * w0))


def test_quadrupolar_r1_textbook_and_bpp_maximum():
    """17O (I = 5/2): the textbook C_Q^2 (1 + eta^2/3) formula for an exponential G, and R1 against
    tau largest where w0 tau = 0.6158 (for 0.2 J(w0) + 0.8 J(2 w0))."""
    spin, q = 2.5, -25.58
    vzz, eta = 0.8, 0.3
    efg = T.tensor_from_efg(vzz, eta, (10, 20, 30))
    g0 = float(np.sum(efg * efg))  # V : V, au^2
    cq = T.quadrupolar_coupling_hz(vzz, q)
    nu0 = 81.3e6  # 17O at 14.1 T, Hz
    for tau in (0.5, 2000.0):
        corr = D.Correlation.estimate(exponential_correlation(g0, tau, tau / 200, 4000), tau / 200, n_frames=10**12)
        j1, j2 = corr.spectral_density(np.array([1, 2]) * 2 * np.pi * nu0)
        r1 = D.quadrupolar_r1(j1, j2, spin, q)
        assert r1 == pytest.approx(quadrupolar_textbook_r1(spin, cq, eta, tau, nu0), rel=2e-3)
    taus = np.geomspace(200.0, 8000.0, 81)  # ps
    r1s = []
    for t in taus:
        corr = D.Correlation.estimate(exponential_correlation(g0, t, t / 200, 2400), t / 200, n_frames=10**12)
        r1s.append(D.quadrupolar_r1(*corr.spectral_density(np.array([1, 2]) * 2 * np.pi * nu0), spin, q))
    t_max = taus[int(np.argmax(r1s))]
    assert 2 * np.pi * nu0 * t_max * 1e-12 == pytest.approx(0.6158, rel=0.03)


def test_csa_r1_textbook():
    zeta, eta, tau, nu0 = 50.0, 0.4, 20.0, 119.2e6  # ppm, -, ps, Hz (29Si at 14.1 T)
    s = T.tensor_from_haeberlen(0.0, zeta, eta)
    corr = D.Correlation.estimate(exponential_correlation(float(np.sum(s * s)), tau, 0.05, 6000), 0.05, 10**12)
    w0, dsig = 2 * np.pi * nu0, 1.5 * zeta * 1e-6
    j = tau * 1e-12 / (1 + (w0 * tau * 1e-12) ** 2)
    assert D.csa_r1(corr.spectral_density(w0), nu0) == pytest.approx(
        2 / 15 * w0**2 * dsig**2 * (1 + eta**2 / 3) * j, rel=1e-3
    )


def test_population_rate_matrix_splits_r1_as_redfield():
    """n_m proportional to m (a non-selective perturbation) relaxes initially at 0.2 j1 + 0.8 j2:
    the J(w0) and J(2 w0) shares come out of the T_2q matrix elements, for every spin."""
    for spin in (1.0, 1.5, 2.5, 3.5, 4.5):
        m = np.arange(-spin, spin + 0.5)
        for j1, j2 in ((1.0, 0.0), (0.0, 1.0), (0.3, 2.0)):
            r = D.population_rate_matrix(spin, j1, j2)
            assert -(m @ r @ m) / (m @ m) == pytest.approx(0.2 * j1 + 0.8 * j2, rel=1e-12)
            np.testing.assert_allclose(r.sum(axis=0), 0.0, atol=1e-12)  # populations are conserved


def test_central_transition_recovery_closed_forms():
    """I = 3/2 (Hubbard, J. Chem. Phys. 53, 985 (1970)): after CT-selective inversion the CT
    recovers as 0.5 exp(-2 W1 t) + 0.5 exp(-2 W2 t), where non-selectively <I_z> goes as
    0.2 exp(-2 W1 t) + 0.8 exp(-2 W2 t). I = 5/2 in extreme narrowing: the odd ranks k = 1, 3, 5
    relax at rates proportional to k(k+1)[4I(I+1) - k(k+1) - 1] with amplitudes 1/35, 8/45, 50/63."""
    rates, amps = D.central_transition_recovery(1.5, 1.0, 3.0)  # 2 W1 = 1 / 0.2 j1 ... in R1 units
    two_w1, two_w2 = 1.0, 3.0  # non-selective R1 = 0.2 (2 W1) + 0.8 (2 W2) with j = 2 W
    np.testing.assert_allclose(sorted(rates), [two_w1, two_w2], rtol=1e-12)
    np.testing.assert_allclose(amps[np.argsort(rates)], [0.5, 0.5], rtol=1e-12)
    spin = 2.5
    rates, amps = D.central_transition_recovery(spin, 1.0, 1.0)
    k = np.array([1, 3, 5])
    expected = k * (k + 1) * (4 * spin * (spin + 1) - k * (k + 1) - 1)
    order = np.argsort(rates)
    np.testing.assert_allclose(rates[order] / rates[order][0], np.sort(expected / expected[0]), rtol=1e-12)
    by_rank = dict(zip(expected / expected[0], [1 / 35, 8 / 45, 50 / 63]))
    np.testing.assert_allclose(amps[order], [by_rank[x] for x in np.sort(expected / expected[0])], rtol=1e-10)


def test_central_transition_recovery_matches_the_integrated_master_equation():
    from scipy.linalg import expm

    for spin, j1, j2 in ((1.5, 0.7, 1.3), (2.5, 1.0, 0.25), (3.5, 0.2, 1.0)):
        r = D.population_rate_matrix(spin, j1, j2)
        n0 = np.zeros(len(r))
        n0[len(r) // 2], n0[len(r) // 2 - 1] = 1.0, -1.0
        rates, amps = D.central_transition_recovery(spin, j1, j2)
        for t in (0.05, 0.5, 2.0):
            nt = expm(r * t) @ n0
            assert (nt[len(r) // 2] - nt[len(r) // 2 - 1]) / 2 == pytest.approx(
                np.sum(amps * np.exp(-rates * t)), rel=1e-10
            )
        h = 1e-7
        nt = expm(r * h) @ n0
        slope = -((nt[len(r) // 2] - nt[len(r) // 2 - 1]) / 2 - 1) / h
        assert D.central_transition_r1(spin, j1, j2) == pytest.approx(slope, rel=1e-5)


def random_rotations(rng, n):
    from scipy.spatial.transform import Rotation

    return Rotation.random(n, random_state=rng).as_matrix()


def jump_store(tmp_path, n_frames, n_sites, dt, tau, stride=1, seed=7):
    """A store of rigid 17O EFG tensors (C_Q 5.2 MHz, eta 0.2) jumping to random orientations
    with probability dt/tau per frame: G(t) = G(0) exp(-t / tau_eff), tau_eff = -dt/ln(1 - dt/tau)."""
    from dynnmr.isotopes import ISOTOPES
    from dynnmr.store import TensorStore

    rng = np.random.default_rng(seed)
    q = ISOTOPES["17O"].quadrupole_moment_mb
    vzz = 5.2e6 / T.quadrupolar_coupling_hz(1.0, q)
    v0 = T.tensor_from_efg(vzz, 0.2, (0, 0, 0))
    jumps = np.cumsum(rng.random((n_frames * stride, n_sites)) < dt / tau, axis=0)[::stride]
    jumps = jumps + (int(jumps.max()) + 1) * np.arange(n_sites)  # every site its own orientations
    rots = random_rotations(rng, int(jumps.max()) + 1)
    efg = np.einsum("tsij,jk,tslk->tsil", rots[jumps], v0, rots[jumps]).reshape(n_frames, n_sites, 9)
    path = tmp_path / f"jump{n_frames}_{stride}.zarr"
    store = TensorStore.create(path, targets=["efg"], numbers=[8] * n_sites, atom_index=range(n_sites),
                               chunk_frames=n_frames, attrs={})  # fmt: skip
    store.write_chunk(0, {"efg": efg, "time_ps": dt * stride * np.arange(n_frames), "frame_index": np.arange(n_frames),
                          "cell": np.full((n_frames, 3, 3), np.nan)})  # fmt: skip
    store.finish()
    return path, -dt / np.log(1 - dt / tau)


@pytest.mark.parametrize("n_frames, n_sites", [(2000, 256), (20000, 32)])
def test_jump_model_r1_within_five_percent_and_its_error_bar(tmp_path, n_frames, n_sites):
    """Rigid 17O EFG, random-orientation jumps, tau = 2 ps, frames every 0.1 ps: the species R1 and
    tau_c are within 5% of exact and within 3 of their own error bars, and flagged resolved."""
    path, tau = jump_store(tmp_path, n_frames, n_sites, dt=0.1, tau=2.0)
    res = D.analyse_store(path, field_t=14.1)["species"]["O"]
    from dynnmr.isotopes import ISOTOPES

    exact = quadrupolar_textbook_r1(2.5, 5.2e6, 0.2, tau, abs(ISOTOPES["17O"].larmor_mhz(14.1)) * 1e6)  # 50.6 /s
    assert res["R1_per_s"] == pytest.approx(exact, rel=0.05)
    assert abs(res["R1_per_s"] - exact) < 3 * res["R1_err_per_s"]
    assert res["tau_c_ps"] == pytest.approx(tau, rel=0.05) and abs(res["tau_c_ps"] - tau) < 3 * res["tau_c_err_ps"]
    assert res["resolved"] and res["warnings"] == []
    # extreme narrowing (w0 tau ~ 1e-3): the CT-selective initial rate is 2.25 times R1 for I = 5/2
    assert res["R1_ct_per_s"] == pytest.approx(2.25 * res["R1_per_s"], rel=1e-3)


def test_jump_model_strided_past_tau_is_flagged(tmp_path):
    path, _ = jump_store(tmp_path, 2000, 64, dt=0.1, tau=2.0, stride=40)  # frames 4 ps apart
    res = D.analyse_store(path, field_t=14.1)["species"]["O"]
    assert not res["resolved"]
    assert any("faster than the frames" in w and "4 ps" in w for w in res["warnings"])


def test_short_run_is_flagged(tmp_path):
    path, _ = jump_store(tmp_path, 200, 64, dt=0.1, tau=2.0)  # 20 ps = 10 tau
    res = D.analyse_store(path, field_t=14.1)["species"]["O"]
    assert not res["resolved"] and any("shorter than 20 tau_c" in w for w in res["warnings"])


def test_dynamics_command_on_a_jump_model_store(tmp_path):
    """A store holding 17O EFG and shielding tensors that jump among 3 sites: the command's
    averaged C_Q, correlation time, R1 and error bars against the analytic values."""
    import json

    import zarr

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
    assert res["dynnmr_version"] == dynnmr.__version__ and "model" in res  # what made the numbers (none: synthetic)
    o = res["species"]["O"]
    p2 = 0.5 * (3 * np.cos(np.radians(beta)) ** 2 - 1)
    q = ISOTOPES["17O"].quadrupole_moment_mb
    assert o["abs_Cq_MHz_avg"] == pytest.approx(abs(T.quadrupolar_coupling_hz(vzz * p2, q)) * 1e-6, rel=0.03)
    tau = -dt / np.log(1 - 3 * k * dt)  # three-site jumps: rank-2 decay exp(-3 k t), discretised
    assert o["tau_c_ps"] == pytest.approx(tau, rel=0.06) and o["tau_c_ms_ps"] == pytest.approx(tau, rel=0.06)
    w = o["window_abs_Cq_MHz"]
    assert w["n_windows"] == int(n * dt // 100)  # whole 100 ps windows the run covers
    mean_w, std_w = w["mean"], w["sd_over_windows_and_sites"]
    assert mean_w == pytest.approx(o["abs_Cq_MHz_avg"], rel=0.05) and 0 < std_w < 0.1 * abs(mean_w)
    # analytic rates for an exponential G with the model's G(0) (fluctuating part of the tensor)
    nu0 = ISOTOPES["17O"].larmor_mhz(14.1) * 1e6
    exact = {}
    for name, sites in (("efg", efg_sites), ("ms", ms_sites)):
        g0 = float(np.mean(np.sum((sites - sites.mean(axis=0)) ** 2, axis=1)))
        exact[name] = D.Correlation.estimate(exponential_correlation(g0, tau, dt, 2000), dt, n_frames=10**12)
    j1, j2 = exact["efg"].spectral_density(np.array([1, 2]) * 2 * np.pi * abs(nu0))
    r1 = D.quadrupolar_r1(j1, j2, 2.5, q) + D.csa_r1(exact["ms"].spectral_density(2 * np.pi * abs(nu0)), nu0)
    assert o["R1_per_s"] == pytest.approx(r1, rel=0.1) and o["R1_err_per_s"] > 0
    assert "R2_per_s" not in o and o["resolved"] is True
    assert len(res["sites"]) == n_sites and {"mean_efg", "Cq_MHz_avg", "tau_c_ps", "R1_per_s", "R1_ct_per_s"} <= set(
        res["sites"][0]
    )
    g = zarr.open_group(str(tmp_path / "jump.zarr"), mode="r")
    assert g["analysis/acf_efg_O"].shape == (401, n_sites) and g["analysis/mean_efg_O"].shape == (n_sites, 9)
    assert g["analysis/R1_per_s_O"].shape == (n_sites,)
    assert g["analysis"].attrs["species"]["O"]["R1_per_s"] == pytest.approx(o["R1_per_s"])


def test_cell_rotation_is_found_and_strain_is_not():
    from scipy.spatial.transform import Rotation

    cell = np.diag([10.0, 11.0, 12.0])
    strained = [cell @ (np.eye(3) + e * np.array([[0.0, 0.3, 0.1], [0.3, 1.0, 0.0], [0.1, 0.0, -1.0]]))
                for e in np.linspace(0, 0.05, 5)]  # symmetric strain: no rotation  # fmt: skip
    assert D.cell_rotation_deg(strained) < 1e-6
    turned = [c @ Rotation.from_euler("z", a, degrees=True).as_matrix().T for c, a in zip(strained, [0, 1, 2, 3, 4])]
    assert D.cell_rotation_deg(turned) == pytest.approx(4.0, abs=0.2)
    assert np.isnan(D.cell_rotation_deg(np.full((3, 3, 3), np.nan)))
