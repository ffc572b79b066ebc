"""First-principles reference labels: a cluster around each chosen site, DFT with PySCF.

The GIPAW data we have labels 29Si only. For 17O EFG and shielding we compute our own
labels from site-centred clusters cut out of periodic frames:

* the cluster holds every atom within ``shells`` bonds of the centre (bonds from
  covalent radii, periodic images followed, so an atom may appear twice through
  different images in a small cell), and each bond cut at the boundary is capped with
  H along the bond at a fixed distance (O-H 0.96 A, Si-H 1.48 A);
* closed-shell DFT (B3LYP by default) in a shielding-oriented basis (pcSseg-1 from
  basis_set_exchange, offline; pcSseg-2 on the centre atom, see :func:`compute_site`),
  then the centre atom's EFG tensor (atomic units,
  Hartree/bohr^2, V_ij = d^2 V / dx_i dx_j as in CASTEP) and GIAO shielding tensor
  (ppm, sigma_ij with B along j, as in CASTEP's magres files).

PySCF's NMR code is pyscf-properties, written against an older PySCF. Two fixes are
applied while our shielding runs (scoped patches, not edits of the installed package):
its RKS GIAO exchange-correlation response (``get_vxc_giao``) passes a block size that
``NumInt.block_loop`` rejects unless it is a multiple of ``BLKSIZE``
(:func:`_get_vxc_giao`), and its CPHF operator assumes the Krylov solver always passes
three trial vectors (:func:`_gen_vind`). Labels are written one site at a time to an extended XYZ file, so
an interrupted run resumes where it stopped (:func:`label_sites`).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import covalent_radii

from . import structure
from .isotopes import isotope_for
from .structure import coordination_defect

CAP_DISTANCE_A = {"O": 0.96, "Si": 1.48}  # X-H distance of a cap replacing a cut bond


def cap_distance(symbol: str) -> float:
    """X-H bond length (Angstrom) for a cap on atom X; covalent radii sum if not tabulated."""
    from ase.data import atomic_numbers

    return CAP_DISTANCE_A.get(symbol, covalent_radii[atomic_numbers[symbol]] + covalent_radii[1])


def closed_shell(cluster: Atoms) -> bool:
    """An even electron count (neutral cluster): what the restricted (closed-shell) DFT needs."""
    return int(cluster.numbers.sum()) % 2 == 0


def carve_cluster(atoms: Atoms, centre: int, shells: int = 2, bonds=None) -> Atoms:
    """Hydrogen-capped cluster of all atoms within ``shells`` bonds of atom ``centre``.

    The centre is atom 0 of the returned (non-periodic) cluster, placed at the origin;
    ``cluster.arrays["source_index"]`` gives each atom's index in ``atoms`` (-1 for caps)
    and ``cluster.arrays["depth"]`` its bond distance from the centre.
    """
    bonds = structure.bonds(atoms) if bonds is None else bonds
    cell = atoms.cell.array
    origin = atoms.positions[centre]
    key0 = (centre, (0, 0, 0))
    members = {key0: (0, np.zeros(3))}  # (index, image) -> (depth, position relative to centre)
    order = [key0]
    frontier = [key0]
    for depth in range(1, shells + 1):
        nxt = []
        for idx, img in frontier:
            for nb, shift in bonds.get(idx, []):
                nimg = tuple(int(v) for v in np.asarray(img) + shift)
                key = (nb, nimg)
                if key not in members:
                    pos = atoms.positions[nb] + np.asarray(nimg) @ cell - origin
                    members[key] = (depth, pos)
                    order.append(key)
                    nxt.append(key)
        frontier = nxt
    symbols = [atoms.get_chemical_symbols()[k[0]] for k in order]
    positions = [members[k][1] for k in order]
    depth = [members[k][0] for k in order]
    source = [k[0] for k in order]
    for (idx, img), sym in zip(list(order), list(symbols)):
        if members[(idx, img)][0] != shells:
            continue
        base = members[(idx, img)][1]
        for nb, shift in bonds.get(idx, []):
            key = (nb, tuple(int(v) for v in np.asarray(img) + shift))
            if key in members:
                continue
            outward = atoms.positions[nb] + np.asarray(key[1]) @ cell - origin - base
            symbols.append("H")
            positions.append(base + cap_distance(sym) * outward / np.linalg.norm(outward))
            depth.append(shells + 1)
            source.append(-1)
    cluster = Atoms(symbols=symbols, positions=np.array(positions), pbc=False)
    cluster.arrays["source_index"] = np.array(source, dtype=int)
    cluster.arrays["depth"] = np.array(depth, dtype=int)
    return cluster


def named_basis(name, elements):
    """A basis from basis_set_exchange's offline library as a PySCF basis dict."""
    import basis_set_exchange as bse
    from pyscf import gto

    text = bse.get_basis(name, elements=sorted(set(elements)), fmt="nwchem")
    return {el: gto.basis.parse(text, symb=el) for el in sorted(set(elements))}


def _get_vxc_giao(ni, mol, grids, xc_code, dms, max_memory=2000, verbose=None):
    """pyscf-properties' GIAO XC response, called with a block size current PySCF accepts.

    pyscf-properties sets ``blksize = min(m * BLKSIZE, ngrids)`` with ``m`` from
    ``max_memory``; when the grid is the smaller (small molecules), the block size is
    not a multiple of ``BLKSIZE`` and PySCF's ``block_loop`` asserts. Capping
    ``max_memory`` so that ``m * BLKSIZE <= ngrids`` gives a conforming block size; the
    integration is the same sum over the same points in blocks of another length.
    """
    from pyscf.dft import numint

    ngrids = len(grids.weights)
    mb_per_block = 12 * 8 * mol.nao_nr() * numint.BLKSIZE / 1e6  # inverse of its formula
    cap = (max(ngrids // numint.BLKSIZE, 1) + 0.5) * mb_per_block
    return _ORIGINAL_GET_VXC_GIAO(ni, mol, grids, xc_code, dms, min(max_memory, cap), verbose)


def _gen_vind(mf, mo_coeff, mo_occ):
    """pyscf-properties' CPHF response operator, accepting any number of trial vectors.

    The original reshapes its input to exactly three vectors (one per field
    direction), but PySCF's Krylov solver now passes only the unconverged ones. The
    operator is linear and acts on each vector alone, so we apply it to groups of
    three, padding the last group with zeros.
    """
    vind3 = _ORIGINAL_GEN_VIND(mf, mo_coeff, mo_occ)
    size = mo_coeff.shape[1] * int((mo_occ > 0).sum())

    def vind(mo1):
        x = np.asarray(mo1).reshape(-1, size)
        n = len(x)
        padded = np.zeros((-(-n // 3) * 3, size), dtype=x.dtype)
        padded[:n] = x
        out = [np.asarray(vind3(padded[k : k + 3].ravel())).reshape(3, size) for k in range(0, len(padded), 3)]
        return np.concatenate(out)[:n].reshape(np.shape(mo1))

    return vind


_ORIGINAL_GET_VXC_GIAO = _ORIGINAL_GEN_VIND = None


def giao_shielding(mf, atoms) -> np.ndarray:
    """GIAO shielding tensors (ppm) of ``atoms`` from a converged RKS/RHF object.

    Returned in the orientation of CASTEP's magres files, which is PySCF's own: the
    antisymmetric parts of ethanol's atoms agree in sign with CASTEP's (the test on
    ``dynnmr/data/ethanol.magres``); its transpose, used before, had them reversed.
    """
    from unittest import mock

    from pyscf.prop.nmr import rhf as nmr_rhf
    from pyscf.prop.nmr import rks as nmr_rks

    global _ORIGINAL_GET_VXC_GIAO, _ORIGINAL_GEN_VIND
    if _ORIGINAL_GET_VXC_GIAO is None:
        _ORIGINAL_GET_VXC_GIAO, _ORIGINAL_GEN_VIND = nmr_rks.get_vxc_giao, nmr_rhf.gen_vind
    cls = nmr_rks.NMR if hasattr(mf, "xc") else nmr_rhf.NMR
    obj = cls(mf)
    obj.shielding_nuc = list(atoms)
    with mock.patch.object(nmr_rks, "get_vxc_giao", _get_vxc_giao), mock.patch.object(nmr_rhf, "gen_vind", _gen_vind):
        return np.asarray(obj.kernel())


@dataclass
class SiteLabel:
    """DFT labels of one cluster's centre atom (tensors in the frame of the input)."""

    efg_au: np.ndarray | None  # (3, 3) Hartree / bohr^2
    ms_ppm: np.ndarray | None  # (3, 3) ppm
    n_atoms: int
    n_basis: int
    seconds_scf: float
    seconds_efg: float
    seconds_ms: float


def compute_site(cluster: Atoms, properties=("efg", "ms"), xc="b3lyp", basis="pcSseg-1", centre_basis="pcSseg-2",
                 threads=None, density_fit=True) -> SiteLabel:  # fmt: skip
    """DFT EFG and/or GIAO shielding of atom 0 of a closed-shell, neutral cluster.

    A locally dense basis: ``centre_basis`` on the centre atom, ``basis`` on the rest.
    The EFG needs core flexibility at the nucleus: for H2O, 17O C_Q is 12.15 MHz with
    pcSseg-1 everywhere, 11.15 with pcSseg-2 on O, 10.78 with pcSseg-3 on O and 10.67
    with pcSseg-3 everywhere (B3LYP; experiment 10.175 MHz).
    """
    from pyscf import dft, gto, lib

    if threads:
        lib.num_threads(threads)
    symbols = cluster.get_chemical_symbols()
    if not closed_shell(cluster):
        n_elec = int(cluster.numbers.sum())
        raise ValueError(f"cluster has an odd number of electrons ({n_elec}); a closed shell is required")
    labels = [s + "1" if k == 0 else s for k, s in enumerate(symbols)]  # the centre gets its own basis
    basis_sets = named_basis(basis, symbols)
    basis_sets[labels[0]] = named_basis(centre_basis or basis, symbols[:1])[symbols[0]]
    mol = gto.M(atom=list(zip(labels, cluster.positions)), unit="Angstrom",
                basis=basis_sets, charge=0, spin=0, verbose=0)  # fmt: skip
    t0 = time.perf_counter()
    mf = dft.RKS(mol).density_fit() if density_fit else dft.RKS(mol)
    mf.xc = xc
    mf.conv_tol = 1e-9
    mf.kernel()
    if not mf.converged:
        raise RuntimeError("SCF did not converge")
    t1 = time.perf_counter()
    efg = ms = None
    if "efg" in properties:
        from pyscf.prop.efg import rhf as efg_rhf

        efg = np.asarray(efg_rhf.kernel(mf, efg_nuc=[0]))[0]
    t2 = time.perf_counter()
    if "ms" in properties:
        ms = giao_shielding(mf, [0])[0]
    t3 = time.perf_counter()
    return SiteLabel(efg, ms, len(cluster), mol.nao_nr(), t1 - t0, t2 - t1, t3 - t2)


# resumable labelling of many sites ------------------------------------------------------
def frame_to_atoms(frame) -> Atoms:
    """A reader :class:`~dynnmr.reader.Frame` as ``ase.Atoms`` (time kept in info['time_ps'])."""
    atoms = Atoms(numbers=frame.numbers, positions=frame.positions, pbc=frame.pbc,
                  cell=frame.cell if frame.cell is not None else None)  # fmt: skip
    if frame.time_ps is not None:
        atoms.info["time_ps"] = frame.time_ps
    return atoms


def candidate_sites(atoms: Atoms, species, seed=0, spread=None, random_share=0.25):
    """Atoms of the given species in labelling order, and whether each was chosen for its
    committee spread (True) or at random (False). Deterministic, so a rerun resumes.

    Without ``spread``: a fixed random order. With ``spread`` (per atom, the committee
    spread of the property to label, :func:`committee_spread`): active learning, the
    sites in order of decreasing spread, with every ``1/random_share``-th place taken by
    the next site of the random order, so a share of the labels stays an unbiased sample.
    """
    idx = np.flatnonzero(np.isin(atoms.get_chemical_symbols(), list(species)))
    random = np.random.default_rng(seed).permutation(idx)
    if spread is None:
        return random, np.zeros(len(random), bool)
    s = np.asarray(spread, float)[idx]
    ranked = list(idx[np.argsort(-np.where(np.isfinite(s), s, -np.inf), kind="stable")])
    order, by_spread, taken = [], [], set()
    queues = {False: iter(random), True: iter(ranked)}
    for k in range(len(idx)):
        pick_random = int((k + 1) * random_share) > int(k * random_share)
        for i in queues[not pick_random]:
            if i not in taken:
                break
        else:  # that queue is used up: the other one holds the rest
            continue
        taken.add(int(i))
        order.append(int(i))
        by_spread.append(not pick_random)
    rest = [int(i) for i in random if int(i) not in taken]
    return np.array(order + rest, dtype=np.int64), np.array(by_spread + [False] * len(rest), bool)


def committee_spread(atoms: Atoms, model, prop) -> np.ndarray:
    """Per atom, the committee spread of the key parameter of ``prop`` (efg: V_zz in au,
    ms: sigma_iso in ppm; :mod:`dynnmr.uncertainty`) predicted by ``model`` (a committee
    model name or file); NaN where the model does not cover the atom."""
    from .inference import predict

    out = predict(atoms, model=model, uncertainty=True)
    if f"{prop}_param_std" not in out.arrays:
        raise ValueError(f"model {model} has no committee for {prop}: choosing sites by spread needs one")
    return out.arrays[f"{prop}_param_std"][:, 0]


def _blank_labels(atoms: Atoms, source, frame_index, method) -> Atoms:
    out = atoms.copy()
    out.info.update({"source": str(source), "source_frame": int(frame_index), "label_method": method})
    n = len(out)
    out.arrays["efg"] = np.full((n, 3, 3), np.nan)
    out.arrays["ms"] = np.full((n, 3, 3), np.nan)
    out.arrays["label_status"] = np.zeros(n, dtype=int)  # 0 not tried, 1 labelled, -1 failed
    out.arrays["cluster_atoms"] = np.zeros(n, dtype=int)
    out.arrays["chosen_by_spread"] = np.zeros(n, dtype=int)  # 1: picked for its committee spread
    return out


DEFECT = -2  # label_status of a site skipped for a coordination defect (-1: DFT failed)


def drop_defect_labels(atoms: Atoms) -> list[int]:
    """Withdraw labels of sites that :func:`dynnmr.structure.coordination_defect` rejects (labelled before
    the rule existed): their status becomes ``DEFECT`` and their tensors NaN."""
    bonds, contacts = structure.bonds(atoms), structure.si_o_contacts(atoms)
    dropped = [
        int(i)
        for i in np.flatnonzero(atoms.arrays["label_status"] == 1)
        if coordination_defect(atoms, i, bonds, contacts)
    ]
    for i in dropped:
        atoms.arrays["label_status"][i] = DEFECT
        for t in ("efg", "ms"):
            atoms.arrays[t][i] = np.nan
    return dropped


def _save(path: Path, images) -> None:
    """Atomic rewrite: a crash mid-write leaves the previous file intact."""
    import os

    from .tensorfiles import write_extxyz

    tmp = path.with_name(path.name + ".tmp")
    write_extxyz(tmp, images)
    os.replace(tmp, path)


def _same_structure(a, b, tol_A=1e-4):
    """Whether two frames hold the same atoms at the same places (A, within rounding)."""
    return (len(a) == len(b) and np.array_equal(a.numbers, b.numbers)
            and np.allclose(a.cell.array, b.cell.array, atol=tol_A)
            and np.allclose(a.positions, b.positions, atol=tol_A))  # fmt: skip


def _efg_for_free(rec: Atoms, i: int, want) -> bool:
    """Whether a shielding label of site ``i`` should bring its EFG along (quadrupolar, none yet)."""
    iso = isotope_for(rec.get_chemical_symbols()[i])
    return "ms" in want and "efg" not in want and iso is not None and iso.is_quadrupolar \
        and not np.isfinite(rec.arrays["efg"][i]).all()  # fmt: skip


def labelled_atoms(images, properties=("efg", "ms")) -> dict[str, set[int]]:
    """``{source trajectory: indices of the atoms with a label of any of properties}`` over
    ``images`` (labelled frames, ``info['source']`` naming their trajectory)."""
    out: dict[str, set[int]] = {}
    for a in images:
        for p in properties:
            if p in a.arrays:
                ok = np.isfinite(a.arrays[p].reshape(len(a), -1)).all(axis=1)
                out.setdefault(a.info.get("source", "?"), set()).update(np.flatnonzero(ok).tolist())
    return out


def label_sites(frames, out_path, source, species=("O",), properties=("efg", "ms"), max_sites=None,
                shells=2, xc="b3lyp", basis="pcSseg-1", centre_basis="pcSseg-2", seed=0, select_by=None,
                random_share=0.25, new_atoms=False, log=None) -> list[Atoms]:  # fmt: skip
    """Label up to ``max_sites`` sites of ``species`` per frame; resumable.

    ``select_by``: a committee model; the sites are then taken in order of its spread
    for the first of ``properties``, with ``random_share`` of them at random
    (:func:`candidate_sites`); the per-atom array ``chosen_by_spread`` records which.
    A site of a quadrupolar nucleus labelled for shielding also gets its EFG when it has
    none: after the SCF it costs well under a second.

    ``new_atoms``: pass over atoms that another frame of the same trajectory in the output
    file already labels (EFG or shielding). Frames of one run a few ps apart are
    one network, so the same atom there is nearly the same site: relabelling it adds
    little, and a label on an atom of a held-out frame leaks that test site into training.

    ``frames`` yields ``(frame_index, ase.Atoms)``. The output extended XYZ file holds
    each periodic frame with ``efg`` (au) and ``ms`` (ppm) per atom, NaN where not
    computed, and is rewritten atomically after every site: rerunning the same command
    after an interruption skips finished sites (matched by source file and frame index).
    """
    from .tensorfiles import read as read_any

    log = log or sys.stderr  # the stderr of the call, not of import time
    out_path = Path(out_path)
    method = f"{xc}/{centre_basis} (centre), {basis} cluster shells={shells}"
    done = read_any(out_path) if out_path.exists() else []
    for a in done:
        for t in ("efg", "ms"):
            a.arrays.setdefault(t, np.full((len(a), 3, 3), np.nan))
        drop_defect_labels(a)
    index = {(a.info.get("source"), int(a.info.get("source_frame", -1))): k for k, a in enumerate(done)}
    want = [p for p in properties if p in ("efg", "ms")]
    seconds: list[float] = []  # per labelled site, for the ETA
    for frame_index, atoms in frames:
        key = (str(source), int(frame_index))
        if key not in index:
            done.append(_blank_labels(atoms, source, frame_index, method))
            index[key] = len(done) - 1
        rec = done[index[key]]
        if not _same_structure(rec, atoms):
            raise ValueError(f"{out_path}: frame {frame_index} of {source} is not the structure labelled there "
                             "(the trajectory was regenerated?); write to another file")  # fmt: skip
        if rec.info.get("label_method") != method:
            raise ValueError(f"{out_path}: frame {frame_index} was labelled with {rec.info.get('label_method')!r}, "
                             f"not {method!r}; write to another file")  # fmt: skip
        bonds, contacts = structure.bonds(rec), structure.si_o_contacts(rec)
        rec.arrays.setdefault("chosen_by_spread", np.zeros(len(rec), dtype=int))
        spread = committee_spread(rec, select_by, want[0]) if select_by else None
        order, by_spread = candidate_sites(rec, species, seed, spread, random_share)
        todo = [int(i) for i in order]
        chosen = dict(zip(todo, by_spread))
        labelled = lambda i: all(np.isfinite(rec.arrays[p][i]).all() for p in want)  # noqa: E731
        n_done = sum(labelled(i) for i in todo)
        elsewhere = labelled_atoms(a for a in done if a is not rec).get(str(source), set()) if new_atoms else set()
        for i in todo:
            if max_sites is not None and n_done >= max_sites:
                break
            if labelled(i) or rec.arrays["label_status"][i] < 0 or i in elsewhere:
                continue
            defect = coordination_defect(rec, i, bonds, contacts)
            if defect:
                rec.arrays["label_status"][i] = DEFECT
                print(
                    f"{source} frame {frame_index} atom {i}: skipped (coordination defect: {defect})",
                    file=log,
                    flush=True,
                )
                _save(out_path, done)
                continue
            cluster = carve_cluster(rec, i, shells, bonds)
            props = [*want, "efg"] if _efg_for_free(rec, i, want) else want
            t0 = time.perf_counter()
            try:
                res = compute_site(cluster, props, xc=xc, basis=basis, centre_basis=centre_basis)
            except (ValueError, RuntimeError) as exc:
                rec.arrays["label_status"][i] = -1
                print(f"{source} frame {frame_index} atom {i}: skipped ({exc})", file=log, flush=True)
            else:
                if res.efg_au is not None:
                    rec.arrays["efg"][i] = res.efg_au
                if res.ms_ppm is not None:
                    rec.arrays["ms"][i] = res.ms_ppm
                rec.arrays["label_status"][i] = 1
                rec.arrays["cluster_atoms"][i] = len(cluster)
                rec.arrays["chosen_by_spread"][i] = int(chosen[i])
                n_done += 1
                seconds.append(time.perf_counter() - t0)
                goal = min(max_sites or len(todo), len(todo))
                eta = np.mean(seconds) * max(goal - n_done, 0)
                print(f"{source} frame {frame_index} atom {i} ({rec.get_chemical_symbols()[i]}, "
                      f"{cluster.get_chemical_formula()}, {res.n_basis} basis functions): "
                      f"{seconds[-1]:.1f} s (SCF {res.seconds_scf:.1f}, EFG {res.seconds_efg:.1f}, "
                      f"shielding {res.seconds_ms:.1f}); {n_done}/{goal} in this frame, "
                      f"ETA {int(eta // 60)}m{int(eta % 60):02d}s", file=log, flush=True)  # fmt: skip
            _save(out_path, done)
    return done
