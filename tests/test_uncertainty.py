"""Committee uncertainty: the spread estimators against direct values, the bootstrap
weights, and a committee model trained, stored and read back through every output."""

import json

import numpy as np
import pytest
import torch
import yaml

from dynnmr import modelfile, tensorfiles
from dynnmr import tensors as T
from dynnmr import uncertainty as U
from dynnmr.cli import main
from dynnmr.samples import bootstrap_weights
from dynnmr.train import train

from helpers import csv_rows


def test_site_scales_follow_each_sites_element():
    per_element = {"uncertainty": {"scale": {"ms": {"Si": 2.0, "O": 3.0}, "efg": 1.5}}}
    np.testing.assert_array_equal(U.site_scales(per_element, "ms", [14, 8, 1, 8]), [2.0, 3.0, 1.0, 3.0])
    np.testing.assert_array_equal(U.site_scales(per_element, "efg", [14, 8]), [1.5, 1.5])
    np.testing.assert_array_equal(U.site_scales({}, "ms", [8]), [1.0])


def test_spread_of_members_is_the_spread_of_each_members_parameters():
    rng = np.random.default_rng(0)
    iso = 400 + rng.normal(0, 2, 5)
    zeta = -60 + rng.normal(0, 3, 5)
    eta = 0.4 + rng.normal(0, 0.05, 5)
    members = T.tensor_from_haeberlen(iso, zeta, eta, (10.0, 40.0, 70.0))[None]  # one site, 5 members
    tensor_std, param_std = U.spread("ms", members, scale=2.0)
    assert tensor_std.shape == (1, 9) and param_std.shape == (1, len(U.PARAMETERS["ms"]))
    np.testing.assert_allclose(param_std[0, :3], 2 * np.array([iso.std(ddof=1), zeta.std(ddof=1), eta.std(ddof=1)]),
                               rtol=1e-9)  # fmt: skip
    np.testing.assert_allclose(tensor_std[0], 2 * members[0].reshape(5, 9).std(axis=0, ddof=1))
    # EFG: V_zz and eta_Q of each member
    vzz, eta_q = np.array([1.0, 1.1, 0.9]), np.array([0.1, 0.2, 0.15])
    _, p = U.spread("efg", T.tensor_from_efg(vzz, eta_q, (0.0, 30.0, 0.0))[None])
    np.testing.assert_allclose(p[0], [vzz.std(ddof=1), eta_q.std(ddof=1)], rtol=1e-9)
    # NaN members (a site not covered) give NaN, not an error
    _, p = U.spread("efg", np.full((1, 3, 3, 3), np.nan))
    assert np.isnan(p).all()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))])  # fmt: skip
@pytest.mark.parametrize("target", ["ms", "efg"])
@pytest.mark.parametrize("eigen", ["solver", "closed"])
def test_spread_of_torch_members_equals_numpys(target, device, eigen, monkeypatch):
    """The engine's GPU path hands torch tensors to the same code: equal results in float64,
    on general, axial, isotropic, zero and not-covered (NaN) sites alike, with torch's
    eigensolver or the closed form (which loses digits where eigenvalues meet: 1e-6 there)."""
    monkeypatch.setattr(T, "TORCH_EIGEN", eigen)
    tol = {"rtol": 1e-12, "atol": 1e-12} if eigen == "solver" else {"rtol": 1e-9, "atol": 1e-6}

    rng = np.random.default_rng(1)
    members = rng.normal(size=(40, 4, 3, 3)) * 30
    members[1] = np.diag([5.0, 5.0, -10.0])  # axial: eta 0
    members[2] = 7.0 * np.eye(3)  # isotropic: zeta 0, eta 0
    members[3] = 0.0
    members[4] = np.nan
    members[5, 2] = np.diag([1.0, 2.0, 3.0])  # one member with distinct, ordered values
    scale = rng.uniform(0.5, 3.0, 40)
    ref = U.spread(target, members, scale)
    got = [x.cpu() for x in U.spread(target, torch.from_numpy(members).to(device), scale)]
    for r, g in zip(ref, got):
        assert torch.is_tensor(g) and g.dtype == torch.float64
        np.testing.assert_allclose(g.numpy(), r, **tol)
    assert np.isnan(got[1][4].numpy()).all() and np.isfinite(got[1][:4].numpy()).all()
    np.testing.assert_allclose(U.parameters(target, torch.from_numpy(members[:4]).to(device)).cpu().numpy(),
                               U.parameters(target, members[:4]), **tol)  # fmt: skip


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))])  # fmt: skip
def test_torch_eigenvalues_of_a_large_batch_come_in_chunks(device, monkeypatch):
    """A batch beyond what cuSOLVER's batched solver takes (about 32,000 matrices) gives
    NumPy's eigenvalues; on the CPU the chunking is exercised with a small chunk."""
    n = 100_000 if device == "cuda" else 1_000
    if device == "cpu":
        monkeypatch.setattr(T, "TORCH_EIGEN_BATCH", 64)
    members = np.random.default_rng(2).normal(size=(n // 4, 4, 3, 3))
    members[7] = np.nan
    got = T.eigenvalues(torch.from_numpy(members).to(device)).cpu().numpy()
    np.testing.assert_allclose(got, T.eigenvalues(members), rtol=1e-10, atol=1e-12)


def test_scale_calibration_and_threshold_against_direct_values():
    rng = np.random.default_rng(1)
    sd = rng.uniform(0.5, 2.0, 20000)
    err = rng.normal(0, 3 * sd)  # errors three times the spread
    assert U.fit_scale(err, sd) == pytest.approx(3.0, rel=0.02)
    c = U.calibration(err, 3 * sd)
    assert c["within_1sd"] == pytest.approx(0.683, abs=0.01) and c["within_2sd"] == pytest.approx(0.954, abs=0.01)
    assert c["spearman"] > 0.2  # a larger spread does mean a larger error here
    assert U.calibration(rng.normal(0, 1, 5000), sd[:5000])["spearman"] == pytest.approx(0.0, abs=0.05)
    assert U.calibration([1.0], [1.0])["spearman"] is None  # too few to say
    assert U.calibration([1.0, 2.0, 3.0], [0.5, 0.5, 0.5])["spearman"] is None  # no ranking in equal spreads
    assert U.flag_threshold(np.arange(101.0)) == pytest.approx(3 * 99.0)


def _sites(err, sd, element=8):
    """``(pred, ref, species, param_std)`` of sites whose sigma_iso errs by ``err`` (ppm)
    with raw spread ``sd``, as :func:`dynnmr.uncertainty.calibrate` takes them."""
    n = len(err)
    ref = np.broadcast_to(np.diag([300.0, 310.0, 320.0]), (n, 3, 3)).copy()
    pred = ref + np.asarray(err)[:, None, None] * np.eye(3)
    param_std = np.zeros((n, len(U.PARAMETERS["ms"])))
    param_std[:, 0] = sd
    return ({"ms": pred}, {"ms": ref}, {"ms": np.full(n, element)}, {"ms": param_std})


def test_calibration_sites_set_the_factor_where_there_are_enough():
    """Errors twice the spread on the validation sites and five times on independent
    calibration sites: the factor is 5 with enough calibration sites, 2 without them."""
    rng = np.random.default_rng(2)
    sd = rng.uniform(0.5, 2.0, 40)
    sign = rng.choice([-1.0, 1.0], 40)
    val, test, train = _sites(2 * sd * sign, sd), _sites(sd, sd), _sites(sd, sd)
    plain = U.calibrate(val, test, train, ["ms"])
    assert plain["scale"]["ms"]["O"] == pytest.approx(2.0)
    assert plain["scale_sites"]["ms"]["O"] == {"split": "validation", "n": 40}
    calib = _sites(5 * sd[: U.MIN_SITES] * sign[: U.MIN_SITES], sd[: U.MIN_SITES])
    out = U.calibrate(val, test, train, ["ms"], calib)
    assert out["scale"]["ms"]["O"] == pytest.approx(5.0)
    assert out["scale_sites"]["ms"]["O"] == {"split": "calibration", "n": U.MIN_SITES}
    # the flag threshold follows the factor; the test sites are scored with it
    assert out["flag_threshold"]["ms"]["O"] == pytest.approx(2.5 * plain["flag_threshold"]["ms"]["O"])
    assert out["test"]["ms"]["O"]["sigma_iso_ppm"]["within_1sd"] == 1.0  # errors of one raw spread
    few = _sites(5 * sd[: U.MIN_SITES - 1], sd[: U.MIN_SITES - 1])
    assert U.calibrate(val, test, train, ["ms"], few)["scale"]["ms"]["O"] == pytest.approx(2.0)


def test_bootstrap_weights_are_fixed_poisson_resamples():
    samples = [{"ms": (np.arange(2000), None)}, {"ms": (np.arange(10), None)}]
    bootstrap_weights(samples, ["ms"], 4, seed=0)
    w = samples[0]["member_weights"]["ms"]
    assert w.shape == (2000, 4) and w.mean() == pytest.approx(1.0, abs=0.05)
    assert (w == 0).mean() == pytest.approx(np.exp(-1), abs=0.02)  # each member leaves out ~37% of the sites
    assert not np.array_equal(w[:, 0], w[:, 1])
    again = [{"ms": (np.arange(2000), None)}, {"ms": (np.arange(10), None)}]
    bootstrap_weights(again, ["ms"], 4, seed=0)
    np.testing.assert_array_equal(again[0]["member_weights"]["ms"], w)  # a resumed run sees the same
    bootstrap_weights(again, ["ms"], 1, seed=0)
    assert (again[0]["member_weights"]["ms"] == 1).all()
    bootstrap_weights(again, ["ms"], 4, seed=0, resample=False)  # training.bootstrap: false
    assert again[0]["member_weights"]["ms"].shape == (2000, 4) and (again[0]["member_weights"]["ms"] == 1).all()


def test_bayesian_bootstrap_weights_keep_every_site():
    """Exponential(1) weights (Dirichlet once normalised): none zero, mean 1, variance 1,
    each member its own; one head trains unweighted; an unknown mode is refused."""
    samples = [{"ms": (np.arange(4000), None)}]
    bootstrap_weights(samples, ["ms"], 4, seed=0, resample="bayesian")
    w = samples[0]["member_weights"]["ms"]
    assert w.shape == (4000, 4) and (w > 0).all()
    assert w.mean() == pytest.approx(1.0, abs=0.03) and w.var() == pytest.approx(1.0, abs=0.1)
    assert np.corrcoef(w[:, 0], w[:, 1])[0, 1] == pytest.approx(0.0, abs=0.05)
    bootstrap_weights(samples, ["ms"], 1, seed=0, resample="bayesian")
    assert (samples[0]["member_weights"]["ms"] == 1).all()
    with pytest.raises(ValueError, match="'dirichlet'"):
        bootstrap_weights(samples, ["ms"], 4, seed=0, resample="dirichlet")


@pytest.mark.parametrize(
    "setting, resample", [(None, True), (True, True), (False, False), ("bayesian", "bayesian"), ("no", None), (1, None)]
)
def test_training_bootstrap_setting_reaches_the_resamples(tiny_config, tmp_path, monkeypatch, setting, resample):
    """training.bootstrap (absent: true) decides whether the heads train on resamples,
    Bayesian-bootstrap weights or every site alike; anything but true, false or bayesian
    is refused, naming the config."""
    import dynnmr.train as train_module

    cfg = yaml.safe_load(tiny_config.read_text())
    cfg["data"] = [str(tiny_config.parent / d) for d in cfg["data"]]
    cfg["model"]["heads"] = 2
    if setting is not None:
        cfg["training"]["bootstrap"] = setting
    path = tmp_path / "boot.yaml"
    path.write_text(yaml.safe_dump(cfg))
    seen = []

    def record(samples, targets, heads, seed, resample=True):
        seen.append((heads, resample))
        raise StopIteration  # the choice is made; no need to train

    monkeypatch.setattr(train_module, "bootstrap_weights", record)
    if resample is None:
        with pytest.raises(ValueError, match="boot.yaml: training.bootstrap must be true, false or bayesian"):
            train(path, tmp_path / "out")
        assert seen == []
    else:
        with pytest.raises(StopIteration):
            train(path, tmp_path / "out")
        assert seen == [(2, resample)]


@pytest.fixture(scope="module")
def committee(tiny_config, tmp_path_factory):
    cfg = yaml.safe_load(tiny_config.read_text())
    cfg["model"]["heads"] = 3
    cfg["training"]["epochs"] = 3
    cfg["data"] = [str(tiny_config.parent / d) for d in cfg["data"]]
    d = tmp_path_factory.mktemp("committee")
    (d / "c.yaml").write_text(yaml.safe_dump(cfg))
    return train(d / "c.yaml", d / "run", log=lambda m: None)


def test_committee_model_records_its_calibration(committee):
    _, info = modelfile.load_model(committee)
    u = info["uncertainty"]
    assert info["hyperparameters"]["heads"] == 3
    assert u["scale"]["ms"]["Si"] > 0 and np.isfinite(u["scale"]["ms"]["Si"])
    assert u["flag_threshold"]["ms"]["Si"] > 0
    test = u["test"]["ms"]["Si"]["sigma_iso_ppm"]
    assert test["n"] > 0 and 0 <= test["within_1sd"] <= test["within_2sd"] <= 1
    metrics = json.loads((committee.parent / "metrics.json").read_text())
    assert metrics["uncertainty"]["scale"] == u["scale"]


def test_predict_and_analyze_store_the_spread(committee, tmp_path, capsys):
    quartz = modelfile.BUNDLED_DIR.parent / "alpha_quartz.extxyz"
    out = tmp_path / "q.extxyz"
    assert main(["predict", str(quartz), "-o", str(out), "--model", str(committee)]) == 0
    back = tensorfiles.read(out)[0]
    si = back.numbers == 14
    assert back.arrays["ms_std"].shape == (len(back), 3, 3)
    assert np.isfinite(back.arrays["ms_std"][si]).all() and np.isnan(back.arrays["ms_std"][~si]).all()
    assert (back.arrays["ms_param_std"][si, 0] > 0).all()
    assert main(["predict", str(quartz), "-o", str(out), "--model", str(committee), "--no-uncertainty"]) == 0
    assert "ms_std" not in tensorfiles.read(out)[0].arrays

    import zarr

    traj = tmp_path / "t.extxyz"
    frames = [quartz_rattled(k) for k in range(4)]
    tensorfiles.write_extxyz(traj, frames)
    store = tmp_path / "t.zarr"
    capsys.readouterr()
    assert main(["analyze", str(traj), "-o", str(store), "--model", str(committee), "-q", "--dt", "1"]) == 0
    printed = capsys.readouterr().out
    assert "model sd" in printed and "beyond the training range" in printed
    g = zarr.open_group(str(store), mode="r")
    assert g["ms_std"].shape == g["ms"].shape and g["ms_param_std"].shape == (4, 3, len(U.PARAMETERS["ms"]))
    assert g.attrs["uncertainty"]["members"] == 3
    assert np.isfinite(g["ms_param_std"][:]).all()
    ds = __import__("dynnmr").open_store(store)
    sd = ds.ms_param_std.sel(ms_parameter="sigma_iso_ppm", element="Si")
    np.testing.assert_allclose(sd.values, g["ms_param_std"][:, :, 0])
    # the stored spread is the one predict gives for the same structure
    direct = U.spread("ms", _members(committee, frames[0]), info_scale(committee))[1]
    np.testing.assert_allclose(g["ms_param_std"][0], direct, rtol=1e-3, atol=1e-4)


def test_params_report_the_spread_from_predict_files_and_stores(committee, tmp_path, capsys):

    quartz = modelfile.BUNDLED_DIR.parent / "alpha_quartz.extxyz"
    out = tmp_path / "q.extxyz"
    assert main(["predict", str(quartz), "-o", str(out), "--model", str(committee), "-q"]) == 0
    assert main(["params", str(out), "-o", str(tmp_path / "q.csv"), "-q"]) == 0
    rows = csv_rows(tmp_path / "q.csv")
    first = open(tmp_path / "q.csv").readline()
    assert first.startswith("# dynnmr ") and f"model {committee.stem} (dynnmr " in first  # what made the tensors
    back = tensorfiles.read(out)[0]
    si = [r for r in rows if r["species"] == "Si"]
    for r in si:
        k = int(r["index"])
        assert float(r["sigma_iso_sd_ppm"]) == pytest.approx(back.arrays["ms_param_std"][k, 0])
        assert float(r["delta_iso_sd_ppm"]) == float(r["sigma_iso_sd_ppm"])  # a shift has the shielding's spread
        assert float(r["span_sd_ppm"]) >= 0
    traj = tmp_path / "t.extxyz"
    tensorfiles.write_extxyz(traj, [quartz_rattled(k) for k in range(6)])
    store = tmp_path / "t.zarr"
    assert main(["analyze", str(traj), "-o", str(store), "--model", str(committee), "-q", "--dt", "1"]) == 0
    capsys.readouterr()
    assert main(["params", str(store)]) == 0
    table = capsys.readouterr().out
    assert "sigma_iso_sd_ppm" in table
    import zarr

    sd = zarr.open_group(str(store), mode="r")["ms_param_std"][:, :, 0].astype(float)
    first = table.splitlines()[1].split()
    col = table.splitlines()[0].split().index("sigma_iso_sd_ppm")
    assert float(first[col]) == pytest.approx(np.sqrt((sd[:, 0] ** 2).mean()), abs=1e-4)
    # dynamics: the model sd of the averages, per site and per species
    from dynnmr.dynamics import analyse_store

    res = analyse_store(store)
    per_site = np.sqrt((sd**2).mean(axis=0))
    got = [s["sigma_iso_ppm_model_sd"] for s in res["sites"] if s["species"] == "Si"]
    np.testing.assert_allclose(got, per_site, rtol=1e-6)
    assert res["species"]["Si"]["sigma_iso_ppm_model_sd"] == pytest.approx(np.sqrt((per_site**2).mean()))
    assert main(["dynamics", str(store)]) == 0
    assert "+-" in capsys.readouterr().out.splitlines()[1]


def quartz_rattled(seed):
    a = tensorfiles.read(modelfile.BUNDLED_DIR.parent / "alpha_quartz.extxyz")[0]
    a.rattle(0.02, seed=seed)
    return a


def info_scale(path):
    return modelfile.load_model(path)[1]["uncertainty"]["scale"]["ms"]["Si"]


def _members(path, atoms):
    import torch

    from dynnmr.graphs import build_graph

    net, _ = modelfile.load_model(path)
    with torch.no_grad():
        m = net.members(build_graph([atoms], net.cutoff))["ms"].double().numpy()
    return m[atoms.numbers == 14]


def test_label_committee_spread_is_the_key_parameter_spread(committee, tiny_model):
    from dynnmr import label
    from dynnmr.inference import predict

    quartz = quartz_rattled(1)
    got = label.committee_spread(quartz, str(committee), "ms")
    np.testing.assert_allclose(got, predict(quartz, model=str(committee)).arrays["ms_param_std"][:, 0])
    assert np.isfinite(got[quartz.numbers == 14]).all() and np.isnan(got[quartz.numbers == 8]).all()
    with pytest.raises(ValueError, match="no committee"):
        label.committee_spread(quartz, str(tiny_model), "ms")
