"""Structure of a silica network: coordination, bond lengths, bond angles, density.

What decides whether an MD trajectory can carry NMR conclusions: 29Si and 17O tensors
follow the local geometry (Si-O distance, Si-O-Si angle, coordination), so a trajectory
is checked by these numbers before its NMR is read. Bonds are Si-O pairs closer than
``cutoff`` (A; default 2.0, inside the gap of g_SiO between the first shell at about
1.6 A and the second neighbours beyond 2.8 A in vitreous silica). Only ase and numpy are
needed, so the MD scripts of ``trajectories/`` use this module without torch.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list

#: Si-O bond cutoff (A).
SI_O_CUTOFF = 2.0
_AVOGADRO = 6.02214076e23


def si_o_bonds(atoms: Atoms, cutoff: float = SI_O_CUTOFF):
    """Si-O bonds seen from both ends: ``(i, j, vec)`` with ``vec`` from atom i to atom j (A)."""
    i, j, vec = neighbor_list("ijD", atoms, cutoff)
    z = atoms.numbers
    keep = ((z[i] == 14) & (z[j] == 8)) | ((z[i] == 8) & (z[j] == 14))
    return i[keep], j[keep], vec[keep]


def _angles_at(centres, i, vec, n_bonds):
    """Bond angles (deg) at each centre with exactly ``n_bonds`` bonds, every pair of them."""
    order = np.argsort(i, kind="stable")
    i, vec = i[order], vec[order]
    ids, first, counts = np.unique(i, return_index=True, return_counts=True)
    sel = np.isin(ids, centres) & (counts == n_bonds)
    if not sel.any():
        return np.empty(0)
    v = np.stack([vec[first[sel] + k] for k in range(n_bonds)], axis=1)
    v /= np.linalg.norm(v, axis=2, keepdims=True)
    a, b = np.triu_indices(n_bonds, 1)
    cos = np.sum(v[:, a] * v[:, b], axis=2)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))).ravel()


def si_o_si_angles(atoms: Atoms, cutoff: float = SI_O_CUTOFF) -> np.ndarray:
    """Si-O-Si angle (deg) of every O bonded to exactly two Si (bridging O)."""
    i, _, vec = si_o_bonds(atoms, cutoff)
    return _angles_at(np.flatnonzero(atoms.numbers == 8), i, vec, 2)


def network(atoms: Atoms, cutoff: float = SI_O_CUTOFF) -> dict:
    """Network descriptors of one frame (units in the keys).

    Coordination fractions are of all Si (4-fold) and all O (2-fold); bond lengths are
    over all Si-O bonds, Si-O-Si angles over the bridging O, O-Si-O over the 4-fold Si.
    """
    z = atoms.numbers
    i, _, vec = si_o_bonds(atoms, cutoff)
    cn = np.bincount(i, minlength=len(atoms))
    si, o = z == 14, z == 8
    d = np.linalg.norm(vec[z[i] == 14], axis=1)
    sios = si_o_si_angles(atoms, cutoff)
    osio = _angles_at(np.flatnonzero(si), i, vec, 4)
    mass_g = (np.sum(si) * 28.0855 + np.sum(o) * 15.999) / _AVOGADRO
    volume = atoms.get_volume()
    return {
        "atoms": len(atoms),
        "density_g_cm3": mass_g / (volume * 1e-24),
        "volume_per_SiO2_A3": volume / max(int(np.sum(si)), 1),
        "si_4fold": float(np.mean(cn[si] == 4)),
        "o_2fold": float(np.mean(cn[o] == 2)),
        "si_coordination": {int(k): float(np.mean(cn[si] == k)) for k in np.unique(cn[si])},
        "si_o_mean_A": float(np.mean(d)),
        "si_o_median_A": float(np.median(d)),
        "si_o_si_mean_deg": float(np.mean(sios)) if sios.size else float("nan"),
        "si_o_si_std_deg": float(np.std(sios)) if sios.size else float("nan"),
        "o_si_o_mean_deg": float(np.mean(osio)) if osio.size else float("nan"),
        "o_si_o_std_deg": float(np.std(osio)) if osio.size else float("nan"),
    }


def mean_network(frames, cutoff: float = SI_O_CUTOFF) -> dict:
    """:func:`network` averaged over frames (each number the mean of the per-frame values),
    with ``<key>_sem``: the standard error of that mean from the spread between frames
    (frames assumed independent; read it as a lower bound for correlated frames)."""
    rows = [network(f, cutoff) for f in frames]
    out = {}
    for key, value in rows[0].items():
        if isinstance(value, dict):
            keys = sorted({k for r in rows for k in r[key]})
            out[key] = {k: float(np.mean([r[key].get(k, 0.0) for r in rows])) for k in keys}
        elif key == "atoms":
            out[key] = value
        else:
            x = np.array([r[key] for r in rows], float)
            out[key] = float(np.mean(x))
            out[f"{key}_sem"] = float(np.std(x) / np.sqrt(len(x))) if len(x) > 1 else float("nan")
    out["frames"] = len(rows)
    return out


def averaged_positions(frames) -> Atoms:
    """The time-averaged structure of ``frames``: fractional coordinates unwrapped against
    the first frame and averaged, in the mean cell. Diffraction sees this structure, so
    its Si-O and Si-O-Si compare with crystallographic values; atoms must not diffuse."""
    fracs = [f.get_scaled_positions(wrap=False) for f in frames]
    ref = fracs[0]
    mean_frac = np.mean([ref + (x - ref) - np.round(x - ref) for x in fracs], axis=0)
    mean_cell = np.mean([f.cell.array for f in frames], axis=0)
    return Atoms(numbers=frames[0].numbers, scaled_positions=mean_frac, cell=mean_cell, pbc=True)
