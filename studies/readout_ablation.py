"""Readouts and the l-ablation (#28): accuracy and cost of each architecture, one table.

Rows are finished training runs of the 29Si study recipe (the silicate-29si recipe at 80
epochs, the same split): the two readouts (the learning curves' full runs
``RUNS/readout-{linear,tensor_product}/train1-seed0``) and the ablation runs
(``RUNS/ablation-*``: highest l in the messages 1 or 2, 2 or 3 interaction layers,
tensor-product readout, since with l = 1 a linear map has no l = 2 part to give).
Accuracy: 29Si test metrics from each run's metrics.json. Cost: forward passes of the
same architecture over the 3,000-atom BKS glass (every atom, fused kernel, ``--threads``,
best of 3), atoms/s.

    python studies/readout_ablation.py [--runs /work/runs] [--threads 2]
"""

import argparse
import json
from pathlib import Path

import torch
from _data import ROOT

from dynnmr import tensorfiles
from dynnmr.compare import forward_rate
from dynnmr.graphs import structure_arrays
from dynnmr.modelfile import load_model

RUNS = {
    "linear readout, l <= 2, 2 layers": "readout-linear/train1-seed0",
    "tensor-product readout, l <= 2, 2 layers": "readout-tensor_product/train1-seed0",
    "tensor-product readout, l <= 1, 2 layers": "ablation-l1_layers2",
    "tensor-product readout, l <= 2, 3 layers": "ablation-l2_layers3",
    "tensor-product readout, l <= 1, 3 layers": "ablation-l1_layers3",
}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default=str(ROOT.parent / "runs"))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    atoms = tensorfiles.read(ROOT / "trajectories" / "amorphous_sio2.extxyz.gz", index="0")[0]
    rows = {}
    for name, sub in RUNS.items():
        folder = Path(args.runs) / sub
        models = sorted(p for p in folder.glob("*.pt") if p.name != "checkpoint.pt")
        if not (folder / "metrics.json").exists() or not models:
            print(f"{name}: no finished run in {folder}")
            continue
        m = json.loads((folder / "metrics.json").read_text())
        si = m["test_metrics"]["ms"]["Si"]
        net, _ = load_model(models[0])
        rows[name] = {"run": str(folder), "best_epoch": m["best_epoch"],
                      "parameters": sum(p.numel() for p in net.parameters()),
                      "sigma_iso_mae_ppm": si["sigma_iso_ppm"]["mae"], "zeta_mae_ppm": si["zeta_ppm"]["mae"],
                      "eta_mae": si["eta"]["mae"],
                      **{f"{l}_pct_rmse": si["irreps"][l]["pct_rmse"] for l in ("l0", "l1", "l2")},
                      "orientation_median_deg": si["orientation_deg"]["median"],
                      "forward_atoms_per_s": forward_rate(net, [structure_arrays(atoms, net.cutoff)])}  # fmt: skip
    print(f"29Si test set; forward pass on {len(atoms)} atoms, {args.threads} threads")
    print(
        "| architecture | parameters | sigma_iso MAE (ppm) | zeta MAE (ppm) | eta MAE | %RMSE l=0 / 1 / 2 | "
        "orientation median (deg) | forward atoms/s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        print(f"| {name} | {r['parameters']:,} | {r['sigma_iso_mae_ppm']:.2f} | {r['zeta_mae_ppm']:.2f} | "
              f"{r['eta_mae']:.3f} | {r['l0_pct_rmse']:.1f} / {r['l1_pct_rmse']:.1f} / {r['l2_pct_rmse']:.1f} | "
              f"{r['orientation_median_deg']:.1f} | {r['forward_atoms_per_s']:,.0f} |")  # fmt: skip
    out = Path(args.runs) / "readout_ablation.json"
    out.write_text(json.dumps(rows, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
