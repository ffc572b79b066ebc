"""Periodic neighbour graphs, many structures or frames batched into one graph.

Neighbour pairs come from vesin (periodic cells of any shape, or none for molecules
and clusters). Only integer cell shifts are kept from it: edge vectors are recomputed
in torch from positions and cells, so the model sees exactly the geometry it was given
(rotating the input rotates every edge vector exactly, also in float64).

vesin gives each pair once (a half list); the graph holds both directions, the pairs as
given followed by their reverses (:func:`mirrored`). An edge and its reverse are one
*bond*: one distance, and so one set of radial weights, which the model computes once
per bond (the radial network's output is the largest per-edge array it writes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from vesin import NeighborList

from .errors import InputError


@dataclass
class Graph:
    """A batch of structures as one graph (torch tensors).

    ``edge_src`` is the neighbour j and ``edge_dst`` the centre i of each directed
    edge; the edge vector is ``r_j - r_i + shift @ cell`` (Angstrom).
    """

    numbers: torch.Tensor  # (N,) atomic numbers
    positions: torch.Tensor  # (N, 3) Angstrom
    cells: torch.Tensor  # (B, 3, 3) Angstrom, rows are lattice vectors (zeros if none)
    batch: torch.Tensor  # (N,) structure index of each atom
    edge_src: torch.Tensor  # (E,)
    edge_dst: torch.Tensor  # (E,)
    shifts: torch.Tensor  # (E, 3) integer cell shifts, as positions' dtype
    n_structures: int
    edge_bond: torch.Tensor | None = None  # (E,) bond of each edge (shared with its reverse)
    bond_edge: torch.Tensor | None = None  # (B,) one edge of each bond; None: every edge its own bond

    def edge_vectors(self) -> torch.Tensor:
        cell = self.cells[self.batch[self.edge_dst]]
        offset = torch.einsum("ek,ekl->el", self.shifts, cell)
        return self.positions[self.edge_src] - self.positions[self.edge_dst] + offset

    def to(self, device=None, dtype=None) -> "Graph":
        def conv(t, floating):
            return t.to(device=device, dtype=dtype if floating and dtype is not None else t.dtype)

        return Graph(
            numbers=conv(self.numbers, False), positions=conv(self.positions, True),
            cells=conv(self.cells, True), batch=conv(self.batch, False),
            edge_src=conv(self.edge_src, False), edge_dst=conv(self.edge_dst, False),
            shifts=conv(self.shifts, True), n_structures=self.n_structures,
            edge_bond=None if self.edge_bond is None else conv(self.edge_bond, False),
            bond_edge=None if self.bond_edge is None else conv(self.bond_edge, False),
        )  # fmt: skip


def neighbour_pairs(positions, cell, pbc, cutoff, distances=False, full_list=True):
    """vesin pairs (i, j, integer shifts) within ``cutoff`` Angstrom, both directions
    (``full_list``) or each pair once; with ``distances``, also each pair's distance (A),
    which vesin has at hand."""
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    pbc = np.broadcast_to(np.asarray(pbc, dtype=bool), (3,))
    if pbc.any() and abs(np.linalg.det(cell)) < 1e-8:
        raise ValueError("periodic structure without a cell")
    box = cell if pbc.any() else np.zeros((3, 3))
    nl = NeighborList(cutoff=float(cutoff), full_list=full_list)
    out = nl.compute(points=positions, box=box, periodic=pbc.tolist(), quantities="ijSd" if distances else "ijS")
    pairs = tuple(a.astype(np.int64) for a in out[:3])
    return pairs + (np.asarray(out[3], dtype=np.float64),) if distances else pairs


def mirrored(i, j, shifts):
    """Directed edges (dst, src, shifts) from pairs given once (i, j, shifts; numpy or
    torch): the pairs, then their reverses, so edge ``e`` and edge ``e + len(i)`` are one
    bond. The reverse of r_j - r_i + s @ cell is r_i - r_j - s @ cell."""
    cat = torch.cat if isinstance(i, torch.Tensor) else np.concatenate
    return cat([i, j]), cat([j, i]), cat([shifts, -shifts])


#: Atoms closer than this (A) are taken as overlapping: no chemistry puts nuclei so close.
MIN_DISTANCE_A = 0.5
#: Most neighbours an atom may have within the model's cutoff; a dense solid has well
#: under 100 within 5 A, so more means coordinates in the wrong unit (nm, bohr) or a cell
#: far too small. The environment variable ``DYNNMR_MAX_NEIGHBOURS`` overrides it (for a
#: model with a long cutoff; it reaches dask workers started from the same environment).
MAX_NEIGHBOURS = 300


def max_neighbours_allowed() -> int:
    """:data:`MAX_NEIGHBOURS`, or ``$DYNNMR_MAX_NEIGHBOURS`` when set."""
    text = os.environ.get("DYNNMR_MAX_NEIGHBOURS")
    if text is None:
        return MAX_NEIGHBOURS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"DYNNMR_MAX_NEIGHBOURS must be a whole number >= 1, got {text!r}")
    return value


def frame_arrays(numbers, positions, cell, pbc, cutoff, source="<structure>", frame=None, line=None,
                 max_neighbours=None):  # fmt: skip
    """One structure's graph arrays (numpy), with a clear error for bad geometry: non-finite
    coordinates, overlapping atoms (closer than :data:`MIN_DISTANCE_A`), more than
    ``max_neighbours`` (default :func:`max_neighbours_allowed`) neighbours of an atom.

    ``cell`` may be None for a non-periodic structure (molecule, cluster). The edges are
    laid out as :func:`mirrored` gives them, ``bonds`` of them and then their reverses.
    """
    positions = np.asarray(positions, dtype=np.float64)
    cell = np.zeros((3, 3)) if cell is None else np.asarray(cell, dtype=np.float64)
    if not np.isfinite(positions).all():
        raise InputError(source, "non-finite coordinates", frame=frame, line=line)
    try:
        i, j, s, d = neighbour_pairs(positions, cell, pbc, cutoff, distances=True, full_list=False)
    except ValueError as exc:
        raise InputError(source, str(exc), frame=frame, line=line) from None
    dst, src, shifts = mirrored(i, j, s)
    if len(i):
        k = int(np.argmin(d))
        if d[k] < MIN_DISTANCE_A:
            raise InputError(source, f"atoms {min(i[k], j[k])} and {max(i[k], j[k])} are {d[k]:.3f} A apart "
                                     f"(overlapping atoms, or coordinates not in Angstrom)", frame=frame, line=line)  # fmt: skip
        counts = np.bincount(dst, minlength=len(positions))
        max_neighbours = max_neighbours or max_neighbours_allowed()
        if counts.max() > max_neighbours:
            a = int(np.argmax(counts))
            raise InputError(source, f"atom {a} has {counts[a]} neighbours within {cutoff} A (at most "
                                     f"{max_neighbours} expected): are the coordinates in Angstrom and the cell "
                                     f"right? (a genuinely denser system: set DYNNMR_MAX_NEIGHBOURS)", frame=frame,
                                     line=line)  # fmt: skip
    return {"numbers": np.asarray(numbers, dtype=np.int64), "positions": positions, "cell": cell,
            "dst": dst, "src": src, "shifts": shifts, "bonds": len(i)}  # fmt: skip


def structure_arrays(atoms, cutoff, source="<structure>", frame=None):
    """:func:`frame_arrays` for an ``ase.Atoms``."""
    return frame_arrays(atoms.numbers, atoms.get_positions(), atoms.cell.array.copy(), atoms.pbc, cutoff, source, frame)


def bond_indices(bonds):
    """``(edge_bond, bond_edge)`` for structures whose edges are laid out as
    :func:`mirrored` gives them, ``bonds[k]`` pairs in structure k (numpy int64)."""
    bonds = np.asarray(bonds, dtype=np.int64)
    first = np.cumsum(bonds) - bonds  # structure k's first bond; its edges start at 2 * first[k]
    bond_edge = np.arange(bonds.sum()) + np.repeat(first, bonds)
    edge_bond = np.concatenate(
        [np.zeros(0, np.int64)] + [np.tile(np.arange(f, f + b), 2) for b, f in zip(bonds, first)]
    )
    return edge_bond, bond_edge


def collate(parts, dtype=torch.float32) -> Graph:
    """Concatenate per-structure arrays (from :func:`structure_arrays`) into one Graph."""
    offsets = np.cumsum([0] + [len(p["numbers"]) for p in parts[:-1]])
    cat = np.concatenate
    edge_bond, bond_edge = bond_indices([p["bonds"] for p in parts])
    return Graph(
        numbers=torch.from_numpy(cat([p["numbers"] for p in parts])),
        positions=torch.from_numpy(cat([p["positions"] for p in parts])).to(dtype),
        cells=torch.from_numpy(np.stack([p["cell"] for p in parts])).to(dtype),
        batch=torch.from_numpy(cat([np.full(len(p["numbers"]), k) for k, p in enumerate(parts)])),
        edge_src=torch.from_numpy(cat([p["src"] + o for p, o in zip(parts, offsets)])),
        edge_dst=torch.from_numpy(cat([p["dst"] + o for p, o in zip(parts, offsets)])),
        shifts=torch.from_numpy(cat([p["shifts"] for p in parts])).to(dtype),
        n_structures=len(parts), edge_bond=torch.from_numpy(edge_bond), bond_edge=torch.from_numpy(bond_edge),
    )  # fmt: skip


def build_graph(images, cutoff, dtype=torch.float32) -> Graph:
    """Batch a list of ``ase.Atoms`` into one Graph with neighbours within ``cutoff`` (A)."""
    return collate([structure_arrays(a, cutoff, frame=k) for k, a in enumerate(images)], dtype=dtype)


def collate_on_device(frames, cutoff, device, dtype=torch.float32) -> Graph:
    """Graph for frames (objects with numbers, positions, cell, pbc) built on ``device``.

    Neighbour pairs come from vesin's torch interface, which computes where its inputs
    live: on a GPU the CPU list (milliseconds per 3,000-atom frame) would otherwise cap
    the throughput of the whole run.
    """
    from vesin_torch import NeighborList as TorchNeighborList

    nl = TorchNeighborList(cutoff=float(cutoff), full_list=False)
    pos, cells, src, dst, shifts, batch, numbers, bonds = [], [], [], [], [], [], [], []
    offset = 0
    for k, f in enumerate(frames):
        p = torch.as_tensor(np.asarray(f.positions, dtype=np.float64), device=device)
        cell = np.zeros((3, 3)) if f.cell is None else np.asarray(f.cell, dtype=np.float64)
        pbc = np.broadcast_to(np.asarray(f.pbc, dtype=bool), (3,))
        box = torch.as_tensor(cell if pbc.any() else np.zeros((3, 3)), device=device)
        i, j, sh = nl.compute(points=p, box=box, periodic=torch.tensor(pbc.tolist(), device=device), quantities="ijS")
        d, s, sh = mirrored(i.long(), j.long(), sh)
        dst.append(d + offset)
        src.append(s + offset)
        shifts.append(sh)
        bonds.append(len(i))
        pos.append(p)
        cells.append(torch.as_tensor(cell, device=device))
        numbers.append(torch.as_tensor(np.asarray(f.numbers, dtype=np.int64), device=device))
        batch.append(torch.full((len(p),), k, dtype=torch.long, device=device))
        offset += len(p)
    edge_bond, bond_edge = bond_indices(bonds)
    return Graph(
        numbers=torch.cat(numbers), positions=torch.cat(pos).to(dtype), cells=torch.stack(cells).to(dtype),
        batch=torch.cat(batch), edge_src=torch.cat(src), edge_dst=torch.cat(dst),
        shifts=torch.cat(shifts).to(dtype), n_structures=len(frames),
        edge_bond=torch.from_numpy(edge_bond).to(device), bond_edge=torch.from_numpy(bond_edge).to(device),
    )  # fmt: skip
