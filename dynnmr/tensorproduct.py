"""The interaction blocks' per-edge tensor product and its sum over each atom's edges,
fused into one CPU kernel for inference.

A block's messages are m_e[u, k] = w_e[p, u] sum_{a,j} C^p_{ajk} x_src(e)[u, a] Y_e[j]
(e3nn's ``uvu`` tensor product: one weight per path p and channel u, from the radial
network; C^p the path's normalised Wigner 3j symbols; Y the edge's spherical harmonics),
and the atom receives the sum over its incoming edges. e3nn writes every edge's message
to memory (E x 560 numbers a layer for the default model) and then scatters it; on CPU
that traffic, not the arithmetic, is the cost. The kernel here walks each atom's edges
and accumulates into that atom's row only, so per edge it reads one neighbour's features,
one weight row and nine harmonics, and writes nothing.

The arithmetic is regrouped, not changed: for each path and input component a, the
products w_e[p, u] x[u, a] are formed once, and each output component k adds
(sum_j C_{ajk} Y_e[j]) times them, over the channels u in one vectorised loop. Features
are laid out component-major inside each irrep block (``[a, u]``, channels contiguous)
for that loop, and put back in e3nn's order (``[u, a]``) afterwards.

The body-order product of each atom's summed messages with themselves
(:class:`dynnmr.model.Product`, e3nn's ``uuu`` tensor product with shared weights) has
a kernel of its own, :class:`FusedProduct`, on the same plan (:func:`_plan`): e3nn runs
it as one batch of small contractions per path, each with its own intermediate array.

On the GPU the same sums are one segmented polynomial of cuequivariance (NVIDIA's
equivariance kernels, the ``gpu`` extra): the messages' gather by sender, product and
scatter-add by receiver in its ``uniform_1d`` CUDA kernel, which needs every channel
block the same width, so blocks are split into the common divisor of the multiplicities
(32 and 16 channels become blocks of 16). :func:`cuda_polynomial` builds it from the e3nn
instructions with e3nn's own Wigner 3j symbols and path weights, so the basis and the
normalisation cannot drift; the tests evaluate that very polynomial with cuequivariance's
plain-PyTorch method on the CPU against e3nn in float64.

e3nn stays the reference and the training path: :func:`usable` sends anything that
needs gradients (and GPU tensors when cuequivariance's kernels are not installed) to it;
the product runs e3nn's on the GPU.
:func:`reference` switches the fused paths off (benchmarks measure both in one run).
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import torch
from e3nn import o3

_state = threading.local()

#: On the GPU, append zero-weight edges to each block's edge list up to
#: :func:`padded_length`, so that the batches of a trajectory share a few edge counts:
#: cuequivariance compiles its kernels at run time and may key them on the batch size.
#: Off until a measurement shows it pays (``benchmarks/profile_gpu.py`` runs both).
PAD_EDGES = False


@contextlib.contextmanager
def reference():
    """Within this context the interaction blocks use e3nn's tensor product and scatter."""
    before = getattr(_state, "off", False)
    _state.off = True
    try:
        yield
    finally:
        _state.off = before


@functools.cache
def cuda_kernels() -> bool:
    """Whether cuequivariance and its CUDA kernels are installed (``pip install dynnmr[gpu]``)."""
    try:
        import cuequivariance_ops_torch  # noqa: F401
        import cuequivariance_torch  # noqa: F401
    except (ImportError, OSError):  # not installed, or built for another CUDA
        return False
    return True


def usable(*tensors) -> bool:
    """Whether a fused path may serve: no gradient wanted, not switched off, and CPU
    tensors (the numba kernel) or CUDA tensors with cuequivariance's kernels installed."""
    if getattr(_state, "off", False):
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    devices = {t.device.type for t in tensors}
    return devices == {"cpu"} or (devices == {"cuda"} and cuda_kernels())


class EdgeOrder:
    """The edges grouped by receiving atom, for the kernel: ``order`` (a stable sort of
    the edges by ``dst``) and ``ptr`` (atom i's edges are ``order[ptr[i]:ptr[i + 1]]``).
    Computed on first use, so one instance serves every block that sums over the same
    edges, and the e3nn path never pays for it."""

    def __init__(self, dst: torch.Tensor, n_atoms: int):
        self.dst, self.n_atoms = dst, n_atoms

    @functools.cached_property
    def arrays(self) -> tuple[torch.Tensor, torch.Tensor]:
        order = torch.argsort(self.dst, stable=True)
        ptr = torch.zeros(self.n_atoms + 1, dtype=torch.long)
        torch.cumsum(torch.bincount(self.dst, minlength=self.n_atoms), 0, out=ptr[1:])
        return order, ptr


@numba.njit(cache=True, nogil=True, fastmath=True)
def _accumulate(out, first, last, x, sh, w, src, row, order, ptr, g_in, g_w, g_u, g_k, k_out, k_j, j_sh, j_c):
    """Rows ``first:last`` of ``out``: each atom's sum over its incoming edges of the
    tensor-product messages (component-major layouts, see the module docstring); edge e
    takes its weights from ``w[row[e]]``."""
    wx = np.empty(x.shape[1], dtype=x.dtype)
    for n in range(first, last):
        acc = out[n]
        for idx in range(ptr[n], ptr[n + 1]):
            e = order[idx]
            xs = x[src[e]]
            we = w[row[e]]
            she = sh[e]
            for g in range(g_in.shape[0]):  # one (path, input component a)
                n_u = g_u[g]
                wv = we[g_w[g] : g_w[g] + n_u]
                xv = xs[g_in[g] : g_in[g] + n_u]
                for u in range(n_u):
                    wx[u] = wv[u] * xv[u]
                for kk in range(g_k[g], g_k[g + 1]):  # the output components k it reaches
                    # sum_j C_ajk Y_j; every k has a term, and the first sets the sum's type:
                    # a literal zero (an int64) would promote float32 sums to float64
                    jj = k_j[kk]
                    c = j_c[jj] * she[j_sh[jj]]
                    for jj in range(k_j[kk] + 1, k_j[kk + 1]):
                        c += j_c[jj] * she[j_sh[jj]]
                    a = acc[k_out[kk] : k_out[kk] + n_u]
                    for u in range(n_u):
                        a[u] += c * wx[u]


def _component_major(irreps: o3.Irreps) -> np.ndarray:
    """Column order taking e3nn's ``[u, a]`` blocks to ``[a, u]`` blocks."""
    cols = []
    for (mul, ir), sl in zip(irreps, irreps.slices()):
        cols += [sl.start + u * ir.dim + a for a in range(ir.dim) for u in range(mul)]
    return np.asarray(cols, dtype=np.int64)


def _plan(tp: o3.TensorProduct, mode: str):
    """The kernels' plan of the weighted ``mode`` paths of ``tp`` (``uvu``: the second
    input one copy of each irrep, the harmonics; ``uuu``: as many channels as the first,
    component-major): per (path, first-input component a) the first input's block
    ``g_in``, the weights' offset ``g_w``, the channels ``g_u`` and the outputs
    ``g_k[g]:g_k[g + 1]``; per output component its block ``k_out`` and its terms
    ``k_j[k]:k_j[k + 1]``, each the second input's column ``j_in`` (its block for uuu)
    and the coefficient ``j_c`` (Wigner 3j symbol times the path weight). The int64
    arrays, then the float64 coefficients."""
    i1, i2, io = tp.irreps_in1, tp.irreps_in2, tp.irreps_out
    sl1, sl2, slo = i1.slices(), i2.slices(), io.slices()
    g_in, g_w, g_u, g_k, k_out, k_j, j_in, j_c = [], [], [], [0], [], [0], [], []
    offset = 0  # into the flat weights, in e3nn's instruction order
    for ins in tp.instructions:
        if ins.connection_mode != mode or not ins.has_weight:
            raise ValueError(f"the fused kernel computes weighted {mode!r} paths, not {ins}")
        mul, ir1 = i1[ins.i_in1]
        mul2, ir2 = i2[ins.i_in2]
        mul3, ir3 = io[ins.i_out]
        cg = (o3.wigner_3j(ir1.l, ir2.l, ir3.l, dtype=torch.float64) * ins.path_weight).numpy()
        nonzero = np.abs(cg) > 1e-12
        for a in range(ir1.dim):
            ks = [k for k in range(ir3.dim) if nonzero[a, :, k].any()]
            if not ks:
                continue
            g_in.append(sl1[ins.i_in1].start + a * mul)
            g_w.append(offset)
            g_u.append(mul)
            for k in ks:
                k_out.append(slo[ins.i_out].start + k * mul3)
                for j in np.flatnonzero(nonzero[a, :, k]):
                    j_in.append(sl2[ins.i_in2].start + j * (mul2 if mode == "uuu" else 1))
                    j_c.append(cg[a, j, k])
                k_j.append(len(j_in))
            g_k.append(len(k_out))
        offset += math.prod(ins.path_shape)
    as_int = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731
    return (*(as_int(v) for v in (g_in, g_w, g_u, g_k, k_out, k_j, j_in)), np.asarray(j_c, dtype=np.float64))


def cuda_polynomial(tp: o3.TensorProduct):
    """The e3nn ``uvu`` tensor product ``tp`` as a cuequivariance segmented polynomial,
    inputs (weights, x, Y) -> messages, the features component-major (``[a, u]`` blocks)
    and every channel block split to the common width that ``uniform_1d`` needs."""
    import cuequivariance as cue

    i1, i2, io = tp.irreps_in1, tp.irreps_in2, tp.irreps_out
    stp = cue.SegmentedTensorProduct.from_subscripts("u,iu,j,ku+ijk")
    for mul, ir in i1:
        stp.add_segment(1, (ir.dim, mul))
    for _, ir in i2:
        stp.add_segment(2, (ir.dim,))
    for mul, ir in io:
        stp.add_segment(3, (ir.dim, mul))
    for ins in tp.instructions:  # weights in e3nn's instruction order, one per channel
        if ins.connection_mode != "uvu" or not ins.has_weight:
            raise ValueError(f"the fused paths compute weighted 'uvu' paths, not {ins}")
        l1, l2, l3 = i1[ins.i_in1].ir.l, i2[ins.i_in2].ir.l, io[ins.i_out].ir.l
        cg = o3.wigner_3j(l1, l2, l3, dtype=torch.float64).numpy() * ins.path_weight
        w = stp.add_segment(0, (i1[ins.i_in1].mul,))
        stp.add_path(w, ins.i_in1, ins.i_in2, ins.i_out, c=cg)
    width = math.gcd(*(mul for mul, _ in i1), *(mul for mul, _ in io))
    stp = stp.flatten_coefficient_modes().split_mode("u", width)
    return cue.SegmentedPolynomial.eval_last_operand(stp)


def padded_length(n: int) -> int:
    """``n`` rounded up to a multiple of 2^(bit_length(n) - 5): at most 1/16 more, and 16
    possible lengths between n and 2n."""
    step = 1 << max(n.bit_length() - 5, 0)
    return -(-n // step) * step


def _padded_edges(w, sh, src, dst):
    """The edge arrays with zero-weight edges (atom 0 to atom 0, adding exact zeros)
    appended up to :func:`padded_length`."""
    extra = padded_length(len(src)) - len(src)
    if not extra:
        return w, sh, src, dst
    return (torch.cat([w, w.new_zeros(extra, w.shape[1])]), torch.cat([sh, sh.new_zeros(extra, sh.shape[1])]),
            torch.cat([src, src.new_zeros(extra)]), torch.cat([dst, dst.new_zeros(extra)]))  # fmt: skip


class FusedMessages(torch.nn.Module):
    """One block's summed messages, computed by a fused path from the e3nn tensor
    product ``tp`` it replaces (same instructions, path weights and weight layout): the
    numba kernel on the CPU, cuequivariance's ``uniform_1d`` kernel on the GPU.

    Called as ``(x, sh, w, src, dst, n_atoms) -> (n_atoms, tp.irreps_out.dim)``, where e3nn
    would compute ``zeros.index_add_(0, dst, tp(x[src], sh, w))``; ``edge_order`` (an
    :class:`EdgeOrder` of ``dst``) shares the grouping of the edges between blocks; with
    ``bond`` (E,), ``w`` has one row per bond and edge e takes row ``bond[e]``. A module without
    parameters or buffers (nothing of it enters a model file), so that profilers see it.
    """

    def __init__(self, tp: o3.TensorProduct):
        super().__init__()
        i1, io = tp.irreps_in1, tp.irreps_out
        if any(m != 1 for m, _ in tp.irreps_in2):
            raise ValueError("the fused kernel takes one copy of each spherical harmonic")
        *self.plan, self.coefficients = _plan(tp, "uvu")
        self.columns_in = torch.from_numpy(_component_major(i1))
        self.columns_out = torch.from_numpy(np.argsort(_component_major(io)))
        self.dim_out = io.dim
        self._build_polynomial = functools.partial(cuda_polynomial, tp)
        self._operations = {}  # (method, device) -> (cuequivariance module, column orders); not in the state dict

    @functools.cached_property
    def polynomial(self):
        """:func:`cuda_polynomial` of the block, built on first use (CPU runs never import
        cuequivariance)."""
        return self._build_polynomial()

    def polynomial_forward(self, x, sh, w, src, dst, n_atoms, method="uniform_1d", pad=None):
        """The summed messages by cuequivariance (``method``: ``uniform_1d`` on the GPU,
        ``naive``, plain PyTorch, anywhere); ``pad`` (default :data:`PAD_EDGES`): pad
        the edges to :func:`padded_length` first."""
        key = (method, x.device)
        if key not in self._operations:
            import cuequivariance_torch as cuet

            op = cuet.SegmentedPolynomial(self.polynomial, method=method).to(x.device)
            self._operations[key] = (op, self.columns_in.to(x.device), self.columns_out.to(x.device))
        op, columns_in, columns_out = self._operations[key]  # column orders moved to the device once
        x = x.index_select(1, columns_in)
        if PAD_EDGES if pad is None else pad:
            w, sh, src, dst = _padded_edges(w, sh, src, dst)
        (out,) = op(
            [w.contiguous(), x, sh.contiguous()],
            input_indices={1: src},
            output_shapes={0: x.new_empty(n_atoms, 0)},
            output_indices={0: dst},
        )
        return out.index_select(1, columns_out)

    def forward(self, x, sh, w, src, dst, n_atoms, edge_order=None, bond=None):
        if x.device.type == "cuda":
            return self.polynomial_forward(x, sh, w if bond is None else w.index_select(0, bond), src, dst, n_atoms)
        x = x.index_select(1, self.columns_in).contiguous()
        order, ptr = (edge_order or EdgeOrder(dst, n_atoms)).arrays
        row = torch.arange(len(src)) if bond is None else bond
        out = np.zeros((n_atoms, self.dim_out), dtype=x.numpy().dtype)
        args = (x.numpy(), sh.contiguous().numpy(), w.contiguous().numpy(), src.numpy(), row.numpy(),
                order.numpy(), ptr.numpy(), *self.plan, self.coefficients.astype(out.dtype))  # fmt: skip
        _by_rows(_accumulate, out, args)
        return torch.from_numpy(out).index_select(1, self.columns_out)


def _by_rows(kernel, out, args):
    """``kernel(out, first, last, *args)`` over the rows of ``out``, split among torch's
    threads (the kernels release the GIL; each thread fills its own rows)."""
    n = len(out)
    threads = max(1, min(torch.get_num_threads(), n // 64))
    bounds = np.linspace(0, n, threads + 1).astype(int)
    if threads == 1:
        kernel(out, 0, n, *args)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda k: kernel(out, bounds[k], bounds[k + 1], *args), range(threads)))


@numba.njit(cache=True, nogil=True, fastmath=True)
def _products(out, first, last, x, w, g_in, g_w, g_u, g_k, k_out, k_j, j_in, j_c):
    """Rows ``first:last`` of ``out``: each atom's weighted ``uuu`` tensor product of its
    features ``x`` with themselves (component-major, shared weights ``w``)."""
    wx = np.empty(x.shape[1], dtype=x.dtype)
    for n in range(first, last):
        acc, xn = out[n], x[n]
        for g in range(g_in.shape[0]):  # one (path, first-input component a)
            n_u = g_u[g]
            for u in range(n_u):
                wx[u] = w[g_w[g] + u] * xn[g_in[g] + u]
            for kk in range(g_k[g], g_k[g + 1]):  # the output components k it reaches
                a = acc[k_out[kk] : k_out[kk] + n_u]
                for jj in range(k_j[kk], k_j[kk + 1]):  # the second input's components b
                    c, b = j_c[jj], xn[j_in[jj] : j_in[jj] + n_u]
                    for u in range(n_u):
                        a[u] += c * wx[u] * b[u]


class FusedProduct(torch.nn.Module):
    """An atom's features' weighted ``uuu`` tensor product with themselves, shared
    weights (the body-order product of :class:`dynnmr.model.Product`), computed by a
    numba kernel on the CPU from the e3nn tensor product ``tp`` it replaces (same
    instructions, path weights and weights): ``(x, tp.weight) -> tp(x, x)``. e3nn's
    generated code runs each path as its own batch of small contractions, with an
    intermediate array per path; the kernel walks each atom once. Without parameters or
    buffers, as :class:`FusedMessages`."""

    def __init__(self, tp: o3.TensorProduct):
        super().__init__()
        if tp.irreps_in1 != tp.irreps_in2:
            raise ValueError("the fused product takes one set of features twice")
        *self.plan, self.coefficients = _plan(tp, "uuu")
        self.columns_in = torch.from_numpy(_component_major(tp.irreps_in1))
        self.columns_out = torch.from_numpy(np.argsort(_component_major(tp.irreps_out)))
        self.dim_out = tp.irreps_out.dim

    def forward(self, x, weight):
        w = weight.detach().to(x.dtype).contiguous().numpy()
        x = x.index_select(1, self.columns_in).numpy()
        out = np.zeros((len(x), self.dim_out), dtype=x.dtype)
        _by_rows(_products, out, (x, w, *self.plan, self.coefficients.astype(out.dtype)))
        return torch.from_numpy(out).index_select(1, self.columns_out)
