"""Training (determinism, resume, masked labels), model files, and `dynnmr predict`."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dynnmr import modelfile, tensorfiles
from dynnmr.cli import main
from dynnmr.train import train

from conftest import MAGRES


def weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def test_training_is_deterministic_and_resumable(tiny_config, tmp_path):
    a = train(tiny_config, tmp_path / "a", log=lambda m: None)
    b = train(tiny_config, tmp_path / "b", log=lambda m: None)
    for k, v in weights(a).items():
        assert torch.equal(v, weights(b)[k]), k
    # an interrupted run (1 epoch) resumed to 2 epochs equals the straight run
    train(tiny_config, tmp_path / "c", epochs=1, log=lambda m: None)
    c = train(tiny_config, tmp_path / "c", epochs=2, log=lambda m: None)
    hist = json.loads((tmp_path / "c" / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in hist] == [1, 2]
    for k, v in weights(a).items():
        assert torch.equal(v, weights(c)[k]), k
    # another seed changes the weights but not the split; resuming a run with it is refused
    d = train(tiny_config, tmp_path / "d", seed=5, log=lambda m: None)
    assert not torch.equal(weights(a)["embedding.weight"], weights(d)["embedding.weight"])
    info = lambda p: modelfile.load_model(p)[1]  # noqa: E731
    assert info(d)["test_structures"] == info(a)["test_structures"]
    with pytest.raises(ValueError, match="another training.seed"):
        train(tiny_config, tmp_path / "c", epochs=3, seed=5, log=lambda m: None)
    assert json.loads((tmp_path / "c" / "metrics.json").read_text())["history"] == hist


def test_ensemble_trunks_are_the_one_trunk_runs_at_successive_seeds(tiny_config, tmp_path):
    """``model.trunks: 2`` trains trunk k exactly as the one-trunk run at seed + k; those
    runs' checkpoints resume as its trunks; the file loads as one committee of all heads."""
    import shutil

    from dynnmr.model import Ensemble

    cfg = yaml.safe_load(tiny_config.read_text())
    cfg["data"] = [str(tiny_config.parent / d) for d in cfg["data"]]
    cfg["name"], cfg["model"]["trunks"] = "tiny-x2", 2
    (tmp_path / "x2.yaml").write_text(yaml.safe_dump(cfg))
    quiet = lambda m: None  # noqa: E731
    singles = [train(tiny_config, tmp_path / f"s{k}", seed=k, log=quiet) for k in (0, 1)]
    ens_path = train(tmp_path / "x2.yaml", tmp_path / "x2", log=quiet)
    for k, single in enumerate(singles):
        for name, v in weights(single).items():
            assert torch.equal(v, weights(ens_path)[f"trunks.{k}.{name}"]), (k, name)
    for k in (0, 1):  # the single runs' checkpoints, copied in, resume as the trunks
        (tmp_path / "joined" / f"trunk{k}").mkdir(parents=True)
        shutil.copy(tmp_path / f"s{k}" / "checkpoint.pt", tmp_path / "joined" / f"trunk{k}")
    joined = train(tmp_path / "x2.yaml", tmp_path / "joined", log=quiet)
    assert all(torch.equal(v, weights(joined)[n]) for n, v in weights(ens_path).items())
    net, info = modelfile.load_model(ens_path)
    assert isinstance(net, Ensemble) and net.heads == 2 and info["hyperparameters"]["trunks"] == 2
    assert "uncertainty" in info  # two one-head trunks are a committee of two
    # predict through the file: the mean of the two one-trunk files' tensors, with a spread
    from dynnmr.inference import predict

    quartz = tensorfiles.read(modelfile.BUNDLED_DIR.parent / "alpha_quartz.extxyz")[0]
    both = predict(quartz, model=ens_path)
    alone = [predict(quartz, model=p).arrays["ms"] for p in singles]
    si = quartz.numbers == 14
    np.testing.assert_allclose(both.arrays["ms"][si], np.mean(alone, axis=0)[si], rtol=1e-5, atol=1e-4)
    assert (both.arrays["ms_std"][si] > 0).any() and both.arrays["ms_param_std"].shape == (len(quartz), 5)
    metrics = json.loads((tmp_path / "x2" / "metrics.json").read_text())
    assert metrics["best_epoch"] == [json.loads((tmp_path / f"s{k}" / "metrics.json").read_text())["best_epoch"]
                                     for k in (0, 1)]  # fmt: skip
    # a trunk's checkpoint from another seed is refused, as for one-trunk runs
    shutil.copy(tmp_path / "s0" / "checkpoint.pt", tmp_path / "joined" / "trunk1")
    with pytest.raises(ValueError, match="another training.seed"):
        train(tmp_path / "x2.yaml", tmp_path / "joined", epochs=3, log=quiet)


def test_split_seed_holds_out_other_structures(tiny_config, tmp_path):
    """`dynnmr train --split-seed`: the model file records the new seed and tests on the
    structures that seed's split holds out; resuming a run under another split is refused."""
    from dynnmr.config import load_config
    from dynnmr.samples import load_samples, split_indices

    main(["train", str(tiny_config), "-o", str(tmp_path / "s0"), "--epochs", "1"])
    main(["train", str(tiny_config), "-o", str(tmp_path / "s3"), "--epochs", "1", "--split-seed", "3"])
    info0, info3 = (modelfile.load_model(tmp_path / d / "tiny.pt")[1] for d in ("s0", "s3"))
    assert info3["training_config"]["split"]["seed"] == 3 and info0["training_config"]["split"]["seed"] == 1
    samples = load_samples(load_config(tiny_config)["data"], ["ms"], 4.0)
    expected = [samples[i]["id"] for i in split_indices(len(samples), 0.25, 0.25, 3)["test"]]
    assert sorted(info3["test_structures"]) == sorted(expected)
    assert set(info3["test_structures"]) != set(info0["test_structures"])
    with pytest.raises(ValueError, match="another split.seed"):
        train(tiny_config, tmp_path / "s0", epochs=2, split_seed=3, log=lambda m: None)


def test_named_test_structures_are_held_out_whole(tiny_config, tmp_path):
    """split.test_structures: those structures test and never train; the rest split as before."""
    from dynnmr.config import load_config
    from dynnmr.samples import load_samples, split_indices, split_samples

    cfg = load_config(tiny_config)
    samples = load_samples(cfg["data"], ["ms"], 4.0)
    plain = split_samples(samples, cfg["split"])  # without the option: split_indices as before
    expected = split_indices(len(samples), 0.25, 0.25, 1)
    assert [s["id"] for s in plain[2]] == [samples[i]["id"] for i in expected["test"]]
    named = [plain[0][0]["id"], plain[0][1]["id"]]  # two structures the plain split trains on
    variant = yaml.safe_load(tiny_config.read_text())
    variant["data"] = [str(tiny_config.parent / d) for d in variant["data"]]
    variant["split"]["test_structures"] = named
    path = tmp_path / "named.yaml"
    path.write_text(yaml.safe_dump(variant))
    info = modelfile.load_model(train(path, tmp_path / "n", epochs=1, log=lambda m: None))[1]
    assert set(named) <= set(info["test_structures"])
    train_ids = {s["id"] for s in split_samples(samples, load_config(path)["split"])[0]}
    assert not train_ids & set(named)
    variant["split"]["test_structures"] = ["data.extxyz:999"]
    path.write_text(yaml.safe_dump(variant))
    with pytest.raises(ValueError, match="not among the data's structures"):
        train(path, tmp_path / "m", epochs=1, log=lambda m: None)


def test_train_only_files_train_and_leave_the_split_alone(tiny_config, tmp_path):
    """A ``train_only`` data file (teacher labels): all its structures train, none
    validates or tests, and the other files split exactly as without it."""
    from dynnmr.config import load_config
    from dynnmr.samples import load_samples, split_samples

    variant = yaml.safe_load(tiny_config.read_text())
    data = str(tiny_config.parent / variant["data"][0])
    before = load_config(tiny_config)
    shutil.copy(data, tmp_path / "teacher.extxyz")
    variant["data"] = [data, {"path": str(tmp_path / "teacher.extxyz"), "train_only": True}]
    path = tmp_path / "teacher.yaml"
    path.write_text(yaml.safe_dump(variant))
    cfg = load_config(path)
    plain = split_samples(load_samples(before["data"], ["ms"], 4.0), before["split"])
    train_s, val_s, test_s = split_samples(load_samples(cfg["data"], ["ms"], 4.0), cfg["split"])
    assert [s["source"] for s in val_s + test_s] == ["data.extxyz"] * len(val_s + test_s)
    assert [[s["id"] for s in part] for part in (val_s, test_s)] == [[s["id"] for s in part] for part in plain[1:]]
    teacher = [s for s in train_s if s["source"] == "teacher.extxyz"]
    assert len(teacher) == len(plain[0] + plain[1] + plain[2])
    assert [s["id"] for s in train_s if s["source"] == "data.extxyz"] == [s["id"] for s in plain[0]]
    variant["data"][1]["train_only"] = "yes"
    path.write_text(yaml.safe_dump(variant))
    with pytest.raises(ValueError, match="train_only is true or false"):
        load_config(path)


def test_calibration_only_files_are_in_no_part_and_calibrate_the_committee(tiny_config, tmp_path):
    """A ``calibration_only`` data file: none of its structures trains, validates or tests,
    the other files split exactly as without it, and a committee's calibration factor is
    fitted on its sites (recorded as such)."""
    from dynnmr.config import load_config
    from dynnmr.samples import calibration_samples, load_samples, split_samples

    variant = yaml.safe_load(tiny_config.read_text())
    data = str(tiny_config.parent / variant["data"][0])
    before = load_config(tiny_config)
    shutil.copy(data, tmp_path / "calib.extxyz")
    variant["data"] = [data, {"path": str(tmp_path / "calib.extxyz"), "calibration_only": True}]
    variant["model"]["heads"] = 2
    path = tmp_path / "calib.yaml"
    path.write_text(yaml.safe_dump(variant))
    cfg = load_config(path)
    samples = load_samples(cfg["data"], ["ms"], 4.0)
    plain = split_samples(load_samples(before["data"], ["ms"], 4.0), before["split"])
    parts = split_samples(samples, cfg["split"])
    assert [[s["id"] for s in part] for part in parts] == [[s["id"] for s in part] for part in plain]
    assert {s["source"] for s in calibration_samples(samples)} == {"calib.extxyz"}
    assert len(calibration_samples(samples)) == len(plain[0] + plain[1] + plain[2])
    info = modelfile.load_model(train(path, tmp_path / "run", epochs=1, log=lambda m: None))[1]
    n_calib = sum(len(s["ms"][0]) for s in calibration_samples(samples))
    assert info["uncertainty"]["scale_sites"]["ms"]["Si"] == {"split": "calibration", "n": n_calib}
    for bad, match in (({"calibration_only": "yes"}, "calibration_only is true or false"),
                       ({"calibration_only": True, "train_only": True}, "not both")):  # fmt: skip
        variant["data"][1] = {"path": str(tmp_path / "calib.extxyz"), **bad}
        path.write_text(yaml.safe_dump(variant))
        with pytest.raises(ValueError, match=match):
            load_config(path)


def test_recalibrating_a_model_file_equals_training_with_the_calibration_file(tiny_config, tmp_path):
    """studies/recalibrate.py --calibration: a committee trained without calibration data
    and refitted on a calibration file gets the factors of the same training with that
    file as a ``calibration_only`` item, which trains nothing (same weights)."""
    import subprocess
    import sys

    variant = yaml.safe_load(tiny_config.read_text())
    data = tiny_config.parent / variant["data"][0]
    shutil.copy(data, tmp_path / "calib.extxyz")
    variant["model"]["heads"] = 2
    variant["data"] = [str(data)]
    (tmp_path / "plain.yaml").write_text(yaml.safe_dump(variant))
    variant["data"].append({"path": str(tmp_path / "calib.extxyz"), "calibration_only": True})
    (tmp_path / "with.yaml").write_text(yaml.safe_dump(variant))
    plain = train(tmp_path / "plain.yaml", tmp_path / "p", epochs=1, log=lambda m: None)
    with_file = train(tmp_path / "with.yaml", tmp_path / "w", epochs=1, log=lambda m: None)
    before = modelfile.load_model(plain)[1]["uncertainty"]
    assert before["scale_sites"]["ms"]["Si"]["split"] == "validation"
    repo = Path(__file__).parents[1]
    script = [sys.executable, str(repo / "studies" / "recalibrate.py"), str(plain), "--labels", str(data.parent),
              "--calibration", str(tmp_path / "calib.extxyz")]  # fmt: skip
    subprocess.run(script, check=True, cwd=repo, capture_output=True)
    (net_a, a), (net_b, b) = (modelfile.load_model(p) for p in (plain, with_file))
    assert all(torch.equal(x, y) for x, y in zip(net_a.state_dict().values(), net_b.state_dict().values()))
    assert a["uncertainty"]["scale_sites"] == b["uncertainty"]["scale_sites"]
    assert a["uncertainty"]["scale_sites"]["ms"]["Si"]["split"] == "calibration"
    assert a["uncertainty"]["scale"]["ms"]["Si"] == pytest.approx(b["uncertainty"]["scale"]["ms"]["Si"], rel=1e-6)
    assert a["uncertainty"]["calibration_files"] == ["calib.extxyz"]


def test_resume_refuses_changed_training_data(tiny_config, tmp_path):
    """A label file that grew after a run started is not mixed into it on resume."""
    import shutil

    from dynnmr.config import load_config

    shutil.copy(load_config(tiny_config)["data"][0]["path"], tmp_path / "data.extxyz")
    cfg = yaml.safe_load(tiny_config.read_text())
    cfg["references"]["Si"]["structure"] = str(modelfile.BUNDLED_DIR.parent / "alpha_quartz.extxyz")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    train(tmp_path / "c.yaml", tmp_path / "run", epochs=1, log=lambda m: None)
    images = tensorfiles.read(tmp_path / "data.extxyz")
    tensorfiles.write_extxyz(tmp_path / "data.extxyz", images[:-1])
    with pytest.raises(ValueError, match=r"training data \(data.extxyz\) changed"):
        train(tmp_path / "c.yaml", tmp_path / "run", epochs=2, log=lambda m: None)
    tensorfiles.write_extxyz(tmp_path / "data.extxyz", images)  # the same data again: resumes
    train(tmp_path / "c.yaml", tmp_path / "run", epochs=2, log=lambda m: None)
    assert [h["epoch"] for h in json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]] == [1, 2]


def test_checkpoints_from_before_train_only_resume(tiny_config, tmp_path):
    """A checkpoint whose config has no ``train_only`` in its data items (written before
    the option existed) resumes; one with another data option is still refused."""
    train(tiny_config, tmp_path / "run", epochs=1, log=lambda m: None)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    saved = torch.load(ckpt, weights_only=True)
    for entry in saved["config"]["data"]:
        assert entry.pop("train_only") is False
    torch.save(saved, ckpt)
    train(tiny_config, tmp_path / "run", epochs=2, log=lambda m: None)
    assert [h["epoch"] for h in json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]] == [1, 2]
    saved = torch.load(ckpt, weights_only=True)
    saved["config"]["data"][0]["train_only"] = True
    torch.save(saved, ckpt)
    with pytest.raises(ValueError, match="another data"):
        train(tiny_config, tmp_path / "run", epochs=3, log=lambda m: None)


def test_model_file_is_self_describing(tiny_config, tmp_path):
    path = train(tiny_config, tmp_path / "m", log=lambda m: None)
    model, info = modelfile.load_model(path)
    assert info["targets"] == ["ms"] and info["units"] == {"ms": "ppm"}
    assert info["covered_species"]["ms"] == [14]  # only Si is labelled in the data
    assert len(info["training_data_sha256"]) == 64 and info["dynnmr_version"]
    si = info["metrics"]["ms"]["Si"]
    for key in ("irreps", "sigma_iso_ppm", "zeta_ppm", "eta", "span_ppm", "skew", "orientation_deg",
                "tensor_component_mae_ppm", "symmetric_component_mae_ppm"):  # fmt: skip
        assert key in si
    assert set(si["irreps"]) == {"l0", "l1", "l2"}
    ref = info["shift_reference"]["Si"]
    assert ref["sigma_ref_ppm"] == pytest.approx(ref["predicted_sigma_iso_ppm"] - 107.4)
    assert (tmp_path / "m" / "parity_ms_Si.png").stat().st_size > 1000
    # a file from another format version is refused with a clear message
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 999
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(ValueError, match="format version 999"):
        modelfile.load_model(tmp_path / "future.pt")


def test_predict_cli_writes_dataset_layout(tiny_config, tmp_path, capsys):
    model_path = train(tiny_config, tmp_path / "p", log=lambda m: None)
    quartz = modelfile.BUNDLED_DIR.parent / "alpha_quartz.extxyz"
    out = tmp_path / "q.extxyz"
    assert main(["predict", str(quartz), "-o", str(out), "--model", str(model_path)]) == 0
    back = tensorfiles.read(out)[0]
    ms = back.arrays["ms"]
    si = back.numbers == 14
    assert np.isfinite(ms[si]).all() and np.isnan(ms[~si]).all()  # O is not covered by this model
    # the three Si of quartz are symmetry-equivalent: same sigma_iso
    iso = np.trace(ms[si], axis1=1, axis2=2) / 3
    assert np.ptp(iso) < 1e-3
    # unknown elements: clear error, or NaN with --allow-unknown
    assert (
        main(["predict", str(MAGRES / "ethanol.magres"), "-o", str(tmp_path / "e.extxyz"), "--model", str(model_path)])
        == 2
    )
    assert "unknown to the model" in capsys.readouterr().err
    assert main(["predict", str(MAGRES / "ethanol.magres"), "-o", str(tmp_path / "e.extxyz"),
                 "--model", str(model_path), "--allow-unknown"]) == 0  # fmt: skip
    assert np.isnan(tensorfiles.read(tmp_path / "e.extxyz")[0].arrays["ms"]).all()
    assert main(["predict", str(quartz), "-o", str(out), "--model", "no-such-model"]) == 2


def test_split_is_per_source():
    from dynnmr.samples import split_indices

    plain = split_indices(40, 0.1, 0.1, 3)
    perm = np.random.default_rng(3).permutation(40)  # one source: the plain seeded split
    assert list(plain["test"]) == list(perm[:4]) and list(plain["train"]) == list(perm[8:])
    groups = ["gipaw"] * 100 + ["clusters"] * 10
    parts = split_indices(110, 0.1, 0.2, 0, groups=groups)
    assert sorted(np.concatenate(list(parts.values()))) == list(range(110))
    for name, n_small in (("test", 2), ("val", 1), ("train", 7)):  # the small source is in every part
        assert sum(i >= 100 for i in parts[name]) == n_small


def test_joint_training_on_two_sources_reports_each(tiny_config, tmp_path, shared_data):
    """Si-only GIPAW structures plus a frame labelled only on O (EFG and shielding):
    masked losses, O covered for both targets, metrics per data file."""
    cfg = yaml.safe_load(tiny_config.read_text())
    cfg["data"] = [str(tiny_config.parent / "data.extxyz"), str(tmp_path / "o.extxyz")]
    cfg["targets"] = ["ms", "efg"]
    cfg["split"] = {"val": 0.25, "test": 0.25, "seed": 0}
    frames = []
    rng = np.random.default_rng(0)
    for k in range(4):
        a = tensorfiles.read(modelfile.BUNDLED_DIR.parent / "alpha_quartz.extxyz")[0]
        a.rattle(0.05, seed=k)
        n = len(a)
        a.arrays["ms"] = np.full((n, 3, 3), np.nan)
        a.arrays["efg"] = np.full((n, 3, 3), np.nan)
        for i in np.flatnonzero(a.numbers == 8)[:3]:
            m = rng.normal(size=(3, 3))
            a.arrays["ms"][i] = 240 * np.eye(3) + 20 * (m + m.T)
            a.arrays["efg"][i] = (m + m.T) - np.trace(m + m.T) / 3 * np.eye(3)
        frames.append(a)
    tensorfiles.write_extxyz(tmp_path / "o.extxyz", frames)
    path = tmp_path / "joint.yaml"
    path.write_text(yaml.safe_dump(cfg))
    model_path = train(path, tmp_path / "run", log=lambda m: None)
    _, info = modelfile.load_model(model_path)
    assert info["covered_species"] == {"ms": [8, 14], "efg": [8]}
    by_source = json.loads((tmp_path / "run" / "metrics.json").read_text())["test_metrics_by_source"]
    assert set(by_source) == {"data.extxyz", "o.extxyz"}
    assert set(by_source["o.extxyz"]) == {"ms", "efg"} and set(by_source["data.extxyz"]["ms"]) == {"Si"}


def test_l1_loss_option(tiny_config, tmp_path):
    cfg = yaml.safe_load(tiny_config.read_text())
    cfg["data"] = [str(tiny_config.parent / "data.extxyz")]
    cfg["training"]["loss"] = "l1"
    path = tmp_path / "l1.yaml"
    path.write_text(yaml.safe_dump(cfg))
    train(path, tmp_path / "l1", epochs=1, log=lambda m: None)
    hist = json.loads((tmp_path / "l1" / "metrics.json").read_text())["history"]
    mse = train(tiny_config, tmp_path / "mse", epochs=1, log=lambda m: None)
    assert (
        hist[0]["train_loss"] != json.loads((tmp_path / "mse" / "metrics.json").read_text())["history"][0]["train_loss"]
    )
    assert mse.exists()
    cfg["training"]["loss"] = "huber"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match="mse or l1"):
        train(path, tmp_path / "bad", log=lambda m: None)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"trainng": {"epochs": 2}}, "unknown key 'trainng' in the config; did you mean 'training'?"),
        ({"model": {"chanels": 4}}, "unknown key 'chanels' in model; did you mean 'channels'?"),
        ({"training": {"epochs": 2, "learning_rate": 0.1}}, "unknown key 'learning_rate' in training"),
        ({"split": [0.1, 0.1]}, "split is a mapping of settings"),
        ({"targets": ["ms", "nmr"]}, r"unknown target\(s\) \['nmr'\]"),
        ({"references": {"Si": {"structure": "q.extxyz", "shift": -107.4}}}, "references.Si is"),
    ],
)
def test_config_typos_are_errors_naming_the_key(tiny_config, tmp_path, change, message):
    """A misspelt key would otherwise leave its setting at the default without a word."""
    from dynnmr.config import load_config

    cfg = yaml.safe_load(tiny_config.read_text())
    cfg.update(change)
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match=message) as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_bundled_configs_pass_the_schema():
    from dynnmr.config import load_config

    repo = Path(__file__).resolve().parents[1]
    configs = sorted(repo.glob("configs/*.yaml")) + sorted(repo.glob("studies/model_size/*.yaml"))
    assert len(configs) >= 10
    for path in configs:
        assert load_config(path)["data"]


def test_data_item_scale_multiplies_that_files_labels(tiny_config, tmp_path):
    from dynnmr.config import load_config
    from dynnmr.samples import load_samples

    cfg = yaml.safe_load(tiny_config.read_text())
    cfg["data"] = [{"path": str(tiny_config.parent / "data.extxyz"), "scale": {"ms": 0.5}}]
    path = tmp_path / "scaled.yaml"
    path.write_text(yaml.safe_dump(cfg))
    loaded = load_config(path)
    raw = load_samples([tiny_config.parent / "data.extxyz"], ["ms"], 4.0)
    scaled = load_samples(loaded["data"], ["ms"], 4.0)
    for r, s in zip(raw, scaled):
        assert np.array_equal(r["ms"][0], s["ms"][0])
        np.testing.assert_allclose(s["ms"][1], 0.5 * r["ms"][1], rtol=0, atol=0)
    cfg["data"] = [{"path": "data.extxyz", "scale": {"nmr": 2}}]
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match="unknown target"):
        load_config(path)


def test_data_item_negated_with_an_offset_gives_C_minus_the_label(tiny_config, tmp_path):
    """scale -1 and offset C (ppm): a shift-like label T becomes C - T, trace and anisotropy alike."""
    from dynnmr.config import load_config
    from dynnmr.samples import load_samples

    cfg = yaml.safe_load(tiny_config.read_text())
    cfg["data"] = [{"path": str(tiny_config.parent / "data.extxyz"), "scale": {"ms": -1}, "offset": {"ms": 500.0}}]
    path = tmp_path / "negated.yaml"
    path.write_text(yaml.safe_dump(cfg))
    raw = load_samples([tiny_config.parent / "data.extxyz"], ["ms"], 4.0)
    neg = load_samples(load_config(path)["data"], ["ms"], 4.0)
    for r, s in zip(raw, neg):
        assert len(r["ms"][0]) and np.array_equal(r["ms"][0], s["ms"][0])
        np.testing.assert_allclose(
            np.trace(s["ms"][1], axis1=1, axis2=2), 1500.0 - np.trace(r["ms"][1], axis1=1, axis2=2)
        )
        np.testing.assert_allclose(s["ms"][1] - 500.0 * np.eye(3), -r["ms"][1], atol=1e-12)
    cfg["data"] = [{"path": "data.extxyz", "offset": {"efg": 1.0}}]
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match="traceless"):
        load_config(path)


def test_data_item_species_keeps_only_those_elements_labels(tiny_config, tmp_path):
    from dynnmr.config import load_config
    from dynnmr.samples import load_samples

    images = tensorfiles.read(tiny_config.parent / "data.extxyz")[:3]
    for a in images:  # an O label next to the Si ones, as a cluster file would mix them
        a.arrays["ms"][a.numbers == 8] = np.eye(3) * 250.0
    tensorfiles.write_extxyz(tmp_path / "mixed.extxyz", images)
    cfg = yaml.safe_load(tiny_config.read_text())
    path = tmp_path / "species.yaml"
    for only, keep in (([], {8, 14}), (["O"], {8}), (["Si", "O"], {8, 14})):
        cfg["data"] = [{"path": "mixed.extxyz", "species": {"ms": only}} if only else "mixed.extxyz"]
        path.write_text(yaml.safe_dump(cfg))
        for a, s in zip(images, load_samples(load_config(path)["data"], ["ms"], 4.0)):
            want = np.flatnonzero(np.isfinite(a.arrays["ms"]).all(axis=(1, 2)) & np.isin(a.numbers, sorted(keep)))
            assert np.array_equal(s["ms"][0], want) and len(want)
    cfg["data"] = [{"path": "mixed.extxyz", "species": {"ms": ["Xx"]}}]
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ValueError, match="unknown element"):
        load_config(path)


def test_ema_option_averages_weights_and_resumes(tiny_config, tmp_path):
    cfg = yaml.safe_load(tiny_config.read_text())
    cfg["data"] = [str(tiny_config.parent / "data.extxyz")]

    def run(name, ema, epochs):
        cfg["training"]["ema"] = ema
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return weights(train(path, tmp_path / name, epochs=epochs, log=lambda m: None))

    raw = run("raw", 0.0, 2)
    # a decay of ~0 makes the average the last weights: the same model as without EMA
    same = run("tiny_decay", 1e-12, 2)
    for k, v in raw.items():
        torch.testing.assert_close(same[k], v, rtol=1e-6, atol=1e-7)
    averaged = run("ema", 0.9, 2)
    assert any(not torch.allclose(averaged[k], raw[k]) for k in raw if raw[k].is_floating_point())
    # the average is part of the checkpoint: 1 epoch, then resumed to 2, equals 2 straight
    run("resumed", 0.9, 1)
    resumed = run("resumed", 0.9, 2)
    for k, v in averaged.items():
        assert torch.equal(resumed[k], v), k


def test_weight_average_is_the_exponential_average():
    from dynnmr.train import WeightAverage

    lin = torch.nn.Linear(2, 1, dtype=torch.float64)
    w = [torch.randn(1, 2, dtype=torch.float64) for _ in range(3)]
    with torch.no_grad():
        lin.weight.copy_(w[0])
    avg = WeightAverage(lin, 0.8)
    for x in w[1:]:
        with torch.no_grad():
            lin.weight.copy_(x)
        avg.update(lin)
    expected = 0.8**2 * w[0] + 0.8 * 0.2 * w[1] + 0.2 * w[2]
    with avg.swapped_in(lin):
        torch.testing.assert_close(lin.weight.detach(), expected, rtol=1e-14, atol=1e-14)
    assert torch.equal(lin.weight.detach(), w[2])  # its own weights back afterwards
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(lin, 1.0)


def test_recorded_test_set_survives_a_growing_label_file(tiny_config, tmp_path):
    """Labels appended after training must not change the test set a model file records."""
    from dynnmr.evaluate import predict_samples, split_metrics
    from dynnmr.samples import recorded_test_samples

    images = tensorfiles.read(tiny_config.parent / "data.extxyz")
    partial, k = [], 0
    for a in images:
        a = a.copy()
        for i in np.flatnonzero(np.isfinite(a.arrays["ms"]).all(axis=(1, 2))):
            if k % 2:
                a.arrays["ms"][i] = np.nan  # every other labelled site (over the file) not yet
            k += 1
        partial.append(a)
    data = tmp_path / "labels.extxyz"
    tensorfiles.write_extxyz(data, partial)
    cfg = yaml.safe_load(tiny_config.read_text())
    cfg["data"] = [str(data)]
    path = tmp_path / "grow.yaml"
    path.write_text(yaml.safe_dump(cfg))
    model, info = modelfile.load_model(train(path, tmp_path / "grow", epochs=1, log=lambda m: None))
    tensorfiles.write_extxyz(data, images)  # the labelling went on: every Si labelled now
    test = recorded_test_samples(info, [data])
    assert sum(len(s["ms"][0]) for s in test) == sum(len(v["ms"]) for v in info["test_sites"].values())
    from dynnmr.samples import load_samples

    now = [s for s in load_samples([data], ["ms"], 4.0) if s["id"] in set(info["test_structures"])]
    assert sum(len(s["ms"][0]) for s in test) < sum(len(s["ms"][0]) for s in now)
    got = split_metrics(*predict_samples(model, test, ["ms"]))["ms"]["Si"]
    assert got["sigma_iso_ppm"]["mae"] == pytest.approx(info["metrics"]["ms"]["Si"]["sigma_iso_ppm"]["mae"], rel=1e-6)
    assert got["offset_free"] == pytest.approx(info["metrics"]["ms"]["Si"]["offset_free"], nan_ok=True)

    # a recorded test label withdrawn later (a site found irregular): an error, unless asked
    # for what remains, which sites_record records again
    from dynnmr.samples import sites_record

    sid, sites = next((k, v) for k, v in info["test_sites"].items() if v["ms"])
    frame = next(a for k, a in enumerate(images) if f"{data.name}:{a.info.get('structure_id', k)}" == sid)
    frame.arrays["ms"][sites["ms"][0]] = np.nan
    tensorfiles.write_extxyz(data, images)
    with pytest.raises(ValueError, match=f"{sid}: ms labels recorded at training are missing"):
        recorded_test_samples(info, [data])
    left = recorded_test_samples(info, [data], withdrawn_ok=True)
    record = sites_record(left, ["ms"])
    assert record[sid]["ms"] == sites["ms"][1:]
    assert sum(len(v["ms"]) for v in record.values()) == sum(len(v["ms"]) for v in info["test_sites"].values()) - 1


def test_predicted_sites_know_their_structure(tiny_config):
    """predict_samples' structure index (what the offset-free errors group by) across batches."""
    from dynnmr.config import load_config
    from dynnmr.evaluate import predict_samples
    from dynnmr.model import TensorGNN
    from dynnmr.samples import load_samples

    samples = load_samples(load_config(tiny_config)["data"], ["ms"], 4.0)
    species = sorted({int(z) for s in samples for z in s["numbers"]})
    model = TensorGNN(
        species=species, targets=["ms"], channels=4, vector_channels=2, cutoff=4.0, num_basis=4, radial_hidden=8
    )
    pred, ref, species, structure = predict_samples(model, samples, ["ms"], batch_atoms=30)  # several batches
    expected = np.concatenate([np.full(len(s["ms"][0]), k) for k, s in enumerate(samples)])
    np.testing.assert_array_equal(structure["ms"], expected)
    np.testing.assert_allclose(ref["ms"], np.concatenate([s["ms"][1] for s in samples]), atol=1e-4)
    assert (species["ms"] == 14).all() and pred["ms"].shape == ref["ms"].shape


def test_irrep_weights_weight_each_components_error(tiny_config, tmp_path):
    from dynnmr.config import load_config
    from dynnmr.model import TensorGNN
    from dynnmr.samples import batch_inputs, load_samples
    from dynnmr.train import batch_loss

    torch.manual_seed(0)
    cfg = load_config(tiny_config)
    samples = load_samples(cfg["data"], ["ms"], 4.0)[:3]
    model = TensorGNN(
        species=[8, 14], targets=["ms"], channels=4, vector_channels=2, cutoff=4.0, num_basis=4, radial_hidden=8
    )
    graph, sites, labels = batch_inputs(samples, ["ms"])
    out, idx = model.normalised(graph, sites=sites)
    pos, y, _ = labels["ms"]
    err = (out["ms"][pos, 0] - (y - model.ms_shift[idx[pos]]) / model.ms_scale[idx[pos]]).abs().mean(0)
    with torch.no_grad():
        loss = lambda w: float(batch_loss(model, graph, sites, labels, "l1", w))  # noqa: E731
        assert loss([1, 1, 1]) == pytest.approx(float(err.mean()), rel=1e-6)
        assert loss([1, 0, 0]) == pytest.approx(float(err[0]), rel=1e-6)
        assert loss([0, 0, 2]) == pytest.approx(float(err[4:].mean()), rel=1e-6)
        assert loss([4, 0.5, 1]) == pytest.approx(
            float((4 * err[0] + 0.5 * err[1:4].sum() + err[4:].sum()) / 10.5), rel=1e-6
        )
    bad = yaml.safe_load(tiny_config.read_text())
    bad["data"] = [str(tiny_config.parent / "data.extxyz")]
    path = tmp_path / "bad.yaml"
    for weights, targets in (([1, 1], ["ms"]), ([1, 1, 0], ["ms", "efg"]), ([0, 0, 0], ["ms"])):
        bad["training"]["irrep_weights"], bad["targets"] = weights, targets
        path.write_text(yaml.safe_dump(bad))
        with pytest.raises(ValueError, match="irrep_weights"):
            train(path, tmp_path / "bad", log=lambda m: None)


def test_predict_label_file_takes_one_species_labels_and_names_an_empty_file(tiny_config):
    """predict_label_file keeps only the asked species' sites, in file order, and refuses a file
    with none of them (the silicate file labels Si only)."""
    from dynnmr.config import load_config
    from dynnmr.evaluate import predict_label_file
    from dynnmr.model import TensorGNN

    path = load_config(tiny_config)["data"][0]["path"]
    images = tensorfiles.read(path)
    species = sorted({int(z) for a in images for z in a.numbers})
    model = TensorGNN(
        species=species, targets=["ms"], channels=4, vector_channels=2, cutoff=4.0, num_basis=4, radial_hidden=8
    )
    pred, ref, samples = predict_label_file(model, path, "ms", (14,))
    si_labels = np.concatenate([a.arrays["ms"][a.numbers == 14].reshape(-1, 3, 3) for a in images])
    si_labels = si_labels[np.isfinite(si_labels).all(axis=(1, 2))]  # NaN: an unlabelled Si
    np.testing.assert_allclose(ref, si_labels, atol=1e-4)
    assert pred.shape == ref.shape and len(samples) == len(images)
    with pytest.raises(ValueError, match=r"data\.extxyz: no ms labels on species \[8\]"):
        predict_label_file(model, path, "ms", (8,))


def test_hold_out_sites_by_slab_with_a_buffer_across_the_planes():
    """Sites in the slab test, sites within buffer_A of it (periodic, across the planes of a
    sheared cell) are dropped, the rest train."""
    from dynnmr.samples import hold_out_sites

    cell = np.array([[10.0, 0, 0], [5.0, 8.0, 0], [0, 0, 10.0]])  # planes along a are 8.48 A apart
    height = abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(cell[1], cell[2]))
    assert height == pytest.approx(800 / np.hypot(80, 50))
    frac = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    positions = np.outer(frac, cell[0]) + 0.37 * cell[1] + 0.2 * cell[2]  # b and c shifts do not matter
    sample = {
        "id": "x:0",
        "cell": cell,
        "positions": positions,
        "ms": (np.arange(5), np.arange(5.0)[:, None, None] * np.ones((5, 3, 3))),
    }
    # gaps to [0, 0.25): 0.3 -> 0.05, 0.5 -> 0.25, 0.7 -> 0.3, 0.9 -> 0.1 (of 8.48 A)
    train, test = hold_out_sites(sample, ["ms"], 0, [0.0, 0.25], 2.2)
    assert test["ms"][0].tolist() == [0] and train["ms"][0].tolist() == [3]
    np.testing.assert_array_equal(train["ms"][1], sample["ms"][1][[3]])
    train, _ = hold_out_sites(sample, ["ms"], 0, [0.0, 0.25], 2.0)
    assert train["ms"][0].tolist() == [2, 3]
    assert train["id"] == test["id"] == "x:0" and train["positions"] is positions
    with pytest.raises(ValueError, match="slab"):
        hold_out_sites(sample, ["ms"], 0, [0.5, 0.25], 2.0)


def test_config_base_and_site_holdout_run(tiny_config, tmp_path):
    """A config with `base:` changes only what it names; a site holdout trains without the
    slab's labels and records them as the test, so recorded_test_samples gives them back."""
    from dynnmr.config import load_config
    from dynnmr.evaluate import predict_samples, split_metrics
    from dynnmr.samples import load_samples, recorded_test_samples

    base = load_config(tiny_config)
    sid = load_samples(base["data"], ["ms"], 4.0)[0]["id"]
    holdout = {"structure": sid, "axis": 0, "slab": [0.0, 0.5], "buffer_A": 0.5}
    variant = tmp_path / "variant.yaml"
    variant.write_text(yaml.safe_dump({"base": str(tiny_config), "name": "variant", "split": {"site_holdout": holdout},
                                       "training": {"epochs": 1}}))  # fmt: skip
    cfg = load_config(variant)
    assert cfg["data"] == base["data"] and cfg["model"] == base["model"] and cfg["references"] == base["references"]
    assert cfg["split"] == dict(base["split"], site_holdout=holdout) and cfg["training"]["epochs"] == 1
    assert cfg["training"]["lr"] == base["training"]["lr"] and cfg["name"] == "variant"
    path = train(variant, tmp_path / "v", log=lambda m: None)
    _, info = modelfile.load_model(path)
    assert sid in info["test_structures"]
    held = info["test_sites"][sid]["ms"]
    full = load_samples(base["data"], ["ms"], 4.0)[0]["ms"][0]
    assert 0 < len(held) < len(full)
    summary = json.loads((tmp_path / "v" / "metrics.json").read_text())
    got = split_metrics(
        *predict_samples(
            modelfile.load_model(path)[0],
            [s for s in recorded_test_samples(info, base["data"]) if s["id"] == sid],
            ["ms"],
        )
    )
    assert got["ms"]["Si"]["sigma_iso_ppm"]["mae"] == pytest.approx(
        summary["test_metrics_by_source"][f"{sid} held-out sites"]["ms"]["Si"]["sigma_iso_ppm"]["mae"], rel=1e-6
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump({"base": str(tiny_config), "split": {"site_holdout": dict(holdout, structure="nope:1")}})
    )
    with pytest.raises(ValueError, match="'nope:1' is not among"):
        train(bad, tmp_path / "b", log=lambda m: None)


def test_learning_curve_nests_training_shares_and_keeps_the_test(tiny_config, tmp_path):
    """`dynnmr train --learning-curve`: smaller shares are subsets of larger ones, every run
    tests on the same structures, and the summary has a point per share with its seeds."""
    from dynnmr.learning_curve import run_folder

    assert main(["train", str(tiny_config), "-o", str(tmp_path), "--learning-curve", "0.5", "1",
                 "--seeds", "0", "1", "--epochs", "1"]) == 0  # fmt: skip
    summary = json.loads((tmp_path / "learning_curve.json").read_text())
    assert (tmp_path / "learning_curve.png").stat().st_size > 1000
    infos = {
        (f, s): modelfile.load_model(run_folder(tmp_path, f, s) / "tiny.pt")[1] for f in (0.5, 1.0) for s in (0, 1)
    }
    assert len({tuple(i["test_structures"]) for i in infos.values()}) == 1
    n = {r["fraction"]: r["n_train"] for r in summary["runs"]}
    assert 0 < n[0.5] < n[1.0]
    points = summary["curves"]["ms"]["Si"]["delta_iso MAE (ppm)"]
    assert [p["fraction"] for p in points] == [0.5, 1.0] and all(p["n_seeds"] == 2 and p["sd"] >= 0 for p in points)
    # the same share and seed twice gives the same structures; a smaller share lies inside a larger one
    from dynnmr.config import load_config
    from dynnmr.samples import load_samples, split_samples

    cfg = load_config(tiny_config)
    samples = load_samples(cfg["data"], cfg["targets"], cfg["model"]["cutoff"])
    ids = {
        f: {s["id"] for s in split_samples(samples, dict(cfg["split"], train_fraction=f))[0]} for f in (0.3, 0.6, 1.0)
    }
    assert ids[0.3] < ids[0.6] < ids[1.0]
    with pytest.raises(ValueError, match="train_fraction"):
        split_samples(samples, dict(cfg["split"], train_fraction=0))


def test_vary_compares_variants_on_one_split(tiny_config, tmp_path, capsys):
    """`dynnmr train --vary`: every combination of the varied settings trains on the same
    test structures, the model file records its variant, and the table holds each
    variant's test errors and cost; a misspelt setting is refused before any training."""
    assert main(["train", str(tiny_config), "-o", str(tmp_path), "--vary", "model.readout=linear,tensor_product",
                 "--seeds", "0", "1", "--epochs", "1"]) == 0  # fmt: skip
    result = json.loads((tmp_path / "comparison.json").read_text())
    names = [r["variant"] for r in result["variants"]]
    assert names == ["readout=linear", "readout=tensor_product"]
    infos = [modelfile.load_model(tmp_path / n / "train1-seed0" / "tiny.pt")[1] for n in names]
    assert [i["training_config"]["model"].get("readout", "linear") for i in infos] == ["linear", "tensor_product"]
    assert infos[0]["test_structures"] == infos[1]["test_structures"]
    for r in result["variants"]:
        point = r["curves"]["ms"]["Si"]["delta_iso MAE (ppm)"][-1]
        assert point["n_seeds"] == 2 and point["sd"] >= 0 and r["forward_atoms_per_s"] > 0 and r["parameters"] > 0
    tp, lin = result["variants"][1]["parameters"], result["variants"][0]["parameters"]
    assert tp != lin  # the readouts are different networks
    md = (tmp_path / "comparison.md").read_text()
    assert "readout=tensor_product" in md and "forward atoms/s" in md and "+-" in md
    rows = [line.replace("\\|", "") for line in md.splitlines() if line.startswith("|")]
    assert len({row.count("|") for row in rows}) == 1  # every row has the header's columns
    from dynnmr.compare import table

    point = [{"fraction": 1.0, "n_train": 9, "mean": 0.1, "sd": 0.01, "n_seeds": 2}]
    efg = {"variant": "v", "parameters": 1, "forward_atoms_per_s": 1.0, "threads": 1,
           "curves": {"efg": {"O": {"|C_Q| MAE (MHz)": point}}}}  # fmt: skip
    rows = [line.replace("\\|", "") for line in table({"variants": [efg], "fractions": [1.0], "seeds": [0, 1]}).splitlines()
            if line.startswith("|")]  # fmt: skip
    assert len(rows) == 3 and len({row.count("|") for row in rows}) == 1  # the |C_Q| label does not split a column
    assert (tmp_path / "comparison.png").stat().st_size > 1000
    capsys.readouterr()
    assert main(["train", str(tiny_config), "-o", str(tmp_path / "bad"), "--vary", "model.readuot=linear"]) != 0
    assert "unknown key 'readuot' in model; did you mean 'readout'?" in capsys.readouterr().err
    from dynnmr.compare import variant_name
    from dynnmr.config import parse_setting

    assert variant_name({"split.seed": 1, "training.seed": 2}) == "split.seed=1,training.seed=2"

    assert parse_setting("model.lmax=1,2") == ("model.lmax", [1, 2])  # values read as YAML: integers here
    with pytest.raises(SystemExit, match="SECTION.KEY=VALUE"):
        main(["train", str(tiny_config), "-o", str(tmp_path / "bad"), "--vary", "readout=linear"])
    assert not (tmp_path / "bad").exists()


def test_teacher_labels_cover_unlabelled_oxygens_only(tmp_path):
    """studies/distill.py: the teacher's own tensors on O sites, NaN on Si and on the sites
    a DFT label file already holds for that source frame."""
    import subprocess
    import sys

    from dynnmr.inference import predict

    repo = Path(__file__).resolve().parents[1]
    glass = repo / "trajectories" / "densities" / "glass_2.2gcc.extxyz.gz"
    atoms = tensorfiles.read(glass, index="1")[0]
    dft = atoms.copy()
    dft.arrays["efg"] = np.full((len(atoms), 3, 3), np.nan)
    oxygens = np.flatnonzero(atoms.numbers == 8)
    dft.arrays["efg"][oxygens[:2]] = np.eye(3)
    dft.info.update(source="glass_2.2gcc.extxyz.gz", source_frame=1)
    tensorfiles.write_extxyz(tmp_path / "dft.extxyz", dft)
    out = tmp_path / "teacher.extxyz"
    cmd = [sys.executable, str(repo / "studies" / "distill.py"), "sio2", f"{glass}:1", "-o", str(out),
           "--exclude", str(tmp_path / "dft.extxyz")]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    (got,) = tensorfiles.read(out)
    want = predict(atoms, uncertainty=False)
    labelled = np.isfinite(got.arrays["efg"]).all(axis=(1, 2))
    assert labelled.sum() == len(oxygens) - 2 and not labelled[oxygens[:2]].any()
    assert not labelled[atoms.numbers != 8].any()
    for t in ("ms", "efg"):
        np.testing.assert_allclose(got.arrays[t][labelled], want.arrays[t][labelled], rtol=1e-6, atol=1e-6)
    assert got.info["source_frame"] == 1 and "sio2" in got.info["label_method"]
