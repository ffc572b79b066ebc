"""Run every notebook here and save it with its outputs and figures (what readers see on
the web, and what `tests/test_notebooks.py` checks the notebooks still produce).

    python notebooks/execute.py            # all notebooks, in place (make notebooks)
"""

import sys
from pathlib import Path

import nbclient
import nbformat

HERE = Path(__file__).resolve().parent


def execute(path, timeout=900):
    """The notebook at ``path``, run top to bottom from cleared outputs in its own folder."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(Path(path).parent)}}).execute()  # fmt: skip
    return nb


def main(names):
    for path in [HERE / n for n in names] or sorted(HERE.glob("*.ipynb")):
        nbformat.write(execute(path), path)
        print(f"executed {path.name}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
