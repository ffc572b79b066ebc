"""Static powder spectra from shielding/shift and EFG tensors, vectorised over sites and orientations.

Frequencies are computed per site for every direction ``b`` of B0 in the crystal frame of
a ZCW powder set (Zaremba-Conroy-Wolfsberg, equal weights), then histogrammed on a ppm
axis and broadened.

* Chemical shift, first order: ``delta(b) = b . D . b`` with D the symmetric part of the
  shift tensor (ppm; delta = sigma_ref - sigma).
* Quadrupolar, first order, transition m-1 <-> m: ``nu = 3 C_Q^lab (2m - 1) / (4 I (2I - 1))``
  with ``C_Q^lab = e Q (b . V . b) / h``; zero for the central transition.
* Quadrupolar, second order, central transition (Hz):
  ``-(nu_Q^2 / (6 nu_0)) (I(I+1) - 3/4) [A cos^4 t + B cos^2 t + C]``, ``nu_Q = 3 C_Q / (2I(2I-1))``,
  t, p the polar angles of b in the EFG principal frame and
  A = -27/8 + 9/4 eta cos2p - 3/8 eta^2 cos^2 2p, B = 30/8 - eta^2/2 - 2 eta cos2p + 3/4 eta^2 cos^2 2p,
  C = -3/8 + eta^2/3 - 1/4 eta cos2p - 3/8 eta^2 cos^2 2p (Freude & Haase, NMR Basic
  Principles and Progress 29 (1993); Man, Encyclopedia of NMR). In ppm: nu / |nu_0| * 1e6.
"""

from __future__ import annotations

import numpy as np

from . import tensors as T
from .isotopes import get_isotope


def zcw_directions(index=12):
    """Unit vectors of a ZCW set over the sphere: Fibonacci F(index+2) points, equal weights."""
    fib = [8, 13]
    while len(fib) < index + 3:
        fib.append(fib[-1] + fib[-2])
    n, g = fib[index + 2], fib[index]
    j = np.arange(n)
    alpha = 2 * np.pi * np.mod(j * g / n, 1.0)
    beta = np.arccos(np.clip(1.0 - 2.0 * np.mod(j / n, 1.0), -1.0, 1.0))
    return np.stack([np.sin(beta) * np.cos(alpha), np.sin(beta) * np.sin(alpha), np.cos(beta)], axis=-1)


def shift_frequencies_ppm(shift, directions):
    """First-order chemical shift (ppm) for each site and direction: ``(S, N)``."""
    d = T.symmetric_part(np.asarray(shift, dtype=np.float64).reshape(-1, 3, 3))
    return np.einsum("nj,sjk,nk->sn", directions, d, directions)


def quadrupolar_first_order_hz(efg_au, quadrupole_moment_mb, spin, m, directions):
    """First-order frequency (Hz) of the transition m-1 <-> m: ``(S, N)``."""
    v = T.symmetric_part(np.asarray(efg_au, dtype=np.float64).reshape(-1, 3, 3))
    cq_lab = T.quadrupolar_coupling_hz(np.einsum("nj,sjk,nk->sn", directions, v, directions), quadrupole_moment_mb)
    return 3.0 * cq_lab * (2 * m - 1) / (4 * spin * (2 * spin - 1))


def central_transition_second_order_hz(efg_au, quadrupole_moment_mb, spin, larmor_hz, directions):
    """Second-order shift (Hz) of the central transition: ``(S, N)``."""
    v = np.asarray(efg_au, dtype=np.float64).reshape(-1, 3, 3)
    vals, axes = T.efg_principal(v)
    p = T.efg_parameters(v)
    cq = T.quadrupolar_coupling_hz(p["Vzz"], quadrupole_moment_mb)
    nu_q = 3 * cq / (2 * spin * (2 * spin - 1))
    b = np.einsum("sji,nj->sni", axes, directions)  # directions in each site's principal frame
    c2 = b[..., 2] ** 2
    cos2p = np.where(1 - c2 > 1e-14, (b[..., 0] ** 2 - b[..., 1] ** 2) / np.maximum(1 - c2, 1e-300), 1.0)
    eta = p["eta_Q"][:, None]
    a = -27 / 8 + 9 / 4 * eta * cos2p - 3 / 8 * eta**2 * cos2p**2
    bb = 30 / 8 - eta**2 / 2 - 2 * eta * cos2p + 3 / 4 * eta**2 * cos2p**2
    c = -3 / 8 + eta**2 / 3 - 1 / 4 * eta * cos2p - 3 / 8 * eta**2 * cos2p**2
    f = a * c2**2 + bb * c2 + c
    return -(nu_q[:, None] ** 2) / (6 * abs(larmor_hz)) * (spin * (spin + 1) - 0.75) * f


def static_spectrum(ppm_axis, isotope, field_t, shift=None, efg=None, transitions="central", zcw_index=14,
                    broadening_ppm=0.0, lineshape="gaussian"):  # fmt: skip
    """Static powder spectrum summed over sites, normalised to unit area on ``ppm_axis``.

    ``shift``: ``(S, 3, 3)`` shift tensors (ppm) or None; ``efg``: ``(S, 3, 3)`` EFG (au) or
    None; both in the same (crystal) frame, so their relative orientation is kept.
    ``transitions``: ``central`` (quadrupolar nuclei: the central transition to second
    order) or ``all`` (every transition to first order, plus second order for the central
    one). ``broadening_ppm``: full width at half maximum of a Gaussian or Lorentzian.
    """
    iso = get_isotope(isotope)
    nu0 = iso.larmor_mhz(field_t) * 1e6
    dirs = zcw_directions(zcw_index)
    n_sites = len(np.asarray(shift if shift is not None else efg).reshape(-1, 9))
    base = shift_frequencies_ppm(shift, dirs) if shift is not None else np.zeros((n_sites, len(dirs)))
    lines = []  # (frequencies in ppm, intensity weight) per transition
    if efg is None or not iso.is_quadrupolar:
        lines.append((base, 1.0))
    else:
        spin, q = iso.spin, iso.quadrupole_moment_mb
        ct = base + central_transition_second_order_hz(efg, q, spin, nu0, dirs) / abs(nu0) * 1e6
        if transitions == "central":
            lines.append((ct, 1.0))
        else:
            for m in np.arange(-spin + 1, spin + 1):
                weight = spin * (spin + 1) - m * (m - 1)  # |<m|I+|m-1>|^2
                if m == 0.5:
                    lines.append((ct, weight))
                else:
                    nu = quadrupolar_first_order_hz(efg, q, spin, m, dirs) / abs(nu0) * 1e6
                    lines.append((base + nu, weight))
    axis = np.asarray(ppm_axis, dtype=np.float64)
    step = abs(axis[1] - axis[0])
    edges = np.concatenate([[axis[0] - (axis[1] - axis[0]) / 2], (axis[:-1] + axis[1:]) / 2,
                            [axis[-1] + (axis[-1] - axis[-2]) / 2]])  # fmt: skip
    order = np.argsort(edges)
    hist = np.zeros(len(axis))
    for freqs, w in lines:
        h, _ = np.histogram(freqs.ravel(), bins=edges[order])
        hist += w * (h if order[0] == 0 else h[::-1])
    if broadening_ppm > 0:
        x = (np.arange(len(axis)) - len(axis) // 2) * step
        if lineshape == "gaussian":
            kernel = np.exp(-4 * np.log(2) * (x / broadening_ppm) ** 2)
        else:
            kernel = 1 / (1 + (2 * x / broadening_ppm) ** 2)
        hist = np.convolve(hist, kernel / kernel.sum(), mode="same")
    area = hist.sum() * step
    return hist / area if area > 0 else hist
