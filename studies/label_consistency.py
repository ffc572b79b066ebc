"""How consistent are the GIPAW 29Si labels, and how far does that limit any model?

Usage: python studies/label_consistency.py [--model silicate-29si] [--data PATH]

1. Twins: pairs of structures in the data set that are the same crystal (same formula,
   sorted cell lengths and volume per atom within 0.5%) and whose sorted site sigma_iso
   differ by one constant (std of the site differences < 0.5 ppm). For each pair: that
   constant (the isotropic offset between the two calculations) and the largest
   difference of the traceless symmetric eigenvalues of matched sites.
2. The model's test-split errors (ppm) with and without each test structure's mean
   isotropic error, on the structures with two or more labelled sites.

Prints the numbers quoted in studies/README.md ("Label consistency").
"""

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from dynnmr import evaluate, tensorfiles
from dynnmr.evaluate import predict_samples
from dynnmr.modelfile import load_model
from dynnmr.samples import recorded_data, recorded_test_samples

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "silicate_29si_gipaw.json"


def structure_record(k, atoms):
    """Formula, cell and the labelled sites' sigma_iso and traceless symmetric eigenvalues, by sigma_iso."""
    ms = atoms.arrays["ms"][np.isfinite(atoms.arrays["ms"]).all(axis=(1, 2))]
    iso = np.trace(ms, axis1=1, axis2=2) / 3
    sym = 0.5 * (ms + np.transpose(ms, (0, 2, 1))) - iso[:, None, None] * np.eye(3)
    order = np.argsort(iso)
    return {"id": str(atoms.info.get("structure_id", k)), "formula": atoms.get_chemical_formula(),
            "vpa": atoms.get_volume() / len(atoms), "lengths": np.sort(atoms.cell.cellpar()[:3]),
            "iso": iso[order], "eig": np.linalg.eigvalsh(sym)[order]}  # fmt: skip


def twins(records, rtol=0.005, max_std=0.5):
    """Pairs of records that are the same crystal with labels differing by one constant."""
    by_formula = defaultdict(list)
    for r in records:
        by_formula[r["formula"]].append(r)
    out = []
    for group in by_formula.values():
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                same = (len(a["iso"]) == len(b["iso"]) and abs(a["vpa"] / b["vpa"] - 1) < rtol
                        and np.allclose(a["lengths"], b["lengths"], rtol=rtol))  # fmt: skip
                if same and np.std(a["iso"] - b["iso"]) < max_std:
                    out.append({"a": a["id"], "b": b["id"], "formula": a["formula"], "sites": len(a["iso"]),
                                "offset": float(np.mean(a["iso"] - b["iso"])),
                                "eig_diff": float(np.abs(a["eig"] - b["eig"]).max())})  # fmt: skip
    return out


def offset_free_errors(model, info, data):
    """Test-split MAEs (ppm) on the structures with >= 2 labelled sites: as they are
    (``evaluate.shielding_metrics`` on those sites) and after removing each structure's
    mean isotropic error (its ``offset_free`` part)."""
    labels = Path(__file__).resolve().parents[1] / "trajectories" / "labels"
    items = recorded_data(
        info, lambda name: data if name == Path(data).name else labels / name
    )  # as trained on (sign, offset)
    pred, ref, _, structure = predict_samples(model, recorded_test_samples(info, items), ["ms"])
    keep = np.bincount(structure["ms"])[structure["ms"]] >= 2
    m = evaluate.shielding_metrics(pred["ms"][keep], ref["ms"][keep], groups=structure["ms"][keep])
    return {"sigma_iso": m["sigma_iso_ppm"]["mae"], "sym": m["symmetric_component_mae_ppm"],
            "sigma_iso_offset_free": m["offset_free"]["sigma_iso_mae_ppm"],
            "sym_offset_free": m["offset_free"]["symmetric_component_mae_ppm"]}, m["offset_free"]["n_sites"]  # fmt: skip


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="silicate-29si")
    p.add_argument("--data", default=str(DATA))
    args = p.parse_args()
    torch.set_num_threads(1)
    images = tensorfiles.read(args.data)
    pairs = twins([structure_record(k, a) for k, a in enumerate(images)])
    off = np.abs([t["offset"] for t in pairs])
    eig = np.array([t["eig_diff"] for t in pairs])
    members = {t[k] for t in pairs for k in ("a", "b")}
    print(f"{len(pairs)} twin pairs among {len(members)} of {len(images)} structures")
    print(f"|sigma_iso offset| between twins: median {np.median(off):.2f}, mean {off.mean():.2f} ppm; "
          f"> 1 ppm {(off > 1).sum()}, > 2 ppm {(off > 2).sum()}, > 5 ppm {(off > 5).sum()}; max {off.max():.1f} ppm")  # fmt: skip
    multi = np.abs([t["offset"] for t in pairs if t["sites"] >= 2])
    print(f"pairs with >= 2 sites (the constant difference then a real test): {len(multi)}, |offset| median "
          f"{np.median(multi):.2f}, mean {multi.mean():.2f} ppm, > 2 ppm {(multi > 2).sum()}")  # fmt: skip
    print(f"largest traceless-eigenvalue difference of matched sites: median {np.median(eig):.2f}, "
          f"90th percentile {np.percentile(eig, 90):.2f} ppm")  # fmt: skip
    for t in sorted(pairs, key=lambda t: -abs(t["offset"]))[:8]:
        print(f"  {t['formula']:<16} structures {t['a']:>4} and {t['b']:>4}: offset {t['offset']:+6.1f} ppm, "
              f"eigenvalues within {t['eig_diff']:.2f} ppm")  # fmt: skip
    model, info = load_model(args.model)
    test_ids = {s.split(":")[-1] for s in info["test_structures"]}
    print(f"test structures with a twin in the data: {len(members & test_ids)} of {len(test_ids)}")
    mae, n = offset_free_errors(model, info, args.data)
    print(f"{args.model} on {n} test sites of structures with >= 2 sites: sigma_iso MAE {mae['sigma_iso']:.2f} -> "
          f"{mae['sigma_iso_offset_free']:.2f} ppm, symmetric-tensor MAE {mae['sym']:.2f} -> {mae['sym_offset_free']:.2f} ppm "
          f"with each structure's mean isotropic error removed")  # fmt: skip


if __name__ == "__main__":
    main()
