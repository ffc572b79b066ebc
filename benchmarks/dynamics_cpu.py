"""Dynamics kernels on a store of S sites x T frames: numba and numpy against plain numpy/scipy.

Usage: python benchmarks/dynamics_cpu.py [--sites 3000] [--frames 10000] [--subset 300]

1. A synthetic store (Ornstein-Uhlenbeck tensor fluctuations, float32) is written once.
2. `dynnmr dynamics` (batched zero-padded FFT per block of sites) on the whole store,
   against scipy.signal.correlate called per site and component on a subset of sites.
3. The streaming multiple-tau correlator (numba) against the same algorithm written with
   numpy array operations per frame (the natural plain-numpy version), on a subset of frames.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def make_store(path, sites, frames, dt=0.01, tau=0.5, seed=0):
    from dynnmr.store import TensorStore

    rng = np.random.default_rng(seed)
    a = np.exp(-dt / tau)
    store = TensorStore.create(path, targets=["ms"], numbers=[8] * sites, atom_index=range(sites),
                               chunk_frames=1000, attrs={})  # fmt: skip
    x = rng.normal(size=(sites, 9))
    for start in range(0, frames, 1000):
        n = min(1000, frames - start)
        block = np.empty((n, sites, 9), np.float32)
        for k in range(n):
            x = a * x + np.sqrt(1 - a * a) * rng.normal(size=(sites, 9))
            block[k] = x + 300.0
        store.write_chunk(start, {"ms": block, "time_ps": dt * np.arange(start, start + n),
                                  "frame_index": np.arange(start, start + n), "cell": np.full((n, 3, 3), np.nan)})  # fmt: skip
    store.finish()


def numpy_multiple_tau(x, p=32, m=2, levels=16):
    """The same multiple-tau update as dynnmr.correlator (ring, head, per-lag pair products),
    vectorised over lags, sites and components with numpy."""
    n_sites = x.shape[1]
    buf = np.zeros((levels, p, n_sites, 9))
    head = np.zeros((levels, p, n_sites, 9))
    total = np.zeros((levels, n_sites, 9))
    npushed = np.zeros(levels, int)
    acc = np.zeros((levels, p, n_sites, 9))
    pending = np.zeros((levels, n_sites, 9))
    npending = np.zeros(levels, int)
    for frame in x:
        value = frame.astype(np.float64)
        for level in range(levels):
            n = npushed[level]
            buf[level, n % p] = value
            if n < p:
                head[level, n] = value
            total[level] += value
            jmin = 0 if level == 0 else p // m
            j = np.arange(jmin, min(p, n + 1))
            acc[level, j] += buf[level, (n - j) % p] * value
            npushed[level] += 1
            pending[level] += value
            npending[level] += 1
            if npending[level] < m:
                break
            value, pending[level], npending[level] = pending[level] / m, 0.0, 0
    return acc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sites", type=int, default=3000)
    ap.add_argument("--frames", type=int, default=10000)
    ap.add_argument("--subset", type=int, default=300, help="sites (scipy) and frames (numpy correlator)")
    args = ap.parse_args()
    from scipy.signal import correlate

    from dynnmr.correlator import MultipleTauCorrelator
    from dynnmr.dynamics import analyse_store

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.zarr"
        t0 = time.perf_counter()
        make_store(path, args.sites, args.frames)
        print(f"store {args.sites} sites x {args.frames} frames written in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        analyse_store(path, max_lag_ps=20.0)
        t_fft = time.perf_counter() - t0
        print(f"dynnmr dynamics (FFT, all {args.sites} sites): {t_fft:.1f} s = {1e3 * t_fft / args.sites:.2f} ms/site")
        import zarr

        x = np.asarray(zarr.open_group(str(path))["ms"][:, : args.subset], dtype=np.float64)
        t0 = time.perf_counter()
        for s in range(args.subset):
            for c in range(9):
                y = x[:, s, c] - x[:, s, c].mean()
                correlate(y, y, mode="full", method="fft")
        t_sc = time.perf_counter() - t0
        print(f"scipy.signal.correlate per site and component ({args.subset} sites): "
              f"{1e3 * t_sc / args.subset:.2f} ms/site")  # fmt: skip
        corr = MultipleTauCorrelator(args.sites)
        corr.update(np.zeros((1, args.sites, 9)))  # compile outside the timing
        corr = MultipleTauCorrelator(args.sites)
        xs = np.asarray(zarr.open_group(str(path))["ms"][: args.frames], dtype=np.float64)
        t0 = time.perf_counter()
        for a in range(0, args.frames, 1000):
            corr.update(xs[a : a + 1000])
        t_nb = time.perf_counter() - t0
        print(f"multiple-tau, numba ({args.sites} sites, {args.frames} frames): {t_nb:.1f} s = "
              f"{1e3 * t_nb / args.frames:.2f} ms/frame")  # fmt: skip
        t0 = time.perf_counter()
        numpy_multiple_tau(xs[: args.subset])
        t_np = time.perf_counter() - t0
        print(
            f"multiple-tau, numpy ({args.sites} sites, {args.subset} frames): {1e3 * t_np / args.subset:.2f} ms/frame"
        )


if __name__ == "__main__":
    main()
