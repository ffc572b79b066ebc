"""Which validation sites set a committee's 17O shielding calibration factor.

The factor is the maximum-likelihood scale sqrt(mean(z^2)), z = error / raw spread over
the validation sites (dynnmr.uncertainty.fit_scale). Prints, per model, the number of
validation O shielding sites, their sigma_iso MAE (ppm), the median raw spread, the
factor, the robust alternative median(|z|) / 0.674 (equal for Gaussian z), and the five
largest |z| with their errors (ppm), on the split of studies/active/distill.yaml (the
DFT labels of git 48ffa2e; recreate /tmp/snap5 as that file says).

    python studies/calibration_sites.py OLD.pt sio2
"""

import sys

import numpy as np
import torch

from dynnmr.config import load_config
from dynnmr.evaluate import committee_sites
from dynnmr.modelfile import load_model
from dynnmr.samples import load_samples, split_samples
from dynnmr.uncertainty import fit_scale, parameters


def main(models):
    torch.set_num_threads(1)
    cfg = load_config("studies/active/distill.yaml")
    samples = load_samples(cfg["data"], cfg["targets"], cfg["model"]["cutoff"])
    _, val, _ = split_samples(samples, cfg["split"])
    for name in models:
        net, _ = load_model(name)
        pred, ref, species, sd = committee_sites(net, val, ["ms"])
        o = species["ms"] == 8
        err = parameters("ms", pred["ms"][o])[:, 0] - parameters("ms", ref["ms"][o])[:, 0]
        raw = sd["ms"][o, 0]
        z = np.abs(err / raw)
        top = np.argsort(z)[-5:]
        print(f"{name}: {o.sum()} validation O shielding sites, sigma_iso MAE {np.abs(err).mean():.2f} ppm, "
              f"median raw spread {np.median(raw):.3f} ppm; factor {fit_scale(err, raw):.1f} "
              f"(without the largest |z|: {fit_scale(np.delete(err, top[-1]), np.delete(raw, top[-1])):.1f}; "
              f"median |z| / 0.674: {np.median(z) / 0.674:.1f}); largest |z| {np.round(z[top], 1).tolist()}, "
              f"errors {np.round(np.abs(err[top]), 2).tolist()} ppm, raw spreads {np.round(raw[top], 3).tolist()} ppm")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
