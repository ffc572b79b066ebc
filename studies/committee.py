"""Which committee: a shared trunk with several heads, or independent models? Calibration
for the cost.

Both variants are scored the same way (:mod:`dynnmr.uncertainty`): the spread of the
members' parameters, one scale per target fitted on the validation split, then on the
test split (and on any extra label files, e.g. labels of new trajectories that no model
trained on) the rank correlation between spread and |error| and the fractions of errors
within 1 and 2 spreads. Cost: the forward time of each variant on one frame of the
3,000-atom glass, relative to one single-head model.

    python studies/committee.py --heads runs/committee-heads/committee-heads.pt \\
        --members runs/committee-single-{0,1,2,3}/committee-single.pt \\
        --extra trajectories/labels/sio2_md.extxyz
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from _data import ROOT, locate
from md_holdout import cluster_efg_scale

from dynnmr import tensorfiles
from dynnmr import uncertainty as U
from dynnmr.evaluate import predict_samples
from dynnmr.graphs import build_graph
from dynnmr.modelfile import load_model
from dynnmr.samples import load_samples, recorded_data, recorded_test_samples, split_samples

GLASS = ROOT / "trajectories" / "amorphous_sio2.extxyz.gz"


def val_samples(info, data):
    """The validation structures of the model's recorded split (same seed and grouping)."""
    samples = load_samples(data, info["targets"], info["hyperparameters"]["cutoff"])
    return split_samples(samples, info["training_config"]["split"])[1]


def heads_predictions(model, samples, targets):
    pred, ref, species, _, spread = predict_samples(model, samples, targets, spreads=True)
    return pred, ref, species, spread


def ensemble_predictions(models, samples, targets):
    """Mean and unscaled parameter spread over independent models, site by site."""
    runs = [predict_samples(m, samples, targets) for m in models]
    pred = {t: np.mean([r[0][t] for r in runs], axis=0) for t in targets}
    spread = {t: U.spread(t, np.stack([r[0][t] for r in runs], axis=1))[1] for t in targets}
    return pred, runs[0][1], runs[0][2], spread


def scored(val, test, targets, extra=None):
    """Calibration on ``val``, scores on ``test`` (:func:`dynnmr.uncertainty.calibrate`)
    and on ``extra`` (:func:`dynnmr.uncertainty.score`)."""
    out = U.calibrate(val, test, val, targets)  # the flag thresholds (from val here) are not studied
    out["extra"] = U.score(extra, out["scale"], targets) if extra is not None else {}
    return out


def forward_seconds(model, atoms, members=False, repeats=3):
    graph = build_graph([atoms], model.cutoff)
    with torch.inference_mode():
        run = model.members if members else model
        run(graph)
        t0 = time.perf_counter()
        for _ in range(repeats):
            run(graph)
    return (time.perf_counter() - t0) / repeats


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--heads", required=True, help="a model file with several heads")
    ap.add_argument("--members", nargs="*", default=[], help="independent single-head model files (optional)")
    ap.add_argument("--extra", nargs="*", default=[], help="label files none of the models trained on")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-o", "--output", default=str(ROOT / "studies" / "committee" / "heads_vs_ensemble.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    heads, hinfo = load_model(args.heads)
    members = [load_model(m) for m in args.members]
    targets = hinfo["targets"]
    data = recorded_data(hinfo, locate)
    test, val = recorded_test_samples(hinfo, data), val_samples(hinfo, data)
    for _, info in members:  # the same split, so the same test and validation sites
        assert info["test_structures"] == hinfo["test_structures"], "members were tested on other structures"
    extra = []
    for path in args.extra:  # the EFG scale and shielding species of the cluster labels, as trained
        scale = {"efg": cluster_efg_scale(hinfo)}
        extra += load_samples([{"path": path, "scale": scale, "species": {"ms": [8]}}], targets,
                              hinfo["hyperparameters"]["cutoff"])  # fmt: skip
    nets = [m for m, _ in members]
    result = {"heads": scored(*(heads_predictions(heads, p, targets) for p in (val, test)), targets,
                              heads_predictions(heads, extra, targets) if extra else None)}  # fmt: skip
    if nets:
        result["ensemble"] = scored(*(ensemble_predictions(nets, p, targets) for p in (val, test)), targets,
                                    ensemble_predictions(nets, extra, targets) if extra else None)  # fmt: skip
        glass = tensorfiles.read(GLASS, index="0")[0]
        single = forward_seconds(nets[0], glass)
        result["cost_vs_one_model"] = {"heads": forward_seconds(heads, glass, members=True) / single,
                                       "ensemble": float(len(nets)), "threads": args.threads,
                                       "one_model_atoms_per_s": len(glass) / single}  # fmt: skip
    result["extra_files"] = [str(Path(p).name) for p in args.extra]
    result["extra_sites"] = {t: int(sum(len(s[t][0]) for s in extra)) for t in targets}
    Path(args.output).write_text(json.dumps(result, indent=1))
    for variant in (v for v in ("heads", "ensemble") if v in result):
        r = result[variant]
        print(f"{variant}: scale {r['scale']}")
        for part in ("test", "extra"):
            for t, per_el in r[part].items():
                for el, params in per_el.items():
                    p = params[U.KEY_PARAMETER[t]]
                    print(f"  {part:5s} {t:3s} {el:2s} {U.KEY_PARAMETER[t]:14s} n {p['n']:4d}  MAE {p['mae']:.4g}  "
                          f"rms spread {p['rms_spread']:.4g}  spearman {p['spearman']}  "
                          f"within 1/2 sd {p['within_1sd']}/{p['within_2sd']}")  # fmt: skip
    if "cost_vs_one_model" in result:
        print(f"cost relative to one model: {result['cost_vs_one_model']}")


if __name__ == "__main__":
    main()
