"""Two model files on the same frames of the cluster labels: 17O C_Q, eta_Q, sigma_iso per frame.

A retrained `sio2` has another test split of the label file whenever frames were added
(the split is per file, by frame), so its stored test metrics and the bundled model's
are on different sites, and each may have trained on the other's test frames. Compare on
frames that neither trained on (``--frames``), evaluated here with both.

    python studies/compare_models.py dynnmr/data/models/sio2.pt runs/sio2/sio2.pt --frames 18
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from dynnmr.evaluate import predict_samples, split_metrics
from dynnmr.modelfile import load_model
from dynnmr.samples import load_samples, recorded_data

LABELS = Path(__file__).parents[1] / "trajectories" / "labels" / "sio2_clusters.extxyz"


def labels_as_trained(info, labels):
    """The label file's frames as this model trained on them (its EFG scale, its species per target)."""
    name = Path(labels).name
    items = recorded_data(info, lambda recorded: labels if recorded == name else recorded)
    entry = next(d for d in items if d["path"] == str(labels))
    return load_samples([entry], ["ms", "efg"], info["hyperparameters"]["cutoff"])


def frame_metrics(model, info, sample):
    """|C_Q| and eta_Q MAE (EFG) and sigma_iso MAE (O shielding) of one labelled frame."""
    got = split_metrics(*predict_samples(model, [sample], info["targets"]))
    efg, ms = got.get("efg", {}).get("O"), got.get("ms", {}).get("O")
    return {"efg_sites": efg["n_sites"] if efg else 0, "abs_Cq_MHz": efg["abs_Cq_MHz"]["mae"] if efg else np.nan,
            "eta_Q": efg["eta_Q"]["mae"] if efg else np.nan, "ms_sites": ms["n_sites"] if ms else 0,
            "sigma_iso_ppm": ms["sigma_iso_ppm"]["mae"] if ms else np.nan}  # fmt: skip


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs=2)
    ap.add_argument("--frames", required=True, help="comma-separated frame indices of the label file")
    ap.add_argument("--labels", default=str(LABELS))
    args = ap.parse_args(argv)
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


if __name__ == "__main__":
    main()
