"""Accuracy of a model against labels: the paper's measures and the spectroscopist's.

The metric functions take predicted and reference tensors ``(M, 3, 3)`` of one target
(shielding in ppm or EFG in au) and return plain floats, ready for JSON;
:func:`predict_samples` runs a model on labelled samples (:mod:`dynnmr.samples`) and
:func:`split_metrics` gives every metric per target and species.
%RMSE is RMSE / standard deviation of the reference values x 100 (the paper's measure).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import tensors as T
from .params import QuadrupolarParameters, ShieldingParameters


def errors(pred, ref):
    """MAE with its standard error (``mae_sem``, over sites taken as independent; sites of
    one structure are not quite, so read it as a lower bound; None below two sites), RMSE."""
    d = np.asarray(pred, float) - np.asarray(ref, float)
    per_site = np.abs(d).reshape(len(d), -1).mean(axis=1)  # a tensor's components are one site
    sem = float(np.std(per_site, ddof=1) / np.sqrt(len(d))) if len(d) >= 2 else None
    return {"mae": float(np.mean(np.abs(d))), "mae_sem": sem, "rmse": float(np.sqrt(np.mean(d**2)))}


def _pct(pred, ref):
    e = errors(pred, ref)
    std = float(np.std(ref))
    e["pct_rmse"] = float(100 * e["rmse"] / std) if std > 0 else float("nan")
    return e


def _orientation(pred, ref, oriented, kind, **threshold):
    """Misorientation (deg) statistics over the sites whose principal axes are well defined."""
    mis = T.misorientation_deg(pred[oriented], ref[oriented], kind=kind) if oriented.any() else np.array([])
    return {"n_sites": int(oriented.sum()), **threshold,
            "mean": float(np.mean(mis)) if mis.size else float("nan"),
            "median": float(np.median(mis)) if mis.size else float("nan")}  # fmt: skip


def irrep_metrics(pred, ref):
    """Per-irrep RMSE and %RMSE of the spherical components (l = 0, 1, 2)."""
    ps, rs = T.to_spherical(pred), T.to_spherical(ref)
    out = {}
    for l, sl in T.IRREP_SLICES.items():
        d = ps[..., sl] - rs[..., sl]
        rmse = float(np.sqrt(np.mean(np.sum(d**2, axis=-1))))  # per-site norm of the irrep error
        spread = float(np.sqrt(np.mean(np.sum((rs[..., sl] - rs[..., sl].mean(0)) ** 2, axis=-1))))
        out[f"l{l}"] = {"rmse": rmse, "pct_rmse": 100 * rmse / spread if spread > 0 else float("nan")}
    return out


def offset_free_metrics(pred, ref, groups):
    """Shielding errors (ppm) left after removing each group's mean isotropic error.

    ``groups``: one label per site, its structure. Only groups with two or more sites
    count. Periodic DFT shieldings carry an isotropic offset per calculation (the same
    crystal computed twice can differ by several ppm: studies/README.md, "Label
    consistency"); these numbers are blind to it and measure what site assignments
    rest on, the shifts and tensors within one material.
    """
    d = T.symmetric_part(np.asarray(pred, float) - np.asarray(ref, float))
    diso = np.trace(d, axis1=-2, axis2=-1) / 3
    _, inv, counts = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
    offset = (np.bincount(inv, diso) / counts)[inv]  # each site's structure mean
    keep = counts[inv] >= 2
    centred = diso - offset
    sym = np.abs(d - offset[:, None, None] * np.eye(3)).mean(axis=(1, 2))
    mean = lambda x: float(np.mean(x[keep])) if keep.any() else float("nan")  # noqa: E731
    return {"n_sites": int(keep.sum()), "n_structures": int((counts >= 2).sum()),
            "sigma_iso_mae_ppm": mean(np.abs(centred)), "symmetric_component_mae_ppm": mean(sym)}  # fmt: skip


def shielding_metrics(pred, ref, min_zeta_ppm=5.0, groups=None):
    """Metrics for shielding tensors (ppm). Orientation only where |zeta_ref| >= min_zeta_ppm.

    With ``groups`` (the structure of each site) also :func:`offset_free_metrics`.
    """
    hp, hr = ShieldingParameters.of(pred), ShieldingParameters.of(ref)
    sym_p, sym_r = T.symmetric_part(pred), T.symmetric_part(ref)
    oriented = np.abs(hr.zeta_ppm) >= min_zeta_ppm
    return {
        "n_sites": int(len(ref)),
        "irreps": irrep_metrics(pred, ref),
        "sigma_iso_ppm": _pct(hp.sigma_iso_ppm, hr.sigma_iso_ppm),
        "zeta_ppm": _pct(hp.zeta_ppm, hr.zeta_ppm),
        "eta": errors(hp.eta, hr.eta),
        "span_ppm": _pct(hp.span_ppm, hr.span_ppm),
        "skew": errors(hp.skew, hr.skew),
        "tensor_component_mae_ppm": errors(pred, ref)["mae"],
        "symmetric_component_mae_ppm": errors(sym_p, sym_r)["mae"],
        "orientation_deg": _orientation(pred, ref, oriented, "shielding", min_abs_zeta_ppm=min_zeta_ppm),
        **({"offset_free": offset_free_metrics(pred, ref, groups)} if groups is not None else {}),
    }


def efg_metrics(pred, ref, quadrupole_moment_mb, min_cq_mhz=0.5):
    """Metrics for EFG tensors (au): C_Q (MHz) for the given Q, eta_Q, orientation."""
    pp = QuadrupolarParameters.of(pred, quadrupole_moment_mb)
    pr = QuadrupolarParameters.of(ref, quadrupole_moment_mb)
    oriented = np.abs(pr.Cq_MHz) >= min_cq_mhz
    return {
        "n_sites": int(len(ref)),
        "irreps": {"l2": irrep_metrics(pred, ref)["l2"]},
        "Cq_MHz": _pct(pp.Cq_MHz, pr.Cq_MHz),
        "abs_Cq_MHz": _pct(pp.abs_Cq_MHz, pr.abs_Cq_MHz),
        "eta_Q": errors(pp.eta_Q, pr.eta_Q),
        "component_mae_au": errors(pred, ref)["mae"],
        "orientation_deg": _orientation(pred, ref, oriented, "efg", min_abs_Cq_MHz=min_cq_mhz),
    }


def parity_plots(pred, ref, target, path, title=""):
    """One PNG of parity plots per metric family (irreps, iso, anisotropy, asymmetry).
    Drawn on a matplotlib ``Figure`` of its own: the caller's backend is left alone."""
    from matplotlib.figure import Figure

    ps, rs = T.to_spherical(pred), T.to_spherical(ref)
    if target == "ms":
        hp, hr = ShieldingParameters.of(pred), ShieldingParameters.of(ref)
        panels = [
            ("l=0 component (ppm)", rs[:, 0], ps[:, 0]),
            ("l=1 components (ppm)", rs[:, 1:4].ravel(), ps[:, 1:4].ravel()),
            ("l=2 components (ppm)", rs[:, 4:].ravel(), ps[:, 4:].ravel()),
            ("sigma_iso (ppm)", hr.sigma_iso_ppm, hp.sigma_iso_ppm),
            ("zeta (ppm)", hr.zeta_ppm, hp.zeta_ppm),
            ("eta", hr.eta, hp.eta),
            ("span (ppm)", hr.span_ppm, hp.span_ppm),
            ("skew", hr.skew, hp.skew),
        ]
    else:
        pp, pr = QuadrupolarParameters.of(pred), QuadrupolarParameters.of(ref)
        panels = [
            ("l=2 components (au)", rs[:, 4:].ravel(), ps[:, 4:].ravel()),
            ("Vzz (au)", pr.Vzz_au, pp.Vzz_au),
            ("eta_Q", pr.eta_Q, pp.eta_Q),
        ]
    fig = Figure(figsize=(3.2 * len(panels), 3.4))
    axes = fig.subplots(1, len(panels))
    for ax, (label, x, y) in zip(np.atleast_1d(axes), panels):
        ax.scatter(x, y, s=4, alpha=0.5)
        lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.6)
        ax.set_xlabel(f"DFT {label}")
        ax.set_ylabel(f"predicted {label}")
        ax.set_title(f"MAE {np.mean(np.abs(y - x)):.3g}", fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    from .spectrum import png_metadata

    fig.savefig(path, dpi=110, metadata=png_metadata())


def predict_samples(model, samples, targets, batch_atoms=4000, spreads=False):
    """Predicted and reference tensors (numpy, physical units) on the labelled sites.

    Returns ``(pred, ref, species, structure)``, each ``{target: array over sites}``;
    ``structure`` is the index in ``samples`` of each site's structure. With ``spreads``
    (a committee model) a fifth, the members' unscaled parameter spread (sites, P)
    (:func:`dynnmr.uncertainty.spread`).
    """
    import torch

    from .inference import run_model
    from .model import TARGET_COMPONENTS
    from .samples import batch_inputs, batches

    empty = {"pred": np.zeros((0, 3, 3)), "ref": np.zeros((0, 3, 3)), "species": np.zeros(0, int),
             "structure": np.zeros(0, int), "spread": np.zeros((0, 3))}  # fmt: skip
    out = {k: {t: [] for t in targets} for k in empty}
    model.eval()
    first = 0  # index in ``samples`` of the batch's first structure
    with torch.no_grad():
        for batch in batches(samples, range(len(samples)), batch_atoms):
            graph, sites, labels = batch_inputs(batch, targets)
            pred, spread = run_model(model, graph, None, sites=sites, uncertainty=spreads)
            for t, (pos, y, _) in labels.items():
                out["pred"][t].append(pred[t][pos].numpy().astype(np.float64))
                comps = np.zeros((len(y), 9))
                comps[:, TARGET_COMPONENTS[t]] = y.numpy()
                out["ref"][t].append(T.from_spherical(comps))
                out["species"][t].append(graph.numbers[sites[pos]].numpy())
                out["structure"][t].append(graph.batch[sites[pos]].numpy() + first)
                if spread:
                    out["spread"][t].append(spread[t][1][pos.numpy()])
            first += len(batch)
    keys = list(empty) if spreads else list(empty)[:4]
    return tuple({t: np.concatenate(v) if v else empty[k] for t, v in out[k].items()} for k in keys)


def committee_sites(model, samples, targets):
    """``(pred, ref, species, param_std)`` of a committee on the labelled sites, as
    :func:`dynnmr.uncertainty.calibrate` and :func:`~dynnmr.uncertainty.score` take them
    (the spread unscaled)."""
    pred, ref, species, _, spread = predict_samples(model, samples, targets, spreads=True)
    return pred, ref, species, spread


def predict_label_file(model, path, target="ms", species=(14,)):
    """Model against reference tensors at the ``species`` sites labelled with ``target`` in
    one label file (e.g. the Si-centred B3LYP clusters of ``trajectories/labels``), in file
    order. Returns ``(pred, ref, samples)``: two (n, 3, 3) arrays in the target's units and
    the structures that hold a label. Raises ValueError when the file has none."""
    from .samples import load_samples

    samples = load_samples([{"path": path, "species": {target: list(species)}}], [target], model.cutoff)
    samples = [s for s in samples if len(s[target][0])]
    if not samples:
        raise ValueError(f"{path}: no {target} labels on species {list(species)}")
    pred, ref, *_ = predict_samples(model, samples, [target])
    return pred[target], ref[target], samples


#: Conditions of :func:`spectrum_l1` (recorded with every value).
SPECTRUM_L1 = {"field_T": 14.1, "broadening_ppm": 1.0, "points": 4096, "zcw_index": 12}


def spectrum_l1(pred, ref, target, element):
    """Normalised L1 distance between the static powder spectra of a set of sites
    simulated from predicted and from reference tensors: ``sum |S_pred - S_ref| dppm`` with
    both spectra of unit area on one axis (0: identical; 2: no overlap). What a
    spectroscopist compares: all sites' errors at once, weighted as they shape the line.

    ``ms``: the chemical-shift-anisotropy lineshape of the element's NMR isotope (shift
    tensor = -sigma: a reference moves both spectra alike and cancels); ``efg``: the
    second-order quadrupolar central-transition lineshape (quadrupolar isotopes only,
    else None). Conditions in :data:`SPECTRUM_L1` (Gaussian broadening FWHM in ppm).
    """
    from .isotopes import isotope_for
    from .spectrum import provisional_range, static_spectrum

    iso = isotope_for(element)
    if iso is None or len(ref) == 0 or (target == "efg" and not iso.is_quadrupolar):
        return None
    c = SPECTRUM_L1
    key = "shift" if target == "ms" else "efg"
    tensors = {
        "pred": -np.asarray(pred) if key == "shift" else pred,
        "ref": -np.asarray(ref) if key == "shift" else ref,
    }
    ranges = [provisional_range(iso.name, c["field_T"], **{key: x}, broadening_ppm=c["broadening_ppm"])
              for x in tensors.values()]  # fmt: skip
    axis = np.linspace(min(r[0] for r in ranges), max(r[1] for r in ranges), c["points"])
    spectra = [static_spectrum(axis, iso.name, c["field_T"], **{key: x}, zcw_index=c["zcw_index"],
                               broadening_ppm=c["broadening_ppm"]) for x in tensors.values()]  # fmt: skip
    value = float(np.abs(spectra[0] - spectra[1]).sum() * abs(axis[1] - axis[0]))
    kind = "static CSA" if key == "shift" else "static central transition"
    return {"value": value, "isotope": iso.name, "kind": kind, **c}


def split_metrics(pred, ref, species, structure=None, plot_dir=None, name=""):
    """Metrics per target and species; parity plots as ``plot_dir/parity_{target}_{El}.png``.

    ``structure`` (per target, each site's structure) adds the shieldings' offset-free
    errors (:func:`dynnmr.evaluate.offset_free_metrics`).
    """
    from ase.data import chemical_symbols

    from .isotopes import isotope_for

    out = {}
    for t in pred:
        for z in np.unique(species[t]):
            m = species[t] == z
            el = chemical_symbols[int(z)]
            if t == "ms":
                res = shielding_metrics(pred[t][m], ref[t][m], groups=None if structure is None else structure[t][m])
            else:
                res = efg_metrics(pred[t][m], ref[t][m], isotope_for(el).quadrupole_moment_mb)
            l1 = spectrum_l1(pred[t][m], ref[t][m], t, el)
            if l1 is not None:
                res["spectrum_l1"] = l1
            out.setdefault(t, {})[el] = res
            if plot_dir is not None:
                parity_plots(pred[t][m], ref[t][m], t, Path(plot_dir) / f"parity_{t}_{el}.png", f"{name}: {t} {el}")
    return out


def metrics_by_source(model, test, targets) -> dict:
    """:func:`split_metrics` for each data file's test structures, when they come from
    several files (GIPAW 29Si and cluster labels mean different things): what a model's
    metrics file reports per source."""
    sources = sorted({s["source"] for s in test})
    if len(sources) < 2:
        return {}
    return {src: split_metrics(*predict_samples(model, [s for s in test if s["source"] == src], targets))
            for src in sources}  # fmt: skip
