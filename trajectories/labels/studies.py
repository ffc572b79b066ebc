"""Two checks of the cluster labels (B3LYP, pcSseg-2 on the site, pcSseg-1 elsewhere).

    python trajectories/labels/studies.py angle        # 17O C_Q, eta_Q against the Si-O-Si angle
    python trajectories/labels/studies.py convergence  # C_Q, eta_Q, sigma_iso: 2 against 3 bond shells
    python trajectories/labels/studies.py si [MODEL]   # cluster against periodic 29Si sigma_iso
    python trajectories/labels/studies.py si_crystals [MODEL]  # quartz and cristobalite 29Si against experiment
    python trajectories/labels/studies.py coverage     # angles and Si-O distances of the labelled O sites

angle: the alpha-quartz O-centred cluster, (HO)3Si-O-Si(OH)3 with the crystal's bond
lengths, its two halves turned rigidly about the bridging O in the Si-O-Si plane so the
angle runs 130-180 deg. Expected: C_Q rises and eta_Q falls to 0 as the angle opens to
180 deg (linear Si-O-Si is axially symmetric).
convergence: O sites of experimental alpha-quartz and alpha-cristobalite and three of the
labelled (Tersoff) glass frame, cut with 2 bond shells (O + 2 Si + 6 OH) and with 3 (the 6 outer Si kept,
capped as SiH3).
si: the Si-centred cluster labels in sio2_clusters.extxyz against the periodic (GIPAW-
trained) model's sigma_iso of the same Si atoms in the same frames (default `sio2`):
a slope near 1 and a high correlation mean the clusters follow the periodic trends, the
intercept is the difference in reference level. Both are also fitted against each Si's
mean Si-O-Si angle, the structural variable 29Si shifts are known to follow (sigma_iso
rises as the angles open), so the two trends can be compared even where the sites span
too narrow a range for the direct fit. Written to si_trends.json and .png.

si_crystals: the Si-centred clusters of experimental alpha-quartz and alpha-cristobalite,
and the model's periodic sigma_iso of the same crystals, against the measured shift
difference of the two (cristobalite about 1.1 ppm more shielded): which way each goes
with the mean Si-O-Si angle (143.7 and 146.5 deg). Written to si_crystals.json.

Each point is appended to a JSON file as it finishes (rerun to continue); `plot` draws
angle.png from it.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
from ase import Atoms

from dynnmr import label, structure, tensorfiles
from dynnmr.isotopes import get_isotope
from dynnmr.tensors import efg_parameters, isotropic, quadrupolar_coupling_hz

HERE = Path(__file__).parent
DATA = Path(tensorfiles.__file__).parent / "data"
Q_MB = get_isotope("17O").quadrupole_moment_mb


def _record(path, key, fn):
    """Compute ``fn()`` once for ``key`` and keep it in ``path``; a failed calculation (an
    SCF that does not converge, an open shell) is kept as its error, not retried."""
    results = json.loads(path.read_text()) if path.exists() else {}
    if key in results:
        return results
    t0 = time.perf_counter()
    try:
        value = fn()
    except (RuntimeError, ValueError) as exc:
        value = {"error": str(exc)}
    results[key] = {**value, "seconds": time.perf_counter() - t0}
    path.write_text(json.dumps(results, indent=1))
    print(key, results[key], flush=True)
    return results


def _efg_summary(res):
    p = efg_parameters(res.efg_au)
    out = {"Cq_MHz": float(quadrupolar_coupling_hz(p["Vzz"], Q_MB)) / 1e6, "eta_Q": float(p["eta_Q"]),
           "n_atoms": res.n_atoms, "n_basis": res.n_basis}  # fmt: skip
    if res.ms_ppm is not None:
        out["sigma_iso_ppm"] = float(isotropic(res.ms_ppm))
    return out


def bent_cluster(angle_deg):
    """The quartz O cluster with its Si-O-Si angle set to ``angle_deg`` (rigid halves)."""
    quartz = tensorfiles.read(DATA / "alpha_quartz.extxyz")[0]
    cl = label.carve_cluster(quartz, quartz.get_chemical_symbols().index("O"), shells=2)
    pos = cl.positions.copy()
    si = np.flatnonzero(np.array(cl.get_chemical_symbols()) == "Si")[:2]
    a, b = pos[si[0]], pos[si[1]]
    normal = np.cross(a, b) / np.linalg.norm(np.cross(a, b))
    now = np.degrees(np.arccos(a @ b / np.linalg.norm(a) / np.linalg.norm(b)))
    side = np.linalg.norm(pos - a, axis=1) < np.linalg.norm(pos - b, axis=1)  # atoms of the first half
    side[0] = False
    from scipy.spatial.transform import Rotation

    half = np.radians(angle_deg - now) / 2
    pos[side] = Rotation.from_rotvec(-half * normal).apply(pos[side])
    pos[~side & (np.arange(len(pos)) > 0)] = Rotation.from_rotvec(half * normal).apply(
        pos[~side & (np.arange(len(pos)) > 0)]
    )
    cl.positions = pos
    return cl


def angle_study(path=HERE / "angle.json"):
    for angle in (130, 140, 150, 160, 170, 180):
        _record(path, f"{angle}", lambda: _efg_summary(label.compute_site(bent_cluster(angle), ("efg",))))


def convergence_study(path=HERE / "convergence.json"):
    sites = [("alpha_quartz", tensorfiles.read(DATA / "alpha_quartz.extxyz")[0], None),
             ("alpha_cristobalite", tensorfiles.read(DATA / "alpha_cristobalite.extxyz")[0], None)]  # fmt: skip
    # the labelled glass frame (Tersoff, the trajectories the labels were made on)
    glass = tensorfiles.read(HERE / "sio2_clusters.extxyz", index=5)
    glass = Atoms(numbers=glass.numbers, positions=glass.positions, cell=glass.cell, pbc=True)
    bonds = structure.bonds(glass)
    # the first three sites the labels would take (regular coordination) with closed-shell
    # 2- and 3-shell clusters
    regular = (int(i) for i in label.candidate_sites(glass, ("O",))
               if structure.coordination_defect(glass, int(i), bonds) is None
               and all(label.closed_shell(label.carve_cluster(glass, int(i), n, bonds)) for n in (2, 3)))  # fmt: skip
    sites += [("amorphous_sio2", glass, next(regular)) for _ in range(3)]
    for name, atoms, o in sites:
        o = atoms.get_chemical_symbols().index("O") if o is None else o
        for shells in (2, 3):
            props = ("efg", "ms") if name == "alpha_quartz" else ("efg",)
            _record(
                path,
                f"{name} O{o} shells={shells}",
                lambda: _efg_summary(label.compute_site(label.carve_cluster(atoms, o, shells), props)),
            )


def si_study(model="sio2", labels=HERE / "sio2_clusters.extxyz", out=HERE / "si_trends.json"):
    from scipy.stats import linregress

    from dynnmr.evaluate import predict_label_file
    from dynnmr.modelfile import load_model

    net, info = load_model(model)
    try:
        pred, ref, samples = predict_label_file(net, labels)
    except ValueError as err:
        raise SystemExit(f"{err} yet (run.sh makes the Si-centred clusters after the O EFG sites)")
    periodic, cluster = isotropic(pred), isotropic(ref)
    images = tensorfiles.read(labels)
    angle = np.array(
        [
            structure.mean_bridging_angle(images[int(s["id"].rsplit(":", 1)[1])], int(a))
            for s in samples
            for a in s["ms"][0]
        ]
    )
    fit = linregress(periodic, cluster)
    res = {"model": info["name"], "n_sites": len(cluster), "slope": float(fit.slope), "intercept_ppm": float(fit.intercept),
           "r": float(fit.rvalue), "periodic_sigma_iso_ppm": periodic.tolist(), "cluster_sigma_iso_ppm": cluster.tolist(),
           "mean_si_o_si_deg": angle.tolist(), "frames": [s["id"] for s in samples for _ in s["ms"][0]]}  # fmt: skip
    for name, y in (("periodic", periodic), ("cluster", cluster)):
        f = linregress(angle, y)
        res[f"{name}_vs_angle"] = {"slope_ppm_per_deg": float(f.slope), "r": float(f.rvalue), "stderr": float(f.stderr)}
    out.write_text(json.dumps(res, indent=1))
    print(
        {
            k: res[k]
            for k in ("model", "n_sites", "slope", "intercept_ppm", "r", "periodic_vs_angle", "cluster_vs_angle")
        }
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9.2, 4.2))
    ax.plot(periodic, cluster, "ko", ms=4)
    x = np.array([periodic.min(), periodic.max()])
    ax.plot(x, fit.intercept + fit.slope * x, "r-", label=f"slope {fit.slope:.2f}, r {fit.rvalue:.2f}")
    ax.set_xlabel(f"29Si sigma_iso, periodic model {info['name']} (ppm)")
    ax.set_ylabel("29Si sigma_iso, cluster B3LYP (ppm)")
    ax.legend()
    # each against the mean angle, as deviations from its own mean (the levels differ)
    for name, y, style in (("periodic", periodic, "ko"), ("cluster", cluster, "s")):
        f = res[f"{name}_vs_angle"]
        ax2.plot(angle, y - y.mean(), style, ms=4, mfc="none" if name == "cluster" else None,
                 label=f"{name}: {f['slope_ppm_per_deg']:.2f} ppm/deg, r {f['r']:.2f}")  # fmt: skip
    ax2.set_xlabel("mean Si-O-Si angle of the site (deg)")
    ax2.set_ylabel("29Si sigma_iso - its mean (ppm)")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)


def si_crystals_study(model="sio2", path=HERE / "si_crystals.json"):
    from dynnmr.inference import predict_images
    from dynnmr.modelfile import load_model

    net, info = load_model(model)
    measured = {"alpha_quartz": -107.4, "alpha_cristobalite": -108.5}  # delta_iso vs TMS (ppm), as in the README
    rows = {}
    for name, delta in measured.items():
        atoms = tensorfiles.read(DATA / f"{name}.extxyz")[0]
        si = int(np.flatnonzero(atoms.numbers == 14)[0])
        res = _record(path, name, lambda: {"cluster_sigma_iso_ppm": float(isotropic(
            label.compute_site(label.carve_cluster(atoms, si, 2), ("ms",)).ms_ppm))})  # fmt: skip
        periodic = isotropic(predict_images(net, info, [atoms])[0].arrays["ms"][atoms.numbers == 14]).mean()
        rows[name] = {"mean_si_o_si_deg": structure.mean_bridging_angle(atoms, si), "experiment_delta_ppm": delta,
                      "cluster_sigma_iso_ppm": res[name].get("cluster_sigma_iso_ppm"),
                      f"{info['name']}_sigma_iso_ppm": float(periodic)}  # fmt: skip
    q, c = rows["alpha_quartz"], rows["alpha_cristobalite"]
    diff = {"experiment": q["experiment_delta_ppm"] - c["experiment_delta_ppm"],  # sigma difference = -delta difference
            "cluster": c["cluster_sigma_iso_ppm"] - q["cluster_sigma_iso_ppm"],
            info["name"]: c[f"{info['name']}_sigma_iso_ppm"] - q[f"{info['name']}_sigma_iso_ppm"]}  # fmt: skip
    print({"crystals": rows, "sigma_iso cristobalite - quartz (ppm)": diff})
    return rows, diff


def _kind(info):
    """The kind of structure a labelled frame came from (for coverage by kind)."""
    name = Path(info["source"]).name.split(".")[0]
    return {"cristobalite_ramp": "ramp", "amorphous_sio2": "glass"}.get(name, name)


def coverage_study(labels=HERE / "sio2_clusters.extxyz", out=HERE / "coverage.json"):
    """Geometry of the labelled O sites (Si-O-Si angle, Si-O distances) by kind of structure,
    and the labels' own trends with the angle: raw cluster C_Q, eta_Q and sigma_iso."""
    from scipy.stats import linregress

    rows = []
    for atoms in tensorfiles.read(labels):
        bonds = structure.bonds(atoms)
        efg, ms = atoms.arrays["efg"], atoms.arrays["ms"]
        for o in np.flatnonzero((atoms.numbers == 8) & np.isfinite(efg).all(axis=(1, 2))):
            p = efg_parameters(efg[o])
            rows.append((_kind(atoms.info), *structure.bridging_geometry(atoms, int(o), bonds),
                         abs(float(quadrupolar_coupling_hz(p["Vzz"], Q_MB))) / 1e6, float(p["eta_Q"]),
                         float(isotropic(ms[o])) if np.isfinite(ms[o]).all() else np.nan))  # fmt: skip
    kind = np.array([r[0] for r in rows])
    angle, short, long, cq, eta, sigma = np.array([r[1:] for r in rows]).T
    has_ms = np.isfinite(sigma)

    def spread(x):
        return [round(float(v), 3) for v in np.percentile(x, [0, 5, 50, 95, 100])] if len(x) else []

    res = {"columns": "min, 5%, median, 95%, max", "by_kind": {}}
    for k in dict.fromkeys(kind.tolist()):
        for name, keep in (("efg", kind == k), ("ms", (kind == k) & has_ms)):
            res["by_kind"][f"{k} {name}"] = {"n_sites": int(keep.sum()), "si_o_si_deg": spread(angle[keep]),
                                             "si_o_short_A": spread(short[keep]), "si_o_long_A": spread(long[keep])}  # fmt: skip
    mean_d = (short + long) / 2
    for name, y, keep in (
        ("abs_Cq_MHz", cq, np.isfinite(cq)),
        ("eta_Q", eta, np.isfinite(eta)),
        ("sigma_iso_ppm", sigma, has_ms),
    ):
        f = linregress(angle[keep], y[keep])
        # the angle and the mean Si-O distance together (long bonds raise C_Q at any angle)
        x = np.column_stack([np.ones(keep.sum()), angle[keep], mean_d[keep]])
        coef, *_ = np.linalg.lstsq(x, y[keep], rcond=None)
        r2 = 1 - np.sum((y[keep] - x @ coef) ** 2) / np.sum((y[keep] - y[keep].mean()) ** 2)
        res[f"{name}_vs_angle"] = {"n_sites": int(keep.sum()), "slope_per_deg": float(f.slope),
                                   "stderr": float(f.stderr), "r": float(f.rvalue),
                                   "with_mean_si_o": {"per_deg": float(coef[1]), "per_A": float(coef[2]), "r2": float(r2)}}  # fmt: skip
    out.write_text(json.dumps(res, indent=1))
    for k, v in res["by_kind"].items():
        print(
            f"{k:28s} {v['n_sites']:4d}  angle {v['si_o_si_deg']}  short {v['si_o_short_A']}  long {v['si_o_long_A']}"
        )
    for k in ("abs_Cq_MHz", "eta_Q", "sigma_iso_ppm"):
        print(k, "vs angle:", res[f"{k}_vs_angle"])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for k in dict.fromkeys(kind.tolist()):
        keep = kind == k
        for ax, y in zip(axes, (cq, eta, sigma)):
            ax.plot(angle[keep], y[keep], "o", ms=3, label=k)
    for ax, name in zip(axes, ("17O |C_Q| (MHz, raw cluster)", "eta_Q", "17O sigma_iso (ppm)")):
        ax.set_xlabel("Si-O-Si angle (deg)")
        ax.set_ylabel(name)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)


def plot(path=HERE / "angle.json", out=HERE / "angle.png"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = json.loads(path.read_text())
    ang = np.array(sorted(float(k) for k in res))
    cq = np.array([abs(res[f"{a:g}"]["Cq_MHz"]) for a in ang])
    eta = np.array([res[f"{a:g}"]["eta_Q"] for a in ang])
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    ax.plot(ang, cq, "ko-", label="|C_Q|")
    ax.set_xlabel("Si-O-Si angle (deg)")
    ax.set_ylabel("17O |C_Q| (MHz)")
    ax2 = ax.twinx()
    ax2.plot(ang, eta, "s--", color="tab:blue", label="eta_Q")
    ax2.set_ylabel("eta_Q", color="tab:blue")
    ax.set_title("(HO)3Si-O-Si(OH)3, B3LYP/pcSseg-2(O),pcSseg-1")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


if __name__ == "__main__":
    {
        "angle": angle_study,
        "convergence": convergence_study,
        "plot": plot,
        "si": si_study,
        "si_crystals": si_crystals_study,
        "coverage": coverage_study,
    }[sys.argv[1]](*sys.argv[2:])
