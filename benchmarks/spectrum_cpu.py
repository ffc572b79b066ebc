"""Static 17O spectrum of many distinct sites: shift anisotropy + second-order central transition.

Usage: python benchmarks/spectrum_cpu.py [--sites 1024] [--zcw 8 10 12]
Random shielding and EFG tensors (C_Q 3.6-6 MHz, random eta and orientations), 14.1 T,
2,048-point axis; the numba kernel is compiled before timing; median of 3 runs.
"""

import argparse
import statistics
import time

import numpy as np

from dynnmr import tensors as T
from dynnmr.spectrum import static_spectrum, zcw_directions


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sites", type=int, default=1024)
    ap.add_argument("--zcw", type=int, nargs="+", default=[8, 10, 12])
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n = args.sites
    efg = T.tensor_from_efg(rng.uniform(0.6, 1.0, n), rng.uniform(0, 1, n), rng.uniform(0, 180, (3, n)))
    sigma = T.tensor_from_haeberlen(250, rng.uniform(-40, 40, n), rng.uniform(0, 1, n), rng.uniform(0, 180, (3, n)))
    shift = T.shift_tensor(sigma, 290.0)
    axis = np.linspace(-300, 150, 2048)
    static_spectrum(axis, "17O", 14.1, shift=shift[:2], efg=efg[:2], zcw_index=4)
    for idx in args.zcw:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            static_spectrum(axis, "17O", 14.1, shift=shift, efg=efg, zcw_index=idx)
            times.append(time.perf_counter() - t0)
        print(f"{n} sites x {len(zcw_directions(idx))} orientations: {statistics.median(times):.3f} s")


if __name__ == "__main__":
    main()
