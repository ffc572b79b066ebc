"""Compare silica potentials on the measurements that decide NMR: crystal geometry,
glass network, and the alpha-beta inversion of cristobalite.

Usage (from the repository root, in the MD environment of ``make trajectories``)::

    python trajectories/compare.py run vashishta1997   # the four runs, then its row
    python trajectories/compare.py table               # the markdown table of README.md

Every potential gets the same protocol (short runs, chosen to fit a 2-core machine):

- ``cristobalite``: 576-atom alpha-cristobalite, 20 ps NPT at 300 K and zero pressure,
  then 10 ps NVT in the averaged cell, 200 frames;
- ``quartz``: 576-atom alpha-quartz (orthorhombic setting), the same;
- ``glass``: 648 atoms at 2.20 g/cm^3, random start, 10 ps at 5000 K, quench at 25 K/ps,
  20 ps anneal at 300 K, 20 frames over 10 ps at 300 K;
- ``ramp``: 576-atom alpha-cristobalite, 20 ps at 300 K, heated 300 -> 900 K in 100 ps
  (6 K/ps; the committed ramp heats at 2 K/ps), 10 ps holds at both ends, 500 frames.

Runs resume (each is a stage of ``make.py``); results go to ``potentials/NAME.json`` beside
this file. Crystal numbers are given for the instantaneous frames and
for the time-averaged structure (what diffraction measures).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # dynnmr.structure needs only ase and numpy
from make import POTENTIALS, cristobalite, make_amorphous, make_isotherm, make_ramp, quartz

from dynnmr import structure
from dynnmr.structure import order_parameters, running_mean, transition_temperature

RESULTS = HERE / "potentials"  # one NAME.json per potential
#: A ramp has inverted when the window-averaged Si-O-Si angle at the high end exceeds this
#: (deg): in beta-cristobalite the averaged O lie on the Si-Si lines (about 170-180 deg).
BETA_ANGLE_DEG = 160.0

#: Experimental values compared with (README.md cites them).
EXPERIMENT = {
    "cristobalite": {"volume_per_SiO2_A3": 42.8, "c_over_a": 1.392, "si_o_mean_A": 1.603, "si_o_si_mean_deg": 146.5},
    "quartz": {"volume_per_SiO2_A3": 37.7, "si_o_mean_A": 1.609, "si_o_si_mean_deg": 143.7},
    "glass": {"si_4fold": 1.0, "o_2fold": 1.0, "si_o_mean_A": 1.61, "si_o_si_mean_deg": 147.0},
    "ramp": {"T_inversion_K": "490-540", "volume_change_percent": "about 5", "abrupt": True},
}


def read_frames(path):
    from ase.io import iread

    return list(iread(str(path), index=":"))


def crystal_row(frames, repeat=None):
    """Network numbers over the frames and of their time-averaged structure, plus c/a of
    the tetragonal cell when its ``repeat`` is given."""
    row = structure.mean_network(frames)
    avg = structure.network(structure.averaged_positions(frames))
    row["averaged"] = {k: avg[k] for k in ("si_o_mean_A", "si_o_si_mean_deg", "si_4fold", "o_2fold")}
    if repeat is not None:
        lengths = np.mean([f.cell.lengths() / np.array(repeat) for f in frames], axis=0)
        row["c_over_a"] = float(lengths[2] / (0.5 * (lengths[0] + lengths[1])))
    return row


def ramp_row(frames, hold=33):
    """Inversion temperature (steepest rise of the window-averaged Si-O-Si angle), the
    volume change between the holds (``hold`` frames each), the width of the rise, and
    where the crystal falls apart: the first frame with under 90% 4-fold Si ends the
    analysis, and the high-temperature values then come from the last ``hold`` intact frames."""
    op = order_parameters(frames, repeat=(4, 4, 3), window=10)
    four = np.array([structure.network(f)["si_4fold"] for f in frames])
    broken = np.flatnonzero(running_mean(four, 5) < 0.9)
    end = int(broken[0]) if broken.size else len(frames)
    op = {k: v[:end] for k, v in op.items()}
    t_inv = transition_temperature(op["T"], op["angle_avg"], width=25) if end > 80 else float("nan")
    smooth = running_mean(op["angle_avg"], 25)
    lo, hi = np.mean(op["angle_avg"][:hold]), np.mean(op["angle_avg"][-hold:])
    temps = running_mean(op["T"], 25)
    rise = (smooth - lo) / (hi - lo) if hi > lo else np.zeros_like(smooth)
    # 10-90 % of the rise of the averaged angle, in K of the (smoothed) ramp temperature
    t10 = float(temps[np.argmax(rise > 0.1)])
    t90 = float(temps[np.argmax(rise > 0.9)])
    v_lo, v_hi = np.mean(op["volume_per_SiO2"][:hold]), np.mean(op["volume_per_SiO2"][-hold:])
    return {
        "T_inversion_K": t_inv,
        "rise_10_90_K": [t10, t90],
        "volume_per_SiO2_A3": [float(v_lo), float(v_hi)],
        "volume_change_percent": float(100 * (v_hi / v_lo - 1)),
        "c_over_a": [float(np.mean(op["c_over_a"][:hold])), float(np.mean(op["c_over_a"][-hold:]))],
        "angle_avg_deg": [float(lo), float(hi)],
        "T_high_K": float(np.mean(op["T"][-hold:])),
        "breaks_at_K": float(running_mean(np.array([f.info["temperature_K"] for f in frames]), 25)[end])
        if broken.size
        else None,
        "end_si_4fold": float(np.mean(four[-hold:])),
    }


def run(name, reanalyse=False):
    pot = POTENTIALS[name]
    work = HERE / "work" / "compare" / name
    work.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    row = json.loads(path.read_text()) if path.exists() and not reanalyse else {"citation": pot.citation}

    def save():
        RESULTS.mkdir(exist_ok=True)
        path.write_text(json.dumps(row, indent=1, sort_keys=True) + "\n")

    crystals = {"cristobalite": (cristobalite, (4, 4, 3)), "quartz": (quartz, (4, 2, 4))}
    for what, (build, repeat) in crystals.items():
        out = work / f"{what}_300K.extxyz.gz"
        make_isotherm(out, work, pot, 300.0, structure=build(repeat), equil_ps=20.0, prod_ps=10.0, stride_fs=50)
        if what not in row:
            row[what] = crystal_row(read_frames(out), repeat if what == "cristobalite" else None)
            save()
    out = work / "glass.extxyz.gz"
    make_amorphous(out, work, pot, n_atoms=648, melt_ps=10.0, quench_k_per_ps=25.0, anneal_ps=20.0,
                   n_frames=20, stride_fs=500)  # fmt: skip
    if "glass" not in row:
        row["glass"] = structure.mean_network(read_frames(out))
        save()
    out = work / "ramp.extxyz.gz"
    make_ramp(out, work, pot, equil_ps=20.0, ramp_ps=100.0, n_frames=333, hold_ps=10.0)
    if "ramp" not in row:
        row["ramp"] = ramp_row(read_frames(out))
        save()
    print(json.dumps(row, indent=1))


def fmt(x, digits):
    return "-" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}f}"


def _crystal_cells(r, tetragonal):
    cells = [fmt(r["volume_per_SiO2_A3"], 1)] + ([fmt(r["c_over_a"], 3)] if tetragonal else [])
    return cells + [fmt(r["si_o_mean_A"], 3), fmt(r["si_o_si_mean_deg"], 1), fmt(r["averaged"]["si_o_mean_A"], 3),
                    fmt(r["averaged"]["si_o_si_mean_deg"], 1)]  # fmt: skip


def _glass_cells(r):
    return [fmt(100 * r["si_4fold"], 1), fmt(100 * r["o_2fold"], 1), fmt(r["si_o_mean_A"], 3),
            f"{fmt(r['si_o_si_mean_deg'], 1)} / {fmt(r['si_o_si_std_deg'], 1)}",
            f"{fmt(r['o_si_o_mean_deg'], 1)} / {fmt(r['o_si_o_std_deg'], 1)}"]  # fmt: skip


def _ramp_cells(r):
    pair = lambda key, d: f"{fmt(r[key][0], d)} -> {fmt(r[key][1], d)}"  # noqa: E731
    if r["angle_avg_deg"][1] < BETA_ANGLE_DEG:  # the averaged O never reached the Si-Si lines
        inversion = [f"none up to {fmt(r['T_high_K'], 0)} K", ""]
    else:
        inversion = [fmt(r["T_inversion_K"], 0), f"{fmt(r['rise_10_90_K'][0], 0)}-{fmt(r['rise_10_90_K'][1], 0)}"]
    return inversion + [pair("volume_per_SiO2_A3", 1), fmt(r["volume_change_percent"], 1), pair("c_over_a", 3),
                        fmt(r["T_high_K"], 0), fmt(r["breaks_at_K"], 0) if r["breaks_at_K"] else "holds"]  # fmt: skip


def table():
    """The comparison as markdown: one table per measurement, experiment first."""
    results = {p.stem: json.loads(p.read_text()) for p in RESULTS.glob("*.json")}
    names = [n for n in POTENTIALS if n in results]
    crystal = ["V/SiO2 (A^3)", "Si-O (A)", "Si-O-Si (deg)", "Si-O avg. str.", "Si-O-Si avg. str."]
    ec, eq = EXPERIMENT["cristobalite"], EXPERIMENT["quartz"]
    blocks = [
        ("cristobalite", "alpha-cristobalite, 300 K", crystal[:1] + ["c/a"] + crystal[1:],
         [ec["volume_per_SiO2_A3"], ec["c_over_a"], "", "", ec["si_o_mean_A"], ec["si_o_si_mean_deg"]],
         lambda r: _crystal_cells(r, True)),
        ("quartz", "alpha-quartz, 300 K", crystal, [eq["volume_per_SiO2_A3"], "", "", eq["si_o_mean_A"],
                                                     eq["si_o_si_mean_deg"]], lambda r: _crystal_cells(r, False)),
        ("glass", "glass, 2.20 g/cm^3, 300 K", ["4-fold Si (%)", "2-fold O (%)", "Si-O (A)",
                                                "Si-O-Si mean / std (deg)", "O-Si-O mean / std (deg)"], None, _glass_cells),
        ("ramp", "ramp 300 -> 900 K at 6 K/ps", ["T of steepest rise (K)", "10-90 % of the rise (K)",
                                                  "V/SiO2 low -> high T (A^3)", "change (%)", "c/a", "high T (K)",
                                                  "falls apart at (K)"], None, _ramp_cells),
    ]  # fmt: skip
    lines = []
    for key, title, columns, experiment, cells in blocks:
        lines += [
            "" if lines else None,
            f"| {title} | " + " | ".join(columns) + " |",
            "|" + " --- |" * (len(columns) + 1),
        ]
        if experiment:
            lines.append("| experiment | " + " | ".join(str(v) for v in experiment) + " |")
        lines += [f"| {n} | " + " | ".join(cells(results[n][key])) + " |" for n in names if key in results[n]]
    print("\n".join(x for x in lines if x is not None))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["run", "table"])
    p.add_argument("potential", nargs="?", choices=sorted(POTENTIALS))
    p.add_argument("--reanalyse", action="store_true", help="recompute the rows from the stored runs")
    args = p.parse_args()
    if args.what == "run":
        run(args.potential, args.reanalyse)
    else:
        table()


if __name__ == "__main__":
    main()
