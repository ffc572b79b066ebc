"""Training data as the model sees it: labelled structures, splits, normalisation, batches.

A *sample* is one labelled structure: its graph arrays (:func:`dynnmr.graphs.structure_arrays`)
and, per target, the labelled sites and their tensors. Splits are by structure, never by
site (a test site's neighbours are then never training sites), grouped by data file; a
model file records its test structures and sites, so a model is tested later on exactly
what it was tested on when trained (:func:`recorded_test_samples`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from . import tensorfiles
from . import tensors as T
from .config import ROLES
from .graphs import collate, structure_arrays
from .model import TARGET_COMPONENTS, target_irrep_columns


def load_samples(data, targets, cutoff):
    """Per structure: graph arrays and, per target, labelled site indices and components.

    ``data``: file names or :func:`dynnmr.config.data_entry` dicts (their ``scale``, ``offset`` and
    ``species`` applied here).
    """
    samples = []
    for entry in data:
        entry = {"path": entry} if isinstance(entry, (str, Path)) else entry
        path, scale, only = entry["path"], entry.get("scale", {}), entry.get("species", {})
        offset = entry.get("offset", {})
        for k, atoms in enumerate(tensorfiles.read(path)):
            s = structure_arrays(atoms, cutoff, source=path, frame=k)
            s["id"] = f"{Path(path).name}:{atoms.info.get('structure_id', k)}"
            s["source"] = Path(path).name
            s.update({role: bool(entry.get(role, False)) for role in ROLES})
            for t in targets:
                arr = atoms.arrays.get(t)
                if arr is None:
                    s[t] = (np.zeros(0, np.int64), np.zeros((0, 3, 3)))
                    continue
                labelled = np.isfinite(arr).all(axis=(1, 2))
                if t in only:
                    labelled &= np.isin(atoms.numbers, only[t])
                sites = np.flatnonzero(labelled)
                s[t] = (sites, arr[sites] * scale.get(t, 1.0) + offset.get(t, 0.0) * np.eye(3))
            samples.append(s)
    return samples


def split_indices(n, val, test, seed, groups=None):
    """Random split of structures (not sites) into train/val/test with a fixed seed.

    With ``groups`` (one label per structure, e.g. its data file) each group is split on
    its own with the same fractions, so a small data source still has structures in
    every part; with one group this is the plain split.
    """
    groups = np.zeros(n, int) if groups is None else np.asarray(groups)
    out = {"test": [], "val": [], "train": []}
    for g in dict.fromkeys(groups.tolist()):
        members = np.flatnonzero(groups == g)
        perm = members[np.random.default_rng(seed).permutation(len(members))]
        n_test, n_val = int(round(test * len(perm))), int(round(val * len(perm)))
        out["test"].append(perm[:n_test])
        out["val"].append(perm[n_test : n_test + n_val])
        out["train"].append(perm[n_test + n_val :])
    return {k: np.concatenate(v) for k, v in out.items()}


def split_samples(samples, split):
    """``(train, val, test)`` lists of samples by a config's ``split`` section:
    :func:`split_indices` per data file with ``val``, ``test`` and ``seed``; structures
    named in ``test_structures`` (ids ``FILE:K``, e.g. frames labelled at random, kept
    out of active learning's bias) go to the test part whole and are not drawn from.
    ``train_fraction`` (0 < f <= 1) keeps that share of the training structures, drawn
    with ``seed`` so that smaller shares are subsets of larger ones (learning curves);
    validation and test stay the same. Structures of ``train_only`` data files (see
    :func:`dynnmr.config.data_entry`) all train, outside these draws, and those of
    ``calibration_only`` files are in no part (:func:`calibration_samples`), so adding
    such a file leaves the other files' split as it was."""
    fixed = list(split.get("test_structures") or [])
    ids = [s["id"] for s in samples if not s.get("calibration_only")]
    missing = sorted(set(fixed) - set(ids))
    if missing:
        raise ValueError(f"split.test_structures not among the data's structures: {', '.join(missing[:5])}")
    pool = [s for s in samples if s["id"] not in fixed and not any(s.get(role) for role in ROLES)]
    parts = split_indices(len(pool), split["val"], split["test"], split["seed"], groups=[s["source"] for s in pool])
    train, val, test = ([pool[i] for i in parts[k]] for k in ("train", "val", "test"))
    fraction = float(split.get("train_fraction", 1.0))
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"split.train_fraction must be in (0, 1], not {fraction}")
    if fraction < 1.0:  # one fixed order: the first k of it nest
        order = np.random.default_rng(split["seed"]).permutation(len(train))
        train = [train[i] for i in sorted(order[: max(1, math.ceil(fraction * len(train)))])]
    train += [s for s in samples if s.get("train_only") and s["id"] not in fixed]
    return train, val, test + [s for s in samples if s["id"] in fixed and not s.get("calibration_only")]


def calibration_samples(samples):
    """The structures of ``calibration_only`` data files (:func:`dynnmr.config.data_entry`),
    outside :func:`split_samples`' parts: what a committee's spread is calibrated on."""
    return [s for s in samples if s.get("calibration_only")]


def hold_out_sites(sample, targets, axis, slab, buffer_A):
    """Split one large structure's labelled sites into a held-out slab and the rest.

    Sites whose fractional coordinate along cell vector ``axis`` (wrapped into [0, 1))
    lies in ``slab`` = [lo, hi) are held out; the others train only if they are at least
    ``buffer_A`` (A, measured across the slab's planes, periodic) from it, so that no
    training site has a held-out site among its nearest neighbours. Returns
    ``(train, test)``, two copies of ``sample`` with the same id and graph and disjoint
    labels: a test of the model on new environments of a structure that is the only one
    of its kind (one glass frame), which a split by structures cannot give.
    """
    lo, hi = (float(x) for x in slab)
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"site_holdout slab must be [lo, hi) with 0 <= lo < hi <= 1, not {slab}")
    cell = np.asarray(sample["cell"], float)
    volume = abs(np.linalg.det(cell))
    if volume < 1e-6:
        raise ValueError(f"{sample['id']}: site_holdout needs a periodic cell")
    height = volume / np.linalg.norm(np.cross(cell[(axis + 1) % 3], cell[(axis + 2) % 3]))  # plane spacing (A)
    frac = np.linalg.solve(cell.T, np.asarray(sample["positions"], float).T).T[:, axis] % 1.0
    inside = (frac >= lo) & (frac < hi)
    gap = np.minimum((lo - frac) % 1.0, (frac - hi) % 1.0) * height  # distance to the slab (A)
    train, test = dict(sample), dict(sample)
    for t in targets:
        sites, values = sample[t]
        held, keep = inside[sites], ~inside[sites] & (gap[sites] >= buffer_A)
        train[t], test[t] = (sites[keep], values[keep]), (sites[held], values[held])
    return train, test


def normalisation(samples, target, species):
    """Per species, per component scale/shift of spherical components (see model docs)."""
    comps = TARGET_COMPONENTS[target]
    scale, shift = np.ones((len(species), len(comps))), np.zeros((len(species), len(comps)))
    covered = []
    for k, z in enumerate(species):
        ys = [T.to_spherical(s[target][1])[:, comps][s["numbers"][s[target][0]] == z] for s in samples]
        y = np.concatenate(ys) if ys else np.zeros((0, len(comps)))
        if len(y) < 2:
            continue
        covered.append(int(z))
        for l, cols in target_irrep_columns(target).items():
            if l == 0:
                shift[k, cols] = y[:, cols].mean()
                scale[k, cols] = max(y[:, cols].std(), 1e-6)
            else:  # RMS per component about zero: a shift would break equivariance
                scale[k, cols] = max(np.sqrt(np.mean(y[:, cols] ** 2)), 1e-6)
    return scale, shift, covered


def batches(samples, order, batch_atoms):
    out, cur, n = [], [], 0
    for i in order:
        cur.append(samples[i])
        n += len(samples[i]["numbers"])
        if n >= batch_atoms:
            out.append(cur)
            cur, n = [], 0
    return out + ([cur] if cur else [])


def batch_inputs(batch, targets, dtype=torch.float32):
    """Graph, the union of labelled sites, and per target (positions in sites, components,
    per-member weights or None): the weights are the committee's bootstrap resamples
    (:func:`bootstrap_weights`), present on training structures only."""
    graph = collate(batch, dtype=dtype)
    offsets = np.cumsum([0] + [len(s["numbers"]) for s in batch[:-1]])
    per_target = {}
    for t in targets:
        idx = np.concatenate([s[t][0] + o for s, o in zip(batch, offsets)]).astype(np.int64)
        y = np.concatenate([s[t][1] for s in batch]).reshape(-1, 3, 3)
        w = None
        if all(t in s.get("member_weights", {}) for s in batch):
            w = torch.tensor(np.concatenate([s["member_weights"][t] for s in batch]), dtype=dtype)
        per_target[t] = (idx, T.to_spherical(y)[:, TARGET_COMPONENTS[t]], w)
    sites = np.unique(np.concatenate([per_target[t][0] for t in targets]))
    labels = {}
    for t, (idx, y, w) in per_target.items():
        labels[t] = (torch.from_numpy(np.searchsorted(sites, idx)), torch.tensor(y, dtype=dtype), w)
    return graph, torch.from_numpy(sites), labels


def is_resample_mode(value) -> bool:
    """Whether ``value`` is a ``resample`` that :func:`bootstrap_weights` knows."""
    return isinstance(value, bool) or value == "bayesian"


def bootstrap_weights(samples, targets, heads, seed, resample=True):
    """Give each training structure ``member_weights``: per target, (sites, heads) weights
    of the labelled sites in each committee member's loss, so that the members disagree
    where the data do not pin them down. ``resample`` True: counts drawn from Poisson(1),
    the bootstrap resample (a member sees about 63% of the sites, some of them more than
    once); ``"bayesian"``: weights drawn from Exponential(1), the Bayesian bootstrap
    (Dirichlet weights once normalised: every member sees every site, with its own
    emphasis); False: every weight 1 (members that differ only by their initial
    weights), as with one head. Fixed for the run (``seed`` and the structure's
    position), so a resumed run sees the same weights."""
    if not is_resample_mode(resample):
        raise ValueError(f"resample must be True, False or 'bayesian', not {resample!r}")

    def draw(rng, n):
        if heads == 1 or resample is False:
            return np.ones((n, heads), np.float32)
        w = rng.poisson(1.0, (n, heads)) if resample is True else rng.exponential(1.0, (n, heads))
        return w.astype(np.float32)

    for k, s in enumerate(samples):
        rng = np.random.default_rng([seed, k])
        s["member_weights"] = {t: draw(rng, len(s[t][0])) for t in targets}


def recorded_data(info, locate):
    """The data items a model file records (their scale, offset and species kept), each path
    replaced by ``locate(file_name)``, where that file is now: the recorded paths are those
    of the machine that trained the model. The result is what :func:`recorded_test_samples`
    takes, so a model is tested against its labels as it trained on them."""
    items = []
    for item in info["training_config"]["data"]:
        item = {"path": item} if isinstance(item, str) else dict(item)
        item["path"] = str(locate(Path(item["path"]).name))
        items.append(item)
    return items


def sites_record(samples, targets) -> dict:
    """Which sites of each test structure carry labels: ``{id: {target: [atom, ...]}}``,
    what a model file records as ``test_sites``."""
    return {s["id"]: {t: s[t][0].tolist() for t in targets} for s in samples}


def recorded_test_samples(info, data, targets=None, withdrawn_ok=False):
    """The test structures a model file records, with the labels it was tested on.

    ``data``: the training data files (or :func:`dynnmr.config.data_entry` dicts) as they are now.
    A label file that grows after training (new sites are appended, labelled sites never
    change) still gives the recorded test set: only the sites in ``info["test_sites"]``
    are kept (files without that record: all labelled sites of the test structures).
    A recorded site without its label is an error, unless ``withdrawn_ok``: the labeller
    withdraws the labels of sites it finds irregular (:func:`dynnmr.label.drop_defect_labels`),
    and the test set is then what remains (re-record it with :func:`sites_record`).
    """
    targets = list(targets or info["targets"])
    hp = info["hyperparameters"]
    wanted = set(info["test_structures"])
    test = [s for s in load_samples(data, targets, hp["cutoff"]) if s["id"] in wanted]
    missing = wanted - {s["id"] for s in test}
    if missing:
        raise ValueError(f"test structures not found in the data given: {sorted(missing)[:5]}")
    for s in test:
        record = info.get("test_sites", {}).get(s["id"])
        for t in targets if record is not None else ():
            keep = np.isin(s[t][0], record.get(t, []))
            if keep.sum() != len(record.get(t, [])) and not withdrawn_ok:
                raise ValueError(f"{s['id']}: {t} labels recorded at training are missing from the data")
            s[t] = (s[t][0][keep], s[t][1][keep])
    return test
