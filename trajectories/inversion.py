"""The figure of the cristobalite ramp (README.md): volume, c/a and Si-O-Si angle against
temperature. The order parameters themselves live in :mod:`dynnmr.structure`
(``order_parameters``, ``running_mean``, ``transition_temperature``, ``c_over_a``), so the
notebooks and ``compare.py`` use the same code.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # dynnmr.structure needs only ase and numpy
from dynnmr.structure import order_parameters, running_mean, transition_temperature  # noqa: E402


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
