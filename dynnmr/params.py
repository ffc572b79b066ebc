"""NMR parameters: value objects for shielding and quadrupolar parameters, and per-site
tables of them from structures carrying ``ms``/``efg`` tensors.

:class:`ShieldingParameters` and :class:`QuadrupolarParameters` are the one place where
a tensor becomes the numbers a spectroscopist reads, with the units in every field name;
tables, summaries, dynamics, mrsimulator export, evaluation and the committee spread all
take their parameters from them. NaN tensors (the missing-label marker) give NaN
parameters, never an error.

Tables: one row per atom that has a tensor. Shielding in ppm (Haeberlen zeta/eta,
Herzfeld-Berger span/skew, ZYZ active Euler angles of the Haeberlen frame), EFG in
atomic units with eta_Q, C_Q in MHz for the chosen isotope, and Euler angles of the
|Vzz| >= |Vyy| >= |Vxx| frame. See :mod:`dynnmr.tensors` for every convention.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

import numpy as np

from . import tensors as T
from .isotopes import isotope_for
from .uncertainty import parameters

COLUMNS = [
    "structure", "index", "species",
    "sigma_iso_ppm", "zeta_ppm", "eta_sigma", "span_ppm", "skew",
    "ms_alpha_deg", "ms_beta_deg", "ms_gamma_deg",
    "isotope", "Vzz_au", "eta_Q", "Cq_MHz",
    "efg_alpha_deg", "efg_beta_deg", "efg_gamma_deg",
    # beyond the core set: the antisymmetric shielding is reported, not dropped
    "ms_antisym_ppm",
]  # fmt: skip
SHIFT_COLUMN = "delta_iso_ppm"
#: Committee uncertainty columns (standard deviations over the members, calibrated;
#: :mod:`dynnmr.uncertainty`), present when the input carries ``ms_param_std`` /
#: ``efg_param_std``: stored parameter name -> column.
SD_COLUMNS = {
    "ms": {"sigma_iso_ppm": "sigma_iso_sd_ppm", "zeta_ppm": "zeta_sd_ppm", "eta": "eta_sigma_sd",
           "span_ppm": "span_sd_ppm", "skew": "skew_sd"},
    "efg": {"Vzz_au": "Vzz_sd_au", "eta_Q": "eta_Q_sd"},
}  # fmt: skip
CQ_SD_COLUMN, SHIFT_SD_COLUMN = "Cq_sd_MHz", "delta_iso_sd_ppm"


@dataclass(frozen=True)
class ShieldingParameters:
    """Parameters of shielding tensors (ppm), arrays over sites (:mod:`dynnmr.tensors`):
    ``sigma_iso_ppm``; Haeberlen ``zeta_ppm`` (s_zz - s_iso, |s_zz - s_iso| largest) and
    ``eta`` in [0, 1]; Herzfeld-Berger ``span_ppm`` (>= 0) and ``skew`` in [-1, 1];
    ``antisym_ppm``, the norm of the antisymmetric part (not seen by spectra to first order).
    """

    sigma_iso_ppm: np.ndarray
    zeta_ppm: np.ndarray
    eta: np.ndarray
    span_ppm: np.ndarray
    skew: np.ndarray
    antisym_ppm: np.ndarray

    @classmethod
    def of(cls, ms_ppm) -> ShieldingParameters:
        """From shielding tensors ``(..., 3, 3)`` in ppm: the columns of
        :func:`dynnmr.uncertainty.parameters` (the fields' order) and the antisymmetric norm."""
        ms_ppm = np.asarray(ms_ppm, dtype=np.float64)
        columns = np.moveaxis(parameters("ms", ms_ppm), -1, 0)
        return cls(*columns, np.linalg.norm(T.antisymmetric_vector(ms_ppm), axis=-1))

    def delta_iso_ppm(self, sigma_ref_ppm):
        """Isotropic shift against ``sigma_ref_ppm`` (IUPAC: delta = sigma_ref - sigma)."""
        return T.shift_iso(self.sigma_iso_ppm, sigma_ref_ppm)


@dataclass(frozen=True)
class QuadrupolarParameters:
    """Parameters of EFG tensors (atomic units), arrays over sites: ``Vzz_au`` (|Vzz| >=
    |Vyy| >= |Vxx|), ``eta_Q`` in [0, 1], and ``Cq_MHz`` = e Q Vzz / h (signed; NaN where
    the nucleus has no quadrupole moment, I = 1/2)."""

    Vzz_au: np.ndarray
    eta_Q: np.ndarray
    Cq_MHz: np.ndarray

    @classmethod
    def of(cls, efg_au, quadrupole_moment_mb=np.nan) -> QuadrupolarParameters:
        """From EFG tensors ``(..., 3, 3)`` in au and the nucleus' Q (mb; per site or one)."""
        p = T.efg_parameters(efg_au)
        q = np.asarray(quadrupole_moment_mb, dtype=float)
        cq = np.where(q != 0, T.quadrupolar_coupling_hz(p["Vzz"], q) * 1e-6, np.nan)
        return cls(p["Vzz"], p["eta_Q"], cq)

    @property
    def abs_Cq_MHz(self):
        """|C_Q| (MHz): its sign is undefined as eta_Q nears 1 and unseen in most spectra."""
        return np.abs(self.Cq_MHz)


def _finite_rows(arr):
    return np.isfinite(arr).all(axis=(-2, -1))


def shielding_columns(ms):
    """Shielding parameter columns (dict of arrays) for tensors ``(M, 3, 3)`` in ppm."""
    p = ShieldingParameters.of(ms)
    a, b, g = T.shielding_euler(ms)
    return {
        "sigma_iso_ppm": p.sigma_iso_ppm, "zeta_ppm": p.zeta_ppm, "eta_sigma": p.eta,
        "span_ppm": p.span_ppm, "skew": p.skew,
        "ms_alpha_deg": a, "ms_beta_deg": b, "ms_gamma_deg": g, "ms_antisym_ppm": p.antisym_ppm,
    }  # fmt: skip


def efg_columns(efg, quadrupole_moments_mb):
    """EFG parameter columns for tensors ``(M, 3, 3)`` in au; C_Q NaN where Q is 0 (I = 1/2)."""
    p = QuadrupolarParameters.of(efg, quadrupole_moments_mb)
    a, b, g = T.efg_euler(efg)
    return {
        "Vzz_au": p.Vzz_au, "eta_Q": p.eta_Q, "Cq_MHz": p.Cq_MHz,
        "efg_alpha_deg": a, "efg_beta_deg": b, "efg_gamma_deg": g,
    }  # fmt: skip


def site_table(images, names=None, isotopes=None, references=None):
    """Rows (list of dicts, keys from :data:`COLUMNS`) for every atom with a tensor.

    ``isotopes`` maps element -> isotope name (``{"O": "17O"}``), overriding the
    defaults; ``references`` maps element -> sigma_ref (ppm) and adds ``delta_iso_ppm``
    (IUPAC delta = sigma_ref - sigma). Absent values are ``None``.
    """
    rows = []
    for k, atoms in enumerate(images):  # columns *_sd_*: the committee spread, where the input has it
        name = names[k] if names else atoms.info.get("structure_id", str(k))
        symbols = atoms.get_chemical_symbols()
        n = len(atoms)
        cols = {}
        ms = atoms.arrays.get("ms")
        efg = atoms.arrays.get("efg")
        has_ms = _finite_rows(ms) if ms is not None else np.zeros(n, bool)
        has_efg = _finite_rows(efg) if efg is not None else np.zeros(n, bool)
        if has_ms.any():
            for key, val in shielding_columns(ms[has_ms]).items():
                cols[key] = np.full(n, np.nan)
                cols[key][has_ms] = val
        isos = [isotope_for(s, isotopes) for s in symbols]
        if has_efg.any():
            q = np.array([iso.quadrupole_moment_mb if iso else 0.0 for iso in isos])
            for key, val in efg_columns(efg[has_efg], q[has_efg]).items():
                cols[key] = np.full(n, np.nan)
                cols[key][has_efg] = val
        cols.update(_sd_columns(atoms, isos))
        for i in np.flatnonzero(has_ms | has_efg):
            row = dict.fromkeys(COLUMNS)
            index = atoms.arrays["atom_index"][i] if "atom_index" in atoms.arrays else i  # a store's sites
            row.update(structure=name, index=int(index), species=symbols[i])
            row["isotope"] = isos[i].name if isos[i] else None
            for key, val in cols.items():
                row[key] = None if math.isnan(val[i]) else float(val[i])
            if references is not None:
                ref = references.get(symbols[i])
                iso_sigma = row["sigma_iso_ppm"]
                row[SHIFT_COLUMN] = None if ref is None or iso_sigma is None else float(T.shift_iso(iso_sigma, ref))
                if "sigma_iso_sd_ppm" in cols:
                    row[SHIFT_SD_COLUMN] = None if row[SHIFT_COLUMN] is None else row["sigma_iso_sd_ppm"]
            rows.append(row)
    return rows


def _sd_columns(atoms, isotopes) -> dict:
    """The committee spread columns of one structure (NaN where a site has none)."""
    from .uncertainty import PARAMETERS

    cols = {}
    for t, names in SD_COLUMNS.items():
        sd = atoms.arrays.get(f"{t}_param_std")
        if sd is None:
            continue
        for k, p in enumerate(PARAMETERS[t]):
            cols[names[p]] = np.asarray(sd[:, k], float)
        if t == "efg":
            q = np.array([iso.quadrupole_moment_mb if iso else np.nan for iso in isotopes])
            cq = np.abs(T.quadrupolar_coupling_hz(cols["Vzz_sd_au"], q)) * 1e-6
            cols[CQ_SD_COLUMN] = np.where(q != 0, cq, np.nan)  # no C_Q for I = 1/2
    return cols


def table_columns(rows):
    """The columns the rows hold: :data:`COLUMNS`, then the shift, then any spreads."""
    extra = [SHIFT_COLUMN] + [c for names in SD_COLUMNS.values() for c in names.values()]
    extra += [CQ_SD_COLUMN, SHIFT_SD_COLUMN]
    present = set().union(*(r.keys() for r in rows)) if rows else set()
    return COLUMNS + [c for c in extra if c in present]


def write_csv(rows, fh, comment=None):
    """CSV with a header; absent values are empty fields; floats with full precision.
    ``comment``: a first line starting with ``#`` (what made the file:
    :func:`dynnmr.tensorfiles.provenance`)."""
    if comment:
        fh.write(comment)
    writer = csv.DictWriter(fh, fieldnames=table_columns(rows), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else repr(v) if isinstance(v, float) else v) for k, v in row.items()})


def format_table(rows):
    """A fixed-width, human-readable table (4 decimals; '-' where absent)."""
    cols = table_columns(rows)

    def fmt(v):
        return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)

    cells = [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[j]) for row in cells]) for j, c in enumerate(cols)]
    out = io.StringIO()
    out.write("  ".join(c.rjust(w) for c, w in zip(cols, widths)) + "\n")
    for row in cells:
        out.write("  ".join(v.rjust(w) for v, w in zip(row, widths)) + "\n")
    return out.getvalue()
