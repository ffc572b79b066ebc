"""The bundled `silicate-29si` model: self-description, its test metrics reproduce, shift reference."""

import numpy as np
import pytest

from dynnmr import io
from dynnmr import tensors as T
from dynnmr.modelfile import BUNDLED_DIR, load_model
from dynnmr.predict import predict_images
from dynnmr.train import predict_samples, recorded_test_samples, split_metrics


@pytest.fixture(scope="module")
def bundled():
    return load_model("silicate-29si")


def test_bundled_model_describes_itself(bundled):
    model, info = bundled
    assert info["targets"] == ["ms"] and info["units"] == {"ms": "ppm"}
    assert info["covered_species"] == {"ms": [14]}
    assert info["hyperparameters"]["channels"] == 32 and len(info["training_data_sha256"]) == 64
    assert set(info["metrics"]["ms"]["Si"]) >= {"irreps", "sigma_iso_ppm", "symmetric_component_mae_ppm"}
    assert (BUNDLED_DIR / "silicate-29si.metrics.json").exists()


def test_test_split_metrics_reproduce(bundled, shared_data):
    """Re-evaluate the model on the test structures it records; the stored numbers must come back."""
    model, info = bundled
    test = recorded_test_samples(info, [shared_data / "silicate_29si_gipaw.json"])
    assert len(test) == len(info["test_structures"]) == 38
    pred, ref, sp = predict_samples(model, test, ["ms"])
    got = split_metrics(pred, ref, sp)["ms"]["Si"]
    stored = info["metrics"]["ms"]["Si"]
    for key in ("sigma_iso_ppm", "zeta_ppm", "span_ppm"):
        assert got[key]["mae"] == pytest.approx(stored[key]["mae"], rel=1e-4)
    assert got["symmetric_component_mae_ppm"] == pytest.approx(stored["symmetric_component_mae_ppm"], rel=1e-4)


def test_quartz_reference_gives_experimental_shift(bundled):
    model, info = bundled
    quartz = io.read(BUNDLED_DIR.parent / "alpha_quartz.extxyz")[0]
    ms = predict_images(model, info, [quartz])[0].arrays["ms"]
    si = quartz.numbers == 14
    sigma_ref = info["shift_reference"]["Si"]["sigma_ref_ppm"]
    delta = T.shift_iso(T.isotropic(ms[si]), sigma_ref)
    np.testing.assert_allclose(delta, -107.4, atol=1e-3)  # the three Si are equivalent
    assert np.isnan(ms[~si]).all()
