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
