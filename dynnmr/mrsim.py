"""Export to mrsimulator (optional extra) for MAS, variable-angle and MQMAS spectra.

dynnmr's own simulator (:mod:`dynnmr.spectrum`) does static spectra; spinning samples
and MQMAS go through mrsimulator, built from our tensors with its conventions, which
we pinned against our exact static simulator (tests/test_mrsim.py) rather than assumed:

* isotropic part as a chemical shift (ppm, ``sigma_ref - sigma_iso``), anisotropy as the
  Haeberlen *shielding* ``zeta`` (ppm) and ``eta``, the principal frame Haeberlen's;
* quadrupolar ``Cq`` (Hz, signed, e Q Vzz / h) and ``eta`` with the principal frame
  |Vzz| >= |Vyy| >= |Vxx|, but mrsimulator's x and y axes of the quadrupolar frame are
  our y and x (it writes every rank-2 tensor's m = +-2 component as -eta zeta / 2, right
  for Haeberlen shielding, opposite for the EFG's eta = (Vxx - Vyy) / Vzz): a 90 deg turn
  about the principal z axis;
* Euler angles (radians): mrsimulator's ``(alpha, beta, gamma)`` place a principal
  frame by R = Rz(gamma) Ry(beta) Rz(alpha), i.e. our active ZYZ angles in reverse order
  (our convention: :func:`dynnmr.tensors.rotation_from_euler`, T = R diag R^T);
* tensors that are not collinear need mrsimulator's ``integration_volume="hemisphere"``;
  its default, an octant, assumes collinear tensors and gives wrong spectra otherwise
  (normalised L1 0.13-0.30 instead of 0.02 in our tests). :func:`simulate` sets it.

soprano's exporter gets the shielding angles wrong; ours is tested by rebuilding every
exported tensor from the exported numbers (:func:`tensors_from_site`).
"""

from __future__ import annotations

import numpy as np

from . import tensors as T
from .isotopes import get_isotope
from .params import QuadrupolarParameters, ShieldingParameters

_QUAD_FRAME_TURN_DEG = 90.0


def _mrs_angles(euler_deg):
    """Our active ZYZ (alpha, beta, gamma) in degrees -> mrsimulator's, in radians."""
    a, b, g = (np.asarray(x, dtype=float) for x in euler_deg)
    return np.radians(g), np.radians(b), np.radians(a)


def site_dicts(isotope, ms=None, sigma_ref=None, efg=None):
    """mrsimulator ``Site`` dictionaries for ``S`` sites (plain floats, angles in radians).

    ``ms``: ``(S, 3, 3)`` shielding tensors (ppm) and ``sigma_ref`` (ppm), or None;
    ``efg``: ``(S, 3, 3)`` EFG tensors (atomic units), or None; both in one frame so
    their relative orientation is kept. Only symmetric parts are exported.
    """
    iso = get_isotope(isotope)
    n = len(np.asarray(ms if ms is not None else efg).reshape(-1, 9))
    sites = [{"isotope": iso.name, "isotropic_chemical_shift": 0.0} for _ in range(n)]
    if ms is not None:
        if sigma_ref is None:
            raise ValueError("a shielding reference sigma_ref (ppm) is needed to export shifts")
        sym = T.symmetric_part(np.asarray(ms, dtype=float).reshape(-1, 3, 3))
        h = ShieldingParameters.of(sym)
        angles = _mrs_angles(T.shielding_euler(sym))
        for k, s in enumerate(sites):
            s["isotropic_chemical_shift"] = float(h.delta_iso_ppm(sigma_ref)[k])
            s["shielding_symmetric"] = {"zeta": float(h.zeta_ppm[k]), "eta": float(h.eta[k]),
                                        **{n_: float(a[k]) for n_, a in zip(("alpha", "beta", "gamma"), angles)}}  # fmt: skip
    if efg is not None and iso.is_quadrupolar:
        v = np.asarray(efg, dtype=float).reshape(-1, 3, 3)
        p = QuadrupolarParameters.of(v, iso.quadrupole_moment_mb)
        a, b, g = T.efg_euler(v)
        angles = _mrs_angles((a, b, g + _QUAD_FRAME_TURN_DEG))
        cq = p.Cq_MHz * 1e6  # Hz
        for k, s in enumerate(sites):
            s["quadrupolar"] = {"Cq": float(cq[k]), "eta": float(p.eta_Q[k]),
                                **{n_: float(x[k]) for n_, x in zip(("alpha", "beta", "gamma"), angles)}}  # fmt: skip
    return sites


def tensors_from_site(site, sigma_ref=None):
    """Rebuild ``(shielding (3,3) ppm or None, efg (3,3) au or None)`` from a site dict.

    The inverse of :func:`site_dicts` under mrsimulator's conventions as stated in the
    module docstring, written independently of the export path so a test can check one
    against the other.
    """
    iso = get_isotope(site["isotope"])

    def rotation(d):
        a, b, g = (d.get(k, 0.0) for k in ("alpha", "beta", "gamma"))
        return T.rotation_from_euler(np.degrees(g), np.degrees(b), np.degrees(a))  # Rz(gamma) Ry(beta) Rz(alpha)

    ms = efg = None
    if "shielding_symmetric" in site:
        d = site["shielding_symmetric"]
        zeta, eta = d["zeta"], d["eta"]
        sigma_iso = sigma_ref - site["isotropic_chemical_shift"]
        pas = np.diag([sigma_iso - zeta * (1 + eta) / 2, sigma_iso - zeta * (1 - eta) / 2, sigma_iso + zeta])
        r = rotation(d)
        ms = r @ pas @ r.T
    if "quadrupolar" in site:
        d = site["quadrupolar"]
        vzz = d["Cq"] / T.quadrupolar_coupling_hz(1.0, iso.quadrupole_moment_mb)
        eta = d["eta"]
        pas = np.diag([-vzz * (1 + eta) / 2, -vzz * (1 - eta) / 2, vzz])  # mrsimulator's x/y: Vyy, Vxx
        r = rotation(d)
        efg = r @ pas @ r.T
    return ms, efg


def spin_systems(isotope, ms=None, sigma_ref=None, efg=None, weights=None):
    """One mrsimulator ``SpinSystem`` per site (uncoupled), with optional weights."""
    from mrsimulator import Site, SpinSystem

    sites = site_dicts(isotope, ms, sigma_ref, efg)
    w = np.ones(len(sites)) if weights is None else np.asarray(weights, dtype=float)
    w = 100.0 * w / w.sum()
    return [SpinSystem(sites=[Site(**s)], abundance=float(a)) for s, a in zip(sites, w)]


def _dimension(count, ppm_range, larmor_hz):
    from mrsimulator.method import SpectralDimension

    lo, hi = ppm_range
    return SpectralDimension(count=count, spectral_width=(hi - lo) * larmor_hz * 1e-6,
                             reference_offset=(hi + lo) / 2 * larmor_hz * 1e-6)  # fmt: skip


def simulate(isotope, field_t, ms=None, sigma_ref=None, efg=None, spinning_hz=0.0, rotor_angle_deg=54.7356,
             experiment="1d", ppm_range=(-300.0, 200.0), points=2048, iso_range=None, iso_points=256,
             integration_density=70):  # fmt: skip
    """MAS / VAS / static 1D, or 3Q-MAS 2D spectrum with mrsimulator.

    ``experiment``: ``1d`` (Bloch decay; central transition only for half-integer
    quadrupolar nuclei) or ``mqmas`` (``ThreeQ_VAS``, sheared so the indirect dimension
    is isotropic). ``spinning_hz``: 0 static, ``inf`` infinite speed, else with sidebands.
    Returns ``(ppm, intensity)`` for 1D (ppm descending) and ``(ppm_direct, ppm_iso,
    intensity[iso, direct])`` for MQMAS, intensities normalised to unit sum.
    """
    from mrsimulator import Simulator
    from mrsimulator.method import lib

    iso = get_isotope(isotope)
    larmor = abs(iso.larmor_mhz(field_t)) * 1e6
    systems = spin_systems(iso.name, ms, sigma_ref, efg)
    half_integer_quad = iso.is_quadrupolar and (2 * iso.spin) % 2 == 1
    rotor = 1e12 if np.isinf(spinning_hz) else float(spinning_hz)
    common = dict(channels=[iso.name], magnetic_flux_density=field_t, rotor_angle=np.radians(rotor_angle_deg),
                  rotor_frequency=rotor)  # fmt: skip
    if experiment == "mqmas":
        if not half_integer_quad:
            raise ValueError(f"MQMAS needs a half-integer quadrupolar nucleus, not {iso.name}")
        method = lib.ThreeQ_VAS(channels=[iso.name], magnetic_flux_density=field_t,
                                spectral_dimensions=[_dimension(iso_points, iso_range or ppm_range, larmor),
                                                     _dimension(points, ppm_range, larmor)])  # fmt: skip
    elif experiment == "1d":
        cls = lib.BlochDecayCTSpectrum if half_integer_quad else lib.BlochDecaySpectrum
        method = cls(spectral_dimensions=[_dimension(points, ppm_range, larmor)], **common)
    else:
        raise ValueError(f"experiment must be 1d or mqmas, not {experiment!r}")
    sim = Simulator(spin_systems=systems, methods=[method])
    sim.config.integration_volume = "hemisphere"  # non-collinear tensors (see module docstring)
    sim.config.integration_density = integration_density
    sim.config.number_of_sidebands = 64 if 0 < rotor < 1e12 else 1
    sim.run()
    data = sim.methods[0].simulation
    y = np.asarray(data.y[0].components[0]).real
    y = y / y.sum() if y.sum() else y
    axes = [np.asarray(x.coordinates.to("ppm").value) for x in data.x]
    if experiment == "1d":
        return axes[0][::-1], y[::-1]
    direct, iso_axis = axes  # the simulation's first axis is the direct (MAS) dimension
    if y.shape != (len(iso_axis), len(direct)):
        raise RuntimeError(f"unexpected MQMAS data layout {y.shape} for axes {len(direct)}, {len(iso_axis)}")
    return direct, iso_axis, y


def save_spin_systems(path, isotope, ms=None, sigma_ref=None, efg=None):
    """Write the spin systems as mrsimulator JSON (``Simulator.load_spin_systems`` reads it)."""
    from mrsimulator import Simulator

    Simulator(spin_systems=spin_systems(isotope, ms, sigma_ref, efg)).export_spin_systems(str(path))
