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

from dataclasses import dataclass

import numpy as np

from . import tensors as T
from .analysis import StoreAnalysis
from .isotopes import isotope_for
from .params import QuadrupolarParameters, ShieldingParameters, efg_columns, shielding_columns


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


def cell_rotation_deg(cells):
    """Largest rotation (deg) of the cell against the first frame, strain removed.

    Time averages and correlations of lab-frame tensors assume that the crystal does not
    rotate (a barostat may strain the cell, not turn it): the rotation part R of the
    deformation gradient F (a_t = F a_0 for the lattice vectors; polar decomposition F =
    R U) must stay the identity. NaN without cells (non-periodic frames).
    """
    cells = np.asarray(cells, dtype=np.float64)
    if not np.isfinite(cells).all() or len(cells) < 2:
        return float("nan")
    f_t = np.linalg.solve(cells[0][None], cells)  # rows: F^T (cell_t = cell_0 F^T)
    w, _, vt = np.linalg.svd(np.swapaxes(f_t, 1, 2))
    r = w @ vt
    cos = (np.trace(r, axis1=1, axis2=2) - 1) / 2
    axial = np.stack([r[:, 2, 1] - r[:, 1, 2], r[:, 0, 2] - r[:, 2, 0], r[:, 1, 0] - r[:, 0, 1]], axis=1) / 2
    return float(np.degrees(np.arctan2(np.linalg.norm(axial, axis=1), cos)).max())


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


# One estimator for tau_c and J(omega) ---------------------------------------------------------
#: Sokal's window constant: integrate up to the first lag W with W >= C tau_c(W).
SOKAL_C = 6.0
#: Time blocks for the error bars (none, with a warning, when the integration window does
#: not fit in a block, or the run has fewer than 4 frames a block).
N_BLOCKS = 8


@dataclass
class Correlation:
    """A correlation function G(t) and the one truncation that both tau_c and J(omega) use.

    ``g`` is the estimate corrected for the bias of subtracting each site's run mean: a
    fluctuation measured about a sample mean of T = n dt has every lag low by about
    Var(mean) = 2 tau_c G(0) / T, added back self-consistently (``bias``). The integral
    runs to the first lag W with W dt >= C tau_c(W) (Sokal's automatic window, C =
    :data:`SOKAL_C`), and G beyond W is continued by an exponential G(W) exp(-(t-W)/tau_c),
    so an exponential G gives exactly tau_c and J(omega) = G(0) tau/(1 + omega^2 tau^2)
    (up to the trapezoidal rule's O((dt/tau)^2)). No value is clamped: a noisy estimate
    may come out negative, and its error bar says so.
    """

    g: np.ndarray  # (L,) bias-corrected G at lags 0 .. L-1
    dt_ps: float
    n_frames: int
    window: int  # lags integrated
    tau_ps: float  # integrated correlation time, NaN without fluctuation
    bias: float  # added to every lag (units of G)
    decayed: bool  # the window was reached within the lags computed

    @classmethod
    def estimate(cls, c, dt_ps, n_frames, window=None, bias=None):
        """From a raw (mean-subtracted, unbiased-normalised) autocorrelation ``c`` (L,).

        ``window`` and ``bias`` fix the truncation and the mean correction (the time blocks
        of an error bar use those of the whole run)."""
        c = np.asarray(c, dtype=np.float64)
        run_ps = n_frames * dt_ps
        b = 0.0 if bias is None else float(bias)
        w, tau, decayed = len(c) - 1, np.nan, False
        for _ in range(1 if bias is not None else 20):
            g = c + b
            if not g[0] > 0:
                return cls(g, dt_ps, n_frames, 0, np.nan, b, False)
            rho = g / g[0]
            run = dt_ps * (np.cumsum(rho) - 0.5 * rho[0] - 0.5 * rho)  # trapezoid to each lag
            if window is None:
                ok = np.arange(len(c)) * dt_ps >= SOKAL_C * run
                ok[0] = False
                w = int(np.argmax(ok)) if ok.any() else len(c) - 1
                decayed = bool(ok.any()) and rho[w] < 0.5  # an exponential is down to e^-6 there
            else:
                w, decayed = int(window), True
            tail = rho[w] if decayed and rho[w] < 1 else 0.0
            tau = run[w] / (1.0 - tail)
            if bias is not None:
                break
            b_new = 2.0 * tau * g[0] / run_ps
            if abs(b_new - b) <= 1e-10 * g[0]:
                break
            b = b_new
        return cls(c + b, dt_ps, n_frames, w, float(tau), b, decayed)

    def spectral_density(self, omega_rad_per_s):
        """J(omega) = int_0^inf G(t) cos(omega t) dt in units of G times s (one-sided)."""
        omega = np.atleast_1d(np.asarray(omega_rad_per_s, dtype=np.float64))
        if not np.isfinite(self.tau_ps):
            return np.full(omega.shape, np.nan) if np.ndim(omega_rad_per_s) else np.nan
        dt = self.dt_ps * 1e-12
        t = np.arange(self.window + 1) * dt
        weights = np.full(self.window + 1, dt)
        weights[[0, -1]] *= 0.5
        head = np.cos(np.multiply.outer(omega, t)) @ (weights * self.g[: self.window + 1])
        gw, tw, tau = self.g[self.window], t[-1], self.tau_ps * 1e-12
        tail = gw * tau * (np.cos(omega * tw) - omega * tau * np.sin(omega * tw)) / (1 + (omega * tau) ** 2)
        out = head + (tail if self.decayed else 0.0)
        return out if np.ndim(omega_rad_per_s) else float(out[0])

    def warnings(self, larmor_hz=None):
        """Why this correlation cannot carry a confident tau_c or rate (empty when it can):
        too coarse frames, too short a run, no decay within the lags, omega_0 or 2 omega_0
        above the Nyquist frequency of the frames. Each names the spacing or length that
        would do."""
        out = []
        dt, g = self.dt_ps, self.g
        if not g[0] > 0:
            return ["no fluctuation"]
        rho1 = g[1] / g[0] if len(g) > 1 else np.nan
        if not rho1 >= 0.5:
            closer = f"at most {-dt / np.log(rho1) / 5:.2g} ps apart" if 0 < rho1 < 1 else "at least 5 times closer"
            out.append(f"G decays by {100 * (1 - rho1):.0f}% within one frame spacing ({dt:g} ps): motion faster "
                       f"than the frames (vibrations) is not resolved; frames {closer} would resolve it")  # fmt: skip
        if not self.decayed:
            out.append(f"G has not decayed within the {(len(g) - 1) * dt:g} ps of lags computed (tau_c >= "
                       f"{self.tau_ps:.3g} ps): use a longer run and --max-lag")  # fmt: skip
        run = self.n_frames * dt
        if np.isfinite(self.tau_ps) and run < 20 * self.tau_ps:
            out.append(f"the run ({run:g} ps) is shorter than 20 tau_c ({20 * self.tau_ps:.3g} ps)")
        if larmor_hz:
            nyquist_hz = 1.0 / (2 * dt * 1e-12)
            if 2 * abs(larmor_hz) > nyquist_hz:
                out.append(f"2 nu_0 = {2 * abs(larmor_hz) / 1e6:.4g} MHz is above the Nyquist frequency of the "
                           f"frames ({nyquist_hz / 1e6:.4g} MHz): use frames at most "
                           f"{1e12 / (4 * abs(larmor_hz)):.3g} ps apart")  # fmt: skip
        return out


def integrated_correlation_time(c, dt_ps, n_frames=None):
    """tau_c (ps) of :class:`Correlation` for each column of ``c`` (L, ...); NaN where G(0) = 0.

    ``n_frames`` (the run length the correlation came from) sets the mean-subtraction
    correction; without it none is applied (a correlation known exactly)."""
    c = np.asarray(c, dtype=np.float64)
    flat = c.reshape(len(c), -1)
    out = np.array([_estimate(flat[:, k], dt_ps, n_frames).tau_ps for k in range(flat.shape[1])])
    return out.reshape(c.shape[1:]) if c.ndim > 1 else float(out[0])


def _estimate(c, dt_ps, n_frames):
    """:class:`Correlation` of ``c``; without ``n_frames`` no mean correction (G known exactly)."""
    if n_frames is None:
        return Correlation.estimate(c, dt_ps, 1, bias=0.0)
    return Correlation.estimate(c, dt_ps, n_frames)


def spectral_density(c, dt_ps, omega_rad_per_s, n_frames=None):
    """J(omega) (units of G times s) of :class:`Correlation` for a correlation ``c`` (L,)."""
    return _estimate(c, dt_ps, n_frames).spectral_density(omega_rad_per_s)


# Relaxation (Redfield) ---------------------------------------------------------------------
# The correlation G(t) = <dT(0) : dT(t)> of the fluctuating l=2 part is rotation invariant,
# so the rates below are those of a powder (isotropic average over crystallite orientations).
# For a tensor of fixed shape tumbling isotropically, G(0) = (3/2) zeta^2 (1 + eta^2/3) and
# the formulas reduce to the textbook ones (Abragam, "The Principles of Nuclear Magnetism",
# ch. VIII; Spiess, NMR Basic Principles and Progress 15 (1978)):
#   quadrupolar, non-selective initial rate of <I_z>:
#       R1 = (3 pi^2/10) (2I+3)/(I^2 (2I-1)) C_Q^2 (1 + eta^2/3) [0.2 J(w0) + 0.8 J(2 w0)]
#   CSA: R1 = (2/15) w0^2 Dsigma^2 (1 + eta^2/3) J(w0)
# with J(w) = tau/(1 + w^2 tau^2) for an exponential correlation. For I > 1 quadrupolar
# relaxation is multi-exponential: R1 is the initial rate after a non-selective
# perturbation (exact in extreme narrowing, where it is the only rate for I = 3/2), and
# for half-integer spins the central-transition-selective recovery (what solid-state
# experiments on 17O usually measure) comes from the master equation of the Zeeman
# populations (:func:`population_rate_matrix`). No R2 is given: with a static quadrupolar
# splitting or shielding anisotropy in a solid the liquid-state R2 has no defined meaning.


def quadrupolar_prefactor(spin, quadrupole_moment_mb):
    """k (1/s per au^2 s) with R1 = k [0.2 J(w0) + 0.8 J(2 w0)], J of the EFG G in au^2 s."""
    if spin < 1:
        raise ValueError(f"quadrupolar relaxation needs I >= 1, got I = {spin}")
    hz_per_au = T.quadrupolar_coupling_hz(1.0, quadrupole_moment_mb)
    return 3 * np.pi**2 / 10 * (2 * spin + 3) / (spin**2 * (2 * spin - 1)) * hz_per_au**2 * 2.0 / 3.0


def quadrupolar_r1(j1, j2, spin, quadrupole_moment_mb):
    """Non-selective initial quadrupolar R1 (1/s) from J(w0), J(2 w0) of the EFG (au^2 s)."""
    return quadrupolar_prefactor(spin, quadrupole_moment_mb) * (0.2 * j1 + 0.8 * j2)


def csa_r1(j1_ppm2_s, larmor_hz):
    """CSA R1 (1/s) from J(w0) of the shielding l=2 correlation (ppm^2 s)."""
    w0 = 2 * np.pi * abs(larmor_hz)
    return w0**2 * j1_ppm2_s * 1e-12 / 5.0


def _t2_elements(spin):
    """|<m+q|T_2q|m>|^2 for q = 1, 2 over the levels m = -I .. I (index = m + I)."""
    m = np.arange(-spin, spin + 0.5)
    i1 = spin * (spin + 1)
    q1 = ((2 * m + 1) ** 2 * (i1 - m * (m + 1))) / 4.0  # T_2,+1 = -(IzI+ + I+Iz)/2
    q2 = ((i1 - m * (m + 1)) * (i1 - (m + 1) * (m + 2))) / 4.0  # T_2,+2 = I+^2 / 2
    return m, q1, q2


def population_rate_matrix(spin, j1, j2):
    """Rate matrix R (dn/dt = R n) of the deviations n_m of the Zeeman populations from
    equilibrium under quadrupolar relaxation, levels m = -I .. I, in units where the
    non-selective initial rate is 0.2 j1 + 0.8 j2.

    Transition probabilities m -> m +- q are |<m+q|T_2q|m>|^2 J(q w0) (Redfield, with the
    isotropic lattice correlation shared by all q; Abragam ch. VIII; Hubbard, J. Chem.
    Phys. 53, 985 (1970)); one overall constant makes the initial rate of <I_z> after a
    non-selective perturbation (n_m proportional to m) 0.2 j1 + 0.8 j2, the R1 above.
    """
    m = np.arange(-spin, spin + 0.5)
    unit = _transition_rates(spin, 1.0, 1.0)
    scale = -(m @ unit @ m) / (m @ m)
    return _transition_rates(spin, j1, j2) / scale


def _transition_rates(spin, j1, j2):
    """Unnormalised rate matrix: off-diagonal m -> m' probabilities, diagonal minus the outflow."""
    _, q1, q2 = _t2_elements(spin)
    n = len(q1)
    w = np.zeros((n, n))
    for k in range(n):
        if k + 1 < n:
            w[k + 1, k] = w[k, k + 1] = q1[k] * j1
        if k + 2 < n:
            w[k + 2, k] = w[k, k + 2] = q2[k] * j2
    return w - np.diag(w.sum(axis=0))


def central_transition_recovery(spin, j1, j2):
    """CT-selective recovery (rates, amplitudes): after inverting only the central transition,
    (n_{1/2} - n_{-1/2})(t) / (n_{1/2} - n_{-1/2})(0) = sum_k a_k exp(-r_k t), rates in the
    units of j (with :func:`quadrupolar_prefactor`, 1/s). Half-integer spins only."""
    if spin < 1 or (2 * spin) % 2 != 1:
        raise ValueError(f"central-transition recovery needs a half-integer spin I >= 3/2, got {spin}")
    r = population_rate_matrix(spin, j1, j2)
    n = len(r)
    ct = np.zeros(n)
    ct[n // 2], ct[n // 2 - 1] = 1.0, -1.0  # m = +1/2, -1/2
    evals, evecs = np.linalg.eigh(r)  # symmetric: equal populations at high temperature
    amp = (evecs[n // 2] - evecs[n // 2 - 1]) * (evecs.T @ ct) / 2.0
    keep = np.abs(amp) > 1e-12
    order = np.argsort(-evals[keep])
    return -evals[keep][order], amp[keep][order]


def central_transition_r1(spin, j1, j2):
    """Initial rate of the CT-selective recovery, sum_k a_k r_k (units of j)."""
    rates, amps = central_transition_recovery(spin, j1, j2)
    return float(np.sum(rates * amps))


# Whole-store analysis -----------------------------------------------------------------------
def analyse_store(
    path, window_ps=None, field_t=14.1, species=None, max_lag_ps=None, memory_gb=1.0, allow_incomplete=False
):
    """Per-species and per-site dynamics of a store; results also written to its ``analysis/`` group.

    For every selected species and target: time-averaged tensors and their parameters,
    window averages (``window_ps``), l=2 correlation functions, and from them, through
    :class:`Correlation`, tau_c and R1 at ``field_t`` Tesla (quadrupolar from ``efg``,
    CSA from ``ms``, summed when both exist; CT-selective for half-integer quadrupolar
    nuclei). Species values come from the correlation averaged over the species' sites,
    with error bars from :data:`N_BLOCKS` time blocks and the spread over sites, and
    ``resolved``/``warnings`` saying whether the frames can carry them; with a
    committee's spread stored, ``*_model_sd`` give the model's uncertainty of the
    averages. Sites are processed in blocks that fit ``memory_gb``
    (:class:`Dynamics`, a :class:`~dynnmr.analysis.StoreAnalysis` over site blocks). A
    failed or unfinished store is refused unless ``allow_incomplete``.
    """
    return Dynamics(path, window_ps, field_t, species, max_lag_ps, memory_gb, allow_incomplete).run()


class Dynamics(StoreAnalysis):
    """:func:`analyse_store` as a store analysis: each site's whole series, a block of one
    species' sites at a time; ``run()`` returns the result dict."""

    by = "sites"

    def __init__(self, path, window_ps=None, field_t=14.1, species=None, max_lag_ps=None, memory_gb=1.0,
                 allow_incomplete=False):  # fmt: skip
        super().__init__(path, allow_incomplete=allow_incomplete, species=species, memory_gb=memory_gb)
        self.window_ps, self.field_t, self.max_lag_ps = window_ps, field_t, max_lag_ps

    def _prepare(self):
        from ase.data import atomic_numbers

        from .store import read

        g, path = self.group, self.path
        t = self.times = read(g, path, "time_ps", self.rows)
        n = self.n_frames
        if n < 4 or not np.all(np.isfinite(t)):
            raise ValueError(f"{path}: dynamics needs at least 4 frames with times (analyze with --dt)")
        dt = self.dt = float(np.median(np.diff(t)))
        if not np.allclose(np.diff(t), dt, rtol=1e-3, atol=1e-9):
            raise ValueError(f"{path}: frames are not equally spaced in time (use --frames with a fixed step)")
        self.lags = n // 2 if self.max_lag_ps is None else max(2, min(n, round(self.max_lag_ps / dt) + 1))
        self.rotation = cell_rotation_deg(read(g, path, "cell", self.rows)) if "cell" in g else float("nan")
        self.n_blocks = N_BLOCKS if n // N_BLOCKS >= 4 else 0
        self.block_len = n // N_BLOCKS if self.n_blocks else 0
        if self.species:
            unknown = [s for s in self.species if s not in atomic_numbers]
            if unknown:
                raise KeyError(f"unknown element(s) {', '.join(unknown)}")
        self._acc: dict = {}  # element -> accumulated per-site results

    def _sites_block(self, tg, el, sites, x):
        acc = self._acc.setdefault(el, {"per_site": {}, "blocks": {}, "win": {}})
        acc["per_site"].setdefault(f"mean_{tg}", []).append(mean_tensors(x).reshape(len(sites), 9))
        y = irrep_fluctuations(x.reshape(x.shape[:2] + (9,)))[2]
        acc["per_site"].setdefault(f"acf_{tg}", []).append(autocorrelation(y, self.lags))
        if self.n_blocks:
            b_len = self.block_len
            acc["blocks"][tg] = acc["blocks"].get(tg, 0.0) + np.array([
                autocorrelation(y[b * b_len : (b + 1) * b_len], min(self.lags, b_len)).sum(axis=1)
                for b in range(self.n_blocks)])  # fmt: skip
        if self.window_ps:
            means, _ = window_means(x, self.times, self.window_ps)
            acc["win"].setdefault(tg, []).append(means)  # (windows, sites, 3, 3)

    def _conclude(self):
        import zarr
        from ase.data import atomic_numbers

        from . import __version__
        from .analysis import rms_spread
        from .store import read

        path, n, dt = self.path, self.n_frames, self.dt
        g = zarr.open_group(str(path), mode="r+")
        result = {"store": str(path), "model": self.attrs.get("model_name"), "dynnmr_version": __version__,
                  "frames": n, "dt_ps": dt, "field_T": self.field_t, "max_lag_ps": (self.lags - 1) * dt,
                  "window_ps": self.window_ps, "cell_rotation_deg": self.rotation, "species": {},
                  "sites": []}  # fmt: skip
        out = g.require_group("analysis")
        for name in list(out.array_keys()):  # a previous run's species and lags; the mtau_* stay
            if not name.startswith("mtau_"):
                del out[name]
        out.create_array("lag_ps", data=dt * np.arange(self.lags), dimension_names=("lag",))
        targets = [x for x in ("ms", "efg") if x in g]
        spreads = {tg: rms_spread(g, path, tg, self.attrs.get("frames_done", n)) for tg in targets}
        atom_index = read(g, path, "atom_index")
        for el in sorted(self._acc, key=lambda e: atomic_numbers[e]):
            acc = self._acc[el]
            idx = np.flatnonzero(self.numbers == atomic_numbers[el])
            cat = {k: np.concatenate(v, axis=-2 if k.startswith("mean") else -1) for k, v in acc["per_site"].items()}
            summary = _species_summary(el, idx, cat, acc["blocks"], acc["win"], dt, n, self.field_t)
            _add_model_sd(summary, el, idx, spreads)
            if self.rotation > 1.0:
                summary["species"]["warnings"].append(f"the cell rotates by up to {self.rotation:.1f} deg: lab-frame "
                                                      "averages and correlations mix orientations")  # fmt: skip
                summary["species"]["resolved"] = False
            result["species"][el] = summary["species"]
            result["sites"].extend(summary["sites"])
            site = f"site_{el}"  # one site axis per species: the species have different numbers of sites
            out.create_array(f"atom_index_{el}", data=atom_index[idx], overwrite=True, dimension_names=(site,))
            for key, arr in cat.items():
                out.create_array(f"{key}_{el}", data=arr.astype(np.float32), overwrite=True,
                                 dimension_names=(site, "component") if key.startswith("mean") else ("lag", site))  # fmt: skip
            for key in ("tau_c_ps", "R1_per_s", "R1_ct_per_s"):
                values = [s.get(key, np.nan) for s in summary["sites"]]
                out.create_array(f"{key}_{el}", data=np.asarray(values, dtype=np.float64), overwrite=True,
                                 dimension_names=(site,))  # fmt: skip
        out.attrs.update({"dt_ps": dt, "field_T": self.field_t, "window_ps": self.window_ps,
                          "acf": "l=2 fluctuation, unbiased", "species": _json_safe(result["species"])})  # fmt: skip
        return result


def _json_safe(obj):
    """NaN -> None, numpy scalars -> Python, for JSON attributes."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj


def _nuclei(el):
    """(the element's isotope if quadrupolar else None, the isotope whose CSA relaxation is
    reported): both its default, most abundant NMR-active isotope (17O, 29Si, 1H, ...)."""
    iso = isotope_for(el)
    return (iso if iso is not None and iso.is_quadrupolar else None), iso


def _rates(corr, tg, iso_q, nucleus, field_t):
    """R1 contributions (1/s) of one correlation: {"R1": ..., "R1_ct": ...} (missing when not defined)."""
    out = {}
    if tg == "efg" and iso_q is not None and iso_q.is_quadrupolar:
        w0 = 2 * np.pi * abs(iso_q.larmor_mhz(field_t) * 1e6)
        j1, j2 = corr.spectral_density(np.array([w0, 2 * w0]))
        k = quadrupolar_prefactor(iso_q.spin, iso_q.quadrupole_moment_mb)
        out["R1"] = k * (0.2 * j1 + 0.8 * j2)
        if (2 * iso_q.spin) % 2 == 1:
            out["R1_ct"] = k * central_transition_r1(iso_q.spin, j1, j2)
    if tg == "ms" and nucleus is not None:
        w0 = 2 * np.pi * abs(nucleus.larmor_mhz(field_t) * 1e6)
        out["R1"] = csa_r1(corr.spectral_density(w0), nucleus.larmor_mhz(field_t) * 1e6)
    return out


def _species_summary(el, idx, cat, blocks, win, dt, n, field_t):
    """Per-species and per-site JSON entries of one species.

    Species entries summarise each site's time-averaged tensor by sign-safe parameters
    (sigma_iso, span, skew, |C_Q|, eta_Q; a signed zeta or C_Q flips between nearly
    equal tensors as eta nears 1); sites keep their averaged tensors and signed values.

    tau_c is that of the EFG where the species has one (the quadrupolar mechanism), else
    of the shielding; both are given (``tau_c_efg_ps``, ``tau_c_ms_ps``). R1 sums the
    quadrupolar and CSA mechanisms; R1_ct is the quadrupolar CT-selective rate alone (for
    17O the CSA rate is some 1e-4 of it)."""
    iso_q, nucleus = _nuclei(el)
    sp = {"n_sites": len(idx)}
    sites = [{"species": el, "atom_index": int(i)} for i in idx]
    sp_rates, sp_err, sp_warn = {}, {}, []
    site_rates = [{} for _ in idx]
    for tg in ("ms", "efg"):
        if f"mean_{tg}" not in cat:
            continue
        m = cat[f"mean_{tg}"].reshape(-1, 3, 3)
        if tg == "ms":
            cols = shielding_columns(m)
            sp.update(sigma_iso_ppm_avg=float(cols["sigma_iso_ppm"].mean()), span_ppm_avg=float(cols["span_ppm"].mean()),
                      skew_avg=float(cols["skew"].mean()))  # fmt: skip
            for s, k in zip(sites, range(len(idx))):
                s.update(mean_ms=m[k].tolist(), sigma_iso_ppm_avg=float(cols["sigma_iso_ppm"][k]),
                         zeta_ppm_avg=float(cols["zeta_ppm"][k]), eta_avg=float(cols["eta_sigma"][k]))  # fmt: skip
        else:
            cols = efg_columns(m, np.full(len(m), iso_q.quadrupole_moment_mb if iso_q else 0.0))
            sp.update(abs_Cq_MHz_avg=float(np.mean(np.abs(cols["Cq_MHz"]))), eta_Q_avg=float(np.mean(cols["eta_Q"])))
            for s, k in zip(sites, range(len(idx))):
                s.update(mean_efg=m[k].tolist(), Cq_MHz_avg=float(cols["Cq_MHz"][k]), eta_Q_avg=float(cols["eta_Q"][k]))
        acf = cat[f"acf_{tg}"]
        nuc = iso_q if tg == "efg" else nucleus
        larmor = nuc.larmor_mhz(field_t) * 1e6 if nuc is not None else None
        corr = Correlation.estimate(acf.mean(axis=1), dt, n)
        rates = _rates(corr, tg, iso_q, nucleus, field_t)
        warn = [f"{tg}: {w}" for w in corr.warnings(larmor)]
        # time blocks: the whole run's window and mean correction, one estimate per block
        block_vals = []
        if isinstance(blocks.get(tg), np.ndarray) and corr.window < blocks[tg].shape[1] - 1:
            for gb in blocks[tg] / len(idx):
                cb = Correlation.estimate(gb, dt, n, window=corr.window, bias=corr.bias)
                block_vals.append({"tau": cb.tau_ps, **_rates(cb, tg, iso_q, nucleus, field_t)})
        elif np.isfinite(corr.tau_ps):
            warn.append(
                f"{tg}: the run is too short for time-block error bars ({N_BLOCKS} blocks, each longer than the integration window)"
            )
        site_tau = []
        for k in range(len(idx)):
            cs = Correlation.estimate(acf[:, k], dt, n)
            site_tau.append(cs.tau_ps)
            for key, v in _rates(cs, tg, iso_q, nucleus, field_t).items():
                site_rates[k][key] = site_rates[k].get(key, 0.0) + v
            sites[k][f"tau_c_{tg}_ps"] = cs.tau_ps
        sp[f"tau_c_{tg}_ps"] = corr.tau_ps
        sp[f"tau_c_{tg}_err_ps"] = _block_err([b["tau"] for b in block_vals])
        sp[f"tau_c_{tg}_site_std_ps"] = float(np.nanstd(site_tau))
        sp[f"window_{tg}_ps"] = corr.window * dt
        for key, v in rates.items():
            sp_rates[key] = sp_rates.get(key, 0.0) + v
            err = _block_err([b[key] for b in block_vals])
            sp_err[key] = np.hypot(sp_err.get(key, 0.0), err)
        sp_warn += warn
    main = "efg" if "tau_c_efg_ps" in sp and iso_q is not None and iso_q.is_quadrupolar else "ms"
    if f"tau_c_{main}_ps" not in sp:
        main = "efg"
    sp["tau_c_ps"], sp["tau_c_err_ps"] = sp[f"tau_c_{main}_ps"], sp[f"tau_c_{main}_err_ps"]
    for key in ("R1", "R1_ct"):
        if key in sp_rates:
            sp[f"{key}_per_s"] = float(sp_rates[key])
            sp[f"{key}_err_per_s"] = float(sp_err[key])
            sp[f"{key}_site_std_per_s"] = float(np.std([r.get(key, np.nan) for r in site_rates]))
    sp["resolved"] = not sp_warn
    sp["warnings"] = sp_warn
    for s, r in zip(sites, site_rates):
        s["tau_c_ps"] = s.get(f"tau_c_{main}_ps", np.nan)
        s.update({f"{k}_per_s": float(v) for k, v in r.items()})
    for tg, wblocks in win.items():  # (windows x sites) tensors averaged over each window
        w = np.concatenate(wblocks, axis=1)
        n_windows = w.shape[0]
        w = w.reshape(-1, 3, 3)
        if tg == "ms":
            name, v = "window_sigma_iso_ppm", ShieldingParameters.of(w).sigma_iso_ppm
        else:
            q = iso_q.quadrupole_moment_mb if iso_q else np.nan
            name, v = "window_abs_Cq_MHz", QuadrupolarParameters.of(w, q).abs_Cq_MHz
        sp[name] = {"n_windows": int(n_windows), "mean": float(np.nanmean(v)),
                    "sd_over_windows_and_sites": float(np.nanstd(v))}  # fmt: skip
    return {"species": sp, "sites": sites}


def _add_model_sd(summary, el, idx, spreads):
    """The committee's uncertainty of the averaged parameters (``*_model_sd``): per site,
    its spread's root mean square over frames (:func:`dynnmr.analysis.rms_spread`); per
    species, the root mean square over its sites (the typical uncertainty of one site's
    value; the mean over many sites is more certain only as far as their errors are
    independent, which a model's are not). Absent when the store has no spread."""
    from .uncertainty import PARAMETERS

    sp, sites = summary["species"], summary["sites"]
    iso_q, _ = _nuclei(el)
    for tg, sd in spreads.items():
        if sd is None:
            continue
        cols = dict(zip(PARAMETERS[tg], sd[idx].T))
        if tg == "ms":
            named = {"sigma_iso_ppm": cols["sigma_iso_ppm"], "span_ppm": cols["span_ppm"], "skew": cols["skew"],
                     "zeta_ppm": cols["zeta_ppm"], "eta": cols["eta"]}  # fmt: skip
        else:
            q = iso_q.quadrupole_moment_mb if iso_q is not None else np.nan
            named = {"abs_Cq_MHz": np.abs(T.quadrupolar_coupling_hz(cols["Vzz_au"], q)) * 1e-6, "eta_Q": cols["eta_Q"]}
        for key, v in named.items():
            if not np.isfinite(v).any():
                continue  # not covered for this species
            sp[f"{key}_model_sd"] = float(np.sqrt(np.nanmean(v**2)))
            for s, value in zip(sites, v):
                s[f"{key}_model_sd"] = float(value)


def _block_err(values):
    """Standard error of the mean of time-block estimates (NaN with fewer than 2)."""
    v = np.asarray(values, dtype=np.float64)
    return float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) >= 2 else float("nan")
