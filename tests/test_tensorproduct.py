"""The fused message paths (the numba CPU kernel; cuequivariance's polynomial for the GPU)
against e3nn's tensor product and scatter (the reference)."""

import numpy as np
import pytest
import torch
from e3nn import o3
from test_model import assert_rel_close, make_model, predict, rattled_quartz

from dynnmr import tensorproduct
from dynnmr.graphs import build_graph
from dynnmr.model import Interaction, hidden_irreps

torch.set_num_threads(2)


def reference_sums(tp, x, sh, w, src, dst, n):
    return torch.zeros(n, tp.irreps_out.dim, dtype=x.dtype).index_add_(0, dst, tp(x[src], sh, w))


@pytest.mark.parametrize("irreps_in", ["8x0e", "8x0e+4x1o+4x1e+4x2e+4x2o", "3x0e+2x1o+2x3o"])
def test_block_sums_equal_e3nn_in_float64(irreps_in):
    """Every path e3nn computes, summed over each atom's edges, to float64 rounding;
    atoms without edges get zeros, edges come in any order."""
    torch.manual_seed(1)
    irreps_in = o3.Irreps(irreps_in)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # e3nn's constants take the dtype at build time
    try:
        block = Interaction(irreps_in, hidden_irreps(8, 3, 4), o3.Irreps.spherical_harmonics(2), 8, 16, 10.0)
    finally:
        torch.set_default_dtype(old)
    tp = block.tp
    n, e = 40, 500
    src, dst = torch.randint(0, n - 3, (e,)), torch.randint(0, n - 3, (e,))  # the last 3 atoms receive nothing
    x = torch.randn(n, irreps_in.dim, dtype=torch.float64)
    sh = o3.spherical_harmonics(tp.irreps_in2, torch.randn(e, 3, dtype=torch.float64), normalize=True)
    w = torch.randn(e, tp.weight_numel, dtype=torch.float64)
    fused = tensorproduct.FusedMessages(tp)
    with torch.no_grad():
        ref = reference_sums(tp, x, sh, w, src, dst, n)
        cpu = fused(x, sh, w, src, dst, n)
        polynomial = fused.polynomial_forward(x, sh, w, src, dst, n, method="naive")
        padded = fused.polynomial_forward(x, sh, w, src, dst, n, method="naive", pad=True)
        bond = torch.randint(0, e, (e,))  # edges sharing weight rows (an edge and its reverse)
        shared = fused(x, sh, w, src, dst, n, bond=bond)
        assert_rel_close(shared.numpy(), reference_sums(tp, x, sh, w[bond], src, dst, n).numpy(), rtol=1e-13)
    for out in (cpu, polynomial, padded):
        assert out.dtype == torch.float64
        assert_rel_close(out.numpy(), ref.numpy(), rtol=1e-13)
        assert out[-3:].abs().max() == 0 and ref[:-3].abs().max() > 0
    assert torch.equal(padded, polynomial)  # the zero-weight edges add exact zeros
    assert fused.state_dict() == {}  # nothing of either path enters a model file


@pytest.mark.parametrize("irreps_agg", ["8x0e+4x1o+4x2e", "3x0e+2x1o+2x1e+2x2e+2x3o"])
def test_fused_product_equals_e3nn_in_float64(irreps_agg):
    """The body-order product's kernel: every uuu path of an atom's features with
    themselves, as e3nn computes it, for more than the kernel's 64 atoms a thread."""
    from dynnmr.model import Product

    torch.manual_seed(2)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        product = Product(o3.Irreps(irreps_agg), hidden_irreps(8, 3, 4), 5)
    finally:
        torch.set_default_dtype(old)
    x = torch.randn(300, product.tp.irreps_in1.dim, dtype=torch.float64)
    with torch.no_grad():
        ref = product.tp(x, x)
        fused = product.fused(x, product.tp.weight)
    assert fused.dtype == torch.float64 and ref.abs().max() > 0
    assert_rel_close(fused.numpy(), ref.numpy(), rtol=1e-13)
    assert product.fused.state_dict() == {}


def test_float32_kernels_compute_in_float32(monkeypatch):
    """With float32 features no number in either kernel becomes float64 (a float64
    intermediate halves the vector width and converts on every store): the kernels'
    inferred types, compiled afresh (cached code keeps none)."""
    import numba

    torch.manual_seed(3)
    block = Interaction(o3.Irreps("8x0e+4x1o+4x2e"), hidden_irreps(8, 2, 4), o3.Irreps.spherical_harmonics(2),
                        8, 16, 10.0, products=4)  # fmt: skip
    kernels = {}
    for name in ("_accumulate", "_products"):
        kernels[name] = numba.njit(nogil=True, fastmath=True)(getattr(tensorproduct, name).py_func)
        monkeypatch.setattr(tensorproduct, name, kernels[name])
    n, e = 30, 200
    x = torch.randn(n, block.tp.irreps_in1.dim)
    sh = o3.spherical_harmonics(block.tp.irreps_in2, torch.randn(e, 3), normalize=True)
    with torch.no_grad():
        agg = block.fused(x, sh, torch.randn(e, block.tp.weight_numel), torch.randint(0, n, (e,)),
                          torch.randint(0, n, (e,)), n)  # fmt: skip
        block.product.fused(block.product.pre(agg), block.product.tp.weight)
    for name, kernel in kernels.items():
        (sig,) = kernel.signatures
        assert sig[0].dtype == numba.float32  # the features
        types = kernel.overloads[sig].type_annotation.typemap
        assert not [v for v, t in types.items() if t == numba.float64], name


def test_padded_edge_counts_are_few_and_close():
    """Padding takes an edge count up by at most 1/16, to one of 16 lengths per octave."""
    lengths = [tensorproduct.padded_length(n) for n in range(1, 5000)]
    assert all(n <= m <= n + max(n // 16, 1) for n, m in zip(range(1, 5000), lengths))
    assert len({tensorproduct.padded_length(n) for n in range(100_001, 200_001)}) == 17
    assert tensorproduct.padded_length(0) == 0 and tensorproduct.padded_length(3_000_000) % 2**16 == 0


def test_gpu_polynomial_has_one_channel_width():
    """cuequivariance's uniform_1d CUDA kernel takes one channel width: the default
    model's 32- and 16-channel blocks are split into blocks of 16."""
    block = Interaction(
        o3.Irreps("32x0e+16x1o+16x2e"), hidden_irreps(32, 2, 16), o3.Irreps.spherical_harmonics(2), 8, 16, 10.0
    )
    ((_, stp),) = tensorproduct.FusedMessages(block.tp).polynomial.operations
    widths = {seg for operand in stp.operands for seg in operand.segments}
    assert widths == {(16,), ()}  # channel blocks of 16; the harmonics' components are scalars


@pytest.mark.parametrize("layers, options", [(2, {}), (3, {"products": 4}), (2, {"heads": 3, "readout_hidden": 8})])
def test_model_predictions_equal_with_and_without_the_kernel(layers, options):
    """Whole models, periodic supercell, all atoms and a subset of sites: the kernel's
    answers are e3nn's to float64 rounding."""
    model = make_model(layers=layers, **options)
    atoms = rattled_quartz(repeat=(2, 1, 1))
    graph = build_graph([atoms], model.cutoff, dtype=torch.float64)
    sites = torch.tensor([0, 5, 7])
    with torch.no_grad():
        assert tensorproduct.usable(graph.positions)
        fused, fused_sites = model(graph), model.members(graph, sites=sites)
        with tensorproduct.reference():
            assert not tensorproduct.usable(graph.positions)
            ref, ref_sites = model(graph), model.members(graph, sites=sites)
    for t in ref:
        assert_rel_close(fused[t].numpy(), ref[t].numpy(), rtol=1e-12)
        assert_rel_close(fused_sites[t].numpy(), ref_sites[t].numpy(), rtol=1e-12)


def test_float32_kernel_error_against_float64():
    """Inference runs in float32: the kernel's float32 tensors differ from float64 by
    float32 rounding only (relative 1e-5 of the largest component), as e3nn's do."""
    model = make_model(products=4)
    atoms = rattled_quartz(repeat=(2, 2, 1))
    exact = predict(model, [atoms])
    single = model.float()
    with torch.no_grad():
        graph = build_graph([atoms], model.cutoff, dtype=torch.float32)
        fused = {t: v.double().numpy() for t, v in single(graph).items()}
        with tensorproduct.reference():
            e3nn = {t: v.double().numpy() for t, v in single(graph).items()}
    for t in exact:
        err_fused = np.abs(fused[t] - exact[t]).max() / np.abs(exact[t]).max()
        err_e3nn = np.abs(e3nn[t] - exact[t]).max() / np.abs(exact[t]).max()
        assert err_fused < 1e-5, (t, err_fused, err_e3nn)


def test_training_keeps_e3nn_and_its_gradients():
    """With gradients wanted the blocks take e3nn's path (the kernel has no backward),
    and the loss still reaches every parameter."""
    model = make_model().train()
    graph = build_graph([rattled_quartz()], model.cutoff, dtype=torch.float64)
    assert not tensorproduct.usable(next(model.parameters()))
    out = model(graph)
    (out["ms"].square().sum() + out["efg"].square().sum()).backward()
    assert all(p.grad is not None for p in model.blocks.parameters())


def test_threads_split_the_atoms_without_changing_the_sums():
    model = make_model()
    graph = build_graph([rattled_quartz(repeat=(3, 3, 2))], model.cutoff, dtype=torch.float64)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with torch.no_grad():
            one = model(graph)
        torch.set_num_threads(2)
        with torch.no_grad():
            two = model(graph)
    finally:
        torch.set_num_threads(before)
    for t in one:
        assert torch.equal(one[t], two[t])


@pytest.mark.skipif(not (torch.cuda.is_available() and tensorproduct.cuda_kernels()),
                    reason="needs a CUDA GPU and cuequivariance's kernels (pip install dynnmr[gpu] and "
                    "cuequivariance-ops-torch-cu12 or -cu13; run on the device machine)")  # fmt: skip
@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_cuda_kernel_equals_e3nn(dtype, rtol):
    """On the GPU a whole model through cuequivariance's uniform_1d kernel gives e3nn's
    answers (float64: rounding; float32: float32 rounding of the largest component)."""
    model = make_model(products=4).to(device="cuda", dtype=dtype)
    graph = build_graph([rattled_quartz(repeat=(2, 2, 1))], model.cutoff, dtype=dtype).to("cuda")
    with torch.no_grad():
        assert tensorproduct.usable(graph.positions)
        fused = model(graph)
        with tensorproduct.reference():
            ref = model(graph)
    for t in ref:
        a, b = fused[t].double().cpu().numpy(), ref[t].double().cpu().numpy()
        assert np.abs(a - b).max() <= rtol * np.abs(b).max(), t
