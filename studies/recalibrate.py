"""Re-fit a committee model's calibration on the split it was trained and tested on, and
write it into the model file and its metrics JSON (weights untouched).

For a model file whose calibration was fitted by an older rule (one factor for every
element of a target; now one per element, :func:`dynnmr.uncertainty.calibrate`). The
split is rebuilt from the recorded config and must give the recorded test structures.

    python studies/recalibrate.py dynnmr/data/models/sio2.pt \\
        --metrics dynnmr/data/models/sio2.metrics.json
"""

import argparse
import json
from pathlib import Path

import torch
from _data import locate

from dynnmr.modelfile import load_model, update_metadata
from dynnmr.samples import load_samples, recorded_data, split_samples
from dynnmr.train import committee_calibration


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--metrics", help="the model's metrics JSON, updated too")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    net, info = load_model(args.model)
    cfg, targets = info["training_config"], info["targets"]
    samples = load_samples(recorded_data(info, locate), targets, info["hyperparameters"]["cutoff"])
    train_s, val_s, test = split_samples(samples, cfg["split"])
    if [s["id"] for s in test] != info["test_structures"]:
        raise SystemExit("the rebuilt split does not give the recorded test structures (the data changed?)")
    calib = committee_calibration(net, train_s, val_s, test, targets)
    update_metadata(args.model, uncertainty=calib)
    if args.metrics:
        metrics = json.loads(Path(args.metrics).read_text())
        metrics["uncertainty"] = calib
        Path(args.metrics).write_text(json.dumps(metrics, indent=1))
    print(json.dumps({"scale": calib["scale"], "flag_threshold": calib["flag_threshold"]}, indent=1))


if __name__ == "__main__":
    main()
