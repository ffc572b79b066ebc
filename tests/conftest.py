"""Shared fixtures: reference data location and deterministic, thread-limited torch."""

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MAGRES = DATA / "magres"
SILICATE_JSON = DATA / "silicate_29si_gipaw.json"


def pytest_configure(config):
    # CI has 2 shared cores: keep torch from oversubscribing them.
    try:
        import torch

        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
    except (ImportError, RuntimeError):
        pass


@pytest.fixture(scope="session")
def shared_data():
    if not SILICATE_JSON.exists():
        raise FileNotFoundError(f"reference data missing: {DATA} (see shared/data/README.md)")
    return DATA


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A random 2-species model file: shielding for O and Si, EFG for O only."""
    import torch

    from dynnmr.model import TensorGNN
    from dynnmr.modelfile import save_model

    torch.manual_seed(0)
    net = TensorGNN(species=[8, 14], targets=["ms", "efg"], channels=4, vector_channels=2, cutoff=3.5)
    scale = torch.ones(2, 9) * 20
    net.set_normalisation("ms", scale, torch.cat([torch.tensor([[250.0], [400.0]]), torch.zeros(2, 8)], 1))
    net.set_normalisation("efg", torch.ones(2, 5), torch.zeros(2, 5))
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    hp = {"channels": 4, "vector_channels": 2, "cutoff": 3.5}
    save_model(path, net, hp, covered_species={"ms": [8, 14], "efg": [8]},
               shift_reference={"Si": {"sigma_ref_ppm": 300.0}})  # fmt: skip
    return path


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory, shared_data):
    """A training config: 12 real silicates, a 4-channel model, 2 epochs."""
    import yaml

    from dynnmr import modelfile, tensorfiles

    d = tmp_path_factory.mktemp("tiny")
    images = tensorfiles.read(shared_data / "silicate_29si_gipaw.json")
    small = [a for a in images if len(a) <= 20][:12]
    tensorfiles.write_extxyz(d / "data.extxyz", small)
    quartz = modelfile.BUNDLED_DIR.parent / "alpha_quartz.extxyz"
    cfg = {
        "name": "tiny",
        "data": ["data.extxyz"],
        "split": {"val": 0.25, "test": 0.25, "seed": 1},
        "model": {"channels": 4, "vector_channels": 2, "layers": 2, "cutoff": 4.0, "num_basis": 4, "radial_hidden": 8},
        "training": {"epochs": 2, "batch_atoms": 40, "lr": 0.01, "threads": 1},
        "references": {"Si": {"structure": str(quartz), "shift_ppm": -107.4}},
    }
    path = d / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
