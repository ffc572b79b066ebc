"""Structure of a silica network: coordination, bond lengths, bond angles, density.

What decides whether an MD trajectory can carry NMR conclusions: 29Si and 17O tensors
follow the local geometry (Si-O distance, Si-O-Si angle, coordination), so a trajectory
is checked by these numbers before its NMR is read. Bonds are Si-O pairs closer than
``cutoff`` (A; default 2.0, inside the gap of g_SiO between the first shell at about
1.6 A and the second neighbours beyond 2.8 A in vitreous silica; densified glasses put
a few pairs into that gap, :data:`SI_O_CONTACT`). Only ase and numpy are
needed, so the MD scripts of ``trajectories/`` use this module without torch.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.data import covalent_radii
from ase.neighborlist import neighbor_list

#: Si-O bond cutoff (A).
SI_O_CUTOFF = 2.0
#: A bond for the cluster labels: distance < BOND_SCALE x the sum of covalent radii (Si-O: 2.12 A).
BOND_SCALE = 1.2
#: Si-O contact (A) for the labels' regularity check. In the densified glasses some Si-O
#: pairs lie at 2.1-2.5 A, between the bonds (up to about 1.75 A) and the second
#: neighbours (3.2 A and beyond around regular sites): a bond being made or broken. The
#: bond rule leaves such a partner out of the two-shell cluster, so its label would
#: describe another site; it counts towards the coordination here.
SI_O_CONTACT = 2.5
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


def bonds(atoms: Atoms):
    """Bonds of a frame from covalent radii (distance < :data:`BOND_SCALE` x the sum),
    periodic images followed: ``{i: [(j, integer cell shift), ...]}``, both directions.
    What the cluster labels cut along; neighbour pairs from vesin."""
    from .graphs import neighbour_pairs

    cut = BOND_SCALE * 2 * covalent_radii[atoms.numbers].max()
    i, j, s = neighbour_pairs(atoms.positions, atoms.cell.array, atoms.pbc, cut)
    vec = atoms.positions[j] - atoms.positions[i] + s @ atoms.cell.array
    limit = BOND_SCALE * (covalent_radii[atoms.numbers[i]] + covalent_radii[atoms.numbers[j]])
    keep = np.linalg.norm(vec, axis=1) < limit
    bonded: dict[int, list[tuple[int, np.ndarray]]] = {}
    for a, b, shift in zip(i[keep], j[keep], s[keep]):
        bonded.setdefault(int(a), []).append((int(b), shift))
    return bonded


#: Regular coordination in silica: each Si bonded to 4 O, each O to 2 Si.
REGULAR_NEIGHBOURS = {"Si": ("O", 4), "O": ("Si", 2)}


def si_o_contacts(atoms: Atoms, cutoff: float = SI_O_CONTACT) -> np.ndarray:
    """Per atom, the number of Si-O partners (the O of a Si, the Si of an O) closer than
    ``cutoff`` (A), periodic images followed."""
    i, _, _ = si_o_bonds(atoms, cutoff)
    return np.bincount(i, minlength=len(atoms))


def coordination_defect(atoms: Atoms, centre: int, bond_map=None, contacts=None) -> str | None:
    """Why an atom of the site's two-shell cluster is not regularly coordinated, else None.

    The labels describe regular bridging O (and Si in regular tetrahedra): a cluster
    around a 3- or 5-coordinated Si or a non-bridging/3-coordinated O is a different
    chemistry, and its capped cluster can have a near-degenerate electronic structure
    whose GIAO shielding is meaningless (e.g. 17O sigma_iso of -709 and 10,340 ppm at two
    glass sites next to 5-coordinated Si). Every atom within two bonds is checked, since
    the caps turn an irregular outer atom into an unphysical group: a 3-coordinated outer
    Si of a Si-centred cluster into SiH2 (29Si sigma_iso 543 ppm, regular sites 430-441),
    a 3-coordinated outer O of an O-centred cluster into OH2 with its two H 1.2 A apart
    (17O sigma_iso 173 ppm, below every regular site's). A Si-O partner within
    :data:`SI_O_CONTACT` beyond the bonds (``contacts``: :func:`si_o_contacts`) makes an
    atom irregular too: the cluster would leave it out. Elements without a rule are not
    checked.
    """
    bond_map = bonds(atoms) if bond_map is None else bond_map
    contacts = si_o_contacts(atoms) if contacts is None else contacts
    symbols = atoms.get_chemical_symbols()
    first = [nb for nb, _ in bond_map.get(centre, [])]
    second = [nb2 for nb in first for nb2, _ in bond_map.get(nb, []) if nb2 != centre]
    for k in [centre] + first + second:
        rule = REGULAR_NEIGHBOURS.get(symbols[k])
        if rule is None:
            continue
        got = sorted(symbols[nb] for nb, _ in bond_map.get(k, []))
        if got != [rule[0]] * rule[1]:
            return (
                f"{symbols[k]} atom {k} bonded to {len(got)} atoms ({''.join(got) or 'none'}), not {rule[1]} {rule[0]}"
            )
        if contacts[k] > rule[1]:
            return (f"{symbols[k]} atom {k} has {contacts[k]} {rule[0]} within {SI_O_CONTACT} A, not {rule[1]}: "
                    "a contact the cluster leaves out")  # fmt: skip
    return None


def mean_bridging_angle(atoms: Atoms, centre: int, bond_map=None) -> float:
    """Mean Si-O-Si angle (deg) at the O atoms bonded to Si atom ``centre`` (periodic images followed).

    The structural variable 29Si shifts follow in silica (more shielded as the angles
    open); NaN if the centre has no bridging O.
    """
    bond_map = bonds(atoms) if bond_map is None else bond_map
    cell, pos, numbers = atoms.cell.array, atoms.positions, atoms.numbers
    angles = []
    for o, s1 in bond_map.get(centre, []):
        if numbers[o] != 8:
            continue
        back = pos[centre] - (pos[o] + s1 @ cell)  # O -> centre
        for si, s2 in bond_map.get(o, []):
            if numbers[si] != 14 or (si == centre and not (s1 + s2).any()):
                continue
            out = pos[si] + s2 @ cell - pos[o]
            cos = back @ out / np.linalg.norm(back) / np.linalg.norm(out)
            angles.append(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
    return float(np.mean(angles)) if angles else float("nan")


def bridging_geometry(atoms: Atoms, o: int, bond_map=None) -> tuple[float, float, float]:
    """Si-O-Si angle (deg) and the shorter and longer Si-O distances (A) at O atom ``o``
    (periodic images followed): the variables 17O C_Q, eta_Q and shielding follow. NaN
    unless ``o`` is bonded to exactly two Si."""
    bond_map = bonds(atoms) if bond_map is None else bond_map
    cell, pos = atoms.cell.array, atoms.positions
    vec = [pos[si] + shift @ cell - pos[o] for si, shift in bond_map.get(o, []) if atoms.numbers[si] == 14]
    if len(vec) != 2:
        return float("nan"), float("nan"), float("nan")
    d = np.linalg.norm(vec, axis=1)
    angle = np.degrees(np.arccos(np.clip(vec[0] @ vec[1] / d[0] / d[1], -1.0, 1.0)))
    return float(angle), float(d.min()), float(d.max())


# Cristobalite's alpha-beta inversion ------------------------------------------------------
# The beta phase is dynamically disordered: instantaneous Si-O-Si angles stay bent while
# the time-averaged O positions lie on the Si-Si lines, so the angle is reported both for
# instantaneous frames and for positions averaged over a sliding window of frames
# (fractional coordinates unwrapped against the window's first frame).


def _angles_of(numbers, frac, cell):
    """:func:`si_o_si_angles` of a frame given by fractional coordinates."""
    return si_o_si_angles(Atoms(numbers=numbers, scaled_positions=frac, cell=cell, pbc=True))


def c_over_a(lengths, repeat=None):
    """c/a of the tetragonal (alpha) setting from the box lengths: of a ``repeat`` of alpha
    cells (c along z), or with ``repeat=None`` of a cubic beta supercell, where alpha forms
    with its c axis along one box edge (the one unlike the others) and its a axes along
    face diagonals (a = L sqrt(2) / n, so c/a = sqrt(2) L_c / L_a; beta gives sqrt(2))."""
    lengths = np.asarray(lengths, float)
    if repeat is not None:
        return lengths[2] / repeat[2] / (0.5 * (lengths[0] / repeat[0] + lengths[1] / repeat[1]))
    c = int(np.argmax(np.abs(lengths - np.median(lengths))))
    return float(np.sqrt(2) * lengths[c] / np.mean(np.delete(lengths, c)))


def order_parameters(frames, repeat=(4, 4, 3), window=10):
    """Per frame: T (K), volume per SiO2 (A^3), c/a (:func:`c_over_a`), instantaneous and
    window-averaged mean angle."""
    out = {k: [] for k in ("T", "volume_per_SiO2", "c_over_a", "angle_inst", "angle_avg")}
    n_si = None
    fracs = [f.get_scaled_positions(wrap=False) for f in frames]
    for k, f in enumerate(frames):
        n_si = int(np.sum(f.numbers == 14))
        out["T"].append(f.info.get("temperature_K", np.nan))
        out["volume_per_SiO2"].append(f.get_volume() / n_si)
        out["c_over_a"].append(c_over_a(f.cell.lengths(), repeat))
        out["angle_inst"].append(np.mean(_angles_of(f.numbers, fracs[k], f.cell.array)))
        lo, hi = max(0, k - window // 2), min(len(frames), k + window // 2 + 1)
        ref = fracs[lo]
        unwrapped = [ref + (x - ref) - np.round(x - ref) for x in fracs[lo:hi]]
        mean_frac = np.mean(unwrapped, axis=0)
        mean_cell = np.mean([g.cell.array for g in frames[lo:hi]], axis=0)
        out["angle_avg"].append(np.mean(_angles_of(f.numbers, mean_frac, mean_cell)))
    return {k: np.array(v) for k, v in out.items()}


def running_mean(x, width=25):
    """Centred running mean (shorter windows at the ends)."""
    x = np.asarray(x, float)
    c = np.concatenate([[0.0], np.cumsum(x)])
    lo = np.clip(np.arange(len(x)) - width // 2, 0, len(x))
    hi = np.clip(np.arange(len(x)) + width // 2 + 1, 0, len(x))
    return (c[hi] - c[lo]) / (hi - lo)


def transition_temperature(T, order, width=25):
    """Temperature of the steepest change of an order parameter's running mean along the
    ramp (its rise on heating, its fall on cooling)."""
    smooth = running_mean(order, width)
    grad = np.abs(np.gradient(smooth))
    k = width + int(np.argmax(grad[width:-width]))  # ignore the ends, where the mean is one-sided
    return float(running_mean(T, width)[k])
