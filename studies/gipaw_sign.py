"""Which way do the GIPAW 29Si labels go? Three checks against physics we know.

Usage: python studies/gipaw_sign.py [--data PATH] [--model sio2]

1. Q^n: the mean label sigma_iso of Q0 ... Q4 sites. Measured 29Si shifts run from about
   -70 ppm (Q0) to about -110 ppm (Q4): Q4 is the most shielded.
2. Angle: label sigma_iso of the 4-coordinated Si of pure SiO2 against the site's mean
   Si-O-Si angle. Measured shifts of the silica polymorphs become more negative (more
   shielding) as the angles open (alpha-quartz 143.7 deg, -107.4 ppm; alpha-cristobalite
   146.5 deg, about -108.5 ppm), and DFT reproduces that (Mauri et al., PRB 62, R4786, 2000).
3. Anisotropy: the traceless symmetric part of a model's 29Si tensor (a model learns the
   labels; use one trained on the raw labels, e.g. the sio2 of commit ce9aa60) against
   our own B3LYP GIAO tensors of the Si-centred clusters of the same atoms
   (trajectories/labels/sio2_clusters.extxyz): the slope through zero of all components,
   and the cosine between the two per site.

Prints the numbers quoted in studies/README.md ("The sign of the GIPAW labels").
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import linregress

from dynnmr import structure, tensorfiles
from dynnmr.evaluate import predict_label_file
from dynnmr.modelfile import load_model
from dynnmr.tensors import irrep, isotropic

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "silicate_29si_gipaw.json"
LABELS = REPO / "trajectories" / "labels" / "sio2_clusters.extxyz"


def qn_means(path):
    """Mean label sigma_iso (ppm) and site count per Q^n."""
    raw = json.loads(Path(path).read_text())
    qn = np.concatenate([raw["Qn"][k] for k in raw["Qn"]])
    iso = np.concatenate([raw["sigma_iso"][k] for k in raw["Qn"]])
    return {n: (float(iso[qn == n].mean()), int((qn == n).sum())) for n in sorted(set(qn.tolist()))}


def angle_trend(path):
    """Fit of label sigma_iso against the mean Si-O-Si angle, 4-coordinated Si of pure SiO2."""
    angles, iso = [], []
    for atoms in tensorfiles.read(path):
        if set(atoms.get_chemical_symbols()) != {"Si", "O"}:
            continue
        bonds = structure.bonds(atoms)
        ms = atoms.arrays["ms"]
        for k in np.flatnonzero(np.isfinite(ms).all(axis=(1, 2))):
            if len(bonds.get(int(k), [])) == 4:
                angles.append(structure.mean_bridging_angle(atoms, int(k), bonds))
                iso.append(isotropic(ms[k]))
    return linregress(angles, iso), len(iso)


def anisotropy_against_clusters(model, labels):
    """Slope through zero and per-site cosines of model against cluster traceless 29Si tensors."""
    net, info = load_model(model)
    pred, ref, _ = predict_label_file(net, labels)
    p, r = irrep(pred, 2), irrep(ref, 2)  # the traceless symmetric parts
    cos = np.sum(p * r, axis=1) / np.linalg.norm(p, axis=1) / np.linalg.norm(r, axis=1)
    return float(p.ravel() @ r.ravel() / (r.ravel() @ r.ravel())), cos


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--model", default="sio2")
    ap.add_argument("--labels", default=str(LABELS))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print("1. mean label sigma_iso by Q^n (ppm, sites):")
    for n, (mean, count) in qn_means(args.data).items():
        print(f"   Q{n}: {mean:.1f} ({count})")
    fit, n = angle_trend(args.data)
    print(f"2. label sigma_iso against mean Si-O-Si angle, {n} 4-coordinated Si of pure SiO2: "
          f"{fit.slope:.3f} +- {fit.stderr:.3f} ppm/deg, r = {fit.rvalue:.3f}")  # fmt: skip
    slope, cos = anisotropy_against_clusters(args.model, args.labels)
    print(f"3. traceless 29Si tensor, model {args.model} against B3LYP clusters ({len(cos)} Si sites): slope "
          f"{slope:.2f}, cosine per site median {np.median(cos):.2f} (range {cos.min():.2f} to {cos.max():.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
