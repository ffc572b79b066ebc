"""Training: YAML config -> split by structure -> masked, standardised loss -> model file.

The data side (samples, splits, normalisation, batches) is :mod:`dynnmr.samples`; the
test metrics are :mod:`dynnmr.evaluate`'s; this module holds the loss and the loop.

Resumable: a checkpoint is written atomically after every epoch and ``train`` continues
from it, so a killed job loses at most one epoch. ``model.trunks`` > 1 trains an
:class:`~dynnmr.model.Ensemble`: the trunks one after another, trunk ``k`` exactly as
the one-trunk run at seed + ``k`` (its checkpoint in ``trunkK/``, interchangeable with
that run's), then one evaluation and one calibration of the whole committee. Deterministic on CPU for a given seed
(the shuffling of epoch ``k`` depends only on ``seed + k``). At the end the best model
(lowest validation loss) is evaluated on the test split, and the metrics JSON, parity
plots and the self-describing model file are written to the output folder.
"""

from __future__ import annotations

import contextlib
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import tensorfiles, uncertainty
from . import tensors as T
from .config import ROLES, apply_overrides, load_config
from .evaluate import committee_sites, metrics_by_source, predict_samples, split_metrics
from .graphs import collate, structure_arrays
from .model import TARGET_COMPONENTS, Ensemble, TensorGNN, target_irrep_columns
from .modelfile import save_model, sha256_files
from .samples import (
    batch_inputs,
    batches,
    bootstrap_weights,
    calibration_samples,
    hold_out_sites,
    is_resample_mode,
    load_samples,
    normalisation,
    sites_record,
    split_samples,
)


def component_weights(target, irrep_weights=(1.0, 1.0, 1.0)):
    """Loss weight of each spherical component of ``target``: its irrep's weight (l = 0, 1, 2)."""
    w = torch.zeros(len(TARGET_COMPONENTS[target]))
    for l, cols in target_irrep_columns(target).items():
        w[cols] = float(irrep_weights[l])
    return w


def batch_loss(model, graph, sites, labels, kind="mse", irrep_weights=(1.0, 1.0, 1.0)):
    """Mean squared (``mse``) or absolute (``l1``, for MAE targets) error of standardised
    components over labelled sites, averaged over committee members and targets.
    ``irrep_weights`` (l = 0, 1, 2) weight the components' mean errors; equal weights give
    the plain mean over components, and a larger l = 0 weight steers training towards
    sigma_iso, a smaller l = 1 weight away from the antisymmetric part, which NMR spectra
    do not see to first order. Each member's mean is weighted by its own site weights
    (a bootstrap resample or Bayesian-bootstrap weights) when the labels carry them
    (:func:`bootstrap_weights`)."""
    out, idx = model.normalised(graph, sites=sites)
    losses = []
    for t, (pos, y, w_site) in labels.items():
        if len(pos) == 0:
            continue
        s = idx[pos]
        target = (y - getattr(model, f"{t}_shift")[s]) / getattr(model, f"{t}_scale")[s]
        err = out[t][pos] - target[:, None, :]  # (sites, members, components)
        e = err**2 if kind == "mse" else err.abs()
        if w_site is None:
            per_comp = e.mean(dim=(0, 1))
        else:
            w_site = w_site.to(e.device, e.dtype)
            per_member = (e * w_site[:, :, None]).sum(0) / w_site.sum(0).clamp(min=1.0)[:, None]
            per_comp = per_member.mean(0)
        w = component_weights(t, irrep_weights).to(err.device, err.dtype)
        losses.append((per_comp * w).sum() / w.sum())
    return torch.stack(losses).mean()


def committee_calibration(model, train_s, val_s, test, targets, calib_s=None) -> dict:
    """:func:`dynnmr.uncertainty.calibrate` of a committee model on its split, and on the
    structures of ``calibration_only`` data (``calib_s``) when there are any."""
    val, test, train = (committee_sites(model, part, targets) for part in (val_s, test, train_s))
    calib = committee_sites(model, calib_s, targets) if calib_s else None
    return uncertainty.calibrate(val, test, train, targets, calib)


def shift_references(model, cfg):
    """sigma_ref (ppm) per element: model's mean sigma_iso of a reference structure + its shift."""
    refs = {}
    for el, ref in cfg["references"].items():
        atoms = tensorfiles.read(ref["structure"])[0]
        graph = collate([structure_arrays(atoms, model.cutoff)])
        with torch.no_grad():
            ms = model(graph)["ms"].numpy()
        sites = np.array(atoms.get_chemical_symbols()) == el
        sigma = float(np.mean(T.isotropic(ms[sites])))
        refs[el] = {"sigma_ref_ppm": sigma + float(ref["shift_ppm"]), "structure": Path(ref["structure"]).name,
                    "shift_ppm": float(ref["shift_ppm"]), "predicted_sigma_iso_ppm": sigma}  # fmt: skip
    return refs


class WeightAverage:
    """Exponential moving average of a model's floating-point state (weights and buffers).

    ``update`` after each optimiser step: avg <- decay * avg + (1 - decay) * current.
    ``swapped_in`` evaluates the model with the averaged weights and restores its own.
    """

    def __init__(self, model, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"training.ema must be a decay in [0, 1), not {decay}")
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model):
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.state[k].mul_(self.decay).add_(v, alpha=1.0 - self.decay)
            else:
                self.state[k].copy_(v)

    @contextlib.contextmanager
    def swapped_in(self, model):
        own = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.state)
        try:
            yield model
        finally:
            model.load_state_dict(own)


def log_stderr(message):
    """A line of progress on stderr, flushed at once (training runs for hours)."""
    print(message, file=sys.stderr, flush=True)


#: Settings a resumed run may change: a longer run, another machine, another name for the
#: output file (so the one-trunk runs at seeds s, s + 1, ... resume as the trunks of an
#: ensemble run named otherwise).
RESUME_MAY_CHANGE = {"training.epochs", "training.threads", "name"}


def _flat(cfg) -> dict:
    """``{"section.key": value}`` one level deep; sections that are not dicts stay whole."""
    out = {}
    for sec, val in cfg.items():
        if isinstance(val, dict):
            out.update({f"{sec}.{k}": v for k, v in val.items()})
        else:
            out[sec] = val
    return out


def _config_changes(saved, cfg):
    """Config entries that differ from a checkpoint's, except :data:`RESUME_MAY_CHANGE`
    (a longer run, another machine). Checkpoints from before configs were saved in them
    (``saved`` None) are not checked."""
    if saved is None:
        return []
    saved = copy.deepcopy(saved)
    for entry in saved.get("data") or []:  # written before data items had their roles
        if isinstance(entry, dict):
            for role in ROLES:
                entry.setdefault(role, False)
    a, b = _flat(saved), _flat(cfg)
    return sorted(k for k in a.keys() | b.keys() if k not in RESUME_MAY_CHANGE and a.get(k) != b.get(k))


def trunk_config(cfg, k):
    """The config of trunk ``k`` of an ensemble: training seed + ``k``, no ``model.trunks``.
    Trunk 0 of any run is the one-trunk run at the same seed (and its checkpoint is
    interchangeable with that run's)."""
    tcfg = copy.deepcopy(cfg)
    tcfg["model"].pop("trunks", None)
    tcfg["training"]["seed"] = int(cfg["training"]["seed"]) + k
    return tcfg


def fit(model, cfg, train_s, val_s, ckpt, data_sha256, config_path="<config>", log=log_stderr) -> dict:
    """Train one network (resuming from ``ckpt`` when it exists) until ``training.epochs``
    or early stopping; leaves the best weights (lowest validation loss) in ``model`` and
    returns the run's state (best and last epoch, loss history). A checkpoint written with
    another config or other data is refused: resuming would mix two runs."""
    tr, targets = cfg["training"], cfg["targets"]
    opt = torch.optim.Adam(model.parameters(), lr=tr["lr"])
    # validation, early stopping and the saved model use an exponential moving average of
    # the weights when training.ema (its decay per step, e.g. 0.99) is set: with small
    # batches the raw weights are noisy
    ema = WeightAverage(model, float(tr["ema"])) if tr["ema"] else None
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=tr["lr_patience"], min_lr=tr["min_lr"])
    state = {"epoch": 0, "best_val": float("inf"), "best_epoch": 0, "best_state": None, "history": []}
    if ckpt.exists():
        saved = torch.load(ckpt, weights_only=True)  # tensors and plain types only: a crafted file runs no code
        changed = _config_changes(saved.get("config"), cfg)
        if changed:
            raise ValueError(f"{ckpt} was written with another {', '.join(changed)} than {config_path} and the options "
                             f"now give; resuming would mix two runs: use a new output folder")  # fmt: skip
        if saved.get("data_sha256", data_sha256) != data_sha256:  # e.g. a label file that grew since
            raise ValueError(f"{ckpt}: the training data ({', '.join(Path(d['path']).name for d in cfg['data'])}) "
                             f"changed since this checkpoint was written; resuming would train one model on two "
                             f"data sets: use a new output folder")  # fmt: skip
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        if ema is not None:
            ema.state = saved["ema"]
        state = saved["state"]
        log(f"resuming from {ckpt} at epoch {state['epoch']}")
    val_batches = [batch_inputs(b, targets) for b in batches(val_s, range(len(val_s)), 4000)]
    t_start, e_start = time.time(), state["epoch"]
    while state["epoch"] < tr["epochs"] and state["epoch"] - state["best_epoch"] < tr["patience"]:
        epoch = state["epoch"]
        model.train()
        order = np.random.default_rng(tr["seed"] + epoch).permutation(len(train_s))
        total, n = 0.0, 0
        for batch in batches(train_s, order, tr["batch_atoms"]):
            graph, sites, labels = batch_inputs(batch, targets)
            loss = batch_loss(model, graph, sites, labels, tr["loss"], tr["irrep_weights"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update(model)
            total, n = total + loss.item(), n + 1
        model.eval()
        with torch.no_grad(), ema.swapped_in(model) if ema is not None else contextlib.nullcontext():
            val = float(np.mean([batch_loss(model, *b, tr["loss"], tr["irrep_weights"]).item() for b in val_batches]))
            current = copy.deepcopy(model.state_dict())
        sched.step(val)
        state["epoch"] = epoch + 1
        state["history"].append(
            {"epoch": epoch + 1, "train_loss": total / n, "val_loss": val, "lr": opt.param_groups[0]["lr"]}
        )
        if val < state["best_val"]:
            state.update(best_val=val, best_epoch=epoch + 1, best_state=current)
        rate = (time.time() - t_start) / (state["epoch"] - e_start)
        eta = rate * (tr["epochs"] - state["epoch"])
        log(f"epoch {state['epoch']}/{tr['epochs']}  train {total / n:.4f}  val {val:.4f}  best {state['best_val']:.4f}"
            f" (epoch {state['best_epoch']})  lr {opt.param_groups[0]['lr']:.2g}  {rate:.1f} s/epoch  ETA {eta / 60:.1f} min")  # fmt: skip
        tmp = ckpt.with_name(ckpt.name + ".tmp")
        saved = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "state": state, "config": cfg, "data_sha256": data_sha256}  # fmt: skip
        if ema is not None:
            saved["ema"] = ema.state
        torch.save(saved, tmp)
        tmp.replace(ckpt)
    model.load_state_dict(state["best_state"])
    model.eval()
    return state


def train(config_path, out_dir, epochs=None, seed=None, split_seed=None, train_fraction=None, overrides=None,
          log=log_stderr):  # fmt: skip
    """Train (or resume) per the config; returns the path of the written model file.

    ``epochs`` and ``seed`` override the config's ``training.epochs`` and
    ``training.seed`` (weight initialisation and shuffling; the split keeps
    ``split.seed``, so runs with different seeds are tested on the same structures).
    ``split_seed`` overrides ``split.seed``: other test and validation structures, for
    judging a recipe on more of the data than one split holds out (a model file records
    the seed and its test structures). ``split.site_holdout`` (structure, axis, slab,
    buffer_A: :func:`hold_out_sites`) moves one structure out of the split and tests on
    a slab of its sites; metrics.json reports those sites on their own.
    ``train_fraction`` overrides ``split.train_fraction`` (a nested share of the training
    structures: :func:`~dynnmr.samples.split_samples`). ``overrides`` ``{"SECTION.KEY":
    value}`` changes settings of the config (:func:`~dynnmr.config.apply_overrides`), e.g.
    one variant of an architecture comparison (:mod:`dynnmr.compare`).
    """
    cfg = apply_overrides(load_config(config_path), overrides or {})
    tr = cfg["training"]
    if seed is not None:
        tr["seed"] = int(seed)
    if split_seed is not None:
        cfg["split"]["seed"] = int(split_seed)
    if train_fraction is not None:
        cfg["split"]["train_fraction"] = float(train_fraction)
    if tr["loss"] not in ("mse", "l1"):
        raise ValueError(f"{config_path}: training.loss must be mse or l1, not {tr['loss']!r}")
    if len(tr["irrep_weights"]) != 3 or min(tr["irrep_weights"]) < 0 or any(
            component_weights(t, tr["irrep_weights"]).sum() <= 0 for t in cfg["targets"]):  # fmt: skip
        raise ValueError(f"{config_path}: training.irrep_weights must be three weights >= 0 for l = 0, 1, 2, "
                         f"not all zero on any target's irreps (efg has l = 2 only)")  # fmt: skip
    if epochs is not None:
        tr["epochs"] = int(epochs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(int(tr["threads"]))
    targets = cfg["targets"]
    samples = load_samples(cfg["data"], targets, cfg["model"]["cutoff"])
    train_s, val_s, test = split_samples(samples, cfg["split"])
    holdout = cfg["split"].get("site_holdout")
    if holdout:  # one structure's sites split by a slab: the far ones train, the slab tests
        opts = dict(holdout)
        if set(opts) != {"structure", "axis", "slab", "buffer_A"}:
            raise ValueError(f"{config_path}: split.site_holdout needs structure (an id such as FILE:5), axis (0, 1 "
                             f"or 2), slab ([lo, hi) fractional) and buffer_A, not {holdout!r}")  # fmt: skip
        sid = opts.pop("structure")
        found = [s for s in samples if s["id"] == sid]
        if not found:
            raise ValueError(f"{config_path}: split.site_holdout.structure {sid!r} is not among the data's structures")
        train_s, val_s, test = ([s for s in part if s["id"] != sid] for part in (train_s, val_s, test))
        kept, held = hold_out_sites(found[0], targets, **opts)
        train_s.append(kept)
        test.append(held)
    species = sorted({int(z) for s in samples for z in s["numbers"]})
    avg_nb = float(np.mean([len(s["dst"]) / len(s["numbers"]) for s in train_s]))
    hp = dict(cfg["model"], avg_neighbours=avg_nb)
    resample = tr.get("bootstrap", True)  # default: each committee member on its own resample of the sites
    if not is_resample_mode(resample):
        raise ValueError(f"{config_path}: training.bootstrap must be true, false or bayesian, not {resample!r}")
    data_sha256 = sha256_files([d["path"] for d in cfg["data"]])
    n_trunks = int(hp.pop("trunks", 1))
    if n_trunks < 1:
        raise ValueError(f"{config_path}: model.trunks must be >= 1, not {n_trunks}")
    nets, states, covered = [], [], {}
    for k in range(n_trunks):  # trunk k is the one-trunk run at seed + k: same checkpoint, same weights
        tcfg = trunk_config(cfg, k)
        seed_k = tcfg["training"]["seed"]
        torch.manual_seed(seed_k)
        net = TensorGNN(species=species, targets=targets, **hp)
        bootstrap_weights(train_s, targets, net.heads, seed_k, resample=resample)
        for t in targets:
            scale, shift, covered[t] = normalisation(train_s, t, species)
            net.set_normalisation(t, scale, shift)
        folder = out if n_trunks == 1 else out / f"trunk{k}"
        folder.mkdir(parents=True, exist_ok=True)
        say = log if n_trunks == 1 else (lambda m, k=k: log(f"trunk {k + 1}/{n_trunks} (seed {seed_k}): {m}"))
        states.append(fit(net, tcfg, train_s, val_s, folder / "checkpoint.pt", data_sha256, config_path, say))
        nets.append(net)
    if n_trunks > 1:
        hp["trunks"] = n_trunks
    model = nets[0] if n_trunks == 1 else Ensemble(nets)
    runs = {k: [st[k] for st in states] for k in ("best_epoch", "epoch", "history")}
    if n_trunks == 1:  # one network: plain values; an ensemble: one per trunk, in trunk order
        runs = {k: v[0] for k, v in runs.items()}
    metrics = split_metrics(*predict_samples(model, test, targets), plot_dir=out, name=cfg["name"])
    by_source = metrics_by_source(model, test, targets)
    if holdout:  # and for the held-out sites alone
        by_source[f"{holdout['structure']} held-out sites"] = split_metrics(*predict_samples(model, [held], targets))
    refs = shift_references(model, cfg)
    extra = {}
    if model.heads > 1:  # the committee's calibration (validation), thresholds (training), test
        extra["uncertainty"] = committee_calibration(model, train_s, val_s, test, targets, calibration_samples(samples))
    summary = {"name": cfg["name"], "test_metrics": metrics, "test_metrics_by_source": by_source,
               "best_epoch": runs["best_epoch"],
               "epochs_run": runs["epoch"], "n_structures": {"train": len(train_s), "val": len(val_s), "test": len(test)},
               "shift_reference": refs, **extra, "config": cfg, "history": runs["history"]}  # fmt: skip
    (out / "metrics.json").write_text(json.dumps(summary, indent=1))
    path = out / f"{cfg['name']}.pt"
    save_model(path, model, hp, metrics=metrics, shift_reference=refs, covered_species=covered,
               training_data_sha256=data_sha256, training_config=cfg,
               test_structures=[s["id"] for s in test], **extra,
               test_sites=sites_record(test, targets))  # fmt: skip
    log(f"wrote {path} and {out / 'metrics.json'}")
    return path
