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
