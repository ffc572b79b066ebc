"""NMR tensor algebra: spherical decomposition, shielding and EFG parameters, orientations.

Vectorised over any leading shape ``(..., 3, 3)``, in NumPy float64. The parameter
functions (:func:`eigenvalues`, :func:`haeberlen`, :func:`herzfeld_berger`,
:func:`efg_parameters` and what they use) also take torch tensors and compute where the
tensor lives (the array API, through array-api-compat), so that the engine derives the
committee's parameter spread on the GPU with these same lines. Every other stage of
dynnmr (model outputs, parameter tables, averaging, spectra) goes through these
functions, so each convention is stated once, here.

Conventions
-----------
* Spherical decomposition: a general rank-2 tensor ``T`` is split into
  ``l=0`` (1 component, isotropic), ``l=1`` (3, antisymmetric part, a pseudovector: 1e)
  and ``l=2`` (5, symmetric traceless part), concatenated as 9 numbers in exactly the
  orthonormal real basis and order of e3nn's ``io.CartesianTensor("ij")`` (irreps
  ``1x0e+1x1e+1x2e``), so a network's output maps one-to-one onto a tensor.
* Shielding (ppm), Haeberlen: ``|s_zz - s_iso| >= |s_xx - s_iso| >= |s_yy - s_iso|``;
  ``zeta = s_zz - s_iso`` (reduced anisotropy), ``Delta_sigma = 1.5 zeta``,
  ``eta = (s_yy - s_xx) / zeta`` in [0, 1].
* Herzfeld-Berger / Maryland (IUPAC): ``s_11 <= s_22 <= s_33``; span
  ``Omega = s_33 - s_11 >= 0``; skew ``kappa = 3 (s_iso - s_22) / Omega`` in [-1, 1]
  (identical for the chemical shift, ``kappa = 3 (d_22 - d_iso) / Omega``).
* Chemical shift (IUPAC): ``delta = sigma_ref - sigma`` (ppm), or exactly
  ``(sigma_ref - sigma) / (1 - sigma_ref * 1e-6)``.
* EFG: ``|V_zz| >= |V_yy| >= |V_xx|``; ``eta_Q = (V_xx - V_yy) / V_zz`` in [0, 1];
  ``C_Q = e Q V_zz / h`` (Hz), signed by Q and V_zz.
* Orientation: ZYZ Euler angles (degrees) of the *active* rotation
  ``R = Rz(alpha) Ry(beta) Rz(gamma)`` that carries the principal-axis tensor into the
  crystal/lab frame, ``T_sym = R diag(t_xx, t_yy, t_zz) R^T``; the columns of R are the
  principal axes x, y, z in lab coordinates. The passive rotation (lab coordinates into
  the principal frame) has angles ``(-gamma, -beta, -alpha)``. Eigenvector signs are
  fixed so that ``beta`` lies in [0, 90] and ``gamma`` in [0, 180); ``alpha`` in [0, 360).
  For an axial tensor ``gamma = 0``; for an isotropic one all angles are 0.
"""

from __future__ import annotations

import math

import numpy as np
from array_api_compat import array_namespace, is_torch_array

# Unit conversions -------------------------------------------------------------------
#: One atomic unit of electric field gradient in V/m^2 (E_h / (e a_0^2)).
EFG_AU_TO_V_PER_M2 = 9.7173624e21
#: Elementary charge (C) and Planck constant (J s), exact SI values.
ELEMENTARY_CHARGE_C = 1.602176634e-19
PLANCK_J_S = 6.62607015e-34
#: One millibarn in m^2.
MILLIBARN_TO_M2 = 1e-31

_S2 = np.sqrt(2.0)
_S3 = np.sqrt(3.0)
_S6 = np.sqrt(6.0)

#: Rows: the 9 spherical components (0e; 1e x3; 2e x5); columns: Cartesian components
#: in row-major order (xx, xy, xz, yx, yy, yz, zx, zy, zz). Orthogonal, so its
#: transpose is its inverse. Identical to e3nn's ``CartesianTensor("ij")`` basis.
CART_TO_SPH = np.array(
    [
        # xx      xy       xz       yx      yy       yz       zx      zy       zz
        [1 / _S3, 0, 0, 0, 1 / _S3, 0, 0, 0, 1 / _S3],  # l=0
        [0, 0, 0, 0, 0, 1 / _S2, 0, -1 / _S2, 0],  # l=1: (yz - zy)/sqrt2
        [0, 0, -1 / _S2, 0, 0, 0, 1 / _S2, 0, 0],  # l=1: (zx - xz)/sqrt2
        [0, 1 / _S2, 0, -1 / _S2, 0, 0, 0, 0, 0],  # l=1: (xy - yx)/sqrt2
        [0, 0, 1 / _S2, 0, 0, 0, 1 / _S2, 0, 0],  # l=2: (xz + zx)/sqrt2
        [0, 1 / _S2, 0, 1 / _S2, 0, 0, 0, 0, 0],  # l=2: (xy + yx)/sqrt2
        [-1 / _S6, 0, 0, 0, 2 / _S6, 0, 0, 0, -1 / _S6],  # l=2: (2yy - xx - zz)/sqrt6
        [0, 0, 0, 0, 0, 1 / _S2, 0, 1 / _S2, 0],  # l=2: (yz + zy)/sqrt2
        [-1 / _S2, 0, 0, 0, 0, 0, 0, 0, 1 / _S2],  # l=2: (zz - xx)/sqrt2
    ]
)
#: Slices of the 9 spherical components by angular momentum l.
IRREP_SLICES = {0: slice(0, 1), 1: slice(1, 4), 2: slice(4, 9)}


# Spherical decomposition ------------------------------------------------------------
def to_spherical(tensor):
    """Cartesian ``(..., 3, 3)`` -> spherical ``(..., 9)`` components (l=0, 1, 2).

    >>> np.round(to_spherical(np.eye(3)), 4).tolist()  # isotropic: l=0 only, sqrt(3)
    [1.7321, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    >>> np.round(to_spherical([[0, 1, 0], [-1, 0, 0], [0, 0, 0]]), 4).tolist()  # antisymmetric: l=1 only
    [0.0, 0.0, 0.0, 1.4142, 0.0, 0.0, 0.0, 0.0, 0.0]
    """
    t = np.asarray(tensor, dtype=float)
    return t.reshape(t.shape[:-2] + (9,)) @ CART_TO_SPH.T


def from_spherical(components):
    """Spherical ``(..., 9)`` components -> Cartesian ``(..., 3, 3)`` tensor."""
    c = np.asarray(components, dtype=float)
    return (c @ CART_TO_SPH).reshape(c.shape[:-1] + (3, 3))


def irrep(tensor, l):
    """The ``l`` (0, 1 or 2) spherical components of a Cartesian tensor, shape (..., 2l+1)."""
    return to_spherical(tensor)[..., IRREP_SLICES[l]]


def _float(tensor):
    """``(array, namespace)``: a torch tensor as it is (its device and dtype), anything else
    as a float64 NumPy array."""
    t = tensor if is_torch_array(tensor) else np.asarray(tensor, dtype=float)
    return t, array_namespace(t)


def symmetric_part(tensor):
    t, xp = _float(tensor)
    return 0.5 * (t + xp.matrix_transpose(t))


def antisymmetric_vector(tensor):
    """The antisymmetric part ``A = (T - T^T)/2`` as the vector ``(A_yz, A_zx, A_xy)``.

    Same units as the tensor. It does not affect the NMR spectrum to first order, but
    DFT shielding tensors have one and it is reported rather than dropped.
    """
    t = np.asarray(tensor, dtype=float)
    return 0.5 * np.stack(
        [t[..., 1, 2] - t[..., 2, 1], t[..., 2, 0] - t[..., 0, 2], t[..., 0, 1] - t[..., 1, 0]],
        axis=-1,
    )


def isotropic(tensor):
    """Trace / 3 (for shielding: sigma_iso in ppm)."""
    t, xp = _float(tensor)
    return xp.linalg.trace(t) / 3.0


# Principal frames ------------------------------------------------------------------
#: Matrices per call of torch's batched eigensolver: on a GPU, cuSOLVER's batched syev
#: fails on larger batches (an internal error at 396,000 3x3 matrices on an H200; others
#: report the limit near 32,000); each matrix is solved alone, so chunks change nothing.
TORCH_EIGEN_BATCH = 16384
#: How the eigenvalues of torch tensors are taken: ``"solver"``, torch's batched solver
#: (cuSOLVER on a GPU) in chunks of :data:`TORCH_EIGEN_BATCH`; ``"closed"``, the closed
#: form of :func:`closed_form_eigvalsh` (elementwise, no solver call). NumPy arrays always
#: take LAPACK's. Which is faster on a GPU is measured by ``benchmarks/gpu_spread.py``.
TORCH_EIGEN = "solver"


def closed_form_eigvalsh(sym):
    """Ascending eigenvalues of symmetric 3x3 tensors ``sym`` (..., 3, 3), NumPy or torch:
    the trigonometric roots of the characteristic cubic (O. K. Smith, Commun. ACM 4, 168
    (1961)), a few elementwise operations on any device. Where two eigenvalues meet it
    loses digits: about 4e-8 of the anisotropy for an axial tensor in float64 (LAPACK:
    1e-15), far below any NMR parameter's precision.

    >>> print(np.round(closed_form_eigvalsh(np.diag([40.0, 10.0, 20.0])), 9))
    [10. 20. 40.]
    """
    xp = array_namespace(sym)
    diag = xp.stack([sym[..., 0, 0], sym[..., 1, 1], sym[..., 2, 2]], axis=-1)
    q = xp.sum(diag, axis=-1) / 3
    d = diag - q[..., None]
    a01, a02, a12 = sym[..., 0, 1], sym[..., 0, 2], sym[..., 1, 2]
    p = xp.sqrt((xp.sum(d**2, axis=-1) + 2 * (a01**2 + a02**2 + a12**2)) / 6)  # rms anisotropy
    s = xp.where(p > 0, p, xp.ones_like(p))
    b0, b1, b2, b01, b02, b12 = d[..., 0] / s, d[..., 1] / s, d[..., 2] / s, a01 / s, a02 / s, a12 / s
    det = b0 * (b1 * b2 - b12**2) - b01 * (b01 * b2 - b12 * b02) + b02 * (b01 * b12 - b1 * b02)  # of (A - q)/p
    phi = xp.acos(xp.clip(det / 2, -1.0, 1.0)) / 3
    hi, lo = q + 2 * p * xp.cos(phi), q + 2 * p * xp.cos(phi + 2 * math.pi / 3)
    return xp.stack([lo, 3 * q - hi - lo, hi], axis=-1)


def _eigvalsh(sym, xp):
    """Ascending eigenvalues of symmetric ``sym`` (..., 3, 3); torch's by :data:`TORCH_EIGEN`."""
    n = math.prod(sym.shape[:-2])
    if is_torch_array(sym) and TORCH_EIGEN == "closed":
        return closed_form_eigvalsh(sym)
    if not is_torch_array(sym) or n <= TORCH_EIGEN_BATCH:
        return xp.linalg.eigvalsh(sym)
    flat, step = xp.reshape(sym, (n, 3, 3)), TORCH_EIGEN_BATCH
    chunks = [xp.linalg.eigvalsh(flat[i : i + step]) for i in range(0, n, step)]
    return xp.reshape(xp.concat(chunks), (*sym.shape[:-2], 3))


def _eigh(sym, vectors=True):
    """``np.linalg.eigh`` (or ``eigvalsh``) that gives NaN for a non-finite tensor instead of
    failing: NaN rows are the missing-label marker of every tensor array here."""
    sym, xp = _float(sym)
    bad = ~xp.all(xp.isfinite(sym), axis=(-2, -1))
    if not xp.any(bad):
        return np.linalg.eigh(sym) if vectors else _eigvalsh(sym, xp)
    clean = xp.where(bad[..., None, None], 0.0, sym)
    if not vectors:
        return xp.where(bad[..., None], xp.nan, _eigvalsh(clean, xp))
    vals, vecs = np.linalg.eigh(clean)
    return np.where(bad[..., None], np.nan, vals), np.where(bad[..., None, None], np.nan, vecs)


def _distance_order(vals, center):
    """Indices sorting ascending eigenvalues by ``|lambda - center|``; a stable sort, so ties
    keep the ascending order and degenerate cases are reproducible."""
    xp = array_namespace(vals)
    center = center[..., None] if hasattr(center, "shape") else center
    return xp.argsort(xp.abs(vals - center), axis=-1, stable=True)


def _ordered_eigensystem(tensor, center):
    """Eigenvalues/vectors of the symmetric part, ascending in ``|lambda - center|``.

    Eigenvectors are columns; the frame is made right-handed (det = +1).
    """
    vals, vecs = _eigh(symmetric_part(tensor))
    order = _distance_order(vals, center)
    vals = np.take_along_axis(vals, order, axis=-1)
    vecs = np.take_along_axis(vecs, order[..., None, :], axis=-1)
    with np.errstate(invalid="ignore"):  # NaN rows stay NaN
        vecs[..., :, 2] *= np.where(np.linalg.det(vecs) < 0, -1.0, 1.0)[..., None]
    return vals, vecs


def shielding_principal(tensor):
    """Haeberlen principal values ``(s_xx, s_yy, s_zz)`` and axes (columns x, y, z)."""
    iso = isotropic(tensor)
    vals, vecs = _ordered_eigensystem(tensor, iso)
    # ascending |dev| is (yy, xx, zz): swap the first two, keep right-handedness
    vals = vals[..., [1, 0, 2]]
    vecs = vecs[..., [1, 0, 2]]
    vecs[..., :, 2] *= -1.0
    return vals, vecs


def efg_principal(tensor):
    """EFG principal values ``(V_xx, V_yy, V_zz)``, ``|V_zz| >= |V_yy| >= |V_xx|``, and axes."""
    center = np.zeros(np.shape(tensor)[:-2])
    return _ordered_eigensystem(tensor, center)


def _safe_ratio(num, den, tol):
    xp = array_namespace(den)
    small = xp.abs(den) <= tol
    return xp.where(small, 0.0, num / xp.where(small, 1.0, den))


def _tolerance(tensor, rtol):
    """``rtol`` times the tensor's largest |component|: below it a ratio's denominator is zero."""
    t, xp = _float(tensor)
    return rtol * xp.clip(xp.max(xp.abs(t), axis=(-2, -1)), min=1e-300)


# Shielding and shift -----------------------------------------------------------------
def _by_distance(vals, center):
    """Eigenvalues reordered ascending in ``|lambda - center|``."""
    return array_namespace(vals).take_along_axis(vals, _distance_order(vals, center), axis=-1)


def eigenvalues(tensor):
    """Ascending eigenvalues of the symmetric part (NaN for a non-finite tensor): what
    :func:`haeberlen`, :func:`herzfeld_berger` and :func:`efg_parameters` need, computed
    once when one caller wants several of them."""
    return _eigh(symmetric_part(tensor), vectors=False)


def haeberlen(tensor, rtol=1e-10, eigvals=None):
    """Haeberlen parameters of a shielding (or shift) tensor.

    Returns a dict of arrays: ``iso``, ``zeta``, ``delta_aniso`` (= 1.5 zeta, the
    "anisotropy" CASTEP prints), ``eta`` (0 where zeta vanishes), in the tensor's units.
    ``eigvals``: the tensor's :func:`eigenvalues`, if the caller has them.

    >>> h = haeberlen(np.diag([10.0, 20.0, 40.0]))  # s_zz = 40 lies furthest from iso
    >>> print(round(float(h["iso"]), 3), round(float(h["zeta"]), 3), round(float(h["eta"]), 3))
    23.333 16.667 0.6
    """
    iso = isotropic(tensor)
    vals = eigenvalues(tensor) if eigvals is None else eigvals
    ordered = _by_distance(vals, iso)  # |s_zz - iso| >= |s_xx - iso| >= |s_yy - iso|
    yy, xx, zz = ordered[..., 0], ordered[..., 1], ordered[..., 2]
    zeta = zz - iso
    eta = array_namespace(zeta).clip(_safe_ratio(yy - xx, zeta, _tolerance(tensor, rtol)), 0.0, 1.0)
    return {"iso": iso, "zeta": zeta, "delta_aniso": 1.5 * zeta, "eta": eta}


def herzfeld_berger(tensor, rtol=1e-10, shift=False, eigvals=None):
    """Span Omega (>= 0, tensor units) and skew kappa (in [-1, 1]; 0 if Omega vanishes).

    For a shielding tensor, ``kappa = 3 (s_iso - s_22) / Omega`` with s_11 <= s_22 <= s_33;
    for a shift tensor (``shift=True``) ``kappa = 3 (d_22 - d_iso) / Omega`` with d_11 >=
    d_22 >= d_33. A shielding tensor and its shift tensor have the same kappa.
    ``eigvals``: the tensor's :func:`eigenvalues`, if the caller has them.

    >>> hb = herzfeld_berger(np.diag([10.0, 20.0, 40.0]))
    >>> print(round(float(hb["span"]), 3), round(float(hb["skew"]), 3))
    30.0 0.333
    """
    vals = eigenvalues(tensor) if eigvals is None else eigvals
    iso = isotropic(tensor)
    span = vals[..., 2] - vals[..., 0]
    skew = array_namespace(span).clip(
        _safe_ratio(3.0 * (iso - vals[..., 1]), span, _tolerance(tensor, rtol)), -1.0, 1.0
    )
    return {"span": span, "skew": -skew if shift else skew}


def shift_tensor(tensor, sigma_ref, exact=False):
    """Chemical shift tensor (ppm) from a shielding tensor (ppm): ``sigma_ref * 1 - sigma``.

    With ``exact=True`` divide by ``1 - sigma_ref * 1e-6`` (IUPAC's exact definition).
    The shift tensor's Haeberlen zeta is minus the shielding's; eta, span and
    kappa are unchanged.
    """
    t = np.asarray(tensor, dtype=float)
    d = np.asarray(sigma_ref, dtype=float)[..., None, None] * np.eye(3) - t
    if exact:
        d = d / (1.0 - np.asarray(sigma_ref, dtype=float)[..., None, None] * 1e-6)
    return d


def shift_iso(sigma_iso, sigma_ref, exact=False):
    """Isotropic chemical shift (ppm) from isotropic shielding (ppm).

    >>> print(round(float(shift_iso(434.1, 325.67)), 2))  # a 29Si sigma_iso against sigma_ref
    -108.43
    """
    d = np.asarray(sigma_ref, dtype=float) - np.asarray(sigma_iso, dtype=float)
    return d / (1.0 - np.asarray(sigma_ref) * 1e-6) if exact else d


def tensor_from_haeberlen(iso, zeta, eta, euler_deg=(0.0, 0.0, 0.0)):
    """Symmetric tensor from Haeberlen ``iso, zeta, eta`` and ZYZ active Euler angles (deg)."""
    iso, zeta, eta = (np.asarray(x, dtype=float) for x in (iso, zeta, eta))
    diag = np.stack([iso - 0.5 * zeta * (1 + eta), iso - 0.5 * zeta * (1 - eta), iso + zeta], axis=-1)
    return _rotate_diagonal(diag, euler_deg)


# EFG --------------------------------------------------------------------------------
def efg_parameters(tensor, rtol=1e-10, eigvals=None):
    """``Vzz`` (tensor units) and ``eta_Q`` in [0, 1] (0 where Vzz vanishes).

    >>> p = efg_parameters(np.diag([-1.0, -2.0, 3.0]))  # |V_zz| >= |V_yy| >= |V_xx|
    >>> print(float(p["Vzz"]), round(float(p["eta_Q"]), 4))
    3.0 0.3333
    """
    vals = eigenvalues(tensor) if eigvals is None else eigvals
    ordered = _by_distance(vals, 0.0)  # |V_zz| >= |V_yy| >= |V_xx|
    xx, yy, zz = ordered[..., 0], ordered[..., 1], ordered[..., 2]
    eta = array_namespace(zz).clip(_safe_ratio(xx - yy, zz, _tolerance(tensor, rtol)), 0.0, 1.0)
    return {"Vzz": zz, "eta_Q": eta}


def quadrupolar_coupling_hz(vzz_au, quadrupole_moment_mb):
    """``C_Q = e Q V_zz / h`` in Hz from V_zz (atomic units) and Q (millibarn), signed.

    >>> print(round(float(quadrupolar_coupling_hz(1.0, -25.58)) / 1e6, 3))  # 17O, V_zz = 1 au
    -6.01
    """
    return (
        ELEMENTARY_CHARGE_C
        * np.asarray(quadrupole_moment_mb, dtype=float)
        * MILLIBARN_TO_M2
        * np.asarray(vzz_au, dtype=float)
        * EFG_AU_TO_V_PER_M2
        / PLANCK_J_S
    )


def quadrupolar_product(cq, eta_q):
    """``P_Q = C_Q sqrt(1 + eta_Q^2 / 3)``, same units as ``cq``.

    >>> print(round(float(quadrupolar_product(5.2, 0.2)), 4))
    5.2346
    """
    return np.asarray(cq) * np.sqrt(1.0 + np.asarray(eta_q) ** 2 / 3.0)


def quadrupolar_frequency(cq, spin):
    """``nu_Q = 3 C_Q / (2 I (2 I - 1))``, same units as ``cq``; needs I >= 1."""
    spin = float(spin)
    if spin < 1.0:
        raise ValueError(f"nu_Q needs a quadrupolar spin I >= 1, got I = {spin}")
    return 3.0 * np.asarray(cq) / (2.0 * spin * (2.0 * spin - 1.0))


def efg_au_to_si(efg_au):
    """EFG from atomic units to V/m^2."""
    return np.asarray(efg_au, dtype=float) * EFG_AU_TO_V_PER_M2


def efg_si_to_au(efg_si):
    """EFG from V/m^2 to atomic units."""
    return np.asarray(efg_si, dtype=float) / EFG_AU_TO_V_PER_M2


def tensor_from_efg(vzz, eta_q, euler_deg=(0.0, 0.0, 0.0)):
    """Traceless symmetric EFG tensor from ``Vzz``, ``eta_Q`` and ZYZ active Euler angles (deg)."""
    vzz, eta = np.asarray(vzz, dtype=float), np.asarray(eta_q, dtype=float)
    diag = np.stack([-0.5 * vzz * (1 - eta), -0.5 * vzz * (1 + eta), vzz], axis=-1)
    return _rotate_diagonal(diag, euler_deg)


# Euler angles ---------------------------------------------------------------------------
def _rz(a):
    c, s = np.cos(a), np.sin(a)
    z, o = np.zeros_like(a), np.ones_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def _ry(b):
    c, s = np.cos(b), np.sin(b)
    z, o = np.zeros_like(b), np.ones_like(b)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def rotation_from_euler(alpha_deg, beta_deg, gamma_deg):
    """Active ZYZ rotation matrix ``Rz(alpha) Ry(beta) Rz(gamma)`` (angles in degrees)."""
    a, b, g = (np.radians(np.asarray(x, dtype=float)) for x in (alpha_deg, beta_deg, gamma_deg))
    return _rz(a) @ _ry(b) @ _rz(g)


def euler_from_rotation(rot):
    """ZYZ Euler angles (deg) of a proper rotation; gamma folded into alpha when beta = 0 or 180."""
    r = np.asarray(rot, dtype=float)
    beta = np.arccos(np.clip(r[..., 2, 2], -1.0, 1.0))
    sb = np.sqrt(r[..., 0, 2] ** 2 + r[..., 1, 2] ** 2)
    gimbal = sb < 1e-9
    alpha = np.where(gimbal, 0.0, np.arctan2(r[..., 1, 2], r[..., 0, 2]))
    gamma = np.where(
        gimbal,
        # beta ~ 0: R = Rz(alpha + gamma); beta ~ 180: R = Rz(alpha - gamma) Ry(pi)
        np.arctan2(r[..., 1, 0], r[..., 1, 1]),
        np.arctan2(r[..., 2, 1], -r[..., 2, 0]),
    )
    return np.degrees(alpha), np.degrees(beta), np.degrees(gamma)


def _rotate_diagonal(diag, euler_deg):
    rot = rotation_from_euler(*euler_deg)
    d = np.asarray(diag)[..., :, None] * np.eye(3)
    return rot @ d @ np.swapaxes(rot, -1, -2)


def _canonical_frame(vecs, axial, isotropic_mask):
    """Fix eigenvector signs: z up (beta <= 90), gamma in [0, 180); axial -> gamma = 0."""
    v = np.array(vecs, dtype=float, copy=True)
    # z axis into the upper half-space (flip z and x together to stay proper)
    flip_z = v[..., 2, 2] < 0
    v[..., :, 2] *= np.where(flip_z, -1.0, 1.0)[..., None]
    v[..., :, 0] *= np.where(flip_z, -1.0, 1.0)[..., None]
    alpha, beta, gamma = euler_from_rotation(v)
    # R Rz(pi) flips x and y and shifts gamma by 180 deg
    gamma = np.mod(gamma, 360.0)
    gamma = np.where(gamma >= 180.0 - 1e-9, gamma - 180.0, gamma)
    gamma = np.where(np.abs(gamma) < 1e-9, 0.0, gamma)
    gamma = np.where(axial | isotropic_mask, 0.0, gamma)
    alpha = np.where(isotropic_mask, 0.0, np.mod(alpha, 360.0))
    beta = np.where(isotropic_mask, 0.0, beta)
    alpha = np.where(np.abs(alpha - 360.0) < 1e-9, 0.0, alpha)
    return alpha, beta, gamma


def shielding_euler(tensor, rtol=1e-8):
    """ZYZ active Euler angles (deg) of the Haeberlen principal frame of a shielding tensor.

    Returns ``(alpha, beta, gamma)`` arrays; see the module docstring for the convention.
    """
    vals, vecs = shielding_principal(tensor)
    tol = _tolerance(tensor, rtol)
    iso_mask = np.abs(vals[..., 2] - isotropic(tensor)) <= tol
    axial = np.abs(vals[..., 1] - vals[..., 0]) <= tol
    return _canonical_frame(vecs, axial, iso_mask)


def efg_euler(tensor, rtol=1e-8):
    """ZYZ active Euler angles (deg) of the EFG principal frame (|Vzz| >= |Vyy| >= |Vxx|)."""
    vals, vecs = efg_principal(tensor)
    tol = _tolerance(tensor, rtol)
    iso_mask = np.abs(vals[..., 2]) <= tol
    axial = np.abs(vals[..., 1] - vals[..., 0]) <= tol
    return _canonical_frame(vecs, axial, iso_mask)


# Misorientation -------------------------------------------------------------------------
_PROPER_SIGN_FLIPS = np.array([np.diag(d) for d in ([1, 1, 1], [-1, -1, 1], [-1, 1, -1], [1, -1, -1])])


def misorientation_deg(t1, t2, kind="shielding", axial_rtol=1e-3):
    """Angle (deg) between the principal frames of two tensors, for model evaluation.

    The smallest rotation angle taking one frame onto the other over the four
    sign-equivalent choices of eigenvectors (0..120 deg). If either tensor is axial
    (the two minor principal values agree to ``axial_rtol`` of the anisotropy), only
    the unique axis is defined and the angle between unique axes (0..90 deg) is
    returned; if either is isotropic, 0.
    """
    if kind not in ("shielding", "efg"):
        raise ValueError(f"kind must be 'shielding' or 'efg', got {kind!r}")
    principal = shielding_principal if kind == "shielding" else efg_principal
    v1, r1 = principal(t1)
    v2, r2 = principal(t2)

    def _aniso(vals, t):
        ref = isotropic(t) if kind == "shielding" else 0.0
        return np.abs(vals[..., 2] - ref)

    a1, a2 = _aniso(v1, t1), _aniso(v2, t2)
    iso_mask = (a1 <= _tolerance(t1, 1e-12)) | (a2 <= _tolerance(t2, 1e-12))
    axial = (np.abs(v1[..., 1] - v1[..., 0]) <= axial_rtol * np.maximum(a1, 1e-300)) | (
        np.abs(v2[..., 1] - v2[..., 0]) <= axial_rtol * np.maximum(a2, 1e-300)
    )
    # full frame: min over sign flips of the rotation angle of R1^T R2 D
    rel = np.swapaxes(r1, -1, -2) @ r2
    traces = np.stack([np.trace(rel @ d, axis1=-2, axis2=-1) for d in _PROPER_SIGN_FLIPS], -1)
    full = np.degrees(np.arccos(np.clip((traces.max(-1) - 1.0) / 2.0, -1.0, 1.0)))
    zdot = np.abs(np.sum(r1[..., :, 2] * r2[..., :, 2], axis=-1))
    unique = np.degrees(np.arccos(np.clip(zdot, 0.0, 1.0)))
    return np.where(iso_mask, 0.0, np.where(axial, unique, full))
