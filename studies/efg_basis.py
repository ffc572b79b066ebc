"""How far is the labels' 17O EFG from B3LYP's basis-set limit, on the SiO2 clusters themselves?

The 17O EFG labels are B3LYP on two-shell O-centred clusters, pcSseg-1 with pcSseg-2 on
the centre O (``dynnmr label`` defaults). The EFG at a nucleus needs core flexibility, so
the basis is the first thing to converge: this relabels the same O site of static
alpha-quartz and alpha-cristobalite (and of glass sites given on the command line) with
larger bases, same cluster and functional:

* ``label``: the labels' method (pcSseg-1, centre pcSseg-2);
* ``centre3``: pcSseg-3 on the centre O;
* ``all2_centre3``: pcSseg-2 everywhere, pcSseg-3 on the centre O.

The ratio of the largest basis to the labels' is a correction computed from theory alone
(no measured value enters it); ``studies/cluster_size.py`` gives the same for the
cluster's size. Their product is the factor that takes a label toward the B3LYP
basis-set and cluster limit.

    python studies/efg_basis.py -o studies/active/efg_basis.json
    python studies/efg_basis.py --glass trajectories/densities/glass_2.2gcc.extxyz.gz:0:542 \\
        -o studies/active/efg_basis.json   (sites already in the file are kept, not redone)
"""

import argparse
import json
from pathlib import Path

import numpy as np
from ase.io import read
from compare_models import site_values

from dynnmr import label

ROOT = Path(__file__).parents[1]
BASES = {
    "label": ("pcSseg-1", "pcSseg-2"),
    "centre3": ("pcSseg-1", "pcSseg-3"),
    "all2_centre3": ("pcSseg-2", "pcSseg-3"),
}
CRYSTALS = [(ROOT / "dynnmr" / "data" / f"alpha_{n}.extxyz", 0, 6) for n in ("quartz", "cristobalite")]


def site_row(path, frame, atom, threads):
    """|C_Q| (MHz) and eta_Q of one O site for each basis of :data:`BASES`, with the ratios to ``label``."""
    atoms = read(path, index=frame)
    if atoms.numbers[atom] != 8:
        raise ValueError(f"{path}: frame {frame} atom {atom} is not O")
    cluster = label.carve_cluster(atoms, atom, shells=2)
    row = {"source": Path(path).name, "frame": frame, "atom": atom, "cluster_atoms": len(cluster)}
    for name, (basis, centre) in BASES.items():
        lab = label.compute_site(cluster, properties=("efg",), basis=basis, centre_basis=centre, threads=threads)
        v = site_values("efg", lab.efg_au)
        row[name] = {"abs_Cq_MHz": float(v["abs_Cq_MHz"]), "eta_Q": float(v["eta_Q"]), "n_basis": lab.n_basis,
                     "seconds": round(lab.seconds_scf + lab.seconds_efg, 1)}  # fmt: skip
        print(Path(path).name, atom, name, row[name], flush=True)
    for name in BASES:
        row[name]["ratio_to_label"] = row[name]["abs_Cq_MHz"] / row["label"]["abs_Cq_MHz"]
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--glass", nargs="*", default=[], help="more sites as FILE:FRAME:ATOM (glass 2.2 g/cm3 frame 0: 542, 586)"
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-o", "--output")
    args = ap.parse_args()
    sites = list(CRYSTALS)
    for spec in args.glass:
        path, frame, atom = spec.rsplit(":", 2)
        sites.append((path, int(frame), int(atom)))
    out = Path(args.output) if args.output else None
    done = json.loads(out.read_text()) if out and out.exists() else []  # rerun to add sites: kept, not redone
    rows = list(done)
    for p, f, a in sites:
        if not any((r["source"], r["frame"], r["atom"]) == (Path(p).name, f, a) for r in done):
            rows.append(site_row(str(p), f, a, args.threads))
            if out:
                out.write_text(json.dumps(rows, indent=1) + "\n")
    ratios = np.array([r["all2_centre3"]["ratio_to_label"] for r in rows])
    print(f"basis-limit ratio of |C_Q|: {', '.join(f'{x:.4f}' for x in ratios)}")


if __name__ == "__main__":
    main()
