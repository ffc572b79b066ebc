"""Why the BKS glass's 17O C_Q labels sit above experiment: its geometry or the method?

17O C_Q of a bridging O follows its Si-O-Si angle and Si-O distances (Clark and
Grandinetti's relations for silicates). This fits that relation to the crystalline label
sites (static quartz and cristobalite and the MD cristobalite frames, the method's own
cluster labels, times the EFG scale the models train with) and asks of the glass sites:

- do they follow the crystals' relation (residual ~ 0: the labels are what their geometry
  gives, and any gap to experiment is in the structure), or lie off it (the method
  treats a glass environment differently: cluster, rings, second shell)?
- how does the glass's own geometry (every bridging O of the density series' frames)
  compare with the measured angle distribution of vitreous silica, and what does the
  relation say a measured angle mean would give?

|C_Q| = a + b cos(theta) / (cos(theta) - 1) + c (d - 1.61 A), theta the Si-O-Si angle, d
the mean of the two Si-O distances: least squares on the crystal sites.

    python studies/glass_geometry.py -o studies/active/glass_geometry.json
"""

import argparse
import json
from pathlib import Path

import ase.io
import numpy as np
from compare_models import efg_labelled_o, site_values

from dynnmr import tensorfiles
from dynnmr.structure import bonds, bridging_geometry, si_o_bonds

ROOT = Path(__file__).parents[1]
LABELS = [ROOT / "trajectories" / "labels" / n for n in ("sio2_clusters.extxyz", "sio2_md.extxyz")]
EFG_SCALE = 0.91  # the cluster EFG label scale of the models of this study (configs/sio2-clusters.yaml)
#: Vitreous silica, measured: Si-O-Si angle mean and standard deviation (deg), with source.
EXPERIMENT = {"17O NMR (Charpentier, Kroll, Mauri, J. Phys. Chem. C 113, 7917 (2009))": (147.1, 11.2),
              "29Si NMR (same work)": (148.4, 10.8),
              "29Si NMR (Mauri et al., Phys. Rev. B 62, R4786 (2000))": (151.0, 11.0)}  # fmt: skip


def features(angle_deg, si_o_A):
    c = np.cos(np.radians(angle_deg))
    return np.column_stack([np.ones_like(c), c / (c - 1), np.asarray(si_o_A) - 1.61])


def labelled_sites():
    """Every O EFG label: its source trajectory (sites an active-learning round chose by the
    committee's spread marked apart from the random ones), Si-O-Si angle (deg), mean Si-O
    (A), |C_Q| (MHz)."""
    rows = []
    for path in LABELS:
        for atoms in tensorfiles.read(path):
            sites, efg = efg_labelled_o(atoms)
            if not len(sites):
                continue
            cq = site_values("efg", efg * EFG_SCALE)["abs_Cq_MHz"]
            bond_map = bonds(atoms)
            chosen = atoms.arrays.get("chosen_by_spread", np.zeros(len(atoms), bool))
            for o, c in zip(sites, cq):
                angle, d1, d2 = bridging_geometry(atoms, int(o), bond_map)
                name = atoms.info.get("source", "?") + (" (chosen by spread)" if chosen[o] else "")
                rows.append((name, angle, (d1 + d2) / 2, float(c)))
    return rows


def frame_geometry(path, step):
    """Si-O-Si angle (deg) and mean Si-O distance (A) of every bridging O over frames ``::step``."""
    angles, dists = [], []
    for atoms in ase.io.iread(path, index=f"::{step}"):
        i, _, vec = si_o_bonds(atoms)
        at_o = atoms.numbers[i] == 8
        for o in np.flatnonzero(atoms.numbers == 8):
            v = vec[at_o & (i == o)]
            if len(v) == 2:
                d = np.linalg.norm(v, axis=1)
                angles.append(np.degrees(np.arccos(np.clip(v[0] @ v[1] / d[0] / d[1], -1, 1))))
                dists.append(d.mean())
    return np.array(angles), np.array(dists)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--step", type=int, default=2, help="every step-th frame of each glass for its geometry")
    ap.add_argument("-o", "--output")
    args = ap.parse_args()
    rows = labelled_sites()
    source = np.array([r[0] for r in rows])
    angle, dist, cq = (np.array([r[k] for r in rows]) for k in (1, 2, 3))
    bridging = np.isfinite(angle)
    glass = np.char.startswith(source, "glass_")
    crystal = bridging & ~glass & ~np.char.startswith(source, "amorphous")
    coef, *_ = np.linalg.lstsq(features(angle[crystal], dist[crystal]), cq[crystal], rcond=None)
    fit = features(angle[bridging], dist[bridging]) @ coef
    resid = np.full(len(cq), np.nan)
    resid[bridging] = cq[bridging] - fit
    out = {"efg_scale": EFG_SCALE, "relation": {"a_MHz": coef[0], "b_MHz": coef[1], "c_MHz_per_A": coef[2],
           "crystal_sites": int(crystal.sum()), "rms_residual_MHz": float(np.std(resid[crystal]))},
           "experiment_angle_deg": EXPERIMENT, "labelled": {}, "glass_geometry": {}}  # fmt: skip
    print(f"relation on {crystal.sum()} crystal sites: |C_Q| = {coef[0]:.2f} + {coef[1]:.2f} x(theta) "
          f"+ {coef[2]:.2f} (d - 1.61 A) MHz, rms residual {np.std(resid[crystal]):.3f} MHz")  # fmt: skip
    print("labelled sites: n, angle (deg), Si-O (A), |C_Q| (MHz), residual to the relation +- standard error")
    for name in sorted(set(source)):
        m = (source == name) & bridging
        r = resid[m]
        row = {"sites": int(m.sum()), "angle_deg": float(angle[m].mean()), "si_o_A": float(dist[m].mean()),
               "abs_Cq_MHz": float(cq[m].mean()), "residual_MHz": float(r.mean()),
               "residual_se_MHz": float(r.std(ddof=1) / np.sqrt(len(r))) if len(r) > 1 else None}  # fmt: skip
        out["labelled"][name] = row
        se = f" +- {row['residual_se_MHz']:.3f}" if row["residual_se_MHz"] is not None else ""
        print(f"  {name:30s} {row['sites']:4d}  {row['angle_deg']:6.1f}  {row['si_o_A']:.4f}  "
              f"{row['abs_Cq_MHz']:.3f}  {row['residual_MHz']:+.3f}{se}")  # fmt: skip
    print("whole glasses (every bridging O): angle mean +- sd (deg), Si-O (A); the relation's |C_Q| (MHz) at "
          "the glass's geometry and with its angles moved to the measured mean (147.1 deg, 17O NMR)")  # fmt: skip
    for path in sorted((ROOT / "trajectories" / "densities").glob("glass_*gcc.extxyz.gz")):
        a, d = frame_geometry(path, args.step)
        own = float((features(a, d) @ coef).mean())
        moved = float((features(np.clip(a - a.mean() + 147.1, 0, 180), d) @ coef).mean())
        out["glass_geometry"][path.name] = {"bridging_O": len(a), "angle_deg": float(a.mean()),
                                            "angle_sd_deg": float(a.std()), "si_o_A": float(d.mean()),
                                            "relation_abs_Cq_MHz": own, "at_measured_angle_MHz": moved}  # fmt: skip
        print(f"  {path.name:24s} {len(a):6d} O  {a.mean():6.1f} +- {a.std():4.1f}  {d.mean():.4f}  "
              f"{own:.2f}  {moved:.2f}")  # fmt: skip
    if args.output:
        Path(args.output).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
