"""One table per model of what NMR people read, on the test sites the model records.

Re-evaluates each model file on its recorded test structures (the same sites as at
training) with every metric of :func:`dynnmr.evaluate.split_metrics`, the spectrum L1
distance included, and prints a markdown table: per species and target, the number of
sites, MAE of sigma_iso (= of delta_iso: a reference moves both alike), span and skew or
|C_Q| and eta_Q (each ± its standard error over sites), median orientation error, %RMSE
per irrep (RMSE / standard deviation of the reference components x 100, the seed
paper's measure) and the spectrum L1 distance.
``--write`` stores the metrics in the model's metrics JSON (``test_metrics``, and
``test_metrics_by_source`` where the test sites come from several files, and a
committee's calibration scores, ``uncertainty.test``, with its calibration factors as
they are) and file: after labels were withdrawn (a site found irregular) the recorded
test set is what remains.

    python studies/model_table.py sio2 silicate-29si [--write]
"""

import argparse
import json

import torch
from _data import locate

from dynnmr.evaluate import committee_sites, metrics_by_source, predict_samples, split_metrics
from dynnmr.modelfile import BUNDLED_DIR, load_model, update_metadata
from dynnmr.samples import recorded_data, recorded_test_samples, sites_record
from dynnmr.uncertainty import score


def mae(err, digits):
    """``MAE +- its standard error`` (:func:`dynnmr.evaluate.errors`)."""
    sem = err.get("mae_sem")
    return f"{err['mae']:.{digits}f}" + ("" if sem is None else f" ± {sem:.{digits}f}")


def rows(name, metrics):
    """Markdown rows of one model's test metrics."""
    out = []
    for t, per in metrics.items():
        for el, m in per.items():
            irreps = " / ".join(
                f"{m['irreps'][k]['pct_rmse']:.0f}" if k in m["irreps"] else "-" for k in ("l0", "l1", "l2")
            )
            l1 = m.get("spectrum_l1")
            spec = f"{l1['value']:.3f} ({l1['isotope']} {l1['kind'].removeprefix('static ')})" if l1 else "-"
            orient = m["orientation_deg"]["median"]
            if t == "ms":
                cells = [f"sigma_iso {mae(m['sigma_iso_ppm'], 2)} ppm", f"span {mae(m['span_ppm'], 2)} ppm",
                         f"skew {mae(m['skew'], 3)}"]  # fmt: skip
            else:
                cells = [f"\\|C_Q\\| {mae(m['abs_Cq_MHz'], 3)} MHz", f"eta_Q {mae(m['eta_Q'], 3)}", ""]
            out.append(f"| {name} | {el} {t} | {m['n_sites']} | " + " | ".join(cells)
                       + f" | {orient:.1f} | {irreps} | {spec} |")  # fmt: skip
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--write", action="store_true", help="store the metrics in the bundled metrics JSON and file")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print("| model | site, target | test sites | MAE | MAE | MAE | orientation median (deg) | %RMSE l0 / l1 / l2 "
          "| spectrum L1 |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.models:
        net, info = load_model(name)
        test = recorded_test_samples(info, recorded_data(info, locate), withdrawn_ok=args.write)
        metrics = split_metrics(*predict_samples(net, test, info["targets"]))
        print("\n".join(rows(info["name"], metrics)))
        if args.write:
            changes = {"metrics": metrics, "test_sites": sites_record(test, info["targets"])}
            if "uncertainty" in info:  # the committee's calibration scores on the same test sites
                unc = dict(info["uncertainty"])
                unc["test"] = score(committee_sites(net, test, info["targets"]), unc["scale"], info["targets"])
                changes["uncertainty"] = unc
            update_metadata(info["path"], **changes)
            path = BUNDLED_DIR / f"{info['name']}.metrics.json"
            if path.exists():
                stored = json.loads(path.read_text())
                stored["test_metrics"] = metrics
                if "uncertainty" in changes and "uncertainty" in stored:
                    stored["uncertainty"]["test"] = changes["uncertainty"]["test"]
                if "test_metrics_by_source" in stored:
                    stored["test_metrics_by_source"].update(metrics_by_source(net, test, info["targets"]))
                path.write_text(json.dumps(stored, indent=1))


if __name__ == "__main__":
    main()
