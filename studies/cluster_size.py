"""Does the cluster's size move the 17O EFG labels, and by as much in a glass as in a crystal?

The labels are B3LYP on O-centred clusters of two bond shells (the site's O, its two Si,
their other six O; H caps). A third shell adds the next six Si. If the glass's excess C_Q
over the crystals' C_Q(angle, Si-O) relation (`studies/glass_geometry.py`) were an
artefact of cutting two shells from a disordered network, three shells would take it
away in the glass and leave the crystals' labels alone. This relabels a few sites with
three shells (``dynnmr label --shells 3``, same sites: same file, frame and seed order)
and sets them beside their two-shell labels, raw (no 0.91 scale: the ratio is what
counts).

    dynnmr label trajectories/densities/glass_2.2gcc.extxyz.gz -o runs/shells3_glass22.extxyz \\
        --frames 0:1 --max-sites 2 --properties efg --shells 3
    dynnmr label dynnmr/data/alpha_quartz.extxyz -o runs/shells3_quartz.extxyz --species O \\
        --max-sites 1 --properties efg --shells 3
    python studies/cluster_size.py runs/shells3_*.extxyz -o studies/active/cluster_size.json
    (the cristobalite site: dynnmr/data/alpha_cristobalite.extxyz, same options as quartz)
"""

import argparse
import json
from pathlib import Path

from compare_models import efg_labelled_o, site_values

from dynnmr import tensorfiles

ROOT = Path(__file__).parents[1]
TWO_SHELLS = [ROOT / "trajectories" / "labels" / n for n in ("sio2_md.extxyz", "sio2_clusters.extxyz")]


def efg_sites(path):
    """``{(source, source frame, atom): (|C_Q| MHz, eta_Q)}`` of every O EFG label in a file (raw)."""
    out = {}
    for atoms in tensorfiles.read(path):
        sites, efg = efg_labelled_o(atoms)
        if not len(sites):
            continue
        v = site_values("efg", efg)
        key = (Path(str(atoms.info.get("source", "?"))).name, int(atoms.info.get("source_frame", 0)))
        for i, c, e in zip(sites, v["abs_Cq_MHz"], v["eta_Q"]):
            out[(*key, int(i))] = (float(c), float(e))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("three_shells", nargs="+", help="label files made with --shells 3")
    ap.add_argument("-o", "--output")
    args = ap.parse_args()
    two = {}
    for path in TWO_SHELLS:
        two.update(efg_sites(path))
    rows = []
    for path in args.three_shells:
        for key, (cq3, eta3) in efg_sites(path).items():
            if key not in two:
                print(f"{path}: {key} has no two-shell label; skipped")
                continue
            cq2, eta2 = two[key]
            rows.append({"source": key[0], "frame": key[1], "atom": key[2], "abs_Cq_MHz_2": cq2, "abs_Cq_MHz_3": cq3,
                         "eta_Q_2": eta2, "eta_Q_3": eta3, "ratio": cq3 / cq2})  # fmt: skip
            print(f"{key[0]:28s} frame {key[1]:4d} O {key[2]:5d}: |C_Q| {cq2:.3f} -> {cq3:.3f} MHz "
                  f"({cq3 / cq2 - 1:+.1%}), eta_Q {eta2:.3f} -> {eta3:.3f}")  # fmt: skip
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
