"""Extended XYZ reading speed: dynnmr's streaming reader against ase.io.iread.

Usage: python benchmarks/reader_extxyz.py [--atoms-repeat 6x6x6] [--frames 200]
Writes (once, with ase) a trajectory of rattled alpha-cristobalite frames
(12 x repeat atoms: 6x6x6 = 2,592; 7x7x5 = 2,940) to /tmp, then reads it fully with
both readers, single-threaded, and checks that the positions agree bit for bit.
"""

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from ase.io import iread, write  # noqa: E402
from ase.spacegroup import crystal  # noqa: E402

from dynnmr.reader import iread_extxyz  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", default="7x7x5")
    p.add_argument("--frames", type=int, default=200)
    args = p.parse_args()
    rep = tuple(int(x) for x in args.repeat.split("x"))
    path = Path(f"/tmp/dynnmr_bench_{args.repeat}_{args.frames}.extxyz")
    if not path.exists():
        base = crystal(["Si", "O"], basis=[(0.30028, 0.30028, 0.0), (0.23976, 0.10324, 0.17844)], spacegroup=92,
                       cellpar=[4.9717, 4.9717, 6.9223, 90, 90, 90]).repeat(rep)  # fmt: skip
        rng = np.random.default_rng(0)
        frames = []
        for k in range(args.frames):
            a = base.copy()
            a.positions += rng.normal(scale=0.1, size=a.positions.shape)
            a.info["time_ps"] = 0.01 * k
            frames.append(a)
        write(path, frames, format="extxyz")
    list(iread_extxyz(path, slice(0, 2)))  # compile the numba kernels outside the timing
    t0 = time.perf_counter()
    ours = list(iread_extxyz(path))
    t_ours = time.perf_counter() - t0
    n_atoms = sum(len(f.numbers) for f in ours)
    t0 = time.perf_counter()
    ref = list(iread(str(path)))
    t_ase = time.perf_counter() - t0
    assert all(np.array_equal(a.positions, f.positions) for a, f in zip(ref, ours))
    mb = path.stat().st_size / 1e6
    print(f"{len(ours)} frames x {len(ours[0].numbers)} atoms, {mb:.0f} MB")
    print(f"dynnmr: {n_atoms / t_ours:,.0f} atoms/s ({mb / t_ours:.0f} MB/s);  ase: {n_atoms / t_ase:,.0f} atoms/s;  "
          f"identical positions")  # fmt: skip


if __name__ == "__main__":
    main()
