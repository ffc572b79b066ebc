"""Static prediction: structures in, the same structures with ``ms``/``efg`` tensors out."""

from __future__ import annotations

import numpy as np
import torch

from .errors import InputError
from .graphs import collate, structure_arrays


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when a GPU is visible, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but torch sees no CUDA device")
    return torch.device(device)


def species_indices(model, numbers, allow_unknown, source="<input>", frame=None):
    """Embedding rows for atomic numbers; -1 (kept only with ``allow_unknown``) for unknown ones."""
    idx = model.species_index[numbers]
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


def predict_images(model, info, images, device="cpu", allow_unknown=False, batch_atoms=20000, source="<input>"):
    """Add predicted ``ms`` (ppm) / ``efg`` (au) arrays, shape (N, 3, 3), to each Atoms."""
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
            out = model(graph, species_idx=idx)
        unknown = (idx < 0).cpu().numpy()
        offset = 0
        for atoms in chunk:
            sl = slice(offset, offset + len(atoms))
            for t, tensors in out.items():
                arr = tensors[sl].double().cpu().numpy()
                bad = ~covered_mask(info, t, atoms.numbers) | unknown[sl]
                arr[bad] = np.nan
                atoms.arrays[t] = arr
            offset += len(atoms)
        start = stop
    return images
