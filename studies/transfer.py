"""Transfer (#28): train on one family of 29Si structures, test on a family never seen.

Families of the GIPAW silicate set by connectivity: "framework" structures, whose every
Si is Q4 (all four O bridge to another Si: silica polymorphs, framework silicates), and
"depolymerised" ones, with at least one Si carrying non-bridging O (Q0-Q3). Each
direction trains the study recipe (``studies/readout/29si.yaml``: the silicate-29si
recipe at 80 epochs, with the readout chosen) on one family (validation drawn from it) and tests on the whole other
family (``split.test_structures``, ``split.test: 0``). The in-distribution reference is
the same recipe trained on a random split (the learning curve's full run,
``RUNS/readouts-29si/readout={readout}/train1-seed0``), evaluated on those of its test structures that
belong to the family: what the model does on the family when it has seen its kind.

    python studies/transfer.py [--readout linear] [--runs /work/runs]

Runs resume; the table (markdown) is printed and written to ``RUNS/transfer-{readout}.json``.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import yaml
from _data import ROOT

from dynnmr import tensorfiles
from dynnmr.config import load_config
from dynnmr.evaluate import predict_samples, split_metrics
from dynnmr.learning_curve import model_file
from dynnmr.modelfile import load_model
from dynnmr.samples import load_samples
from dynnmr.structure import si_o_bonds
from dynnmr.train import train


def q_n(atoms) -> np.ndarray:
    """Q^n of every Si: how many of its O neighbours (Si-O within the structure module's
    cutoff) are bonded to a second Si."""
    i, j, _ = si_o_bonds(atoms)
    z = atoms.numbers
    si_of_o = np.bincount(i[z[i] == 8], minlength=len(atoms))  # Si neighbours of each O
    from_si = z[i] == 14
    bridging = si_of_o[j[from_si]] >= 2
    return np.bincount(i[from_si][bridging], minlength=len(atoms))[z == 14]


def families(path) -> dict:
    """``{family: [structure ids]}`` of a data file (ids as the training code writes them)."""
    out = {"framework": [], "depolymerised": []}
    for k, atoms in enumerate(tensorfiles.read(path)):
        n = q_n(atoms)
        sid = f"{Path(path).name}:{atoms.info.get('structure_id', k)}"  # as dynnmr.samples names it
        out["framework" if len(n) and (n == 4).all() else "depolymerised"].append(sid)
    return out


def metrics_row(m):
    si = m["ms"]["Si"]
    return {"n_sites": si["n_sites"], "sigma_iso_mae_ppm": si["sigma_iso_ppm"]["mae"],
            "zeta_mae_ppm": si["zeta_ppm"]["mae"], "eta_mae": si["eta"]["mae"],
            **{f"{l}_pct_rmse": si["irreps"][l]["pct_rmse"] for l in ("l0", "l1", "l2")}}  # fmt: skip


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--readout", default="linear", choices=["linear", "tensor_product"])
    p.add_argument("--runs", default=str(ROOT.parent / "runs"))
    args = p.parse_args()
    runs = Path(args.runs)
    recipe = ROOT / "studies" / "readout" / "29si.yaml"
    cfg = load_config(recipe)
    data = cfg["data"][0]["path"]
    fam = families(data)
    samples = {s["id"]: s for s in load_samples(cfg["data"], cfg["targets"], cfg["model"]["cutoff"])}
    reference, info = load_model(model_file(runs / "readouts-29si" / f"readout={args.readout}" / "train1-seed0"))
    seen_test = set(info["test_structures"])
    rows = {}
    for train_on, test_on in (("framework", "depolymerised"), ("depolymerised", "framework")):
        folder = runs / f"transfer-{args.readout}-{train_on}"
        folder.mkdir(parents=True, exist_ok=True)
        variant = {"base": str(recipe), "name": f"transfer-{train_on}", "model": {"readout": args.readout},
                   "split": {"val": 0.1, "test": 0.0, "seed": 0, "test_structures": fam[test_on]}}  # fmt: skip
        (folder / "config.yaml").write_text(yaml.safe_dump(variant))
        if not (folder / "metrics.json").exists():
            train(folder / "config.yaml", folder)
        transfer = json.loads((folder / "metrics.json").read_text())
        inside = [samples[i] for i in fam[test_on] if i in seen_test]
        rows[f"{train_on} -> {test_on}"] = {
            "n_train_structures": transfer["n_structures"]["train"],
            "transfer": metrics_row(transfer["test_metrics"]),
            "in_distribution": metrics_row(split_metrics(*predict_samples(reference, inside, cfg["targets"]))),
            "n_in_distribution_structures": len(inside),
        }
    out = runs / f"transfer-{args.readout}.json"
    out.write_text(json.dumps({"readout": args.readout, "families": {k: len(v) for k, v in fam.items()},
                               "rows": rows}, indent=1))  # fmt: skip
    print(f"families: {', '.join(f'{k} {len(v)} structures' for k, v in fam.items())}; readout {args.readout}")
    print(
        "| train -> test | train structures | test: sigma_iso MAE (ppm) transfer / in-distribution | "
        "zeta MAE (ppm) | l=2 %RMSE |"
    )
    print("| --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        t, i = r["transfer"], r["in_distribution"]
        print(f"| {name} | {r['n_train_structures']} | {t['sigma_iso_mae_ppm']:.2f} / {i['sigma_iso_mae_ppm']:.2f} "
              f"(n {t['n_sites']} / {i['n_sites']} sites) | {t['zeta_mae_ppm']:.2f} / {i['zeta_mae_ppm']:.2f} | "
              f"{t['l2_pct_rmse']:.1f} / {i['l2_pct_rmse']:.1f} |")  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
