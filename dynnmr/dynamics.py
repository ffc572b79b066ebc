"""Motional averaging and time correlation of per-site tensor time series.

Inputs are tensor series ``x`` of shape ``(T, S, 9)`` (frames, sites, row-major Cartesian
components, as in the store) in any units. Averages are taken of the Cartesian tensors,
never of derived parameters (C_Q, eta and friends are not linear in the tensor).

Correlation functions are those of the fluctuations about each site's mean, per irrep of
the spherical decomposition (:mod:`dynnmr.tensors`). Its basis is orthonormal, so the sum
over an irrep's components is the double contraction ``dT(0) : dT(t)`` of that part:

    C_l(t) = < sum_m dA_lm(t0) dA_lm(t0 + t) >_t0

estimated without bias from T frames as ``1/(T - t) sum_t0`` with a zero-padded FFT
(Wiener-Khinchin), O(T log T) per site.
"""

from __future__ import annotations

import numpy as np

from . import tensors as T


def mean_tensors(x):
    """Time-averaged tensors per site: ``(T, S, 9)`` -> ``(S, 9)``."""
    return np.asarray(x, dtype=np.float64).mean(axis=0)


def window_means(x, times_ps, window_ps):
    """Averages over consecutive windows of ``window_ps`` (ps): ``(W, S, 9)`` and window start times.

    Window j holds the frames with ``t0 + j w <= t < t0 + (j + 1) w``; only windows the
    trajectory covers completely are returned, so every average spans the same time.
    """
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(times_ps, dtype=np.float64)
    if not np.all(np.isfinite(t)):
        raise ValueError("window averages need a time for every frame (use --dt)")
    if window_ps <= 0:
        raise ValueError(f"window must be positive, got {window_ps} ps")
    dt = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
    which = np.floor((t - t[0]) / window_ps + 1e-9).astype(int)
    n_full = int(np.floor((t[-1] - t[0] + dt) / window_ps + 1e-9))
    means = np.array([x[which == j].mean(axis=0) for j in range(n_full)]).reshape((n_full,) + x.shape[1:])
    return means, t[0] + window_ps * np.arange(n_full)


def irrep_fluctuations(x):
    """Fluctuations about each site's mean in spherical components, ``{l: (T, S, 2l+1)}``."""
    x = np.asarray(x, dtype=np.float64)
    sph = T.to_spherical(x.reshape(x.shape[:-1] + (3, 3)) - mean_tensors(x).reshape(x.shape[1:-1] + (3, 3)))
    return {l: sph[..., sl] for l, sl in T.IRREP_SLICES.items()}


def autocorrelation(y, max_lag=None):
    """Unbiased autocorrelation along axis 0, summed over the last axis (components).

    ``y``: ``(T, ..., k)``. Returns ``(L, ...)`` with ``C[t] = 1/(T-t) sum_t0 sum_k
    y[t0, ..., k] y[t0+t, ..., k]`` for lags ``0 <= t < L`` (``L = max_lag`` or T).
    """
    y = np.asarray(y, dtype=np.float64)
    n = y.shape[0]
    lags = n if max_lag is None else min(int(max_lag), n)
    size = 1 << int(np.ceil(np.log2(2 * n - 1)))  # zero padding: no wrap-around
    f = np.fft.rfft(y, n=size, axis=0)
    power = (f * f.conj()).real.sum(axis=-1)
    c = np.fft.irfft(power, n=size, axis=0)[:lags]
    counts = (n - np.arange(lags)).reshape((lags,) + (1,) * (c.ndim - 1))
    return c / counts


def correlation_functions(x, max_lag=None):
    """Per-irrep autocorrelations of tensor fluctuations: ``{l: (L, S)}`` per site."""
    return {l: autocorrelation(y, max_lag) for l, y in irrep_fluctuations(x).items()}


def integrated_correlation_time(c, dt_ps):
    """``int_0^t* C(t)/C(0) dt`` (ps), trapezoidal, up to the first zero crossing ``t*``.

    ``c``: ``(L, ...)``; returns ``(...)``. For C = exp(-t/tau) this is tau (for t* >> tau).
    NaN where C(0) = 0 (no fluctuation).
    """
    c = np.asarray(c, dtype=np.float64)
    c0 = c[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = c / c0
    below = r <= 0
    first = np.where(below.any(axis=0), below.argmax(axis=0), len(c))
    mask = np.arange(len(c)).reshape((-1,) + (1,) * (c.ndim - 1)) < first
    rr = np.where(mask, r, 0.0)
    tau = dt_ps * (rr.sum(axis=0) - 0.5 * rr[0] - 0.5 * np.take_along_axis(rr, np.maximum(first - 1, 0)[None], 0)[0])
    return np.where(c0 > 0, tau, np.nan)
