"""Models on the same frames of the cluster labels: 17O C_Q, eta_Q, sigma_iso per frame,
and whether their difference is more than the noise of so few sites.

A retrained `sio2` has another test split of the label file whenever frames were added
(the split is per file, by frame), so its stored test metrics and the bundled model's
are on different sites, and each may have trained on the other's test frames. Compare on
frames that none of them trained on (``--frames``), evaluated here with each model's own
reading of the labels (its EFG scale).

Two frames hold a few dozen sites (the hot-cristobalite test frames 4 and 18: 24 O EFG,
12 O shieldings), which move an MAE by as much as a change of recipe. So, pooled over the
frames, each model's MAE is given with its paired difference to the first model and a
95% bootstrap interval over the sites (resampled together for all models, so what they
share cancels): an interval that holds 0 does not tell the two apart.

    python studies/compare_models.py sio2 runs/active-round1-single/sio2-active-round1-single.pt --frames 4,18 -o studies/active/crystal_frames.json
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from dynnmr import tensors as T
from dynnmr.evaluate import predict_samples, split_metrics
from dynnmr.isotopes import get_isotope
from dynnmr.modelfile import load_model
from dynnmr.params import QuadrupolarParameters
from dynnmr.samples import load_samples, recorded_data

LABELS = Path(__file__).parents[1] / "trajectories" / "labels" / "sio2_clusters.extxyz"


def labels_as_trained(info, labels):
    """The label file's frames as this model trained on them (its EFG scale, its species per target)."""
    name = Path(labels).name
    items = recorded_data(info, lambda recorded: labels if recorded == name else recorded)
    entry = next(d for d in items if d["path"] == str(labels))
    return load_samples([entry], ["ms", "efg"], info["hyperparameters"]["cutoff"])


def efg_labelled_o(atoms):
    """O sites of a label frame with an EFG label: their indices and raw EFG tensors (au).
    A site labelled for its shielding only carries NaN in ``efg`` and is left out."""
    efg = atoms.arrays["efg"].reshape(len(atoms), 3, 3)
    labelled = (atoms.numbers == 8) & (atoms.arrays["label_status"] == 1) & np.isfinite(efg).all(axis=(1, 2))
    sites = np.flatnonzero(labelled)
    return sites, efg[sites]


def site_values(target, tensors):
    """Per-site scalars of O tensors: |C_Q| (MHz) and eta_Q of an EFG (au), sigma_iso (ppm)."""
    if target == "efg":
        p = QuadrupolarParameters.of(tensors, get_isotope("17O").quadrupole_moment_mb)
        return {"abs_Cq_MHz": p.abs_Cq_MHz, "eta_Q": p.eta_Q}
    return {"sigma_iso_ppm": T.isotropic(tensors)}


def frame_metrics(model, info, sample):
    """|C_Q| and eta_Q MAE (EFG) and sigma_iso MAE (O shielding) of one labelled frame."""
    got = split_metrics(*predict_samples(model, [sample], info["targets"]))
    efg, ms = got.get("efg", {}).get("O"), got.get("ms", {}).get("O")
    return {"efg_sites": efg["n_sites"] if efg else 0, "abs_Cq_MHz": efg["abs_Cq_MHz"]["mae"] if efg else np.nan,
            "eta_Q": efg["eta_Q"]["mae"] if efg else np.nan, "ms_sites": ms["n_sites"] if ms else 0,
            "sigma_iso_ppm": ms["sigma_iso_ppm"]["mae"] if ms else np.nan}  # fmt: skip


def site_errors(model, samples) -> dict:
    """``{quantity: |model - label| per O site}`` over ``samples``, in a fixed site order."""
    pred, ref, species, _ = predict_samples(model, samples, ["ms", "efg"])
    out = {}
    for t in ("efg", "ms"):
        o = species[t] == 8
        got, want = site_values(t, pred[t][o]), site_values(t, ref[t][o])
        out.update({key: np.abs(got[key] - want[key]) for key in got})
    return out


def bootstrap_interval(diff, n=10000, seed=0):
    """95% interval of the mean of ``diff`` over its sites resampled with replacement."""
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (n, len(diff)))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def paired(errors: list[dict]) -> list[dict]:
    """Per model: MAE per quantity, and (after the first) the mean paired difference to the
    first model with its standard error and 95% bootstrap interval over the sites."""
    rows = []
    for err in errors:
        row = {}
        for key, e in err.items():
            row[key] = {"n_sites": len(e), "mae": float(e.mean())}
            if rows:
                diff = e - errors[0][key]
                sem = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) >= 2 else None
                row[key].update(minus_first=float(diff.mean()), minus_first_sem=sem,
                                minus_first_95=bootstrap_interval(diff))  # fmt: skip
        rows.append(row)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="two or more model names or files; differences are to the first")
    ap.add_argument("--frames", required=True, help="comma-separated frame indices of the label file")
    ap.add_argument("--labels", default=str(LABELS))
    ap.add_argument("-o", "--output", help="JSON of the pooled comparison")
    args = ap.parse_args(argv)
    if len(args.models) < 2:
        ap.error("give at least two models")
    torch.set_num_threads(1)
    models = [load_model(m) for m in args.models]
    for path, (_, info) in zip(args.models, models):
        test = [s.split(":")[1] for s in info["test_structures"] if s.startswith(Path(args.labels).name)]
        print(f"{path}: test frames of the label file {', '.join(test)}")
    frames = [int(k) for k in args.frames.split(",")]
    samples = [labels_as_trained(info, args.labels) for _, info in models]
    print("frame  model  EFG sites  |C_Q| MAE (MHz)  eta_Q MAE  O ms sites  sigma_iso MAE (ppm)")
    for k in frames:
        for path, (model, info), own in zip(args.models, models, samples):
            m = frame_metrics(model, info, own[k])
            print(f"{k:5d}  {Path(path).parent.name}/{Path(path).name}  {m['efg_sites']:3d}  {m['abs_Cq_MHz']:.4f}  "
                  f"{m['eta_Q']:.4f}  {m['ms_sites']:3d}  {m['sigma_iso_ppm']:.2f}")  # fmt: skip
    rows = paired([site_errors(model, [own[k] for k in frames]) for (model, _), own in zip(models, samples)])
    print(f"pooled over frames {args.frames}: MAE (difference to the first model, 95% interval)")
    for path, row in zip(args.models, rows):
        cells = [f"{k} ({v['n_sites']} sites) {v['mae']:.3f}" + (f" ({v['minus_first']:+.3f}, "
                 f"[{v['minus_first_95'][0]:+.3f}, {v['minus_first_95'][1]:+.3f}])" if "minus_first" in v else "")
                 for k, v in row.items()]  # fmt: skip
        print(f"{path}: " + "; ".join(cells))
    if args.output:
        result = {"labels": Path(args.labels).name, "frames": frames, "models": dict(zip(args.models, rows))}
        Path(args.output).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
