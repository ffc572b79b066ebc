"""Equivariance and invariances of the tensor GNN, in float64."""

import numpy as np
import pytest
import torch
from ase.build import molecule
from e3nn import o3

from dynnmr import tensorfiles
from dynnmr import tensors as T
from dynnmr.graphs import build_graph
from dynnmr.model import Ensemble, TensorGNN, TensorProductReadout, build_model

from helpers import random_rotations

QUARTZ = tensorfiles.read(__import__("pathlib").Path(tensorfiles.__file__).parent / "data" / "alpha_quartz.extxyz")[0]


def make_model(targets=("ms", "efg"), layers=2, **options):
    """A small random model built in float64 (e3nn bakes constants in the dtype at build time)."""
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = TensorGNN(species=[1, 6, 8, 14], targets=targets, channels=8, vector_channels=4, layers=layers, cutoff=4.0,
                           **options)  # fmt: skip
    finally:
        torch.set_default_dtype(old)
    # non-trivial normalisation (one scale per species and irrep) so the physical mapping is exercised
    per_irrep = torch.rand(4, 3) + 0.5
    scale = torch.cat([per_irrep[:, :1], per_irrep[:, 1:2].expand(-1, 3), per_irrep[:, 2:].expand(-1, 5)], 1)
    model.set_normalisation("ms", scale, torch.cat([torch.rand(4, 1) * 100, torch.zeros(4, 8)], 1))
    if "efg" in targets:
        model.set_normalisation("efg", scale[:, 4:], torch.zeros(4, 5))
    return model.double().eval()


def predict(model, images):
    with torch.no_grad():
        return {k: v.numpy() for k, v in model(build_graph(images, model.cutoff, dtype=torch.float64)).items()}


def rattled_quartz(seed=0, repeat=(1, 1, 1)):
    a = QUARTZ.copy()
    a.rattle(0.08, seed=seed)
    return a.repeat(repeat)


def assert_rel_close(a, b, rtol=1e-10):
    scale = np.abs(b).max()
    assert np.abs(a - b).max() <= rtol * scale, np.abs(a - b).max() / scale


@pytest.mark.parametrize("layers, options", [(2, {}), (3, {}), (2, {"readout_hidden": 16}), (2, {"products": 4}),
                                             (2, {"readout": "tensor_product", "readout_channels": 3})])  # fmt: skip
def test_rotation_equivariance_periodic(layers, options):
    model = make_model(layers=layers, **options)
    atoms = rattled_quartz()
    out = predict(model, [atoms])
    assert np.abs(T.antisymmetric_vector(out["ms"])).max() > 1e-6  # the 1e channel is live
    for rot in random_rotations(3):
        r = atoms.copy()
        r.positions = atoms.positions @ rot.T
        r.cell = atoms.cell.array @ rot.T
        out_r = predict(model, [r])
        for t in out:
            assert_rel_close(out_r[t], rot @ out[t] @ rot.T)


@pytest.mark.parametrize("readout", ["linear", "tensor_product"])
def test_committee_members_are_each_equivariant_and_forward_is_their_mean(readout):
    model = make_model(heads=3, readout_hidden=8, readout=readout)
    atoms = rattled_quartz()
    graph = build_graph([atoms], model.cutoff, dtype=torch.float64)
    with torch.no_grad():
        members = {t: v.numpy() for t, v in model.members(graph).items()}
    out = predict(model, [atoms])
    for t in out:
        assert members[t].shape == (len(atoms), 3, 3, 3)
        assert_rel_close(members[t].mean(axis=1), out[t])
        spread = np.abs(members[t] - members[t].mean(axis=1, keepdims=True)).max()
        assert spread > 1e-3 * np.abs(out[t]).max()  # the heads differ
    rot = random_rotations(1)[0]
    r = atoms.copy()
    r.positions, r.cell = atoms.positions @ rot.T, atoms.cell.array @ rot.T
    with torch.no_grad():
        rotated = model.members(build_graph([r], model.cutoff, dtype=torch.float64))
    for t in out:
        assert_rel_close(rotated[t].numpy(), rot @ members[t] @ rot.T)


def test_ensemble_joins_its_trunks_heads_and_is_equivariant():
    """An ensemble's members are its trunks' members in trunk order (each in physical units
    through its own normalisation); ``forward`` is the mean over all of them."""
    a, b = make_model(heads=2), make_model(heads=3, readout_hidden=8)
    b.set_normalisation("ms", torch.full((4, 9), 3.0), torch.cat([torch.full((4, 1), 50.0), torch.zeros(4, 8)], 1))
    ens = Ensemble([a, b]).double().eval()
    assert ens.heads == 5 and ens.cutoff == a.cutoff and ens.species == a.species
    atoms = rattled_quartz()
    graph = build_graph([atoms], ens.cutoff, dtype=torch.float64)
    with torch.no_grad():
        members = {t: v.numpy() for t, v in ens.members(graph).items()}
        parts = [m.members(graph) for m in (a, b)]
    out = predict(ens, [atoms])
    for t in out:
        assert members[t].shape == (len(atoms), 5, 3, 3)
        assert_rel_close(members[t][:, :2], parts[0][t].numpy())
        assert_rel_close(members[t][:, 2:], parts[1][t].numpy())
        assert_rel_close(out[t], (2 * predict(a, [atoms])[t] + 3 * predict(b, [atoms])[t]) / 5)
    rot = random_rotations(1)[0]
    r = atoms.copy()
    r.positions, r.cell = atoms.positions @ rot.T, atoms.cell.array @ rot.T
    for t, v in predict(ens, [r]).items():
        assert_rel_close(v, rot @ out[t] @ rot.T)


def test_ensemble_trunks_must_share_species_targets_and_cutoff():
    with pytest.raises(ValueError, match="trunk 1 has species/targets/cutoff"):
        Ensemble([make_model(), make_model(targets=("ms",))])
    with pytest.raises(ValueError, match="at least one trunk"):
        Ensemble([])
    assert isinstance(build_model([8, 14], ["ms"], channels=4, vector_channels=2), TensorGNN)
    ens = build_model([8, 14], ["ms"], trunks=3, channels=4, vector_channels=2, heads=2)
    assert isinstance(ens, Ensemble) and len(ens.trunks) == 3 and ens.heads == 6
    with pytest.raises(ValueError, match="trunks must be >= 1"):
        build_model([8], ["ms"], trunks=0)


def test_tensor_product_readout_is_an_outer_product_of_learned_vectors():
    """From vector features alone, with one channel: the readout is the outer product
    a a^T of one learned vector a (e3nn's 1o components are x, y, z): l=0 a fixed
    multiple of |a|^2, l=2 of its symmetric traceless part, l=1 (a x a) zero."""
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        readout = TensorProductReadout(o3.Irreps("4x1o"), o3.Irreps("1x0e+1x1e+1x2e"), channels=1, heads=1)
    finally:
        torch.set_default_dtype(old)
    h = torch.randn(6, 12, dtype=torch.float64)
    with torch.no_grad():
        a = readout.pre(h).numpy()
        out = readout(h).numpy()
    outer = a[:, :, None] * a[:, None, :]
    assert np.abs(out[:, T.IRREP_SLICES[1]]).max() < 1e-12
    for l in (0, 2):
        ratio = out[:, T.IRREP_SLICES[l]] / T.irrep(outer, l)
        np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-9)
        assert abs(ratio.flat[0]) > 1e-3


def test_unknown_readout_is_refused_and_lmax_1_needs_the_tensor_product_readout():
    with pytest.raises(ValueError, match="readout must be one of"):
        TensorGNN(species=[8], readout="cartesian")
    with pytest.raises(ValueError, match="give no 2e"):  # a linear map of l <= 1 features has no l = 2 part
        TensorGNN(species=[8], targets=("efg",), lmax=1)
    model = make_model(lmax=1, readout="tensor_product")
    out = predict(model, [rattled_quartz()])
    assert np.abs(T.irrep(out["efg"], 2)).max() > 1e-6


@pytest.mark.parametrize("options", [{}, {"products": 4}, {"readout": "tensor_product"}])
def test_rotation_and_reflection_molecule_without_cell(options):
    model = make_model(**options)
    mol = molecule("CH3CH2OH")
    mol.rattle(0.05, seed=1)
    out = predict(model, [mol])
    for rot in list(random_rotations(2)) + [-np.eye(3)]:  # inversion: both targets are even (e) irreps
        m = mol.copy()
        m.positions = mol.positions @ rot.T
        out_r = predict(model, [m])
        for t in out:
            assert_rel_close(out_r[t], rot @ out[t] @ rot.T)


def test_scalar_readout_mlp_changes_only_the_isotropic_part():
    plain, mlp = make_model(), make_model(readout_hidden=16)
    mlp.load_state_dict(plain.state_dict(), strict=False)  # same weights, plus the MLP
    a, b = predict(plain, [rattled_quartz()]), predict(mlp, [rattled_quartz()])
    assert np.abs(T.isotropic(a["ms"]) - T.isotropic(b["ms"])).min() > 1e-8
    dev = lambda x: x - T.isotropic(x)[:, None, None] * np.eye(3)  # noqa: E731
    np.testing.assert_allclose(dev(a["ms"]), dev(b["ms"]), rtol=0, atol=1e-12)
    np.testing.assert_allclose(a["efg"], b["efg"], rtol=0, atol=1e-12)


def test_product_adds_angular_terms_and_zero_product_is_the_plain_model():
    """With its output weights zeroed the product block is the plain model; otherwise it
    changes every irrep of the prediction (three-body terms reach all of them)."""
    plain, prod = make_model(), make_model(products=4)
    prod.load_state_dict(plain.state_dict(), strict=False)  # same weights, plus the products
    a = predict(plain, [rattled_quartz()])
    b = predict(prod, [rattled_quartz()])
    for t in a:
        assert np.abs(a[t] - b[t]).max() > 1e-6 * np.abs(a[t]).max()
    with torch.no_grad():
        for block in prod.blocks:
            block.product.post.weight.zero_()
    c = predict(prod, [rattled_quartz()])
    for t in a:
        np.testing.assert_allclose(c[t], a[t], rtol=0, atol=1e-12)


def test_translation_and_permutation():
    model = make_model()
    atoms = rattled_quartz(seed=2)
    out = predict(model, [atoms])
    moved = atoms.copy()
    moved.positions += [1.3, -0.7, 2.2]
    for t, v in predict(model, [moved]).items():
        assert_rel_close(v, out[t])
    perm = np.random.default_rng(0).permutation(len(atoms))
    for t, v in predict(model, [atoms[perm]]).items():
        assert_rel_close(v, out[t][perm])


def test_supercell_gives_primitive_cell_tensors():
    model = make_model()
    prim = rattled_quartz(seed=3)
    sup = prim.repeat((2, 1, 3))
    out_p, out_s = predict(model, [prim]), predict(model, [sup])
    n = len(prim)
    for t in out_p:
        for k in range(6):
            assert_rel_close(out_s[t][k * n : (k + 1) * n], out_p[t])


def test_batching_is_independent_and_efg_traceless_symmetric():
    model = make_model()
    a, b = rattled_quartz(seed=4), molecule("H2O")
    together = predict(model, [a, b])
    alone = predict(model, [a])
    assert_rel_close(together["ms"][: len(a)], alone["ms"])
    efg = together["efg"]
    assert np.abs(np.trace(efg, axis1=1, axis2=2)).max() < 1e-12 * np.abs(efg).max()
    assert np.abs(efg - np.swapaxes(efg, 1, 2)).max() < 1e-12 * np.abs(efg).max()


def test_sites_subset_matches_full_prediction():
    model = make_model()
    atoms = rattled_quartz(seed=5)
    graph = build_graph([atoms], model.cutoff, dtype=torch.float64)
    sites = torch.tensor([0, 4, 7])
    with torch.no_grad():
        full, sub = model(graph), model(graph, sites=sites)
    for t in full:
        assert_rel_close(sub[t].numpy(), full[t][sites].numpy())


def test_normalisation_that_breaks_equivariance_is_refused():
    model = make_model()
    with pytest.raises(ValueError, match="common scale"):
        model.set_normalisation("ms", torch.rand(4, 9) + 0.5, torch.zeros(4, 9))
    with pytest.raises(ValueError, match="shift"):
        model.set_normalisation("efg", torch.ones(4, 5), torch.ones(4, 5))


def test_unknown_species_is_a_clear_error():
    model = make_model()
    atoms = molecule("NH3")
    with pytest.raises(ValueError, match=r"atomic numbers \[7\]"):
        predict(model, [atoms])


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the device machine)")


@needs_cuda
def test_cuda_float64_matches_cpu_and_is_equivariant():
    """The same model on the GPU: float64 predictions equal the CPU's, and rotate as R T R^T."""
    model = make_model()
    atoms = rattled_quartz(repeat=(2, 2, 2))
    cpu = predict(model, [atoms])
    gpu_model = model.to("cuda")

    def on_gpu(images):
        with torch.no_grad():
            g = build_graph(images, model.cutoff, dtype=torch.float64).to("cuda")
            return {k: v.cpu().numpy() for k, v in gpu_model(g).items()}

    gpu = on_gpu([atoms])
    for t in cpu:
        assert_rel_close(gpu[t], cpu[t], rtol=1e-10)
    rot = random_rotations(1)[0]
    r = atoms.copy()
    r.positions, r.cell = atoms.positions @ rot.T, atoms.cell.array @ rot.T
    out_r = on_gpu([r])
    for t in gpu:
        assert_rel_close(out_r[t], rot @ gpu[t] @ rot.T)
