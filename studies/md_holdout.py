"""17O on the held-out frames of the realistic trajectories: error per glass density, and
whether the committee's spread knows it.

`trajectories/labels/sio2_md.extxyz` labels O sites of the BKS glass density series and
the Vashishta cristobalite runs (trajectories/labels/run_md.sh). Its round-0 frames (every
site drawn at random: no site ``chosen_by_spread``) are the unbiased test set of the
active-learning rounds (#23); a model trained with some of them in `split.test_structures`
(e.g. studies/active/round1.yaml) and the bundled models, which never saw the file, are
scored here on the same sites (by default the round-0 frames in the recorded test set of
every model that trained on the file), per trajectory file and over all:

- |C_Q| (MHz, 17O), eta_Q: MAE with its standard error over sites and over distinct atoms
  (one atom labelled in several frames is one sample: the honest error bar), mean signed
  error (model - label), label spread;
- 17O sigma_iso (ppm): MAE where shieldings are labelled;
- with several models: each one's MAE minus the first's on the same sites (paired), with
  its standard error over sites and over distinct atoms;
- for a committee: the spread's calibration on these sites (Spearman rank correlation
  with the error, share within 1 and 2 scaled standard deviations;
  `dynnmr.uncertainty.score` with the model file's own scale factors).

`--spread` adds, per trajectory file, the committee's raw (uncalibrated) spread of 17O
|C_Q| (MHz) over every O of a few frames, labelled or not: active learning should make
it fall from one round's model to the next.

The EFG labels carry the model's own cluster EFG scale (its record of
sio2_clusters.extxyz: same method). The issue's targets: |C_Q| MAE <= 0.10 MHz, eta_Q
MAE <= 0.04, 17O sigma_iso MAE <= 2.5 ppm.

    python studies/md_holdout.py sio2 sio2-committee runs/active-round1/sio2-active-round1.pt --spread -o studies/active/md_holdout.json
    python studies/md_holdout.py sio2 studies/active/round3.pt --labels trajectories/labels/test_glass.extxyz

The second scores on the test glass (trajectories/labels/README.md), which no model
trained on: every labelled site there is a test site.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from compare_models import paired as paired_sites
from compare_models import site_values

from dynnmr import tensorfiles
from dynnmr.evaluate import errors, predict_samples
from dynnmr.label import labelled_atoms
from dynnmr.modelfile import load_model
from dynnmr.samples import load_samples, recorded_data
from dynnmr.uncertainty import PARAMETERS, score

ROOT = Path(__file__).parents[1]
LABELS = ROOT / "trajectories" / "labels" / "sio2_md.extxyz"
#: Frames whose whole O population measures the committee's spread (file, frame slice).
SPREAD_FRAMES = [*((f"trajectories/densities/glass_{rho}gcc.extxyz.gz", slice(None, None, 2)) for rho in ("2.0", "2.2", "2.4", "2.6")),
                 ("trajectories/amorphous_sio2.extxyz.gz", slice(None, None, 10)),
                 ("trajectories/cristobalite_900K.extxyz.gz", slice(None, None, 1000)),
                 ("trajectories/cristobalite_ramp.extxyz.gz", slice(None, None, 268))]  # fmt: skip


def round0_frames(images) -> list[int]:
    """Indices of the label file's frames (``images``) whose sites were all drawn at random."""
    return [k for k, a in enumerate(images) if not np.any(a.arrays.get("chosen_by_spread", False))]


def trained_item(info, names):
    """The data item (path: file name) a model recorded for the first of the files ``names``
    it trained on; None when it trained on none of them."""
    return next((item for item in recorded_data(info, lambda name: name) if item["path"] in names), None)


def held_out_frames(infos, labels, images) -> list[int]:
    """The round-0 (random) frames of the label file that every model trained on it kept
    in its recorded test set; all round-0 frames when none trained on it."""
    name = Path(labels).name
    frames = set(round0_frames(images))
    for info in infos:
        if trained_item(info, (name,)):
            frames &= {int(i.rsplit(":", 1)[1]) for i in info["test_structures"] if i.rsplit(":", 1)[0] == name}
    return sorted(frames)


#: The 17O cluster label files, labelled alike (B3LYP clusters, one EFG scale).
CLUSTER_LABELS = ("sio2_clusters.extxyz", "sio2_md.extxyz")


def cluster_item(info) -> dict:
    """The data item (scale, species) a model recorded for the cluster labels ({} if none):
    new cluster labels are read as it read those."""
    return trained_item(info, CLUSTER_LABELS) or {}


def cluster_efg_scale(info) -> float:
    """The EFG scale this model applied to the cluster labels (1 when it recorded none)."""
    return float(cluster_item(info).get("scale", {}).get("efg", 1.0))


def site_atoms(samples, images, target) -> list[tuple[str, int]]:
    """Per labelled site of ``samples`` (in :func:`predict_samples`' order): its trajectory
    and atom index, the same for one atom in every frame of a file."""
    return [
        (images[int(s["id"].rsplit(":", 1)[1])].info.get("source", "?"), int(i)) for s in samples for i in s[target][0]
    ]


def unseen_sites(atoms, images, frames, target) -> np.ndarray:
    """Per site of ``atoms`` (:func:`site_atoms`): True where the same atom of the same
    trajectory carries no ``target`` label in any frame outside ``frames``. A glass's
    frames are one network a few ps apart, so an atom labelled in a training frame is
    nearly the same site in a held-out one."""
    other = labelled_atoms((a for k, a in enumerate(images) if k not in set(frames)), (target,))
    return np.array([i not in other.get(source, ()) for source, i in atoms], bool)


def atom_keys(atoms) -> list[str]:
    """``"source:index"`` per site of ``atoms`` (:func:`site_atoms`): one key per atom."""
    return [f"{s}:{i}" for s, i in atoms]


def per_atom_sem(abs_err, keys) -> tuple[int, float | None]:
    """Distinct atoms among the sites (their :func:`atom_keys`), and the standard error of
    the mean of ``abs_err`` with each atom (over its frames) one independent sample: the
    honest error bar when one atom is labelled in several frames."""
    _, inv = np.unique(keys, return_inverse=True)
    per_atom = np.bincount(inv, abs_err) / np.bincount(inv)
    n = len(per_atom)
    return n, float(np.std(per_atom, ddof=1) / np.sqrt(n)) if n >= 2 else None


def report(model, info, frames, labels, images, unseen=False) -> dict:
    """Metrics of one model on the given frames of the label file ``labels``, read as
    ``images`` (see module doc); with ``unseen`` only on the sites of
    :func:`unseen_sites`."""
    entry = {"path": str(labels), "scale": {"efg": cluster_efg_scale(info)}, "species": {"ms": [8]}}
    samples = [
        s for s in load_samples([entry], ["ms", "efg"], model.cutoff) if int(s["id"].rsplit(":", 1)[1]) in frames
    ]
    sources = [images[int(s["id"].rsplit(":", 1)[1])].info.get("source", "?") for s in samples]
    committee = bool(info.get("uncertainty"))
    got = predict_samples(model, samples, ["efg", "ms"], spreads=committee)
    pred, ref, species, structure = got[:4]
    out = {"frames": frames, "efg_scale": cluster_efg_scale(info), "committee": committee, "unseen_only": unseen,
           "by_file": {}, "site_errors": {}}  # fmt: skip
    atoms = {t: site_atoms(samples, images, t) for t in species}
    keep = {t: unseen_sites(atoms[t], images, frames, t) if unseen else np.ones(len(species[t]), bool) for t in species}
    for group in ["all", *sorted(set(sources))]:
        rows = {}
        for t in ("efg", "ms"):
            o = (
                keep[t]
                & (species[t] == 8)
                & (True if group == "all" else np.isin(structure[t], [i for i, s in enumerate(sources) if s == group]))
            )
            if not o.any():
                continue
            p, r = site_values(t, pred[t][o]), site_values(t, ref[t][o])
            for key in p:
                err = p[key] - r[key]
                keys = atom_keys(x for x, k in zip(atoms[t], o) if k)
                n_atoms, sem_atoms = per_atom_sem(np.abs(err), keys)
                rows[key] = {"sites": int(o.sum()), **errors(p[key], r[key]), "atoms": n_atoms,
                             "mae_sem_atoms": sem_atoms, "mean_signed_error": float(err.mean()),
                             "label_std": float(r[key].std())}  # fmt: skip
                if group == "all":
                    out["site_errors"][key] = {
                        "abs_err": np.abs(err).tolist(),
                        "atoms": keys,
                    }
            if committee:
                part = tuple({t: x[t][o]} for x in (*got[:3], got[4]))  # pred, ref, species, spread
                cal = score(part, info["uncertainty"]["scale"], [t])
                rows[f"{t}_calibration"] = cal[t]["O"]
        out["by_file"][group] = rows
    return out


def paired(reports: list[dict]) -> list[dict]:
    """Per model after the first (reports of :func:`report` on the same sites): per
    parameter its MAE minus the first's (``compare_models.paired``: standard error and
    95% bootstrap interval over sites), and the standard error over distinct atoms.
    Pairing removes the sites' shared difficulty, so it tells two models apart where their
    separate error bars overlap."""
    first = reports[0]["site_errors"]
    for r in reports[1:]:
        if any(r["site_errors"][k]["atoms"] != v["atoms"] for k, v in first.items()):
            raise ValueError("the models were scored on different sites")
    rows = paired_sites([{k: np.asarray(v["abs_err"]) for k, v in r["site_errors"].items()} for r in reports])
    for r, row in zip(reports[1:], rows[1:]):
        for key, v in row.items():
            d = np.asarray(r["site_errors"][key]["abs_err"]) - np.asarray(first[key]["abs_err"])
            v["atoms"], v["minus_first_sem_atoms"] = per_atom_sem(d, first[key]["atoms"])
    return rows[1:]


def spread_on_frames(model, frames=SPREAD_FRAMES) -> dict:
    """Per trajectory file: the RMS over its frames' O atoms of the members' unscaled
    |C_Q| spread (MHz, 17O), and how many sites that is."""
    from dynnmr.graphs import collate, structure_arrays
    from dynnmr.inference import run_model
    from dynnmr.isotopes import get_isotope
    from dynnmr.label import frame_to_atoms
    from dynnmr.reader import iread
    from dynnmr.tensors import quadrupolar_coupling_hz

    key = PARAMETERS["efg"].index("Vzz_au")
    out = {}
    for path, which in frames:
        images = [frame_to_atoms(f) for f in iread(ROOT / path, frames=which)]
        sds = []
        for atoms in images:
            graph = collate([structure_arrays(atoms, model.cutoff)])
            sites = torch.from_numpy(np.flatnonzero(atoms.numbers == 8))
            with torch.no_grad():
                _, spread = run_model(model, graph, None, sites=sites, uncertainty=True)
            sds.append(spread["efg"][1][:, key])
        sd = np.abs(quadrupolar_coupling_hz(np.concatenate(sds), get_isotope("17O").quadrupole_moment_mb)) / 1e6
        out[Path(path).name] = {
            "frames": len(images),
            "sites": int(sd.size),
            "rms_abs_Cq_spread_MHz": float(np.sqrt(np.mean(sd**2))),
        }
    return out


def nan_if_none(x):
    return float("nan") if x is None else x


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="model files or bundled names")
    ap.add_argument("--labels", default=str(LABELS))
    ap.add_argument(
        "--frames",
        type=int,
        nargs="*",
        help="frames of the label file (default: the round-0 frames every model that trained on it tested on)",
    )
    ap.add_argument("--unseen", action="store_true", help="only sites whose atom no other frame labels (unseen_sites)")
    ap.add_argument("--spread", action="store_true", help="also the committee spread over whole frames (SPREAD_FRAMES)")
    ap.add_argument("-o", "--output", help="JSON file for the results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    images = tensorfiles.read(args.labels)
    loaded = {name: load_model(name) for name in args.models}
    frames = args.frames or held_out_frames([info for _, info in loaded.values()], args.labels, images)
    if not frames:
        raise SystemExit(f"{args.labels}: no frame is held out by every model that trained on it; give --frames")
    results = {}
    for name, (model, info) in loaded.items():
        results[name] = report(model, info, frames, args.labels, images, unseen=args.unseen)
        for group, rows in results[name]["by_file"].items():
            line = "  ".join(
                f"{k} {v['mae']:.3f} +- {nan_if_none(v['mae_sem']):.3f} ({v['sites']} sites), "
                f"+- {nan_if_none(v['mae_sem_atoms']):.3f} ({v['atoms']} atoms)"
                for k, v in rows.items()
                if "mae" in v
            )
            print(f"{name:40s} {group:28s} {line}")
            for t in ("efg", "ms"):
                cal = rows.get(f"{t}_calibration")
                if cal:
                    key = "Vzz_au" if t == "efg" else "sigma_iso_ppm"
                    c = {
                        k: "n/a" if cal[key][k] is None else f"{cal[key][k]:.2f}"
                        for k in ("spearman", "within_1sd", "within_2sd")
                    }
                    print(f"{'':40s} {'':28s} {t} spread: spearman {c['spearman']}, within 1/2 sd "
                          f"{c['within_1sd']}/{c['within_2sd']}")  # fmt: skip
        if args.spread and results[name]["committee"]:
            results[name]["spread"] = spread_on_frames(model)
            for f, v in results[name]["spread"].items():
                print(
                    f"{name:40s} {f:28s} RMS |C_Q| spread {v['rms_abs_Cq_spread_MHz']:.3f} MHz ({v['sites']} O sites)"
                )
    first, *others = args.models
    for name, diff in zip(others, paired([results[m] for m in args.models]) if others else []):
        results[name]["paired_minus_first"] = diff
        line = "  ".join(
            f"{k} {v['minus_first']:+.3f} +- {nan_if_none(v['minus_first_sem']):.3f} ({v['n_sites']} sites), "
            f"+- {nan_if_none(v['minus_first_sem_atoms']):.3f} ({v['atoms']} atoms)"
            for k, v in diff.items()
        )
        print(f"{name + ' - ' + first:40s} {'paired, all':28s} {line}")
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
