"""Architecture comparisons on a user's data: variants of one training recipe, each a
learning curve over seeds, with accuracy and cost side by side.

Which readout, which highest l in the messages, how many layers: the seed paper answers
these for its data; a user with other data needs the same answer for theirs, and the
answer is only worth having with its scatter over seeds and its price in atoms/s. Every
combination of the settings varied (``{"model.readout": ["linear", "tensor_product"],
"model.lmax": [1, 2]}`` gives four variants) trains as a :mod:`dynnmr.learning_curve` in
its own folder, on the same split; its cost is the forward pass over the split's test
structures, every atom, best of three. ``comparison.json`` keeps every variant's curves
and cost; ``comparison.md`` is the table at the largest share (mean +- sd over seeds);
``comparison.png`` overlays the variants' curves of the key errors.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

#: The errors the table and the plot show, per target (labels of learning_curve.QUANTITIES).
KEY_QUANTITIES = {
    "ms": ["delta_iso MAE (ppm)", "zeta MAE (ppm)", "l=2 %RMSE (%)"],
    "efg": ["|C_Q| MAE (MHz)", "eta_Q MAE", "l=2 %RMSE (%)"],
}


def variants(vary: dict) -> list[dict]:
    """Every combination of the varied settings, ``[{"SECTION.KEY": value, ...}, ...]``."""
    keys = list(vary)
    return [dict(zip(keys, values)) for values in itertools.product(*(vary[k] for k in keys))]


def variant_name(overrides: dict) -> str:
    """A folder name for one variant, e.g. ``readout=tensor_product,lmax=1`` (the sections
    kept, ``split.seed=1,training.seed=2``, when two varied keys share a name)."""
    short = [k.partition(".")[2] for k in overrides]
    names = short if len(set(short)) == len(short) else list(overrides)
    return ",".join(f"{n}={v}" for n, v in zip(names, overrides.values())) or "config"


def forward_rate(model, samples, batch_atoms=4000, repeats=3) -> float:
    """Atoms per second of the model's forward pass over ``samples`` (every atom, graphs
    built beforehand, best of ``repeats`` after one warm-up), at the current torch threads."""
    import torch

    from .graphs import collate
    from .samples import batches

    graphs = [collate(b) for b in batches(samples, range(len(samples)), batch_atoms)]
    n_atoms = sum(len(s["numbers"]) for s in samples)
    best = float("inf")
    with torch.inference_mode():
        for k in range(repeats + 1):
            t0 = time.perf_counter()
            for g in graphs:
                model(g)
            if k:  # the first pass warms up (kernel compilation, allocations)
                best = min(best, time.perf_counter() - t0)
    return n_atoms / best


def compare(config_path, out_dir, vary: dict, fractions=(1.0,), seeds=(0, 1, 2), epochs=None, log=None) -> dict:
    """Train every variant's learning curve (resumable; finished runs are read back),
    measure each variant's cost, write ``comparison.json``, ``.md`` and ``.png`` in
    ``out_dir``; returns the summary."""
    import torch

    from .config import apply_overrides, load_config
    from .learning_curve import learning_curve, model_file, run_folder
    from .modelfile import load_model
    from .samples import load_samples, split_samples
    from .train import log_stderr

    log = log or log_stderr

    if not vary:
        raise ValueError("compare needs at least one setting to vary")
    out = Path(out_dir)
    runs = [(o, apply_overrides(load_config(config_path), o)) for o in variants(vary)]  # every setting checked first
    rows, tests = [], {}  # test structures per data, split and cutoff: read once, not once per variant
    for overrides, cfg in runs:
        name = variant_name(overrides)
        log(f"compare: variant {name}")
        summary = learning_curve(config_path, out / name, fractions, seeds, epochs=epochs, overrides=overrides, log=log)
        full = run_folder(out / name, max(summary["fractions"]), summary["seeds"][0])
        model, _ = load_model(model_file(full))
        key = json.dumps([cfg["data"], cfg["targets"], cfg["model"]["cutoff"], cfg["split"]], sort_keys=True)
        if key not in tests:
            tests[key] = split_samples(load_samples(cfg["data"], cfg["targets"], cfg["model"]["cutoff"]), cfg["split"])[
                2
            ]
        test = tests[key]
        torch.set_num_threads(int(cfg["training"]["threads"]))
        rows.append({"variant": name, "overrides": overrides, "parameters": sum(p.numel() for p in model.parameters()),
                     "forward_atoms_per_s": forward_rate(model, test), "threads": torch.get_num_threads(),
                     "test_atoms": sum(len(s["numbers"]) for s in test), "curves": summary["curves"]})  # fmt: skip
    result = {"config": str(config_path), "vary": vary, "fractions": sorted(float(f) for f in fractions),
              "seeds": [int(s) for s in seeds], "variants": rows}  # fmt: skip
    (out / "comparison.json").write_text(json.dumps(result, indent=1))
    (out / "comparison.md").write_text(table(result))
    plot(result, out / "comparison.png")
    log(f"wrote {out / 'comparison.json'}, {out / 'comparison.md'} and {out / 'comparison.png'}")
    return result


def _columns(result) -> list[tuple[str, str, str]]:
    """(target, species, quantity) present in any variant, in KEY_QUANTITIES order."""
    cols = []
    for target, quantities in KEY_QUANTITIES.items():
        species = sorted({sp for r in result["variants"] for sp in r["curves"].get(target, {})})
        cols += [(target, sp, q) for sp in species for q in quantities
                 if any(q in r["curves"].get(target, {}).get(sp, {}) for r in result["variants"])]  # fmt: skip
    return cols


def table(result) -> str:
    """A markdown table: per variant, each key test error at the largest training share
    (mean +- sd over seeds), the parameters and the forward cost."""
    cols = _columns(result)
    head = ["variant", *(f"{t} {sp} {q}".replace("|", "\\|") for t, sp, q in cols), "parameters", "forward atoms/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in result["variants"]:
        cells = [r["variant"]]
        for t, sp, q in cols:
            points = r["curves"].get(t, {}).get(sp, {}).get(q)
            p = points[-1] if points else None
            cells.append(
                "" if p is None else f"{p['mean']:.3g}" + (f" +- {p['sd']:.2g}" if p["sd"] is not None else "")
            )
        cells += [f"{r['parameters']:,}", f"{r['forward_atoms_per_s']:,.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    seeds = ", ".join(map(str, result["seeds"]))
    note = (f"\nTest errors at training share {max(result['fractions']):g} (mean +- sd over seeds {seeds}); "
            f"forward pass over the test structures, every atom, {result['variants'][0]['threads']} threads.\n")  # fmt: skip
    return "\n".join(lines) + "\n" + note


def plot(result, path):
    """One panel per key error: every variant's test error against training structures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .learning_curve import draw

    cols = _columns(result)
    fig, axes = plt.subplots(1, max(1, len(cols)), figsize=(3.8 * max(1, len(cols)), 3.4), squeeze=False)
    for ax, (t, sp, q) in zip(axes[0], cols):
        for r in result["variants"]:
            points = r["curves"].get(t, {}).get(sp, {}).get(q)
            if points:
                draw(ax, points, r["variant"])
        ax.set_xscale("log")
        ax.set_xlabel("training structures")
        ax.set_title(f"{t} {sp}: {q}", fontsize=8)
        ax.legend(fontsize=6)
    fig.suptitle(f"variants of {Path(result['config']).name}, seeds {result['seeds']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
