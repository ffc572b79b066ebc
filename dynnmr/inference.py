"""Running a model on structures: loading it for a device, mapping species to its
embedding rows, batching frames, and masking what it does not cover.

One module serves the three ways dynnmr predicts: ``analyze`` (the streaming engine),
the dask chunk tasks of :mod:`dynnmr.distributed` (both through :class:`Job`, so they
compute a chunk the same way, with the same batches and hence the same numbers), and
static ``predict`` on structures (:func:`predict_images`; :func:`predict` for the Python API).

NaN marks only what the model does not cover (species it was not trained on for a
target, unknown elements allowed with ``allow_unknown``); a non-finite output anywhere
else is an error naming the frame and atoms, never stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import InputError
from .graphs import collate, collate_on_device, frame_arrays, structure_arrays
from .modelfile import load_model
from .spec import AnalysisSpec
from .tensorfiles import stamp
from .uncertainty import PARAMETERS, site_scales, spread


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when a GPU is visible, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but torch sees no CUDA device")
    return torch.device(device)


def species_indices(model, numbers, allow_unknown, source="<input>", frame=None):
    """Embedding rows for atomic numbers; -1 (kept only with ``allow_unknown``) for unknown ones."""
    idx = model.species_indices(numbers, allow_unknown=True)
    if (idx < 0).any() and not allow_unknown:
        from ase.data import chemical_symbols

        unknown = sorted({chemical_symbols[int(z)] for z in numbers[idx < 0]})
        raise InputError(
            source,
            f"element(s) {', '.join(unknown)} unknown to the model (knows "
            f"{', '.join(chemical_symbols[z] for z in model.species)}); --allow-unknown predicts NaN for them",
            frame=frame,
        )
    return idx


def covered_mask(info, target, numbers):
    """Atoms whose species the model was trained on for ``target`` (others get NaN)."""
    covered = info.get("covered_species", {}).get(target)
    if covered is None:
        return np.ones(len(numbers), bool)
    return np.isin(numbers, covered)


def checked(arr, expected, target, source, frame=None, line=None, atoms=None):
    """One structure's outputs ``(n, ...)`` with NaN where not ``expected`` (not covered);
    a non-finite value where one is expected is an error naming the atoms (``atoms``:
    their indices in the structure, default 0..n-1)."""
    bad = ~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1) & expected
    if bad.any():
        ids = (np.arange(len(arr)) if atoms is None else np.asarray(atoms))[bad]
        raise InputError(source, f"the model gave non-finite {target} tensors for atoms "
                                 f"{', '.join(map(str, ids[:10]))}{' ...' if len(ids) > 10 else ''}",
                         frame=frame, line=line)  # fmt: skip
    arr[~expected] = np.nan
    return arr


def uses_committee(net, uncertainty=True) -> bool:
    """Whether a run stores the committee spread: asked for and the model has members."""
    return bool(uncertainty) and getattr(net, "heads", 1) > 1


def run_model(net, graph, idx, sites=None, uncertainty=False, info=None):
    """``(tensors, spreads)``: ``{target: (M, 3, 3)}`` on the model's device, and with
    ``uncertainty`` on a committee model ``{target: (tensor_std (M, 9), param_std (M, P))}``
    as numpy (:func:`dynnmr.uncertainty.spread`, times the calibration factors in the
    model's ``info``, per element; none without ``info``); else ``{}``. On a GPU the spread
    is computed there, in float64, and only it comes back (on the CPU NumPy's eigenvalue
    loop is the faster)."""
    if not uses_committee(net, uncertainty):
        return net(graph, species_idx=idx, sites=sites), {}
    members = net.members(graph, species_idx=idx, sites=sites)
    numbers = (graph.numbers if sites is None else graph.numbers[sites.to(graph.numbers.device)]).cpu().numpy()
    spreads = {}
    for t, m in members.items():
        m = m.double()
        sd = spread(t, m.numpy() if m.device.type == "cpu" else m, site_scales(info or {}, t, numbers))
        spreads[t] = tuple(x.cpu().numpy() if torch.is_tensor(x) else x for x in sd)
    return {t: m.mean(dim=1) for t, m in members.items()}, spreads


def predict_images(model, info, images, device="cpu", allow_unknown=False, batch_atoms=20000, source="<input>",
                   uncertainty=True):  # fmt: skip
    """Add predicted ``ms`` (ppm) / ``efg`` (au) arrays, shape (N, 3, 3), to each Atoms, and
    the model, version and shift references to its ``info`` (:func:`dynnmr.tensorfiles.stamp`).
    With a committee model and ``uncertainty``, also ``{target}_std`` (N, 3, 3), same units,
    and ``{target}_param_std`` (N, P) (:mod:`dynnmr.uncertainty`)."""
    device = resolve_device(device) if isinstance(device, str) else device
    model = model.to(device)
    model.eval()
    start = 0
    while start < len(images):
        stop, n = start, 0
        while stop < len(images) and (n == 0 or n + len(images[stop]) <= batch_atoms):
            n += len(images[stop])
            stop += 1
        chunk = images[start:stop]
        parts = [structure_arrays(a, model.cutoff, source=source, frame=start + k) for k, a in enumerate(chunk)]
        graph = collate(parts).to(device)
        idx = species_indices(model, graph.numbers, allow_unknown, source=source, frame=start)
        with torch.no_grad():
            out, spreads = run_model(model, graph, idx, uncertainty=uncertainty, info=info)
        unknown = (idx < 0).cpu().numpy()
        offset = 0
        for k, atoms in enumerate(chunk):
            sl = slice(offset, offset + len(atoms))
            for t, tensors in out.items():
                arr = tensors[sl].double().cpu().numpy()
                expected = covered_mask(info, t, atoms.numbers) & ~unknown[sl]
                atoms.arrays[t] = checked(arr, expected, t, source, frame=start + k)
                if t in spreads:
                    tensor_std, param_std = (x[sl].copy() for x in spreads[t])
                    tensor_std[~expected], param_std[~expected] = np.nan, np.nan
                    atoms.arrays[f"{t}_std"] = tensor_std.reshape(-1, 3, 3)
                    atoms.arrays[f"{t}_param_std"] = param_std
            stamp(atoms, info)
            offset += len(atoms)
        start = stop
    return images


def predict(atoms, model=None, device="cpu", allow_unknown=False, uncertainty=True):
    """Tensors for one structure or a list of them: copies of the ``ase.Atoms`` with
    per-atom arrays ``ms`` (shielding, ppm) and ``efg`` (atomic units), shape (N, 3, 3),
    for the targets the model has; NaN rows for atoms it does not cover. A committee
    model adds the spread of its members (``uncertainty``): ``ms_std``/``efg_std``, same
    shape and units, and ``ms_param_std`` (sigma_iso, zeta in ppm, eta, span in ppm, skew) and
    ``efg_param_std`` (Vzz in au, eta_Q), shape (N, P) (:mod:`dynnmr.uncertainty`).

    ``model``: a bundled model name or a model file (default: the bundled default,
    ``sio2``). The input is not modified. Example::

        quartz = dynnmr.predict(ase.io.read("quartz.cif"))
        quartz.arrays["ms"]    # (9, 3, 3), ppm; quartz.arrays["efg"]: NaN rows for Si
    """
    from . import DEFAULT_MODEL

    single = not isinstance(atoms, (list, tuple))
    images = [a.copy() for a in ([atoms] if single else atoms)]
    dev = resolve_device(device) if isinstance(device, str) else device
    net, info = load_model(model or DEFAULT_MODEL, device=dev)
    predict_images(net, info, images, device=dev, allow_unknown=allow_unknown, uncertainty=uncertainty)
    return images[0] if single else images


def load_for_inference(model, device, batch_atoms=None):
    """``(net, info, device, batch_atoms)``; batch default 4,000 atoms on CPU, 100,000 on GPU."""
    dev = resolve_device(device)
    if batch_atoms is None:  # CPU throughput is flat in batch size, and memory is not
        batch_atoms = 4000 if dev.type == "cpu" else 100_000
    net, info = load_model(model, device=dev)
    return net, info, dev, batch_atoms


class FrameCheck:
    """Frames must keep the first frame's atoms, species and periodicity."""

    def __init__(self, source, numbers, periodic):
        self.source, self.numbers, self.periodic = source, numbers, periodic

    def __call__(self, frame):
        if len(frame.numbers) != len(self.numbers):
            raise InputError(self.source, f"atom count changed from {len(self.numbers)} to {len(frame.numbers)}",
                             frame=frame.index, line=frame.line)  # fmt: skip
        if not np.array_equal(frame.numbers, self.numbers):
            raise InputError(
                self.source, "species order changed from the first frame", frame=frame.index, line=frame.line
            )
        if self.periodic and frame.cell is None:
            raise InputError(
                self.source, "missing cell (Lattice) in a periodic run", frame=frame.index, line=frame.line
            )


@dataclass
class Job:
    """What every chunk of a run needs, derived once from the model and the first frame.

    Shared by the single-process engine and the distributed workers, so both compute a
    chunk the same way (the same batches, hence the same numbers).
    """

    net: torch.nn.Module
    info: dict
    device: torch.device
    batch_atoms: int
    numbers: np.ndarray  # (N,) atomic numbers of every atom
    sites: np.ndarray  # indices of the stored sites
    idx: torch.Tensor  # embedding row per atom (-1: unknown, only with allow_unknown)
    covered: dict  # target -> (n_sites,) bool: species the model was trained on
    check: "FrameCheck"
    uncertainty: bool = False  # store the committee spread (the model has members)

    @classmethod
    def create(cls, trajectory, first, net, info, device, batch_atoms, species=None, allow_unknown=False, sites=None,
               uncertainty=True):  # fmt: skip
        """``species``: the elements whose sites are stored (default: all the model covers);
        ``sites``: explicit atom indices instead (every one stored, covered or not);
        ``uncertainty``: store the committee spread when the model has one."""
        from ase.data import atomic_numbers, chemical_symbols

        numbers = first.numbers
        idx = species_indices(net, torch.as_tensor(numbers), allow_unknown, source=trajectory, frame=first.index)
        covers = {z for t in net.targets for z in info.get("covered_species", {}).get(t, net.species)}
        wanted = covers
        if isinstance(species, str):
            unknown_names = [s.strip() for s in species.split(",") if s.strip() not in atomic_numbers]
            if unknown_names:
                raise ValueError(f"--species: unknown element(s) {', '.join(unknown_names)}")
            wanted = {atomic_numbers[s.strip()] for s in species.split(",")}
        elif species:
            wanted = set(species)
        if sites is not None:
            sites = np.asarray(sites, dtype=np.int64)
            wanted = {int(z) for z in numbers[sites]}
        else:
            sites = np.flatnonzero(np.isin(numbers, sorted(wanted)))
        if sites.size == 0:
            raise InputError(
                trajectory, f"no atoms of the selected species {sorted(chemical_symbols[z] for z in wanted)}"
            )
        if not covers & wanted:
            raise ValueError(f"model {info['name']} predicts {', '.join(net.targets)} only for "
                             f"{', '.join(chemical_symbols[z] for z in sorted(covers))}, not for the selected "
                             f"{', '.join(chemical_symbols[z] for z in sorted(wanted))}")  # fmt: skip
        covered = {t: covered_mask(info, t, numbers[sites]) for t in net.targets}
        check = FrameCheck(trajectory, numbers, first.cell is not None)
        return cls(net, info, device, batch_atoms, numbers, sites, idx, covered, check,
                   uses_committee(net, uncertainty))  # fmt: skip

    @classmethod
    def for_spec(cls, spec: AnalysisSpec, first, net, info, device, batch_atoms):
        """:meth:`create` with a run's species, unknown-element and uncertainty options."""
        return cls.create(spec.trajectory, first, net, info, device, batch_atoms, spec.species, spec.allow_unknown,
                          uncertainty=spec.uncertainty)  # fmt: skip

    def attrs(self, dt_ps) -> dict:
        """The store's descriptive attributes for this model and selection."""
        from ase.data import chemical_symbols

        info = self.info
        return {"model_name": info["name"], "targets": list(self.net.targets),
                "units": {**info["units"], "time_ps": "ps", "cell": "Angstrom", "positions": "Angstrom"},
                "shift_reference": info.get("shift_reference", {}),
                "species": sorted({chemical_symbols[z] for z in self.numbers[self.sites]}), "dt_ps": dt_ps,
                "covered_species": {t: sorted({chemical_symbols[int(z)] for z in self.numbers[self.sites][c]})
                                    for t, c in self.covered.items()},
                "uncertainty": self.uncertainty_attrs()}  # fmt: skip

    def uncertainty_attrs(self) -> dict:
        """What the spread arrays hold (empty when none are stored)."""
        if not self.uncertainty:
            return {}
        u = self.info.get("uncertainty", {})
        return {"members": int(self.net.heads), "scale": u.get("scale", {}),
                "flag_threshold": u.get("flag_threshold", {}),
                "param_std": {t: list(PARAMETERS[t]) for t in self.net.targets}}  # fmt: skip

    def prepare(self, frame, cpu_graphs):
        """``(frame, graph arrays or None)`` for :meth:`infer`, after checking the frame;
        graph arrays are built here (CPU) or left to the model's device (None)."""
        self.check(frame)
        if cpu_graphs:
            return frame, frame_arrays(frame.numbers, frame.positions, frame.cell, frame.pbc, self.net.cutoff,
                                       source=self.check.source, frame=frame.index, line=frame.line)  # fmt: skip
        if not np.isfinite(frame.positions).all():
            raise InputError(self.check.source, "non-finite coordinates", frame=frame.index, line=frame.line)
        return frame, None

    def infer(self, chunk, spec: AnalysisSpec) -> dict:
        """The store's arrays for one chunk of ``(frame, graph arrays or None)``."""
        data = self.tensors(chunk, spec.save_positions)
        data["time_ps"] = np.array([_time_ps(f, spec.dt_ps, spec.md_timestep_ps) for f, _ in chunk], float)
        return data

    def tensors(self, chunk, save_positions=False) -> dict:
        """Model outputs of the stored sites for one chunk (:func:`infer_chunk`), without times."""
        unknown = (self.idx < 0).cpu().numpy()[self.sites]
        return infer_chunk(self.net, chunk, torch.as_tensor(self.sites), self.idx, self.device, self.batch_atoms,
                           self.covered, unknown, save_positions, source=self.check.source,
                           uncertainty=self.uncertainty, info=self.info)  # fmt: skip


def _time_ps(frame, dt_ps, md_timestep_ps):
    """A frame's time (ps): from the file, from its MD step number, from --dt, or NaN."""
    if frame.time_ps is not None:
        return frame.time_ps
    if md_timestep_ps and "timestep" in frame.info:
        return int(frame.info["timestep"]) * md_timestep_ps
    return frame.index * dt_ps if dt_ps else np.nan


def infer_chunk(net, chunk, sites, idx, device, batch_atoms, covered, unknown, save_positions, source="<input>",
                uncertainty=False, info=None):  # fmt: skip
    """Model outputs for one chunk of (frame, graph arrays or None); returns the store's
    arrays (NaN only where not covered: :func:`checked`), with the committee spread
    (``{target}_std``, ``{target}_param_std``) when ``uncertainty``."""
    n_frames = len(chunk)
    n_atoms = len(chunk[0][0].numbers)
    per_batch = max(1, batch_atoms // max(n_atoms, 1))
    out = {t: np.empty((n_frames, len(sites), 9), np.float32) for t in net.targets}
    if uncertainty:
        for t in net.targets:
            out[f"{t}_std"] = np.empty((n_frames, len(sites), 9), np.float32)
            out[f"{t}_param_std"] = np.empty((n_frames, len(sites), len(PARAMETERS[t])), np.float32)
    with torch.inference_mode():
        for b in range(0, n_frames, per_batch):
            part = chunk[b : b + per_batch]
            if part[0][1] is None:  # graphs built where the model runs
                graph = collate_on_device([f for f, _ in part], net.cutoff, device)
            else:
                graph = collate([p for _, p in part]).to(device)
            nb = len(part)
            offs = (torch.arange(nb) * n_atoms)[:, None]
            batch_sites = (offs + sites[None, :]).reshape(-1).to(device)
            res, spreads = run_model(net, graph, idx.repeat(nb).to(device), batch_sites, uncertainty, info)
            for t, tensors in res.items():
                arr = tensors.reshape(nb, len(sites), 9).float().cpu().numpy()
                expected = covered[t] & ~unknown
                for k, (f, _) in enumerate(part):
                    checked(arr[k], expected, t, source, frame=f.index, line=f.line, atoms=sites.numpy())
                out[t][b : b + nb] = arr
                for name, values in zip((f"{t}_std", f"{t}_param_std"), spreads.get(t, ())):
                    values = values.reshape(nb, len(sites), -1)
                    values[:, ~expected] = np.nan
                    out[name][b : b + nb] = values
    frames = [f for f, _ in chunk]
    data = {**out, "frame_index": np.array([f.index for f in frames]),
            "cell": np.stack([f.cell if f.cell is not None else np.full((3, 3), np.nan) for f in frames])}  # fmt: skip
    if save_positions:
        data["positions"] = np.stack([f.positions[sites.numpy()] for f in frames]).astype(np.float32)
    return data
