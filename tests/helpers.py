"""Helpers shared by several test files (fixtures live in conftest.py)."""

from pathlib import Path

import numpy as np
from ase.io import write

from dynnmr import tensorfiles
from dynnmr.engine import analyze

QUARTZ = tensorfiles.read(Path(tensorfiles.__file__).parent / "data" / "alpha_quartz.extxyz")[0]


def make_traj(path, n_frames=24, repeat=(2, 2, 2), seed=0):
    """A short extended XYZ of jiggled alpha-quartz, 2 fs per frame; returns the frames."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n_frames):
        a = QUARTZ.repeat(repeat)
        a.positions += rng.normal(scale=0.05, size=a.positions.shape)
        a.info["time"] = 0.002 * k
        frames.append(a)
    write(path, frames, format="extxyz")
    return frames


def run(traj, out, model, **kw):
    """``analyze`` as the tests use it: chunks of 5 frames, CPU, quiet."""
    return analyze(traj, out, model=str(model), chunk_frames=5, progress=False, device="cpu", **kw)


def random_rotations(n, rng=None):
    """``n`` uniformly random proper rotation matrices (from unit quaternions)."""
    q = (rng if rng is not None else np.random.default_rng(1234)).normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def load_csv(path):
    """A numeric CSV written by dynnmr: its ``#`` lines (what made it) and header skipped."""
    import numpy as np

    lines = [ln for ln in open(path) if not ln.startswith("#")]
    return np.loadtxt(lines[1:], delimiter=",", ndmin=2)


def csv_rows(path):
    """A CSV written by dynnmr as dicts, its ``#`` lines skipped."""
    import csv

    with open(path, newline="") as fh:
        return list(csv.DictReader(ln for ln in fh if not ln.startswith("#")))
