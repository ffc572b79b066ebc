"""The notebooks run headless from a clean checkout, as users will run them, and the
committed copies carry their outputs and figures (for readers on the web)."""

import importlib.util
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["timeseries_exploration.ipynb", "cristobalite_inversion.ipynb"]


def outputs(nb, kind):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == kind]


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_shows_its_figures(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "run `make notebooks` before committing"
    assert not outputs(nb, "error")
    assert any("image/png" in o.get("data", {}) for o in outputs(nb, "display_data"))


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_executes(name):
    spec = importlib.util.spec_from_file_location("execute", NOTEBOOKS / "execute.py")
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    nb = run.execute(NOTEBOOKS / name)  # from cleared outputs, as a reader would
    assert not outputs(nb, "error")
    assert any("image/png" in o.get("data", {}) for o in outputs(nb, "display_data"))
