"""Periodic graphs: both directions of every vesin pair, an edge and its reverse one bond."""

from types import SimpleNamespace

import numpy as np
import torch
from ase.build import molecule
from test_model import make_model, rattled_quartz

from dynnmr.graphs import build_graph, collate_on_device, neighbour_pairs

torch.set_num_threads(2)


def edge_set(dst, src, shifts):
    return sorted(zip(np.asarray(dst).tolist(), np.asarray(src).tolist(), map(tuple, np.asarray(shifts).tolist())))


def test_mirrored_half_list_is_vesins_full_list_and_bonds_pair_reverse_edges():
    """A cell smaller than twice the cutoff (an atom sees its own images) and a molecule
    batched together: the graph's edges are vesin's full list, each edge's bond is shared
    with exactly its reverse, whose vector is the exact negative."""
    small = rattled_quartz(seed=1)  # 4.9 A cell, 6 A cutoff: periodic self-images
    water = molecule("H2O")
    graph = build_graph([small, water], 6.0, dtype=torch.float64)
    n = len(small)
    for k, (atoms, lo) in enumerate(((small, 0), (water, n))):
        i, j, s = neighbour_pairs(atoms.positions, atoms.cell.array, atoms.pbc, 6.0)
        mine = (graph.batch[graph.edge_dst] == k).numpy()
        assert edge_set(graph.edge_dst[mine] - lo, graph.edge_src[mine] - lo, graph.shifts[mine].long()) == edge_set(
            i, j, s
        )
    assert (graph.edge_src == graph.edge_dst).any()  # self-images are there
    bond, first = graph.edge_bond, graph.bond_edge
    assert torch.equal(torch.bincount(bond), torch.full((len(first),), 2))  # two edges a bond
    assert torch.equal(bond[first], torch.arange(len(first)))
    partner = torch.empty_like(bond)
    partner[torch.argsort(bond, stable=True)] = torch.argsort(bond, stable=True).reshape(-1, 2).flip(1).reshape(-1)
    assert torch.equal(graph.edge_src, graph.edge_dst[partner]) and torch.equal(graph.edge_dst, graph.edge_src[partner])
    vec = graph.edge_vectors()
    assert torch.equal(vec, -vec[partner])  # exact: one distance per bond


def test_device_graph_is_the_reader_graph():
    """The on-device graph (vesin's torch interface, used on GPUs; here on the CPU) has
    the same edges and bonds as the reader threads' graph."""

    frames = [rattled_quartz(seed=s) for s in (1, 2)]
    a = build_graph(frames, 5.0, dtype=torch.float64)
    b = collate_on_device(
        [SimpleNamespace(numbers=f.numbers, positions=f.positions, cell=f.cell.array, pbc=f.pbc) for f in frames],
        5.0,
        "cpu",
        dtype=torch.float64,
    )

    assert edge_set(a.edge_dst, a.edge_src, a.shifts.long()) == edge_set(b.edge_dst, b.edge_src, b.shifts.long())
    assert torch.equal(torch.bincount(b.edge_bond), torch.full((len(b.bond_edge),), 2))
    np.testing.assert_allclose(np.sort(a.edge_vectors()[a.bond_edge].norm(dim=1).numpy()),
                               np.sort(b.edge_vectors()[b.bond_edge].norm(dim=1).numpy()), rtol=1e-14)  # fmt: skip


def test_radial_weights_once_per_bond_give_the_per_edge_answer():
    """The model on a graph with bonds (radial network once per bond) and on the same
    graph without (once per edge), in float64: all atoms, and as sites a few atoms (fewer
    kept edges than bonds), most atoms (more) and every atom (the whole graph kept)."""
    model = make_model(layers=3, products=4)
    graph = build_graph([rattled_quartz(seed=2, repeat=(2, 1, 1)), molecule("CH4")], model.cutoff, dtype=torch.float64)
    per_edge = build_graph(
        [rattled_quartz(seed=2, repeat=(2, 1, 1)), molecule("CH4")], model.cutoff, dtype=torch.float64
    )
    per_edge.edge_bond = per_edge.bond_edge = None
    n = len(graph.numbers)
    few, most, every = torch.tensor([0, 3, 20]), torch.arange(1, n - 1), torch.arange(n)
    bonds = len(graph.bond_edge)
    assert (graph.edge_dst[:, None] == few).any(1).sum() < bonds < (graph.edge_dst[:, None] == most).any(1).sum()
    with torch.no_grad():
        whole = model.members(graph)
        for sites in (few, most, every):
            a, b = model.members(graph, sites=sites), model.members(per_edge, sites=sites)
            for t in a:
                np.testing.assert_allclose(a[t].numpy(), b[t].numpy(), rtol=1e-12, atol=1e-12 * b[t].abs().max().item())
                np.testing.assert_allclose(a[t].numpy(), whole[t][sites].numpy(), rtol=1e-12,
                                           atol=1e-12 * b[t].abs().max().item())  # fmt: skip
        a, b = model(graph), model(per_edge)
        for t in a:
            np.testing.assert_allclose(a[t].numpy(), b[t].numpy(), rtol=1e-12, atol=1e-12 * b[t].abs().max().item())
