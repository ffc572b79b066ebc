"""Where the studies find the data a model file names: the repository's label files and
the shared DFT data beside the repository (``../shared/data``)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = (ROOT / "trajectories" / "labels", ROOT.parent / "shared" / "data")


def locate(name):
    """The path of a data file by its name (as a model file records it)."""
    for folder in FOLDERS:
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"{name} is in none of {', '.join(map(str, FOLDERS))}")
