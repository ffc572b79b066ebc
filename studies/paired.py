"""Is one model better than another on the same test sites, or is the difference noise?

Test sets of a few dozen sites (the cluster labels' two hot-cristobalite test frames hold
24 O EFG and 12 O shieldings) move an MAE by more than the change between two recipes.
This scores models on the same sites, the first model's recorded test structures of one
label file (``--source``), and gives each model's MAE and its paired difference to the
first model with a 95% bootstrap interval over the sites (resampled together, so what
the models share cancels): an interval that holds 0 does not tell them apart.

    python studies/paired.py sio2 runs/active-round1-single/sio2-active-round1-single.pt \\
        --source sio2_clusters.extxyz -o studies/active/paired_crystal.json
"""

import argparse
import json
from pathlib import Path

import numpy as np
from glass_holdout import site_values

from dynnmr.evaluate import predict_samples
from dynnmr.modelfile import load_model
from dynnmr.samples import recorded_data, recorded_test_samples

ROOT = Path(__file__).parents[1]
#: Where the label files the models record are found now (by file name).
LOCATIONS = [ROOT / "trajectories" / "labels", ROOT.parent / "shared" / "data"]


def locate(name):
    for folder in LOCATIONS:
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"{name}: not in {', '.join(map(str, LOCATIONS))}")


def bootstrap_interval(diff, n=10000, seed=0):
    """95% interval of the mean of ``diff`` over sites resampled with replacement."""
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (n, len(diff)))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="model names or files; the first sets the test structures")
    p.add_argument("--source", default="sio2_clusters.extxyz", help="label file whose test structures are scored")
    p.add_argument("--species", type=int, default=8, help="atomic number of the sites scored")
    p.add_argument("-o", "--output")
    args = p.parse_args()
    first, info = load_model(args.models[0])
    data = [d for d in recorded_data(info, locate) if Path(d["path"]).name == args.source]
    info = {**info, "test_structures": [s for s in info["test_structures"] if s.startswith(args.source + ":")]}
    samples = recorded_test_samples(info, data, ["ms", "efg"])
    errors, result = {}, {"source": args.source, "structures": [s["id"] for s in samples], "models": {}}
    for name in args.models:
        model, _ = (first, None) if name == args.models[0] else load_model(name)
        pred, ref, species, _ = predict_samples(model, samples, ["ms", "efg"])
        for t in ("efg", "ms"):
            on = species[t] == args.species
            got, want = site_values(t, pred[t][on]), site_values(t, ref[t][on])
            for key in got:
                errors.setdefault(key, {})[name] = np.abs(got[key] - want[key])
    for key, per_model in errors.items():
        base = per_model[args.models[0]]
        for name, err in per_model.items():
            row = result["models"].setdefault(name, {})
            row[key] = {"n_sites": len(err), "mae": float(err.mean())}
            if name != args.models[0]:
                row[key]["minus_first"] = float((err - base).mean())
                row[key]["minus_first_95"] = bootstrap_interval(err - base)
    for name, row in result["models"].items():
        cells = [f"{k} ({v['n_sites']} sites) {v['mae']:.3f}" + (f" ({v['minus_first']:+.3f}, 95% "
                 f"[{v['minus_first_95'][0]:+.3f}, {v['minus_first_95'][1]:+.3f}])" if "minus_first" in v else "")
                 for k, v in row.items()]  # fmt: skip
        print(f"{name}: " + "; ".join(cells))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
