"""One recipe over several splits: test metrics per data source, run by run, and their spread.

A single split of the cluster labels tests two frames (studies/README.md), too few to
tell a better recipe from a lucky split. Train the same config under other split seeds
(`dynnmr train configs/sio2.yaml -o runs/sio2-split1 --split-seed 1`, ...) and a site
holdout of the glass (`configs/sio2-glass-holdout.yaml`), then tabulate their
metrics.json files:

    python studies/split_table.py runs/sio2/metrics.json runs/sio2-split*/metrics.json \
        runs/sio2-glass-holdout/metrics.json

Columns: 29Si sigma_iso and symmetric-tensor MAE (ppm) on the GIPAW test structures; 17O
|C_Q| MAE (MHz), eta_Q MAE and sigma_iso MAE (ppm) on the cluster-label test sites (and on
the held-out glass sites where a run has them), with the site counts.
"""

import argparse
import json
import warnings
from pathlib import Path

import numpy as np

COLUMNS = [  # (header, target, element, metric path)
    ("Si sigma_iso", "ms", "Si", ("sigma_iso_ppm", "mae")),
    ("Si sym", "ms", "Si", ("symmetric_component_mae_ppm",)),
    ("O \\|C_Q\\|", "efg", "O", ("abs_Cq_MHz", "mae")),
    ("O eta_Q", "efg", "O", ("eta_Q", "mae")),
    ("O sigma_iso", "ms", "O", ("sigma_iso_ppm", "mae")),
]


def cell(metrics, target, element, keys):
    """(value, n_sites) of one metric, (nan, 0) when the test set has no such sites."""
    got = metrics.get(target, {}).get(element)
    if not got:
        return np.nan, 0
    value = got
    for k in keys:
        value = value[k]
    return float(value), int(got["n_sites"])


def rows(path):
    """One row per (run, test set): the run's data sources and its held-out sites."""
    summary = json.loads(Path(path).read_text())
    split = summary["config"]["split"]
    name = f"{summary['name']} (split seed {split['seed']})"
    for source, metrics in summary["test_metrics_by_source"].items():
        yield name, source, [cell(metrics, t, el, keys) for _, t, el, keys in COLUMNS]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("metrics", nargs="+", help="metrics.json files of runs of one recipe")
    args = ap.parse_args(argv)
    table = [r for path in args.metrics for r in rows(path)]
    print("| run | test set | " + " | ".join(h for h, *_ in COLUMNS) + " |")
    print("| --- | --- |" + " --- |" * len(COLUMNS))
    for name, source, cells in table:
        text = [f"{v:.3f} ({n})" if n else "" for v, n in cells]
        print(f"| {name} | {source} | " + " | ".join(text) + " |")
    for source in dict.fromkeys(s for _, s, _ in table if "held-out" not in s):
        values = np.array([[v for v, _ in cells] for _, s, cells in table if s == source])
        if len(values) > 1:
            with warnings.catch_warnings():  # columns that this test set does not have: NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                lo, mean, hi = np.nanmin(values, 0), np.nanmean(values, 0), np.nanmax(values, 0)
            text = [f"{m:.3f} [{a:.3f}-{b:.3f}]" if np.isfinite(m) else "" for a, m, b in zip(lo, mean, hi)]
            print(f"| mean [min-max] over {len(values)} runs | {source} | " + " | ".join(text) + " |")


if __name__ == "__main__":
    main()
