"""E(3)-equivariant message-passing network predicting per-atom rank-2 NMR tensors.

NequIP-style: species embedding -> ``layers`` interaction blocks (spherical harmonics of
edge directions, Bessel radial basis with a smooth cutoff, per-edge weighted tensor
products, optionally a MACE-like product of each atom's summed messages for three-body
terms, gated nonlinearity, residual) -> one linear readout per target. Readouts are
the irreps of the spherical decomposition (:mod:`dynnmr.tensors`):

* ``ms`` (magnetic shielding): ``0e + 1e + 2e`` (9 numbers = the full 3x3 tensor)
* ``efg`` (electric field gradient): ``2e`` only, symmetric and traceless by construction

Two readouts (``readout``): ``"linear"`` (default) maps each atom's final features
straight onto those irreps; ``"tensor_product"`` builds them as a weighted tensor
product of the features with themselves (the seed paper's tensor-product route to a
rank-2 tensor: for two vectors, a b^T = (a.b)/3 1 + (a x b)/2 + its symmetric traceless
part, the 0e, 1e and 2e parts of 1o x 1o), so that l = 2 arises from l = 1 features too.
Both are exactly equivariant.

A committee for uncertainty: with ``heads`` > 1 every readout has that many members on
one shared trunk (each trained on its own bootstrap resample of the labelled sites,
:mod:`dynnmr.samples`); ``forward`` returns the members' mean and :meth:`TensorGNN.members`
every member, whose spread is the model's uncertainty. The heads cost little: the
trunk's tensor products dominate, and it runs once. An :class:`Ensemble` of ``trunks``
such networks (each trained on its own, with its own seed) joins all their heads into
one committee: averaging independently trained networks removes the part of the error
that changes from one training to the next, at the cost of one forward pass per trunk.

Targets are learned in standardised form, per species and per irrep (the paper's
scheme): l=0 is shifted and scaled, l=1 and l=2 only scaled (a shift would break
equivariance). ``forward`` returns physical tensors (ppm, au).
"""

from __future__ import annotations

import contextlib
import math

import e3nn
import torch
from e3nn import nn as e3nn_nn
from e3nn import o3
from torch import nn

from . import tensorproduct
from . import tensors as T
from .graphs import Graph

TARGET_IRREPS = {"ms": "1x0e+1x1e+1x2e", "efg": "1x2e"}
TARGET_UNITS = {"ms": "ppm", "efg": "au"}
#: Which of the 9 spherical components each target's irreps fill.
TARGET_COMPONENTS = {"ms": list(range(9)), "efg": list(range(4, 9))}


def target_irrep_columns(target) -> dict:
    """``{l: columns}``: which of ``target``'s components (positions in
    ``TARGET_COMPONENTS[target]``) belong to irrep l, for the irreps it has."""
    comps = TARGET_COMPONENTS[target]
    cols = {l: [c for c, full in enumerate(comps) if sl.start <= full < sl.stop] for l, sl in T.IRREP_SLICES.items()}
    return {l: c for l, c in cols.items() if c}


def hidden_irreps(channels: int, lmax: int, vector_channels: int | None = None) -> o3.Irreps:
    """Hidden features: ``channels`` scalars, ``vector_channels`` of each l>=1, both parities."""
    v = vector_channels or channels
    parts = [(channels, (0, 1))]
    for l in range(1, lmax + 1):
        parts += [(v, (l, -1)), (v, (l, 1))]
    return o3.Irreps(parts).sort().irreps.simplify()


class RadialBasis(nn.Module):
    """Bessel functions sin(n pi r / rc) / r times a smooth polynomial cutoff (p = 6)."""

    def __init__(self, cutoff: float, num_basis: int = 8, p: int = 6):
        super().__init__()
        self.cutoff, self.p = cutoff, p
        self.register_buffer("freq", torch.arange(1, num_basis + 1) * math.pi / cutoff)

    def forward(self, r):
        x = r / self.cutoff
        p = self.p
        env = 1 - (p + 1) * (p + 2) / 2 * x**p + p * (p + 2) * x ** (p + 1) - p * (p + 1) / 2 * x ** (p + 2)
        env = env * (x < 1)
        return math.sqrt(2 / self.cutoff) * torch.sin(self.freq * r[:, None]) / r[:, None] * env[:, None]


def _paths(irreps1, irreps2, irreps_wanted, mode, upper_only=False):
    """Tensor-product paths from ``irreps1 x irreps2`` to every irrep that ``irreps_wanted``
    lists, one output block (of irreps1's multiplicity) per path, in e3nn's sorted order.
    Returns ``(output irreps, instructions)``; ``upper_only`` keeps pairs with j >= i."""
    wanted = {ir for _, ir in irreps_wanted}
    out, instr = [], []
    for i, (mul, ir1) in enumerate(irreps1):
        for j, (_, ir2) in enumerate(irreps2):
            if upper_only and j < i:
                continue
            for ir in ir1 * ir2:
                if ir in wanted:
                    instr.append((i, j, len(out), mode, True))
                    out.append((mul, ir))
    irreps_sorted, perm, _ = o3.Irreps(out).sort()
    return irreps_sorted, [(a, b, perm[c], m, t) for a, b, c, m, t in instr]


class Interaction(nn.Module):
    """One message-passing block: h_i <- gate(self(h_i) + sum_j TP(h_j, Y(r_ij); R(|r_ij|))).

    Only irreps that the tensor product can produce *and* that ``irreps_wanted`` lists are
    kept, so no path is computed for channels that would always be zero (the last block
    keeps only what the readouts use).
    """

    def __init__(self, irreps_in, irreps_wanted, irreps_sh, num_basis, radial_hidden, avg_neighbours, products=0):
        super().__init__()
        self.norm = 1.0 / math.sqrt(avg_neighbours)
        self.linear_up = o3.Linear(irreps_in, irreps_in)
        irreps_sorted, instr = _paths(irreps_in, irreps_sh, irreps_wanted, "uvu")
        self.tp = o3.TensorProduct(
            irreps_in, irreps_sh, irreps_sorted, instr, shared_weights=False, internal_weights=False
        )
        self.fused = tensorproduct.FusedMessages(self.tp)  # the same sums, for CPU inference
        self.radial = e3nn_nn.FullyConnectedNet(
            [num_basis, radial_hidden, self.tp.weight_numel], torch.nn.functional.silu
        )
        produced = {ir for _, ir in irreps_sorted}
        kept = o3.Irreps([(m, ir) for m, ir in irreps_wanted if ir in produced])
        # gate: scalars pass through silu; each l>0 block gated by its own scalar
        scalars = o3.Irreps([(m, ir) for m, ir in kept if ir.l == 0])
        gated = o3.Irreps([(m, ir) for m, ir in kept if ir.l > 0])
        gates = o3.Irreps(f"{gated.num_irreps}x0e")
        self.gate = e3nn_nn.Gate(scalars, [torch.nn.functional.silu], gates, [torch.sigmoid], gated)
        self.linear_down = o3.Linear(irreps_sorted.simplify(), self.gate.irreps_in)
        self.self_connection = o3.Linear(irreps_in, self.gate.irreps_in)
        self.irreps_out = self.gate.irreps_out
        self.product = Product(irreps_sorted.simplify(), self.gate.irreps_in, products) if products else None

    def forward(self, h, sh, radial, src, dst, edge_order=None, bond=None):
        """``radial``: the radial basis per bond, ``bond`` (E,) each edge's bond (None: one
        bond per edge); the radial network runs once per bond."""
        x = self.linear_up(h)
        weights = self.radial(radial)
        if tensorproduct.usable(x, sh, weights):
            agg = self.fused(x, sh, weights, src, dst, h.shape[0], edge_order, bond)
        else:
            messages = self.tp(x[src], sh, weights if bond is None else weights[bond])
            agg = torch.zeros(h.shape[0], messages.shape[1], dtype=h.dtype, device=h.device)
            agg.index_add_(0, dst, messages)
        agg = agg * self.norm
        z = self.self_connection(h) + self.linear_down(agg)
        if self.product is not None:
            z = z + self.product(agg)
        return self.gate(z)


class Product(nn.Module):
    """Body-order raise of an atom's aggregated messages A: z = Linear(A' (x) A'), A' = Linear(A).

    The MACE idea at its smallest (correlation order 2): a message block alone sums
    two-body terms (centre, neighbour); the channel-wise product of the sum with itself
    holds three-body terms (two neighbours and the angle between them) inside one layer.
    Per atom, not per edge, so it adds little to the cost.
    """

    def __init__(self, irreps_agg, irreps_out, channels):
        super().__init__()
        mid = o3.Irreps([(channels, ir) for _, ir in irreps_agg])
        self.pre = o3.Linear(irreps_agg, mid)
        # A'_i A'_j = A'_j A'_i up to a sign: one of each pair (j >= i)
        sorted_irreps, instr = _paths(mid, mid, irreps_out, "uuu", upper_only=True)
        self.tp = o3.TensorProduct(mid, mid, sorted_irreps, instr)
        self.fused = tensorproduct.FusedProduct(self.tp)  # the same product, for CPU inference
        self.post = o3.Linear(sorted_irreps.simplify(), irreps_out)

    def forward(self, agg):
        a = self.pre(agg)
        if a.device.type == "cpu" and tensorproduct.usable(a, self.tp.weight):
            return self.post(self.fused(a, self.tp.weight))
        return self.post(self.tp(a, a))


class TensorProductReadout(nn.Module):
    """A target's irreps (``heads`` copies, one after another) as a weighted tensor
    product of the atom's final features with themselves: ``channels`` copies of each
    of its irreps (linear maps of the features), and every path of their products that
    reaches the target (1o x 1o and 1e x 1e -> 0e, 1e, 2e: a b^T; 0e x 2e -> 2e; ...).
    Unlike the linear readout it is second order in the features, and it reaches l = 2
    from vectors alone."""

    def __init__(self, irreps_in, irreps_target, channels, heads):
        super().__init__()
        mid = o3.Irreps([(channels, ir) for _, ir in irreps_in.simplify()])
        self.pre = o3.Linear(irreps_in, mid)
        self.tp = o3.FullyConnectedTensorProduct(mid, mid, irreps_target * heads)

    def forward(self, h):
        x = self.pre(h)
        return self.tp(x, x)


READOUTS = ("linear", "tensor_product")


class TensorGNN(nn.Module):
    """Per-atom NMR tensors from a :class:`~dynnmr.graphs.Graph`.

    ``species``: atomic numbers the model knows (embedding rows, in order).
    ``targets``: names from :data:`TARGET_IRREPS`. Call :meth:`set_normalisation` with
    per-species statistics before training; ``forward`` returns ``{target: (N, 3, 3)}``.
    """

    def __init__(self, species, targets=("ms",), channels=32, vector_channels=None, lmax=2, layers=2,
                 cutoff=5.0, num_basis=8, radial_hidden=32, avg_neighbours=20.0, readout_hidden=0,
                 products=0, heads=1, readout="linear", readout_channels=8):  # fmt: skip
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, not {readout!r}")
        self.readout = readout
        self.heads = int(heads)
        if self.heads < 1:
            raise ValueError(f"heads must be >= 1, not {heads}")
        self.species = [int(z) for z in species]
        self.targets = list(targets)
        self.cutoff = float(cutoff)
        self.register_buffer("species_index", torch.full((119,), -1, dtype=torch.long))
        self.species_index[torch.tensor(self.species)] = torch.arange(len(self.species))
        self.irreps_sh = o3.Irreps.spherical_harmonics(lmax)
        self.embedding = nn.Embedding(len(self.species), channels)
        self.radial_basis = RadialBasis(cutoff, num_basis)
        hidden = hidden_irreps(channels, lmax, vector_channels)
        wanted = {ir for t in self.targets for _, ir in o3.Irreps(TARGET_IRREPS[t])}
        carried = {ir for _, ir in hidden}
        if readout == "tensor_product":  # scalars, vectors and l = 2 features: their products reach the targets
            needed = {o3.Irrep(ir) for ir in ("0e", "1o", "1e", "2e")} & carried
            reached = {ir for a in needed for b in needed for ir in a * b}
        else:
            needed, reached = wanted, carried
        missing = sorted(str(ir) for ir in wanted - reached)
        if missing:  # e.g. lmax 1 has no 2e features for a linear readout to map
            raise ValueError(f"lmax={lmax} features give no {', '.join(missing)} through the {readout} readout of "
                             f"{', '.join(self.targets)}; raise lmax or use readout: tensor_product")  # fmt: skip
        last = o3.Irreps([(m, ir) for m, ir in hidden if ir in needed])
        irreps = o3.Irreps(f"{channels}x0e")
        blocks = []
        for k in range(layers):
            wanted = last if k == layers - 1 else hidden
            block = Interaction(irreps, wanted, self.irreps_sh, num_basis, radial_hidden, avg_neighbours, products)
            blocks.append(block)
            irreps = block.irreps_out
        self.blocks = nn.ModuleList(blocks)

        # one block of the target's irreps per committee member, members one after another
        def make_readout(target):
            out = o3.Irreps(TARGET_IRREPS[target])
            if readout == "tensor_product":
                return TensorProductReadout(irreps, out, readout_channels, self.heads)
            return o3.Linear(irreps, out * self.heads)

        self.readouts = nn.ModuleDict({t: make_readout(t) for t in self.targets})
        # optional nonlinear readout of the isotropic (0e) part: an MLP on the invariant
        # features, added to the linear readout; l > 0 stay linear (equivariance)
        self.scalar_slices = [
            (sl.start, sl.stop) for (_, ir), sl in zip(irreps, irreps.slices()) if ir == o3.Irrep("0e")
        ]
        n_scalars = sum(b - a for a, b in self.scalar_slices)
        self.scalar_mlps = nn.ModuleDict()
        for t in self.targets if readout_hidden else ():
            if TARGET_IRREPS[t].startswith("1x0e"):  # the isotropic part is the first output
                self.scalar_mlps[t] = e3nn_nn.FullyConnectedNet(
                    [n_scalars, readout_hidden, self.heads], torch.nn.functional.silu
                )
        n = len(self.species)
        for t in self.targets:
            k = len(TARGET_COMPONENTS[t])
            self.register_buffer(f"{t}_scale", torch.ones(n, k))
            self.register_buffer(f"{t}_shift", torch.zeros(n, k))

    def species_indices(self, numbers, allow_unknown=False):
        """Embedding rows of atomic numbers; -1 for species the model does not know (an
        error unless ``allow_unknown``)."""
        idx = self.species_index[numbers]
        if (idx < 0).any() and not allow_unknown:
            unknown = sorted(set(numbers[idx < 0].tolist()))
            raise ValueError(f"atomic numbers {unknown} are not among the model's species {self.species}")
        return idx

    def set_normalisation(self, target, scale, shift):
        """Per species (rows, in ``self.species`` order) scale and shift of the components.

        Equivariance requires one scale per irrep and no shift for l > 0; anything else
        is refused.
        """
        scale, shift = torch.as_tensor(scale, dtype=torch.float64), torch.as_tensor(shift, dtype=torch.float64)
        for l, cols in target_irrep_columns(target).items():
            if not torch.allclose(scale[:, cols], scale[:, cols[:1]].expand(-1, len(cols))):
                raise ValueError(f"{target}: l={l} components need one common scale per species")
            if l > 0 and shift[:, cols].abs().max() > 0:
                raise ValueError(f"{target}: a shift of l={l} components would break equivariance")
        getattr(self, f"{target}_scale").copy_(scale)
        getattr(self, f"{target}_shift").copy_(shift)

    def normalised(self, graph: Graph, species_idx=None, sites=None):
        """Standardised spherical components per target and member, ``{t: (M, heads, k)}``.

        ``sites`` (indices) restricts the output to those atoms; the last block then
        runs only on edges into them (training needs only the labelled atoms), with its
        radial network once per bond or once per kept edge, whichever are fewer.
        """
        idx = self.species_indices(graph.numbers) if species_idx is None else species_idx
        known = idx >= 0  # -1 marks a species the model has never seen (zero embedding)
        idx = idx.clamp(min=0)
        vec = graph.edge_vectors()
        sh = o3.spherical_harmonics(self.irreps_sh, vec, normalize=True, normalization="component")
        bond = graph.edge_bond  # an edge and its reverse share their distance: radial terms once per bond
        radial = self.radial_basis((vec if bond is None else vec[graph.bond_edge]).norm(dim=1))
        src, dst = graph.edge_src, graph.edge_dst
        h = self.embedding(idx) * known[:, None]
        edge_order = tensorproduct.EdgeOrder(dst, h.shape[0])  # the blocks on the same edges share it
        for k, block in enumerate(self.blocks):
            if sites is not None and k == len(self.blocks) - 1:
                keep = torch.zeros(h.shape[0], dtype=torch.bool, device=h.device)
                keep[sites] = True
                e = keep[dst]
                kept = int(e.sum())
                if kept < len(e):  # else every edge leads into a site (inference): the whole graph serves
                    sh, src, dst = sh[e], src[e], dst[e]
                    if bond is None:
                        radial = radial[e]
                    elif kept < len(radial):  # fewer kept edges than bonds: a radial row each
                        radial, bond = radial[bond[e]], None
                    else:  # the radial network stays once per bond
                        bond = bond[e]
                    edge_order = tensorproduct.EdgeOrder(dst, h.shape[0])
            h = block(h, sh, radial, src, dst, edge_order, bond)
        if sites is not None:
            h, idx = h[sites], idx[sites]
        out = {t: self.readouts[t](h).reshape(h.shape[0], self.heads, -1) for t in self.targets}
        if len(self.scalar_mlps):
            scalars = torch.cat([h[:, a:b] for a, b in self.scalar_slices], dim=1)
            for t, mlp in self.scalar_mlps.items():
                out[t] = torch.cat([out[t][:, :, :1] + mlp(scalars)[:, :, None], out[t][:, :, 1:]], dim=2)
        return out, idx

    def members(self, graph: Graph, species_idx=None, sites=None):
        """Every committee member's physical tensors ``{target: (M, heads, 3, 3)}`` (ppm, au)."""
        out, idx = self.normalised(graph, species_idx, sites)
        return {t: self.to_tensor(t, y, idx) for t, y in out.items()}

    def forward(self, graph: Graph, species_idx=None, sites=None):
        """Physical tensors ``{target: (M, 3, 3)}`` (ppm, au) for all atoms or ``sites``: the
        committee's mean (the members' tensors are linear in their outputs)."""
        out, idx = self.normalised(graph, species_idx, sites)
        return {t: self.to_tensor(t, y.mean(dim=1, keepdim=True), idx)[:, 0] for t, y in out.items()}

    def to_physical(self, target, y, idx):
        """Standardised components (M, heads, k) -> physical spherical components."""
        return y * getattr(self, f"{target}_scale")[idx, None] + getattr(self, f"{target}_shift")[idx, None]

    def to_tensor(self, target, y, idx):
        """Standardised components (M, heads, k) -> Cartesian tensors (M, heads, 3, 3)."""
        comps = torch.zeros(*y.shape[:2], 9, dtype=y.dtype, device=y.device)
        comps[..., TARGET_COMPONENTS[target]] = self.to_physical(target, y, idx)
        basis = torch.as_tensor(T.CART_TO_SPH, dtype=y.dtype, device=y.device)
        return (comps @ basis).reshape(*y.shape[:2], 3, 3)


class Ensemble(nn.Module):
    """Several :class:`TensorGNN` trunks, trained independently on the same data, as one
    committee: their heads are its members (``heads`` = the sum), ``forward`` returns
    the mean over all members and :meth:`members` every one, in physical units (each
    trunk keeps its own normalisation). The trunks must agree on species, targets and
    cutoff, so that one graph serves them all.
    """

    def __init__(self, trunks):
        super().__init__()
        trunks = list(trunks)
        if not trunks:
            raise ValueError("an ensemble needs at least one trunk")
        first = trunks[0]
        for k, t in enumerate(trunks[1:], 1):
            if (t.species, t.targets, t.cutoff) != (first.species, first.targets, first.cutoff):
                raise ValueError(f"trunk {k} has species/targets/cutoff {t.species}/{t.targets}/{t.cutoff}, trunk 0 "
                                 f"{first.species}/{first.targets}/{first.cutoff}: an ensemble's trunks must agree")  # fmt: skip
        self.trunks = nn.ModuleList(trunks)
        self.species, self.targets, self.cutoff = first.species, first.targets, first.cutoff
        self.heads = sum(t.heads for t in trunks)

    def species_indices(self, numbers, allow_unknown=False):
        return self.trunks[0].species_indices(numbers, allow_unknown)

    def members(self, graph: Graph, species_idx=None, sites=None):
        """Every trunk's members, one after another: ``{target: (M, heads, 3, 3)}`` (ppm, au)."""
        parts = [t.members(graph, species_idx, sites) for t in self.trunks]
        return {t: torch.cat([p[t] for p in parts], dim=1) for t in self.targets}

    def forward(self, graph: Graph, species_idx=None, sites=None):
        """The mean over all members of all trunks, ``{target: (M, 3, 3)}`` (ppm, au)."""
        return {t: m.mean(dim=1) for t, m in self.members(graph, species_idx, sites).items()}


@contextlib.contextmanager
def e3nn_options(**options):
    """e3nn's global optimisation defaults (``e3nn.set_optimization_defaults``) set to
    ``options`` while modules are built inside the block, restored after it."""
    saved = e3nn.get_optimization_defaults()
    e3nn.set_optimization_defaults(**options)
    try:
        yield
    finally:
        e3nn.set_optimization_defaults(**{k: saved[k] for k in options})


def build_model(species, targets=("ms",), trunks=1, **hyperparameters):
    """A :class:`TensorGNN`, or with ``trunks`` > 1 an :class:`Ensemble` of that many alike
    (same hyperparameters; the weights come from training or a model file)."""
    if int(trunks) < 1:
        raise ValueError(f"trunks must be >= 1, not {trunks}")
    if int(trunks) == 1:
        return TensorGNN(species=species, targets=targets, **hyperparameters)
    return Ensemble(TensorGNN(species=species, targets=targets, **hyperparameters) for _ in range(int(trunks)))
