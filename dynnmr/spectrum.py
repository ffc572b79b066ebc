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

import numba
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


@numba.njit(cache=True)
def _ct_angular(c2, cos2p, eta):
    """``A cos^4 t + B cos^2 t + C`` of the second-order central transition (scalars or arrays)."""
    a = -27.0 / 8 + 9.0 / 4 * eta * cos2p - 3.0 / 8 * eta * eta * cos2p * cos2p
    b = 30.0 / 8 - eta * eta / 2 - 2.0 * eta * cos2p + 3.0 / 4 * eta * eta * cos2p * cos2p
    c = -3.0 / 8 + eta * eta / 3 - 1.0 / 4 * eta * cos2p - 3.0 / 8 * eta * eta * cos2p * cos2p
    return a * c2 * c2 + b * c2 + c


def central_transition_second_order_hz(efg_au, quadrupole_moment_mb, spin, larmor_hz, directions):
    """Second-order shift (Hz) of the central transition: ``(S, N)``.

    ``larmor_hz`` is the signed nu_0 = gamma B0 / 2pi: the shift in Hz changes sign with
    gamma, the shift in ppm (Hz / nu_0 * 1e6) does not."""
    v = np.asarray(efg_au, dtype=np.float64).reshape(-1, 3, 3)
    vals, axes = T.efg_principal(v)
    p = T.efg_parameters(v)
    cq = T.quadrupolar_coupling_hz(p["Vzz"], quadrupole_moment_mb)
    nu_q = 3 * cq / (2 * spin * (2 * spin - 1))
    b = np.einsum("sji,nj->sni", axes, directions)  # directions in each site's principal frame
    c2 = b[..., 2] ** 2
    cos2p = np.where(1 - c2 > 1e-14, (b[..., 0] ** 2 - b[..., 1] ** 2) / np.maximum(1 - c2, 1e-300), 1.0)
    f = _ct_angular(c2, cos2p, np.broadcast_to(p["eta_Q"][:, None], c2.shape))
    return -(nu_q[:, None] ** 2) / (6 * larmor_hz) * (spin * (spin + 1) - 0.75) * f


@numba.njit(cache=True, nogil=True)
def _histogram_ct(dirs, shift, axes, pref, eta, lo, step, hist):
    """Fused CSA + second-order central transition frequencies, binned (ppm) for every site and direction.

    The frequencies of :func:`shift_frequencies_ppm` and :func:`central_transition_second_order_hz`
    (``pref`` already in ppm; the angular part is the shared :func:`_ct_angular`); numba
    avoids the (sites x directions) temporaries.
    """
    nbins = hist.size
    for s in range(shift.shape[0]):
        e = eta[s]
        for n in range(dirs.shape[0]):
            bx, by, bz = dirs[n, 0], dirs[n, 1], dirs[n, 2]
            d = (bx * (shift[s, 0, 0] * bx + shift[s, 0, 1] * by + shift[s, 0, 2] * bz)
                 + by * (shift[s, 1, 0] * bx + shift[s, 1, 1] * by + shift[s, 1, 2] * bz)
                 + bz * (shift[s, 2, 0] * bx + shift[s, 2, 1] * by + shift[s, 2, 2] * bz))  # fmt: skip
            if pref[s] != 0.0:
                px = axes[s, 0, 0] * bx + axes[s, 1, 0] * by + axes[s, 2, 0] * bz
                py = axes[s, 0, 1] * bx + axes[s, 1, 1] * by + axes[s, 2, 1] * bz
                pz = axes[s, 0, 2] * bx + axes[s, 1, 2] * by + axes[s, 2, 2] * bz
                c2 = pz * pz
                sin2 = 1.0 - c2
                cos2p = (px * px - py * py) / sin2 if sin2 > 1e-14 else 1.0
                d -= pref[s] * _ct_angular(c2, cos2p, e)
            k = int(np.floor((d - lo) / step))
            if 0 <= k < nbins:
                hist[k] += 1.0


def broaden(y, step, fwhm, lineshape="gaussian"):
    """Convolve a spectrum on an even axis (spacing ``step``) with a unit-area Gaussian or
    Lorentzian of full width at half maximum ``fwhm`` (same units); unchanged if fwhm <= 0."""
    if fwhm <= 0:
        return np.asarray(y)
    x = (np.arange(len(y)) - len(y) // 2) * step
    if lineshape == "gaussian":
        kernel = np.exp(-4 * np.log(2) * (x / fwhm) ** 2)
    else:
        kernel = 1 / (1 + (2 * x / fwhm) ** 2)
    return np.convolve(y, kernel / kernel.sum(), mode="same")


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
    axis = np.asarray(ppm_axis, dtype=np.float64)
    if not np.allclose(np.diff(axis), axis[1] - axis[0]):
        raise ValueError("the ppm axis must be equally spaced")
    step = abs(axis[1] - axis[0])
    lo = axis.min() - step / 2
    n_sites = len(np.asarray(shift if shift is not None else efg).reshape(-1, 9))
    sym = T.symmetric_part(np.asarray(shift, dtype=np.float64).reshape(-1, 3, 3)) if shift is not None \
        else np.zeros((n_sites, 3, 3))  # fmt: skip
    hist = np.zeros(len(axis))  # ascending ppm
    quadrupolar = efg is not None and iso.is_quadrupolar
    if quadrupolar:
        spin, q = iso.spin, iso.quadrupole_moment_mb
        v = np.asarray(efg, dtype=np.float64).reshape(-1, 3, 3)
        _, axes = T.efg_principal(v)
        p = T.efg_parameters(v)
        nu_q = 3 * T.quadrupolar_coupling_hz(p["Vzz"], q) / (2 * spin * (2 * spin - 1))
        pref = nu_q**2 / (6 * abs(nu0)) * (spin * (spin + 1) - 0.75) / abs(nu0) * 1e6  # ppm
        ct_weight = spin * (spin + 1) - 0.5 * (0.5 - 1)  # |<1/2|I+|-1/2>|^2
        _histogram_ct(dirs, sym, np.ascontiguousarray(axes), pref, p["eta_Q"], lo, step, hist)
        hist *= ct_weight if transitions == "all" else 1.0
        if transitions == "all":
            base = shift_frequencies_ppm(sym, dirs)
            for m in np.arange(-spin + 1, spin + 1):
                if m == 0.5:
                    continue
                nu = base + quadrupolar_first_order_hz(v, q, spin, m, dirs) / abs(nu0) * 1e6
                k = np.floor((nu.ravel() - lo) / step).astype(np.int64)
                k = k[(k >= 0) & (k < len(hist))]
                hist += (spin * (spin + 1) - m * (m - 1)) * np.bincount(k, minlength=len(hist))
    else:
        _histogram_ct(dirs, sym, np.zeros((n_sites, 3, 3)), np.zeros(n_sites), np.zeros(n_sites), lo, step, hist)
    if axis[1] < axis[0]:
        hist = hist[::-1]
    hist = broaden(hist, step, broadening_ppm, lineshape)
    area = hist.sum() * step
    return hist / area if area > 0 else hist


def site_tensors(path, element, average="run", window_ps=None, frames=None, allow_incomplete=False):
    """Shift-ready inputs from a store or tensor file: ``(ms (K,3,3) or None, efg (K,3,3) or None, sigma_ref)``.

    From a store, ``average`` picks instantaneous tensors of every selected frame (``none``),
    per-site averages over the run (``run``) or over windows of ``window_ps`` (``window``);
    each averaged or instantaneous tensor counts as one site of the powder. The store's
    shift reference for the element is returned when it has one.
    """
    from pathlib import Path

    from ase.data import atomic_numbers

    from .formats import is_store

    z = atomic_numbers[element]
    p = Path(path)
    if is_store(p):
        if average not in ("run", "window", "none"):
            raise ValueError(f"average must be run, window or none, not {average!r}")
        if average == "window" and not window_ps:
            raise ValueError("--average window needs --window PS")
        from .analysis import SiteTensors

        result = SiteTensors(p, element, average, window_ps, frames, allow_incomplete).run()
        return result["ms"], result["efg"], result["sigma_ref"]
    from . import tensorfiles

    ms, efg = [], []
    images = tensorfiles.read(path)
    for atoms in images:
        mask = atoms.numbers == z
        for t, acc in (("ms", ms), ("efg", efg)):
            if t in atoms.arrays:
                v = atoms.arrays[t][mask]
                acc.append(v[np.isfinite(v).all(axis=(1, 2))])
    cat = lambda a: np.concatenate(a) if a and sum(map(len, a)) else None  # noqa: E731
    return cat(ms), cat(efg), tensorfiles.shift_references(images).get(element)


def provisional_range(isotope, field_t, shift=None, efg=None, transitions="central", broadening_ppm=0.0):
    """A ppm range sure to hold every line of these tensors (generous: to be cut down by
    :func:`support_range`): the principal shifts, plus a bound on the quadrupolar
    broadening (second order for the central transition, 1e6 nu_Q^2/nu0^2 (I(I+1) - 3/4);
    first order, I nu_Q / nu0, for the satellites), plus the line broadening."""
    iso = get_isotope(isotope)
    nu0 = abs(iso.larmor_mhz(field_t) * 1e6)
    lo, hi = 0.0, 0.0
    if shift is not None:
        vals = np.linalg.eigvalsh(T.symmetric_part(np.asarray(shift, dtype=np.float64).reshape(-1, 3, 3)))
        lo, hi = float(vals.min()), float(vals.max())
    pad = 5.0 * broadening_ppm + 10.0
    if efg is not None and iso.is_quadrupolar:
        vzz = T.efg_parameters(np.asarray(efg, dtype=np.float64).reshape(-1, 3, 3))["Vzz"]
        nu_q = float(np.max(np.abs(T.quadrupolar_frequency(T.quadrupolar_coupling_hz(vzz, iso.quadrupole_moment_mb),
                                                           iso.spin))))  # fmt: skip
        pad += 1e6 * nu_q**2 / nu0**2 * (iso.spin * (iso.spin + 1) - 0.75)
        if transitions == "all":
            pad += 1e6 * iso.spin * nu_q / nu0
    return lo - pad, hi + pad


def support_range(ppm, intensity, threshold=1e-3, margin=0.1):
    """The ppm range where a spectrum has intensity above ``threshold`` of its maximum,
    widened by ``margin`` of its width on each side: the range a plot should show."""
    ppm, y = np.asarray(ppm), np.abs(np.asarray(intensity))
    inside = ppm[y > threshold * y.max()] if y.max() > 0 else ppm
    lo, hi = float(inside.min()), float(inside.max())
    width = max(hi - lo, 2 * abs(ppm[1] - ppm[0]))
    return lo - margin * width, hi + margin * width


def fraction_outside(ppm, intensity, lo, hi):
    """Share of a spectrum's area outside ``[lo, hi]`` ppm (for the clipping warning)."""
    y = np.abs(np.asarray(intensity))
    ppm = np.asarray(ppm)
    total = y.sum()
    return float(y[(ppm < lo) | (ppm > hi)].sum() / total) if total > 0 else 0.0


def _nucleus_label(nucleus):
    mass, element = "".join(c for c in nucleus if c.isdigit()), "".join(c for c in nucleus if c.isalpha())
    return f"$^{{{mass}}}${element}"


def png_metadata(**extra) -> dict:
    """PNG text chunks naming what made a figure (dynnmr and its version)."""
    from . import __version__

    return {"Software": f"dynnmr {__version__}", **extra}


def _figure(path, draw, ax=None, size=(6.4, 3.6), description=None):
    """Draw on ``ax`` when given (a notebook's axes; nothing saved unless ``path``), else on a
    ``Figure`` of our own saved to ``path`` (``description``, e.g. the input and the model
    that made its tensors, goes into the PNG's text). Never touches pyplot or the backend.
    Returns the axes."""
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=size)
        ax = fig.subplots()
    draw(ax)
    if path is not None:
        ax.figure.tight_layout()
        ax.figure.savefig(path, dpi=120, metadata=png_metadata(**({"Description": description} if description else {})))
    return ax


def plot_spectrum(ppm, intensity, nucleus, field_t, path=None, title="", ax=None, description=None):
    """A spectroscopist's plot: ppm axis running right to left, nucleus and field labelled.
    On ``ax`` (e.g. in a notebook) or a new figure saved to ``path``; returns the axes."""

    def draw(ax):
        ax.plot(ppm, intensity, "k-", lw=1.0)
        ax.set_xlim(max(ppm), min(ppm))
        ax.set_xlabel(f"{_nucleus_label(nucleus)} chemical shift (ppm)")
        ax.set_ylabel("intensity (normalised area)")
        ax.set_yticks([])
        ax.set_title(title or f"static {_nucleus_label(nucleus)} spectrum, {field_t:g} T")

    return _figure(path, draw, ax, description=description)


def plot_2d(direct_ppm, indirect_ppm, intensity, nucleus, field_t, path=None, title="", indirect_label="isotropic",
            ax=None, description=None):  # fmt: skip
    """Contour plot of a 2D spectrum (e.g. MQMAS), both ppm axes running high to low."""

    def draw(ax):
        z = np.asarray(intensity)
        levels = z.max() * np.geomspace(0.02, 1.0, 12)
        ax.contour(direct_ppm, indirect_ppm, z, levels=levels, colors="k", linewidths=0.6)
        ax.set_xlim(max(direct_ppm), min(direct_ppm))
        ax.set_ylim(max(indirect_ppm), min(indirect_ppm))
        ax.set_xlabel(f"{_nucleus_label(nucleus)} MAS dimension (ppm)")
        ax.set_ylabel(f"{_nucleus_label(nucleus)} {indirect_label} dimension (ppm)")
        ax.set_title(title or f"{_nucleus_label(nucleus)} 3QMAS, {field_t:g} T")

    return _figure(path, draw, ax, size=(5.6, 5.0), description=description)
