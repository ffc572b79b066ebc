"""Re-fit a committee model's calibration on the split it was trained and tested on, and
write it into the model file and its metrics JSON (weights untouched).

For a model file whose calibration was fitted by an older rule (one factor for every
element of a target; now one per element, :func:`dynnmr.uncertainty.calibrate`), or on
calibration labels that came after it: ``--calibration FILE`` adds a label file as a
``calibration_only`` data item (independent structures that set the factors where they
hold enough sites; its labels taken as the model's cluster label files were: the same
EFG scale and elements). The split is rebuilt from the recorded config and must give
the recorded test structures; ``--labels DIR`` looks for the recorded label files there
first (a snapshot of them as they were when the model trained, e.g. ``git show
COMMIT:trajectories/labels/FILE``).

    python studies/recalibrate.py dynnmr/data/models/sio2.pt \\
        --metrics dynnmr/data/models/sio2.metrics.json \\
        --labels /tmp/snap5 --calibration trajectories/labels/calibration_glass.extxyz
"""

import argparse
import json
from pathlib import Path

import torch
from _data import locate
from md_holdout import cluster_item  # studies/, beside this script

from dynnmr.modelfile import load_model, update_metadata
from dynnmr.samples import calibration_samples, load_samples, recorded_data, split_samples
from dynnmr.train import committee_calibration


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--metrics", help="the model's metrics JSON, updated too")
    ap.add_argument("--labels", help="folder searched first for the recorded label files")
    ap.add_argument("--calibration", nargs="*", default=[], help="label files of independent calibration structures")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    net, info = load_model(args.model)
    cfg, targets = info["training_config"], info["targets"]
    find = (
        (lambda name: Path(args.labels, name) if Path(args.labels, name).exists() else locate(name))
        if args.labels
        else locate
    )
    data = recorded_data(info, find)
    cluster = cluster_item(info)  # label as the cluster files were
    data += [{"path": p, "scale": cluster.get("scale", {}), "species": cluster.get("species", {}),
              "calibration_only": True} for p in args.calibration]  # fmt: skip
    samples = load_samples(data, targets, info["hyperparameters"]["cutoff"])
    train_s, val_s, test = split_samples(samples, cfg["split"])
    if [s["id"] for s in test] != info["test_structures"]:
        raise SystemExit("the rebuilt split does not give the recorded test structures (the data changed?)")
    calib = committee_calibration(net, train_s, val_s, test, targets, calibration_samples(samples))
    if args.calibration:
        calib["calibration_files"] = [Path(p).name for p in args.calibration]
    update_metadata(args.model, uncertainty=calib)
    if args.metrics:
        metrics = json.loads(Path(args.metrics).read_text())
        metrics["uncertainty"] = calib
        Path(args.metrics).write_text(json.dumps(metrics, indent=1))
    print(json.dumps({k: calib[k] for k in ("scale", "scale_sites", "flag_threshold")}, indent=1))


if __name__ == "__main__":
    main()
