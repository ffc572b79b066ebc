"""17O of the glass sites a site-holdout run never trained on: bias, scatter and a baseline.

`configs/sio2-glass-holdout.yaml` trains the sio2 recipe without a slab of the glass
frame's O sites and reports their MAE (metrics.json). An MAE alone does not say whether
the model is off by a constant, misses the site-to-site variation, or does better than
knowing the mean; this script rebuilds the same held-out and training sites
(`samples.hold_out_sites` with the run's recorded options) and reports, for |C_Q| (MHz),
eta_Q and 17O sigma_iso (ppm):

- held-out MAE, mean signed error (model - label) and Pearson r against the labels;
- the MAE of a baseline that predicts the mean label of the glass training sites;
- the same model's MAE on those training sites (fit error, for contrast);
- the |C_Q| error against the site's mean Si-O distance (A; `dynnmr.structure.bridging_geometry`).

    python studies/glass_holdout.py runs/sio2-glass-holdout/sio2-glass-holdout.pt
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from compare_models import LABELS, labels_as_trained, site_values
from scipy.stats import linregress

from dynnmr import tensorfiles
from dynnmr.evaluate import predict_samples
from dynnmr.modelfile import load_model
from dynnmr.samples import hold_out_sites
from dynnmr.structure import bonds as bond_map
from dynnmr.structure import bridging_geometry


def holdout_report(model, info, labels=LABELS):
    """Held-out against training glass sites of one site-holdout model file (see module doc)."""
    opts = dict(info["training_config"]["split"]["site_holdout"])
    sid = opts.pop("structure")
    samples = labels_as_trained(info, labels)
    glass = next(s for s in samples if s["id"] == sid)
    kept, held = hold_out_sites(glass, ["ms", "efg"], **opts)
    atoms = tensorfiles.read(labels)[int(sid.rsplit(":", 1)[1])]
    bonds = bond_map(atoms)
    report = {"structure": sid, "holdout": opts}
    pred, ref, species, structure = predict_samples(model, [held, kept], ["efg", "ms"])
    for t in ("efg", "ms"):
        o = species[t] == 8
        is_held = structure[t][o] == 0
        p, r = site_values(t, pred[t][o]), site_values(t, ref[t][o])
        for key in p:
            err = p[key] - r[key]
            baseline = np.mean(r[key][~is_held])
            report[key] = {
                "held_out_sites": int(is_held.sum()),
                "training_sites": int((~is_held).sum()),
                "mae": float(np.abs(err[is_held]).mean()),
                "mean_signed_error": float(err[is_held].mean()),
                "r": float(np.corrcoef(p[key][is_held], r[key][is_held])[0, 1]) if is_held.sum() > 2 else float("nan"),
                "label_std": float(r[key][is_held].std()),
                "baseline_mae": float(np.abs(r[key][is_held] - baseline).mean()),
                "training_fit_mae": float(np.abs(err[~is_held]).mean()),
            }
            if key == "abs_Cq_MHz":
                sites = held["efg"][0]  # held-out O sites (efg labels are O only), in predict order
                si_o = np.array([np.mean(bridging_geometry(atoms, int(i), bonds)[1:]) for i in sites])
                fit = linregress(si_o, err[is_held])
                report[key]["error_vs_mean_si_o"] = {"slope_MHz_per_A": float(fit.slope), "r": float(fit.rvalue),
                                                     "mean_si_o_A_range": [float(si_o.min()), float(si_o.max())]}  # fmt: skip
    return report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a model file trained with split.site_holdout")
    ap.add_argument("--labels", default=str(LABELS))
    ap.add_argument("--json", help="write the report here too")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    model, info = load_model(args.model)
    if "site_holdout" not in info["training_config"]["split"]:
        raise SystemExit(f"{args.model}: not trained with split.site_holdout")
    report = holdout_report(model, info, Path(args.labels))
    print(f"{args.model}: {report['structure']} held out {report['holdout']}")
    print("quantity  held-out sites  MAE  mean signed error  r  label std  baseline MAE  training-site MAE")
    for key in ("abs_Cq_MHz", "eta_Q", "sigma_iso_ppm"):
        m = report[key]
        print(f"{key}  {m['held_out_sites']}  {m['mae']:.3f}  {m['mean_signed_error']:+.3f}  {m['r']:.2f}  "
              f"{m['label_std']:.3f}  {m['baseline_mae']:.3f}  {m['training_fit_mae']:.3f} ({m['training_sites']})")  # fmt: skip
    f = report["abs_Cq_MHz"]["error_vs_mean_si_o"]
    print(f"|C_Q| error against mean Si-O distance ({f['mean_si_o_A_range'][0]:.3f}-{f['mean_si_o_A_range'][1]:.3f} A): "
          f"{f['slope_MHz_per_A']:+.2f} MHz/A, r = {f['r']:.2f}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
