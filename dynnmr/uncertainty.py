"""Committee uncertainty: the spread of the members of a model with several heads.

A model with ``heads`` > 1 (:class:`~dynnmr.model.TensorGNN`) predicts each tensor once
per member; the prediction is their mean and the uncertainty their spread:

* ``{target}_std`` (same shape and units as the tensor): the members' standard deviation
  of each Cartesian component;
* ``{target}_param_std``: the standard deviation over the members of the NMR parameters
  each member's tensor gives (:data:`PARAMETERS`), so the spread of eta or zeta is that
  of the parameter, not a linearised guess from the components.

Both are multiplied by the model's calibration factor (``info["uncertainty"]["scale"]``,
per target and element, fitted by :func:`fit_scale` on calibration sites (independent
structures) where the training config names them, else on the validation split, so that
the errors there have unit variance in units of the predicted spread: one factor per element
because the labels of different elements come from different sources with different
errors, e.g. periodic GIPAW for 29Si and B3LYP clusters for 17O). :func:`calibration` measures how well the
spread ranks and bounds the actual errors on held-out sites; :func:`flag_threshold` sets
the spread beyond which a site lies outside what the model was trained on.
"""

from __future__ import annotations

import numpy as np
from array_api_compat import array_namespace, device, is_torch_array

#: Per target, the parameters whose member spread is stored, in order (units in the names;
#: the fields of :class:`dynnmr.params.ShieldingParameters` / ``QuadrupolarParameters``).
PARAMETERS = {"ms": ("sigma_iso_ppm", "zeta_ppm", "eta", "span_ppm", "skew"), "efg": ("Vzz_au", "eta_Q")}
#: Fewer validation sites of an element than this: it takes its target's common factor.
MIN_SITES = 5
#: The parameter that flags a site and sets the calibration per target.
KEY_PARAMETER = {"ms": "sigma_iso_ppm", "efg": "Vzz_au"}


def parameters(target, tensors):
    """NMR parameters (..., P) of tensors (..., 3, 3), in :data:`PARAMETERS` order: a NumPy
    array, or a torch tensor on the input's device for a torch input (:mod:`dynnmr.tensors`
    computes where the tensor lives)."""
    from . import tensors as T

    vals = T.eigenvalues(tensors)  # one diagonalisation serves every parameter
    if target == "ms":
        h, hb = T.haeberlen(tensors, eigvals=vals), T.herzfeld_berger(tensors, eigvals=vals)
        columns = [h["iso"], h["zeta"], h["eta"], hb["span"], hb["skew"]]
    else:
        q = T.efg_parameters(tensors, eigvals=vals)
        columns = [q["Vzz"], q["eta_Q"]]
    return array_namespace(vals).stack(columns, axis=-1)


def spread(target, members, scale=1.0):
    """``(tensor_std, param_std)`` of members ``(..., heads, 3, 3)``: component-wise
    (..., 9) and per parameter (..., P) standard deviations over the heads (ddof 1),
    times ``scale`` (one number, or one per site, shape (...)). NaN where the members are
    NaN (sites not covered). Members given as a torch tensor give torch tensors, computed
    on its device (the engine's GPU path); anything else gives float64 NumPy arrays."""
    if not is_torch_array(members):
        members = np.asarray(members, dtype=np.float64)
    xp = array_namespace(members)
    scale = xp.asarray(np.asarray(scale, dtype=np.float64), dtype=members.dtype, device=device(members))[..., None]
    flat = xp.reshape(members, (*members.shape[:-2], 9))
    tensor_std = xp.std(flat, axis=-2, correction=1) * scale
    param_std = xp.std(parameters(target, members), axis=-2, correction=1) * scale
    return tensor_std, param_std


def site_scales(info, target, numbers) -> np.ndarray:
    """The calibration factor of each site (atomic ``numbers``) for ``target``: the
    model's per-element factor, 1 where it has none."""
    from ase.data import atomic_numbers

    s = info.get("uncertainty", {}).get("scale", {}).get(target, 1.0)
    numbers = np.asarray(numbers, dtype=np.int64)
    if not isinstance(s, dict):  # one factor for every element
        return np.full(len(numbers), float(s))
    table = np.ones(max(atomic_numbers.values()) + 1)
    for element, factor in s.items():
        table[atomic_numbers[element]] = float(factor)
    return table[numbers]


def fit_scale(errors, stds) -> float:
    """The factor s that gives held-out errors unit variance in units of s * std:
    ``s = sqrt(mean((error / std)^2))`` (the maximum-likelihood scale of a Gaussian)."""
    z2 = (np.asarray(errors, float) / np.asarray(stds, float)) ** 2
    z2 = z2[np.isfinite(z2)]
    if not len(z2):
        raise ValueError("no finite error/spread pairs to calibrate on")
    return float(np.sqrt(z2.mean()))


def calibration(errors, stds) -> dict:
    """How well a predicted spread describes actual errors on held-out sites.

    ``spearman``: rank correlation between spread and |error| (does a larger spread mean a
    larger error?); ``within_1sd``/``within_2sd``: fractions of |error| <= 1 and 2 spreads
    (0.683 and 0.954 for calibrated Gaussian errors); ``n`` sites. ``spearman`` is None
    where it is undefined: fewer than 3 sites, or all spreads or all errors equal.
    """
    from scipy.stats import spearmanr

    err, sd = np.abs(np.asarray(errors, float)), np.asarray(stds, float)
    ok = np.isfinite(err) & np.isfinite(sd)
    err, sd = err[ok], sd[ok]
    out = {"n": int(len(err))}
    if len(err) < 3:
        return {**out, "spearman": None, "within_1sd": None, "within_2sd": None}
    rho = spearmanr(sd, err).statistic if np.ptp(sd) > 0 and np.ptp(err) > 0 else np.nan
    return {**out, "spearman": None if not np.isfinite(rho) else float(rho),
            "within_1sd": float(np.mean(err <= sd)), "within_2sd": float(np.mean(err <= 2 * sd))}  # fmt: skip


def flag_threshold(training_stds, factor=3.0) -> float:
    """Spread above which a site is flagged as outside the training data: ``factor``
    times the 99th percentile of the spread over the training sites."""
    s = np.asarray(training_stds, float)
    s = s[np.isfinite(s)]
    return float(factor * np.percentile(s, 99)) if len(s) else float("inf")


def flagged(target, param_std, numbers, info) -> dict:
    """``{element: (flagged site-frames, all site-frames)}``: how many key-parameter
    spreads (``param_std`` (..., sites, P)) exceed the model's threshold for that element."""
    from ase.data import chemical_symbols

    thresholds = info.get("uncertainty", {}).get("flag_threshold", {}).get(target, {})
    key = PARAMETERS[target].index(KEY_PARAMETER[target])
    s = np.asarray(param_std)[..., key]
    out = {}
    for z in np.unique(numbers):
        el = chemical_symbols[int(z)]
        if el not in thresholds:
            continue
        v = s[..., np.asarray(numbers) == z]
        v = v[np.isfinite(v)]
        out[el] = (int((v > thresholds[el]).sum()), int(v.size))
    return out


def calibrate(val, test, train, targets, calib=None) -> dict:
    """The committee's calibration, from ``(pred, ref, species, param_std)`` of the
    validation, test and training sites (each ``{target: array over sites}``, the spread
    unscaled, as :func:`dynnmr.evaluate.predict_samples` gives it with ``spreads=True``),
    and optionally of calibration sites ``calib`` (labels of ``calibration_only`` data:
    independent structures, none in training, validation or test).

    Per target and element: ``scale`` fitted on the errors of the key parameter
    (:data:`KEY_PARAMETER`) of the calibration sites where ``calib`` has at least
    ``MIN_SITES`` of that element, else of the validation sites (an element with fewer
    than ``MIN_SITES`` there takes the factor of all the target's validation sites);
    ``scale_sites`` says which sites and how many set each factor. Validation
    structures are drawn from the same runs as the training ones, so their errors can be
    smaller than an independent structure's: the calibration sites are the better
    measure where they exist. ``flag_threshold`` from the training sites' scaled spread
    (:func:`flag_threshold`); ``test`` the :func:`calibration` of every parameter on the
    test sites, with the scaled spread. The model file and the metrics JSON keep this
    dict (``uncertainty``).
    """
    from ase.data import chemical_symbols

    parts = (val, test, train) if calib is None else (val, test, train, calib)
    out = {"scale": {}, "scale_sites": {}, "flag_threshold": {}, "test": {}}
    for t in targets:
        key = PARAMETERS[t].index(KEY_PARAMETER[t])
        v_species, v_err, v_sd = _key_errors(val, t)
        c_species, c_err, c_sd = _key_errors(calib, t) if calib is not None else (np.zeros(0), None, None)
        everyone = fit_scale(v_err, v_sd) if len(v_sd) else 1.0
        elements = np.unique(np.concatenate([x[2][t] for x in parts]))
        scale, sites = {}, {}
        for z in elements:
            el, c, v = chemical_symbols[int(z)], c_species == z, v_species == z
            if c.sum() >= MIN_SITES:
                scale[el], sites[el] = fit_scale(c_err[c], c_sd[c]), {"split": "calibration", "n": int(c.sum())}
            elif v.sum() >= MIN_SITES:
                scale[el], sites[el] = fit_scale(v_err[v], v_sd[v]), {"split": "validation", "n": int(v.sum())}
            else:
                scale[el], sites[el] = everyone, {"split": "validation, all elements", "n": int(len(v_sd))}
        out["scale"][t], out["scale_sites"][t] = scale, sites
        _, _, species, sd = (x[t] for x in train)
        out["flag_threshold"][t] = {chemical_symbols[int(z)]: flag_threshold(scale[chemical_symbols[int(z)]]
                                                                             * sd[species == z, key])
                                    for z in np.unique(species)}  # fmt: skip
    out["test"] = score(test, out["scale"], targets)
    return out


def _key_errors(part, target):
    """``(species, error, raw spread)`` of the key parameter (:data:`KEY_PARAMETER`) over
    the sites of ``part`` (as :func:`calibrate` takes them)."""
    pred, ref, species, sd = (x[target] for x in part)
    if not len(sd):
        return species, np.zeros(0), np.zeros(0)
    key = PARAMETERS[target].index(KEY_PARAMETER[target])
    return species, parameters(target, pred)[:, key] - parameters(target, ref)[:, key], sd[:, key]


def score(part, scale, targets) -> dict:
    """``{target: {element: {parameter: calibration}}}`` of labelled sites ``part`` (as
    :func:`calibrate` takes them), the spread times ``scale[target][element]``; each entry
    adds the mean absolute error of the prediction (``mae``) and the root mean square of
    the scaled spread (``rms_spread``), in the parameter's units."""
    from ase.data import chemical_symbols

    out: dict = {}
    for t in targets:
        pred, ref, species, sd = (x[t] for x in part)
        err = parameters(t, pred) - parameters(t, ref)
        for z in np.unique(species):
            el, m = chemical_symbols[int(z)], species == z
            s = scale[t].get(el, 1.0)
            out.setdefault(t, {})[el] = {
                p: {**calibration(err[m, k], s * sd[m, k]), "mae": float(np.abs(err[m, k]).mean()),
                    "rms_spread": float(np.sqrt(np.mean((s * sd[m, k]) ** 2)))}
                for k, p in enumerate(PARAMETERS[t])
            }  # fmt: skip
    return out
