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
from .isotopes import ISOTOPES, isotope_for
from .params import efg_columns, shielding_columns


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
    from scipy import fft as sfft

    n = y.shape[0]
    lags = n if max_lag is None else min(int(max_lag), n)
    size = sfft.next_fast_len(2 * n - 1, real=True)  # zero padding: no wrap-around
    f = sfft.rfft(y, n=size, axis=0)
    power = (f * f.conj()).real.sum(axis=-1)
    c = sfft.irfft(power, n=size, axis=0)[:lags]
    counts = (n - np.arange(lags)).reshape((lags,) + (1,) * (c.ndim - 1))
    return c / counts


def correlation_functions(x, max_lag=None):
    """Per-irrep autocorrelations of tensor fluctuations: ``{l: (L, S)}`` per site."""
    return {l: autocorrelation(y, max_lag) for l, y in irrep_fluctuations(x).items()}


def integrated_correlation_time(c, dt_ps):
    """``int_0^t* C(t)/C(0) dt`` (ps), trapezoidal, up to the first lag ``t*`` where C <= 0.

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
    # trapezoid over the samples before the crossing, the crossing sample taken as 0
    tau = dt_ps * (rr.sum(axis=0) - 0.5 * rr[0])
    return np.where(c0 > 0, tau, np.nan)


# Relaxation (Redfield) ---------------------------------------------------------------------
# The correlation G(t) = <dT(0) : dT(t)> of the fluctuating l=2 part is rotation invariant,
# so the rates below are those of a powder (isotropic average over crystallite orientations).
# For a tensor of fixed shape tumbling isotropically, G(0) = (3/2) zeta^2 (1 + eta^2/3) and
# the formulas reduce to the textbook ones (Abragam, "The Principles of Nuclear Magnetism",
# ch. VIII; Spiess, NMR Basic Principles and Progress 15 (1978)):
#   quadrupolar: R1 = (3 pi^2/10) (2I+3)/(I^2 (2I-1)) C_Q^2 (1 + eta^2/3) [0.2 J(w0) + 0.8 J(2 w0)]
#                R2 = (same prefactor) [0.3 J(0) + 0.5 J(w0) + 0.2 J(2 w0)]
#   CSA:         R1 = (2/15) w0^2 Dsigma^2 (1 + eta^2/3) J(w0)
#                R2 = (1/45) w0^2 Dsigma^2 (1 + eta^2/3) [4 J(0) + 3 J(w0)]
# with J(w) = tau/(1 + w^2 tau^2) for an exponential correlation. For I > 1 quadrupolar
# relaxation is multi-exponential; these are the usual effective (initial) rates.


def spectral_density(c, dt_ps, omega_rad_per_s):
    """``j(w) = int_0^tmax G(t) cos(w t) dt`` (units of G times s), trapezoidal over the lags given.

    ``c``: ``(L, ...)`` correlation function sampled every ``dt_ps``; truncate it (max_lag)
    where it has decayed, since its noisy tail only adds noise. A spectral density is
    non-negative; a negative estimate (an oscillating, e.g. vibrational, correlation
    integrated over a finite time) is noise about zero and is returned as 0.
    """
    c = np.asarray(c, dtype=np.float64)
    t_s = np.arange(len(c)) * dt_ps * 1e-12
    w = np.cos(np.multiply.outer(np.atleast_1d(omega_rad_per_s), t_s))  # (W, L)
    weights = np.full(len(c), dt_ps * 1e-12)
    weights[0] *= 0.5
    weights[-1] *= 0.5
    out = np.maximum(np.tensordot(w * weights, c, axes=(1, 0)), 0.0)
    return out if np.ndim(omega_rad_per_s) else out[0]


def quadrupolar_rates(c_efg_au2, dt_ps, spin, quadrupole_moment_mb, larmor_hz):
    """Quadrupolar R1, R2 (1/s) from the EFG l=2 correlation ``G(t)`` in au^2 (lags of ``dt_ps``).

    ``larmor_hz``: nu_0 of the nucleus at the field (Hz; sign irrelevant).
    """
    if spin < 1:
        raise ValueError(f"quadrupolar relaxation needs I >= 1, got I = {spin}")
    w0 = 2 * np.pi * abs(larmor_hz)
    hz_per_au = T.quadrupolar_coupling_hz(1.0, quadrupole_moment_mb)
    k = 3 * np.pi**2 / 10 * (2 * spin + 3) / (spin**2 * (2 * spin - 1)) * hz_per_au**2 * 2.0 / 3.0
    j0, j1, j2 = spectral_density(c_efg_au2, dt_ps, np.array([0.0, w0, 2 * w0]))
    return k * (0.2 * j1 + 0.8 * j2), k * (0.3 * j0 + 0.5 * j1 + 0.2 * j2)


def csa_rates(c_ms_ppm2, dt_ps, larmor_hz):
    """Chemical-shift-anisotropy R1, R2 (1/s) from the shielding l=2 correlation in ppm^2."""
    w0 = 2 * np.pi * abs(larmor_hz)
    j0, j1 = spectral_density(np.asarray(c_ms_ppm2) * 1e-12, dt_ps, np.array([0.0, w0]))
    return w0**2 * j1 / 5.0, w0**2 * (4 * j0 + 3 * j1) / 30.0


# Whole-store analysis -----------------------------------------------------------------------
def analyse_store(path, window_ps=None, field_t=14.1, species=None, max_lag_ps=None, memory_gb=1.0):
    """Per-species and per-site dynamics of a store; results also written to its ``analysis/`` group.

    For every selected species and target: time-averaged tensors and their parameters,
    window averages (``window_ps``), l=2 correlation functions, integrated correlation
    times, and R1/R2 at ``field_t`` Tesla (quadrupolar from ``efg``, CSA from ``ms``,
    summed when both exist). Sites are processed in blocks that fit ``memory_gb`` (float64
    series and their FFTs), as few as possible: each block reads every frame chunk.
    """
    import zarr
    from ase.data import atomic_numbers, chemical_symbols

    g = zarr.open_group(str(path), mode="r+")
    numbers = np.asarray(g["numbers"][:])
    t = np.asarray(g["time_ps"][:])
    n = len(t)
    if n < 4 or not np.all(np.isfinite(t)):
        raise ValueError(f"{path}: dynamics needs at least 4 frames with times (analyze with --dt)")
    dt = float(np.median(np.diff(t)))
    if not np.allclose(np.diff(t), dt, rtol=1e-3, atol=1e-9):
        raise ValueError(f"{path}: frames are not equally spaced in time (use --frames with a fixed step)")
    lags = n // 2 if max_lag_ps is None else max(2, min(n, int(round(max_lag_ps / dt)) + 1))
    targets = [x for x in ("ms", "efg") if x in g]
    wanted = sorted(set(numbers)) if not species else [atomic_numbers[s.strip()] for s in species.split(",")]
    result = {"store": str(path), "frames": n, "dt_ps": dt, "field_T": field_t, "max_lag_ps": (lags - 1) * dt,
              "window_ps": window_ps, "species": {}, "sites": []}  # fmt: skip
    out = g.require_group("analysis")
    site_block = max(1, int(memory_gb * 1e9 / (n * 9 * 8 * 4)))  # series, padded FFT and products
    for z in wanted:
        el = chemical_symbols[int(z)]
        idx = np.flatnonzero(numbers == z)
        if not idx.size:
            continue
        iso_q = isotope_for(el)
        spin_half = {"Si": "29Si", "O": "17O", "H": "1H", "C": "13C"}.get(el)
        nucleus = ISOTOPES.get(spin_half) if spin_half else iso_q
        per_site = {k: [] for k in ("mean_ms", "mean_efg", "acf_ms", "acf_efg", "R1_q", "R2_q", "R1_c", "R2_c")}
        win = {}
        for a in range(0, len(idx), site_block):
            block = idx[a : a + site_block]
            for tg in targets:
                x = np.asarray(g[tg].get_orthogonal_selection((slice(None), block, slice(None))), dtype=np.float64)
                if not np.isfinite(x).all():
                    continue  # the model does not cover this species for this target
                per_site[f"mean_{tg}"].append(mean_tensors(x))
                c = autocorrelation(irrep_fluctuations(x)[2], lags)
                per_site[f"acf_{tg}"].append(c)
                if tg == "efg" and iso_q is not None and iso_q.is_quadrupolar:
                    r1, r2 = quadrupolar_rates(c, dt, iso_q.spin, iso_q.quadrupole_moment_mb, iso_q.larmor_mhz(field_t) * 1e6)
                    per_site["R1_q"].append(r1)
                    per_site["R2_q"].append(r2)
                if tg == "ms" and nucleus is not None:
                    r1, r2 = csa_rates(c, dt, nucleus.larmor_mhz(field_t) * 1e6)
                    per_site["R1_c"].append(r1)
                    per_site["R2_c"].append(r2)
                if window_ps:
                    means, _ = window_means(x, t, window_ps)
                    win.setdefault(tg, []).append(means.reshape(-1, 3, 3))
        summary = _species_summary(el, idx, per_site, win, dt, iso_q)
        if summary is None:
            continue
        result["species"][el] = summary.pop("species")
        result["sites"].extend(summary["sites"])
        for key in ("mean_ms", "mean_efg", "acf_ms", "acf_efg"):
            if per_site[key]:
                arr = np.concatenate(per_site[key], axis=-2 if key.startswith("mean") else -1)
                out.create_array(f"{key}_{el}", data=arr.astype(np.float32), overwrite=True,
                                 dimension_names=("site", "component") if key.startswith("mean") else ("lag", "site"))  # fmt: skip
    out.attrs.update({"dt_ps": dt, "field_T": field_t, "window_ps": window_ps, "acf": "l=2 fluctuation, unbiased"})
    return result


def _species_summary(el, idx, per_site, win, dt, iso_q):
    """Per-species and per-site JSON entries from the per-site blocks of one species."""
    if not per_site["mean_ms"] and not per_site["mean_efg"]:
        return None
    cat = {k: np.concatenate(v, axis=-1 if k.startswith("acf") else 0) for k, v in per_site.items() if v}
    sp = {"n_sites": int(len(idx))}
    sites = [{"species": el, "atom_index": int(i)} for i in idx]
    r1 = np.zeros(len(idx))
    r2 = np.zeros(len(idx))
    if "mean_ms" in cat:
        m = cat["mean_ms"].reshape(-1, 3, 3)
        cols = shielding_columns(m)
        acf = cat["acf_ms"]
        tau = integrated_correlation_time(acf.mean(axis=1), dt)
        sp.update(mean_ms=m.mean(axis=0).tolist(), sigma_iso_ppm_avg=float(cols["sigma_iso_ppm"].mean()),
                  zeta_ppm_avg=float(cols["zeta_ppm"].mean()), eta_avg=float(cols["eta_sigma"].mean()),
                  tau_c_ms_ps=float(tau))  # fmt: skip
        tau_site = integrated_correlation_time(acf, dt)
        for s, k in zip(sites, range(len(idx))):
            s.update(mean_ms=m[k].tolist(), sigma_iso_ppm_avg=float(cols["sigma_iso_ppm"][k]),
                     zeta_ppm_avg=float(cols["zeta_ppm"][k]), eta_avg=float(cols["eta_sigma"][k]),
                     tau_c_ms_ps=float(tau_site[k]), tau_c_ps=float(tau_site[k]))  # fmt: skip
        r1 += cat.get("R1_c", 0.0)
        r2 += cat.get("R2_c", 0.0)
    if "mean_efg" in cat:
        m = cat["mean_efg"].reshape(-1, 3, 3)
        q = iso_q.quadrupole_moment_mb if iso_q else 0.0
        cols = efg_columns(m, np.full(len(m), q))
        acf = cat["acf_efg"]
        tau_site = integrated_correlation_time(acf, dt)
        sp.update(mean_efg=m.mean(axis=0).tolist(), Cq_MHz_avg=float(np.mean(cols["Cq_MHz"])),
                  eta_Q_avg=float(np.mean(cols["eta_Q"])),
                  tau_c_ps=float(integrated_correlation_time(acf.mean(axis=1), dt)))  # fmt: skip
        for s, k in zip(sites, range(len(idx))):
            s.update(mean_efg=m[k].tolist(), Cq_MHz_avg=float(cols["Cq_MHz"][k]), eta_Q_avg=float(cols["eta_Q"][k]),
                     tau_c_ps=float(tau_site[k]))  # fmt: skip
        r1 += cat.get("R1_q", 0.0)
        r2 += cat.get("R2_q", 0.0)
    if "tau_c_ps" not in sp and "tau_c_ms_ps" in sp:
        sp["tau_c_ps"] = sp["tau_c_ms_ps"]
    sp.update(R1_per_s=float(r1.mean()), R2_per_s=float(r2.mean()))
    for k, s in enumerate(sites):
        s.update(R1_per_s=float(r1[k]), R2_per_s=float(r2[k]))
    for tg, blocks in win.items():
        w = np.concatenate(blocks, axis=0)
        if tg == "ms":
            cols = shielding_columns(w)
            sp["window_sigma_iso_ppm"] = [float(cols["sigma_iso_ppm"].mean()), float(cols["sigma_iso_ppm"].std())]
        else:
            cols = efg_columns(w, np.full(len(w), iso_q.quadrupole_moment_mb if iso_q else 0.0))
            sp["window_Cq_MHz"] = [float(np.nanmean(cols["Cq_MHz"])), float(np.nanstd(cols["Cq_MHz"]))]
    return {"species": sp, "sites": sites}
