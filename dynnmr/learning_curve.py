"""Learning curves: one training recipe on nested shares of its training structures,
several seeds each, test errors against training-set size.

How much a model gains from more labels decides whether labelling more is worth it; the
seed paper draws such curves per irrep and per NMR parameter. Every run is an ordinary
resumable :func:`dynnmr.train.train` in its own folder (``train{f}-seed{s}``), with the
same validation and test structures (the split keeps ``split.seed``; ``train_fraction``
only thins the training part, smaller shares inside larger ones), so the curve measures
the data, not a moving test set. ``learning_curve.json`` holds every run's test metrics
and their mean and standard deviation over seeds; ``learning_curve.png`` plots them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

#: What the curve follows, per target: (label, path into a species' test metrics, units).
QUANTITIES = {
    "ms": [("l=0 %RMSE", ("irreps", "l0", "pct_rmse"), "%"), ("l=1 %RMSE", ("irreps", "l1", "pct_rmse"), "%"),
           ("l=2 %RMSE", ("irreps", "l2", "pct_rmse"), "%"),
           ("delta_iso MAE", ("sigma_iso_ppm", "mae"), "ppm"), ("zeta MAE", ("zeta_ppm", "mae"), "ppm")],
    "efg": [("l=2 %RMSE", ("irreps", "l2", "pct_rmse"), "%"), ("|C_Q| MAE", ("abs_Cq_MHz", "mae"), "MHz"),
            ("eta_Q MAE", ("eta_Q", "mae"), "")],
}  # fmt: skip


def _get(metrics, path):
    for key in path:
        if not isinstance(metrics, dict) or key not in metrics:
            return None
        metrics = metrics[key]
    return float(metrics) if metrics is not None else None


def run_folder(out, fraction, seed) -> Path:
    return Path(out) / f"train{fraction:g}-seed{seed}"


def model_file(folder) -> Path:
    """The model file a finished training run wrote in ``folder`` (not its checkpoint)."""
    found = sorted(p for p in Path(folder).glob("*.pt") if p.name != "checkpoint.pt")
    if not found:
        raise FileNotFoundError(f"{folder}: no finished model file")
    return found[0]


def learning_curve(config_path, out_dir, fractions=(0.1, 0.25, 0.5, 1.0), seeds=(0, 1, 2), epochs=None,
                   overrides=None, log=None):  # fmt: skip
    """Train every (fraction, seed), then write ``learning_curve.json`` and ``.png`` in
    ``out_dir``; returns the summary dict. Runs already finished are read back, and an
    interrupted one resumes (each run checkpoints). ``overrides``: settings changed from
    the config (:func:`dynnmr.train.train`), recorded in the summary."""
    from .train import log_stderr, train

    log = log or log_stderr

    out = Path(out_dir)
    fractions = sorted({float(f) for f in fractions})
    runs = []
    for fraction in fractions:
        for seed in seeds:
            folder = run_folder(out, fraction, seed)
            if not (folder / "metrics.json").exists():
                log(f"learning curve: training on {fraction:g} of the training structures, seed {seed}")
                train(config_path, folder, epochs=epochs, seed=seed, train_fraction=fraction, overrides=overrides,
                      log=log)  # fmt: skip
            m = json.loads((folder / "metrics.json").read_text())
            runs.append({"fraction": fraction, "seed": int(seed), "n_train": m["n_structures"]["train"],
                         "test_metrics": m["test_metrics"]})  # fmt: skip
    summary = {"config": str(config_path), "overrides": dict(overrides or {}), "fractions": fractions,
               "seeds": [int(s) for s in seeds], "curves": summarise(runs), "runs": runs}  # fmt: skip
    (out / "learning_curve.json").write_text(json.dumps(summary, indent=1))
    plot(summary, out / "learning_curve.png")
    log(f"wrote {out / 'learning_curve.json'} and {out / 'learning_curve.png'}")
    return summary


def summarise(runs) -> dict:
    """``{target: {species: {quantity: [{fraction, n_train, mean, sd, n_seeds}]}}}``:
    each quantity's test error per training share, mean and standard deviation over the
    seeds (sd null with one seed)."""
    curves = {}
    for target, quantities in QUANTITIES.items():
        species = sorted({sp for r in runs for sp in r["test_metrics"].get(target, {})})
        for sp in species:
            for label, path, units in quantities:
                points = []
                for fraction in sorted({r["fraction"] for r in runs}):
                    here = [r for r in runs if r["fraction"] == fraction]
                    values = [
                        v for r in here if (v := _get(r["test_metrics"].get(target, {}).get(sp), path)) is not None
                    ]
                    if values:
                        points.append({"fraction": fraction, "n_train": here[0]["n_train"], "mean": float(np.mean(values)),
                                       "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None,
                                       "n_seeds": len(values)})  # fmt: skip
                if points:
                    curves.setdefault(target, {}).setdefault(sp, {})[f"{label} ({units})" if units else label] = points
    return curves


def draw(ax, points, label, scale=1.0):
    """One curve: mean test error (times ``scale``) against training structures, the
    standard deviation over seeds as error bars."""
    n = np.array([p["n_train"] for p in points], float)
    mean = np.array([p["mean"] for p in points]) * scale
    sd = np.array([p["sd"] if p["sd"] is not None else 0.0 for p in points]) * scale
    ax.errorbar(n, mean, yerr=sd, marker="o", capsize=2, label=label)


def plot(summary, path):
    """One panel per (target, species): every quantity's mean test error (error bars: sd
    over seeds) against the number of training structures, log-log, each quantity
    relative to its value on the full set so that percentages and ppm share an axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(t, sp, q) for t, by_sp in summary["curves"].items() for sp, q in by_sp.items()]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.2 * max(1, len(panels)), 3.6), squeeze=False)
    for ax, (target, sp, quantities) in zip(axes[0], panels):
        for label, points in quantities.items():
            full = points[-1]["mean"]
            draw(ax, points, f"{label}: {full:.3g} at full", scale=1.0 / full if full > 0 else 1.0)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training structures")
        ax.set_ylabel("test error / error with all")
        ax.set_title(f"{target} {sp}")
        ax.legend(fontsize=7)
    fig.suptitle(f"learning curve: {Path(summary['config']).name}, seeds {summary['seeds']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
