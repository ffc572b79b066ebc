"""Cluster DFT labels (dynnmr.label): cluster carving, PySCF EFG and GIAO shielding, resume."""

from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from scipy.spatial.transform import Rotation

from dynnmr import label, structure
from dynnmr.cli import main
from dynnmr.isotopes import get_isotope
from dynnmr.tensors import efg_parameters, isotropic, quadrupolar_coupling_hz

REPO = Path(__file__).parents[1]
QUARTZ = REPO / "dynnmr" / "data" / "alpha_quartz.extxyz"
FAST = dict(xc="lda,vwn", basis="sto-3g", centre_basis="sto-3g")  # machinery tests, not physics


def water():
    """H2O at its experimental equilibrium geometry (r_e 0.9578 A, 104.48 deg), O first."""
    half, r = np.radians(104.48 / 2), 0.9578
    return Atoms("OH2", [(0, 0, 0), (r * np.sin(half), 0, r * np.cos(half)), (-r * np.sin(half), 0, r * np.cos(half))])


def _angle(a, b):
    return np.degrees(np.arccos(a @ b / np.linalg.norm(a) / np.linalg.norm(b)))


def test_o_centred_cluster_of_quartz_is_capped_along_the_cut_bonds():
    crystal = ase.io.read(QUARTZ)
    o = crystal.get_chemical_symbols().index("O")
    cl = label.carve_cluster(crystal, o, shells=2)
    assert cl.get_chemical_formula() == "H6O7Si2"
    assert np.allclose(cl.positions[0], 0) and cl.arrays["source_index"][0] == o
    sym, pos, depth = np.array(cl.get_chemical_symbols()), cl.positions, cl.arrays["depth"]
    # every Si-O bond of the cluster has a length of the crystal (1.6039 or 1.6132 A)
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    bonds = d[np.ix_(sym == "Si", sym == "O")]
    assert np.allclose(np.sort(bonds[bonds < 2.0]).reshape(-1, 2).mean(1), 1.6085, atol=0.005)
    # each cap: 0.96 A from an outer O, along the cut O-Si bond, so Si-O-H is the
    # crystal's Si-O-Si angle (143.75 deg in alpha-quartz)
    for h in np.flatnonzero(sym == "H"):
        k = np.argmin(np.where(sym == "O", d[h], np.inf))
        assert depth[k] == 2 and d[h, k] == pytest.approx(0.96)
        si = np.flatnonzero((sym == "Si") & (d[k] < 2.0))
        assert len(si) == 1
        assert _angle(pos[si[0]] - pos[k], pos[h] - pos[k]) == pytest.approx(143.747, abs=0.01)


def test_si_centred_clusters():
    crystal = ase.io.read(QUARTZ)
    si = crystal.get_chemical_symbols().index("Si")
    assert label.carve_cluster(crystal, si, shells=1).get_chemical_formula() == "H4O4Si"
    big = label.carve_cluster(crystal, si, shells=2)  # Si(OSiH3)4 through periodic images of a 9-atom cell
    assert big.get_chemical_formula() == "H12O4Si5"
    sym = np.array(big.get_chemical_symbols())
    d = np.linalg.norm(big.positions[sym == "H"][:, None] - big.positions[sym == "Si"][None], axis=-1)
    assert np.allclose(d.min(axis=1), 1.48)


def test_mean_bridging_angle_of_quartz_and_a_linear_bridge():
    crystal = ase.io.read(QUARTZ)
    si = crystal.get_chemical_symbols().index("Si")
    assert structure.mean_bridging_angle(crystal, si) == pytest.approx(143.747, abs=0.01)
    # (H3Si-O)-Si-(O-SiH3) with one linear and one 120 deg bridge: mean 150 deg
    cos, sin = np.cos(np.radians(60)), np.sin(np.radians(60))
    pos = [(0, 0, 0), (1.6, 0, 0), (3.2, 0, 0), (-1.6, 0, 0), (-1.6 - 1.6 * cos, 1.6 * sin, 0)]
    mol = Atoms("SiOSiOSi", pos)
    assert structure.mean_bridging_angle(mol, 0) == pytest.approx(150.0)
    assert np.isnan(structure.mean_bridging_angle(Atoms("Si"), 0))


def test_bridging_geometry_of_quartz_and_a_bent_bridge():
    crystal = ase.io.read(QUARTZ)
    o = crystal.get_chemical_symbols().index("O")
    angle, short, long = structure.bridging_geometry(crystal, o)
    assert angle == pytest.approx(143.747, abs=0.01)  # all Si-O-Si of alpha-quartz are equivalent
    si = np.flatnonzero(crystal.numbers == 14)
    d = np.sort(crystal.get_distances(o, si, mic=True))[:2]  # ase's minimum-image distances
    assert (short, long) == pytest.approx(tuple(d), abs=1e-9) and short < long
    cos, sin = np.cos(np.radians(150)), np.sin(np.radians(150))
    mol = Atoms("SiOSi", [(1.7, 0, 0), (0, 0, 0), (1.6 * cos, 1.6 * sin, 0)])
    assert structure.bridging_geometry(mol, 1) == pytest.approx((150.0, 1.6, 1.7))
    assert all(np.isnan(structure.bridging_geometry(Atoms("SiO", [(0, 0, 0), (1.6, 0, 0)]), 1)))


def test_open_shell_cluster_is_refused():
    with pytest.raises(ValueError, match="odd number of electrons"):
        label.compute_site(Atoms("OH", [(0, 0, 0), (0, 0, 0.97)]), ("efg",), **FAST)


def test_water_17o_against_experiment():
    """B3LYP, pcSseg-2 on O: C_Q within 10% of the gas-phase 10.175 MHz (eta_Q 0.75;
    Verhoeven et al. 1969); sigma_iso 324 ppm against the experimental 344.0 +- 17.2
    (Wasylishen et al. 1984): B3LYP underestimates this shielding by about 20 ppm, so
    25 ppm is allowed. Runs through both pyscf-properties fixes."""
    res = label.compute_site(water(), ("efg", "ms"))
    par = efg_parameters(res.efg_au)
    vzz, eta = float(par["Vzz"]), float(par["eta_Q"])
    cq_mhz = quadrupolar_coupling_hz(vzz, get_isotope("17O").quadrupole_moment_mb) / 1e6
    assert abs(abs(cq_mhz) - 10.175) < 1.0
    assert abs(eta - 0.75) < 0.1
    assert abs(isotropic(res.ms_ppm) - 344.0) < 25.0
    assert np.allclose(res.efg_au, res.efg_au.T) and abs(np.trace(res.efg_au)) < 1e-6


def test_labels_rotate_with_the_cluster_and_ignore_translation():
    """GIAO shielding and EFG are tensors of the geometry: R T R^T, no gauge-origin dependence."""
    ref = label.compute_site(water(), ("efg", "ms"))
    rot = Rotation.from_euler("zyz", [37, 71, -122], degrees=True).as_matrix()
    moved = water()
    moved.positions = moved.positions @ rot.T + [3.0, -2.0, 5.0]
    new = label.compute_site(moved, ("efg", "ms"))
    # tolerance: PySCF's DFT grids do not rotate with the molecule (differences ~1e-5)
    assert np.allclose(new.efg_au, rot @ ref.efg_au @ rot.T, atol=2e-4)
    assert np.allclose(new.ms_ppm, rot @ ref.ms_ppm @ rot.T, atol=0.02)


def test_vxc_giao_fix_is_needed_and_changes_nothing():
    from pyscf import dft, gto
    from pyscf.prop.nmr import rks as nmr_rks

    mol = gto.M(
        atom=[(s, p) for s, p in zip(water().get_chemical_symbols(), water().positions)], basis="6-31g", verbose=0
    )
    mf = dft.RKS(mol)
    mf.xc = "b3lyp"
    mf.kernel()
    dm = mf.make_rdm1()
    ngrids = len(mf.grids.weights)
    with pytest.raises(AssertionError):  # the bug: blksize = ngrids, not a multiple of BLKSIZE
        nmr_rks.get_vxc_giao(mf._numint, mol, mf.grids, mf.xc, dm, max_memory=1e5)
    label.giao_shielding(mf, [0])  # records the original functions
    fixed = label._get_vxc_giao(mf._numint, mol, mf.grids, mf.xc, dm, max_memory=1e5)
    small = nmr_rks.get_vxc_giao(mf._numint, mol, mf.grids, mf.xc, dm, max_memory=1.0)  # original, valid blocks
    assert ngrids % 128 != 0
    assert np.allclose(fixed, small, atol=1e-12)


def test_label_sites_resumes_and_refuses_another_method(tmp_path):
    crystal = ase.io.read(QUARTZ)
    out, log = tmp_path / "labels.extxyz", tmp_path / "log.txt"

    def run(n, **kw):
        with open(log, "a") as fh:
            return label.label_sites([(0, crystal)], out, "quartz", ("O",), ("efg",), n, log=fh, **(FAST | kw))

    first = run(1)
    assert (first[0].arrays["label_status"] == 1).sum() == 1
    saved = ase.io.read(out)
    row = np.flatnonzero(np.isfinite(saved.arrays["efg"]).all(1))
    assert len(row) == 1
    second = run(2)  # resumes: one new site, the first untouched
    assert log.read_text().count("atom ") == 2
    assert (second[0].arrays["label_status"] == 1).sum() == 2
    assert np.array_equal(second[0].arrays["efg"][row[0]], saved.arrays["efg"][row[0]].reshape(3, 3))
    # alpha-quartz has one O site by symmetry: both labelled O have the same EFG eigenvalues
    done = np.flatnonzero(second[0].arrays["label_status"] == 1)
    eig = [np.linalg.eigvalsh(second[0].arrays["efg"][i]) for i in done]
    assert np.allclose(eig[0], eig[1], atol=1e-5)
    with pytest.raises(ValueError, match="labelled with"):
        run(3, xc="b3lyp")
    moved = crystal.copy()
    moved.positions[0] += 0.01  # the same file name and frame, another structure (a regenerated trajectory)
    with open(log, "a") as fh, pytest.raises(ValueError, match="frame 0 of quartz is not the structure labelled"):
        label.label_sites([(0, moved)], out, "quartz", ("O",), ("efg",), 3, log=fh, **FAST)


def test_cli_label_errors_name_the_file(tmp_path, capsys):
    assert main(["label", str(tmp_path / "missing.extxyz"), "-o", str(tmp_path / "o.extxyz")]) == 2
    assert "missing.extxyz" in capsys.readouterr().err


def test_coordination_defects_are_skipped_and_old_labels_withdrawn():
    quartz = ase.io.read(QUARTZ)
    o = int(np.flatnonzero(quartz.numbers == 8)[0])
    assert structure.coordination_defect(quartz, o) is None
    assert structure.coordination_defect(quartz, int(np.flatnonzero(quartz.numbers == 14)[0])) is None
    # take away one O of a Si next to our O: that Si becomes 3-coordinated
    bonds = structure.bonds(quartz)
    si = bonds[o][0][0]
    other_o = next(nb for nb, _ in bonds[si] if nb != o)
    defect = quartz.copy()
    del defect[other_o]
    o_new = o - (other_o < o)
    assert "bonded to 3 atoms (OOO), not 4 O" in structure.coordination_defect(defect, o_new)
    # a label made before the rule is withdrawn: NaN tensors, status DEFECT
    defect.arrays["efg"] = np.ones((len(defect), 3, 3))
    defect.arrays["ms"] = np.ones((len(defect), 3, 3))
    defect.arrays["label_status"] = np.ones(len(defect), dtype=int)
    dropped = label.drop_defect_labels(defect)
    assert o_new in dropped and np.isnan(defect.arrays["efg"][o_new]).all()
    assert (defect.arrays["label_status"][dropped] == label.DEFECT).all()
    kept = np.setdiff1d(np.arange(len(defect)), dropped)
    assert (defect.arrays["label_status"][kept] == 1).all() and np.isfinite(defect.arrays["ms"][kept]).all()


def _tersoff_glass():
    """The glass frame labelled in trajectories/labels (amorphous_sio2 frame 0 of the
    Tersoff trajectories the labels were computed on), its labels dropped."""
    atoms = ase.io.read(REPO / "trajectories" / "labels" / "sio2_clusters.extxyz", index=5)
    assert atoms.info["source"] == "amorphous_sio2.extxyz.gz" and len(atoms) == 3000
    return Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True)


def test_si_centred_cluster_with_a_3_coordinated_outer_si_is_a_defect():
    """Glass Si 459 (the Tersoff glass frame of the label file): its own tetrahedron and O
    are regular, but two of its outer Si are 3-coordinated; its cluster gave a 29Si
    sigma_iso of 543 ppm."""
    glass = _tersoff_glass()
    bonds = structure.bonds(glass)
    assert all(len(bonds[o]) == 2 for o, _ in bonds[459]) and len(bonds[459]) == 4
    assert "Si atom 750 bonded to 3 atoms (OOO), not 4 O" in structure.coordination_defect(glass, 459, bonds)


def test_o_centred_cluster_with_a_3_coordinated_outer_o_is_a_defect():
    """Glass O 2333 (amorphous_sio2 frame 0): it bridges two regular Si, but an O of their
    tetrahedra (O 1168) is bonded to three Si, so the cluster caps it into OH2 with its two
    H atoms 1.2 A apart; that cluster gave 17O sigma_iso 173 ppm, below every regular site."""
    glass = _tersoff_glass()
    bonds = structure.bonds(glass)
    assert len(bonds[2333]) == 2 and all(len(bonds[si]) == 4 for si, _ in bonds[2333])
    assert "O atom 1168 bonded to 3 atoms (SiSiSi), not 2 Si" in structure.coordination_defect(glass, 2333, bonds)
    cluster = label.carve_cluster(glass, 2333, 2, bonds)
    h = cluster.positions[cluster.numbers == 1]
    hh = np.linalg.norm(h[:, None] - h[None], axis=-1)[np.triu_indices(len(h), 1)]
    assert (cluster.numbers == 1).sum() == 8 and hh.min() < 1.3  # a regular O cluster: 6 caps, far apart
    assert structure.coordination_defect(glass, 1683, bonds) is None  # a regular glass site (convergence study)


def test_giao_shielding_antisymmetric_part_agrees_with_castep():
    """PBE on the geometry of the CASTEP ethanol magres file (small basis, isolated molecule):
    the antisymmetric (l=1) parts of C, C and O point the way CASTEP's do (cosine > 0.8), not
    the opposite way, and the isotropic shieldings agree to a few ppm."""
    from pyscf import dft, gto

    from dynnmr import tensorfiles, tensors

    atoms = tensorfiles.read(REPO / "dynnmr" / "data" / "ethanol.magres")[0]
    symbols = atoms.get_chemical_symbols()
    mol = gto.M(atom=list(zip(symbols, atoms.positions)), unit="Angstrom", basis=label.named_basis("pcSseg-0", symbols),
                verbose=0)  # fmt: skip
    mf = dft.RKS(mol).density_fit()
    mf.xc = "pbe"
    mf.kernel()
    ours = label.giao_shielding(mf, range(len(atoms)))
    ref = atoms.arrays["ms"]
    a, b = tensors.antisymmetric_vector(ours), tensors.antisymmetric_vector(ref)
    big = np.linalg.norm(b, axis=1) > 2.0  # ppm: the two C and the O
    assert [s for s, k in zip(symbols, big) if k] == ["C", "C", "O"]
    cos = np.sum(a[big] * b[big], axis=1) / np.linalg.norm(a[big], axis=1) / np.linalg.norm(b[big], axis=1)
    assert (cos > 0.8).all(), cos
    iso = np.trace(ours, axis1=1, axis2=2) / 3 - np.trace(ref, axis1=1, axis2=2) / 3
    assert np.abs(iso).max() < 15.0  # ppm, pcSseg-0 against plane waves


def test_active_learning_order_takes_the_largest_spread_with_a_random_share():
    atoms = Atoms("O8Si", positions=np.arange(27.0).reshape(9, 3))
    spread = np.array([0.1, 0.9, 0.5, np.nan, 0.7, 0.2, 0.3, 0.8, 5.0])  # Si (index 8) is not a candidate
    random, flags = label.candidate_sites(atoms, ("O",), seed=0)
    assert sorted(random) == list(range(8)) and not flags.any()
    order, by_spread = label.candidate_sites(atoms, ("O",), seed=0, spread=spread, random_share=0.25)
    assert sorted(order) == list(range(8)) and len(set(order)) == 8
    assert list(by_spread[:4]) == [True, True, True, False]  # every fourth place is random
    assert list(order[:3]) == [1, 7, 4]  # the largest spreads first
    first_random = next(i for i in random if i not in (1, 7, 4))
    assert order[3] == first_random
    again, _ = label.candidate_sites(atoms, ("O",), seed=0, spread=spread, random_share=0.25)
    np.testing.assert_array_equal(order, again)  # deterministic: a rerun resumes the same plan
    only_random, flags = label.candidate_sites(atoms, ("O",), seed=0, spread=spread, random_share=1.0)
    np.testing.assert_array_equal(only_random, random)
    assert not flags.any()


def test_label_sites_chosen_by_a_committee_are_recorded(tmp_path, monkeypatch):
    crystal = ase.io.read(QUARTZ)
    crystal.rattle(0.05, seed=3)
    spread = np.zeros(len(crystal))
    spread[crystal.numbers == 8] = np.arange((crystal.numbers == 8).sum())  # the last O has the largest spread
    monkeypatch.setattr(label, "committee_spread", lambda atoms, model, prop: spread)
    out = label.label_sites([(0, crystal)], tmp_path / "l.extxyz", "quartz", ("O",), ("efg",), 1,
                            select_by="any", log=open(tmp_path / "log", "w"), **FAST)  # fmt: skip
    done = np.flatnonzero(out[0].arrays["label_status"] == 1)
    assert list(done) == [int(np.argmax(spread))]
    assert out[0].arrays["chosen_by_spread"][done[0]] == 1
    assert ase.io.read(tmp_path / "l.extxyz").arrays["chosen_by_spread"].sum() == 1


def test_shielding_sites_bring_their_efg_and_select_by_the_first_property(tmp_path, monkeypatch):
    crystal = ase.io.read(QUARTZ)
    asked, spread_of = [], []

    def fake_site(cluster, props, **kw):
        asked.append((cluster.get_chemical_symbols()[0], sorted(props)))
        eye = np.eye(3)
        return label.SiteLabel(eye if "efg" in props else None, eye if "ms" in props else None, len(cluster), 1,
                               0.0, 0.0, 0.0)  # fmt: skip

    monkeypatch.setattr(label, "compute_site", fake_site)
    monkeypatch.setattr(label, "committee_spread", lambda atoms, model, prop: spread_of.append(prop) or
                        np.arange(len(atoms), dtype=float))  # fmt: skip
    log = open(tmp_path / "log", "w")
    out = label.label_sites([(0, crystal)], tmp_path / "l.extxyz", "quartz", ("O", "Si"), ("ms",), None, log=log)
    # 17O is quadrupolar: its shielding label brings the EFG; 29Si (I = 1/2) does not get one
    assert sorted(asked) == [("O", ["efg", "ms"])] * 6 + [("Si", ["ms"])] * 3
    done = np.flatnonzero(out[0].arrays["label_status"] == 1)
    for i in done:
        assert np.isfinite(out[0].arrays["efg"][i]).all() == (crystal[i].symbol == "O")
    label.label_sites([(0, crystal)], tmp_path / "l2.extxyz", "quartz", ("O",), ("ms", "efg"), 1,
                      select_by="any", log=log)  # fmt: skip
    assert spread_of == ["ms"]  # ordered by the spread of the first property asked for


def test_new_atoms_passes_over_atoms_another_frame_of_the_trajectory_labels(tmp_path, monkeypatch):
    """With new_atoms, a second frame of the same trajectory labels other atoms than the
    first did; another trajectory's labels do not count; without it the same random
    order picks the same atoms again."""
    crystal = ase.io.read(QUARTZ)
    moved = crystal.copy()
    moved.rattle(0.02, seed=1)

    def fake_site(cluster, props, **kw):
        return label.SiteLabel(np.eye(3), None, len(cluster), 1, 0.0, 0.0, 0.0)

    monkeypatch.setattr(label, "compute_site", fake_site)
    log = open(tmp_path / "log", "w")
    picked = lambda a: set(np.flatnonzero(a.arrays["label_status"] == 1).tolist())  # noqa: E731
    out = tmp_path / "l.extxyz"
    label.label_sites([(0, crystal)], out, "run.xyz", ("O",), ("efg",), 2, log=log)
    label.label_sites([(0, crystal)], out, "other.xyz", ("O",), ("efg",), 2, log=log)
    images = label.label_sites([(1, moved)], out, "run.xyz", ("O",), ("efg",), 2, new_atoms=True, log=log)
    first, other, second = (picked(a) for a in images)
    assert len(first) == len(second) == 2 and not first & second
    assert other == first  # the other trajectory labelled the same atoms, in its own frame
    again = label.label_sites([(1, moved)], tmp_path / "m.extxyz", "run.xyz", ("O",), ("efg",), 2, log=log)
    assert picked(again[0]) == first


def test_o_with_a_si_contact_beyond_its_bonds_is_a_defect():
    """Test-glass O 452 (2.6 g/cm3, frame 0) is bonded to two Si (1.65 A) by the bond rule, but
    a third Si sits 2.16 A away, between the bonds and the second neighbours (3.2 A and
    beyond): its two-shell cluster would leave that Si out, so it is not a regular site.
    In quartz every atom has its regular count of contacts."""
    glass = ase.io.read(REPO / "trajectories" / "densities" / "test_glass_2.6gcc.extxyz.gz", index=0)
    bonds = structure.bonds(glass)
    assert sorted(glass.numbers[[nb for nb, _ in bonds[452]]]) == [14, 14]
    si = np.flatnonzero(glass.numbers == 14)
    third = np.sort(glass.get_distances(452, si, mic=True))[2]
    assert 2.1 < third < structure.SI_O_CONTACT
    assert structure.si_o_contacts(glass)[452] == 3
    assert "O atom 452 has 3 Si within 2.5 A, not 2" in structure.coordination_defect(glass, 452, bonds)
    quartz = ase.io.read(QUARTZ)
    assert (structure.si_o_contacts(quartz) == np.where(quartz.numbers == 14, 4, 2)).all()
