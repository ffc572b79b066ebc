"""Which validation sites set a committee's 17O calibration factors, and whether the
validation split can set them at all.

The factor is the maximum-likelihood scale sqrt(mean(z^2)), z = error / raw spread over
the validation sites (dynnmr.uncertainty.fit_scale). Prints, per model:

1. the number of validation O shielding sites, their sigma_iso MAE (ppm), the median raw
   spread, the factor, the robust alternative median(|z|) / 0.674 (equal for Gaussian
   z), and the five largest |z| with their errors (ppm);
2. per key parameter of the 17O tensors (sigma_iso, V_zz, eta_Q): the rms error on the
   validation sites and on the independent test glasses
   (trajectories/labels/test_glass.extxyz, EFG scaled as the model's cluster labels),
   the factor fitted on that parameter on the validation sites (a model fits one per
   target, on sigma_iso and V_zz) and the one the test glasses would need, and
   the fractions of test errors within 1 and 2 calibrated spreads for that validation
   factor and for a two-parameter alternative fitted on the validation sites too,
   sd^2 = (a raw)^2 + floor^2 (a spread floor; maximum likelihood);
3. the same parameters on the calibration glasses
   (trajectories/labels/calibration_glass.extxyz: two more independent glasses, the
   sites studies/recalibrate.py --calibration fits on): their rms error, the factor they
   give, its robust alternative beside the test glasses' (how much the scale of the
   spread varies from glass to glass), and the fractions of test-glass errors within 1
   and 2 spreads calibrated by them.

The split is that of studies/active/distill.yaml (the DFT labels of git 48ffa2e;
recreate /tmp/snap5 as that file says).

    python studies/calibration_sites.py OLD.pt sio2
"""

import sys

import numpy as np
import torch
from md_holdout import cluster_efg_scale  # studies/, beside this script

from dynnmr.config import load_config
from dynnmr.evaluate import committee_sites
from dynnmr.modelfile import load_model
from dynnmr.samples import load_samples, split_samples
from dynnmr.uncertainty import calibration, fit_scale, parameters

TEST_GLASS = "trajectories/labels/test_glass.extxyz"
CALIBRATION_GLASS = "trajectories/labels/calibration_glass.extxyz"


def o_sites(sites, target, column):
    """``(error, raw spread)`` of one parameter column over the labelled O sites of
    ``sites`` (:func:`dynnmr.evaluate.committee_sites` of one sample set)."""
    pred, ref, species, sd = sites
    o = species[target] == 8
    err = parameters(target, pred[target][o])[:, column] - parameters(target, ref[target][o])[:, column]
    return err, sd[target][o, column]


def scale_and_floor(err, raw):
    """``(a, floor)`` maximising the Gaussian likelihood of ``err`` with variance
    (a raw)^2 + floor^2."""
    from scipy.optimize import minimize

    def nll(p):
        var = (np.exp(p[0]) * raw) ** 2 + np.exp(p[1]) ** 2
        return 0.5 * np.sum(np.log(var) + err**2 / var)

    best = minimize(nll, [np.log(fit_scale(err, raw)), np.log(np.std(err) / 3)], method="Nelder-Mead")
    return tuple(np.exp(best.x))


def glass_sites(net, info, path):
    """The committee's sites of a cluster label file, its EFG scaled as the model's
    cluster labels were."""
    glass = load_samples([{"path": path, "scale": {"efg": cluster_efg_scale(info)}}], ["ms", "efg"], net.cutoff)
    return committee_sites(net, glass, ["ms", "efg"])


def robust_scale(err, raw):
    """median(|z|) / 0.674: the factor for Gaussian z, unmoved by a few large |z|."""
    return float(np.median(np.abs(err / raw)) / 0.674)


def independent(net, info, val_sites):
    """Parts 2 and 3 of the module doc, for one model (``val_sites``: its validation sites)."""
    test_sites, cal_sites = (glass_sites(net, info, path) for path in (TEST_GLASS, CALIBRATION_GLASS))
    rms = lambda x: float(np.sqrt(np.mean(x**2)))  # noqa: E731
    for target, column, name, unit in (
        ("ms", 0, "sigma_iso", "ppm"),
        ("efg", 0, "V_zz", "au"),
        ("efg", 1, "eta_Q", ""),
    ):
        (ev, rv), (et, rt) = o_sites(val_sites, target, column), o_sites(test_sites, target, column)
        s, (a, floor) = fit_scale(ev, rv), scale_and_floor(ev, rv)
        one = calibration(et, s * rt)
        two = calibration(et, np.sqrt((a * rt) ** 2 + floor**2))
        print(f"  17O {name}: rms error {rms(ev):.3g} {unit} on {len(ev)} validation sites, {rms(et):.3g} on "
              f"{len(et)} test-glass sites; factor {s:.2f} (the test glasses would need {fit_scale(et, rt):.2f}): "
              f"test within 1 / 2 sd {one['within_1sd']:.2f} / {one['within_2sd']:.2f}; with a floor (a {a:.2f}, "
              f"floor {floor:.3g} {unit}): {two['within_1sd']:.2f} / {two['within_2sd']:.2f}")  # fmt: skip
        ec, rc = o_sites(cal_sites, target, column)
        sc = fit_scale(ec, rc)
        three = calibration(et, sc * rt)
        print(f"    calibration glasses: rms error {rms(ec):.3g} {unit} on {len(ec)} sites; factor {sc:.2f} "
              f"(median |z| / 0.674 {robust_scale(ec, rc):.1f}, the test glasses' {robust_scale(et, rt):.1f}; "
              f"largest |z| {np.abs(ec / rc).max():.0f} and {np.abs(et / rt).max():.0f}): "
              f"test within 1 / 2 sd {three['within_1sd']:.2f} / {three['within_2sd']:.2f}")  # fmt: skip


def main(models):
    torch.set_num_threads(1)
    cfg = load_config("studies/active/distill.yaml")
    samples = load_samples(cfg["data"], cfg["targets"], cfg["model"]["cutoff"])
    _, val, _ = split_samples(samples, cfg["split"])
    for name in models:
        net, info = load_model(name)
        val_sites = committee_sites(net, val, ["ms", "efg"])
        err, raw = o_sites(val_sites, "ms", 0)
        z = np.abs(err / raw)
        top = np.argsort(z)[-5:]
        print(f"{name}: {len(err)} validation O shielding sites, sigma_iso MAE {np.abs(err).mean():.2f} ppm, "
              f"median raw spread {np.median(raw):.3f} ppm; factor {fit_scale(err, raw):.1f} "
              f"(without the largest |z|: {fit_scale(np.delete(err, top[-1]), np.delete(raw, top[-1])):.1f}; "
              f"median |z| / 0.674: {robust_scale(err, raw):.1f}); largest |z| {np.round(z[top], 1).tolist()}, "
              f"errors {np.round(np.abs(err[top]), 2).tolist()} ppm, raw spreads {np.round(raw[top], 3).tolist()} ppm")  # fmt: skip
        independent(net, info, val_sites)


if __name__ == "__main__":
    main(sys.argv[1:])
