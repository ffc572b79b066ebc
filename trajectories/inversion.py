"""Structural order parameters along the cristobalite ramp: volume, c/a, Si-O-Si angle.

The beta phase is dynamically disordered: instantaneous Si-O-Si angles stay bent
while the time-averaged O positions lie on the Si-Si lines. So the angle is reported
both for instantaneous frames and for positions averaged over a sliding window of
frames (fractional coordinates unwrapped against the window's first frame).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # dynnmr.structure needs only ase and numpy
from dynnmr import structure  # noqa: E402


def si_o_si_angles(numbers, frac, cell):
    """Si-O-Si angle (deg) of each O with exactly two Si neighbours (:mod:`dynnmr.structure`)."""
    from ase import Atoms

    return structure.si_o_si_angles(Atoms(numbers=numbers, scaled_positions=frac, cell=cell, pbc=True))


def c_over_a(lengths, repeat=None):
    """c/a of the tetragonal (alpha) setting from the box lengths: of a ``repeat`` of alpha
    cells (c along z), or with ``repeat=None`` of a cubic beta supercell, where alpha forms
    with its c axis along one box edge (the one unlike the others) and its a axes along
    face diagonals (a = L sqrt(2) / n, so c/a = sqrt(2) L_c / L_a; beta gives sqrt(2))."""
    lengths = np.asarray(lengths, float)
    if repeat is not None:
        return lengths[2] / repeat[2] / (0.5 * (lengths[0] / repeat[0] + lengths[1] / repeat[1]))
    c = int(np.argmax(np.abs(lengths - np.median(lengths))))
    return float(np.sqrt(2) * lengths[c] / np.mean(np.delete(lengths, c)))


def order_parameters(frames, repeat=(4, 4, 3), window=10):
    """Per frame: T (K), volume per SiO2 (A^3), c/a (:func:`c_over_a`), instantaneous and
    window-averaged mean angle."""
    out = {k: [] for k in ("T", "volume_per_SiO2", "c_over_a", "angle_inst", "angle_avg")}
    n_si = None
    fracs = [f.get_scaled_positions(wrap=False) for f in frames]
    for k, f in enumerate(frames):
        n_si = int(np.sum(f.numbers == 14))
        out["T"].append(f.info.get("temperature_K", np.nan))
        out["volume_per_SiO2"].append(f.get_volume() / n_si)
        out["c_over_a"].append(c_over_a(f.cell.lengths(), repeat))
        out["angle_inst"].append(np.mean(si_o_si_angles(f.numbers, fracs[k], f.cell.array)))
        lo, hi = max(0, k - window // 2), min(len(frames), k + window // 2 + 1)
        ref = fracs[lo]
        unwrapped = [ref + (x - ref) - np.round(x - ref) for x in fracs[lo:hi]]
        mean_frac = np.mean(unwrapped, axis=0)
        mean_cell = np.mean([g.cell.array for g in frames[lo:hi]], axis=0)
        out["angle_avg"].append(np.mean(si_o_si_angles(f.numbers, mean_frac, mean_cell)))
    return {k: np.array(v) for k, v in out.items()}


def running_mean(x, width=25):
    """Centred running mean (shorter windows at the ends)."""
    x = np.asarray(x, float)
    c = np.concatenate([[0.0], np.cumsum(x)])
    lo = np.clip(np.arange(len(x)) - width // 2, 0, len(x))
    hi = np.clip(np.arange(len(x)) + width // 2 + 1, 0, len(x))
    return (c[hi] - c[lo]) / (hi - lo)


def transition_temperature(T, order, width=25):
    """Temperature of the steepest change of an order parameter's running mean along the
    ramp (its rise on heating, its fall on cooling)."""
    smooth = running_mean(order, width)
    grad = np.abs(np.gradient(smooth))
    k = width + int(np.argmax(grad[width:-width]))  # ignore the ends, where the mean is one-sided
    return float(running_mean(T, width)[k])


def plot_ramp(path, png, repeat=None, potential="Vashishta 1994"):
    """The figure of README.md: volume, c/a and Si-O-Si angle against temperature along the
    ramp (``repeat``: see :func:`c_over_a`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ase.io import read

    frames = read(str(path), index=":")
    p = order_parameters(frames, repeat)
    tc_angle = transition_temperature(p["T"], p["angle_avg"])
    T_mean = running_mean(p["T"])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9))
    panels = [("volume_per_SiO2", "volume per SiO$_2$ (Å$^3$)"), ("c_over_a", "c/a (tetragonal setting)"),
              ("angle_inst", "mean Si-O-Si angle (deg)")]  # fmt: skip
    for ax, (key, label) in zip(axes, panels):
        ax.plot(
            p["T"], p[key], ".", ms=2.5, alpha=0.5, color="C0", label="instantaneous" if key == "angle_inst" else None
        )
        ax.plot(T_mean, running_mean(p[key]), "-", color="C0", lw=1.5)
        ax.set_ylabel(label)
    axes[1].axhline(np.sqrt(2), color="k", lw=0.8, ls="--", label="cubic (β): √2")
    axes[1].axhline(1.392, color="C3", lw=0.8, ls=":", label="α expt. (298 K): 1.392")
    axes[1].legend(fontsize=8)
    axes[2].plot(p["T"], p["angle_avg"], ".", ms=2.5, alpha=0.5, color="C1", label="positions averaged over 10 frames")
    axes[2].plot(T_mean, running_mean(p["angle_avg"]), "-", color="C1", lw=1.5)
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel("temperature (K)")
        ax.axvline(tc_angle, color="k", lw=0.6)
        ax.axvspan(490, 540, color="C2", alpha=0.15)
    heating = p["T"][-1] > p["T"][0]
    rate = abs(p["T"][-1] - p["T"][0]) / max(frames[-1].info["time_ps"] - frames[0].info["time_ps"], 1e-9)
    fig.suptitle(f"{'α→β' if heating else 'β→α'} cristobalite, {potential}\n{len(frames[0])} atoms, "
                 f"{'heated' if heating else 'cooled'} at about {rate:.1f} K/ps: steepest change of the time-averaged "
                 f"Si-O-Si angle at {tc_angle:.0f} K (black line); experiment 490-540 K (green)")  # fmt: skip
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return tc_angle, p
