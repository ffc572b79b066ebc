"""Speed-up of `dynnmr analyze` with dask workers on one machine (CPU).

Usage: python benchmarks/distributed_cpu.py TRAJ [--frames 0:400] [--chunk-frames 16]

Runs, each into a fresh store: the single-process engine with 2 torch threads; a
LocalCluster (dynnmr.distributed.local_client) with 1 worker x 2 threads; with 2 workers
x 1 thread. Reports wall time
(cluster start-up excluded, model loading included) and trajectory atoms/s.
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch

from dynnmr.distributed import analyze_distributed
from dynnmr.engine import analyze


def main():
    p = argparse.ArgumentParser()
    p.add_argument("trajectory")
    p.add_argument("--frames", default="0:400")
    p.add_argument("--chunk-frames", type=int, default=16)
    p.add_argument("--model", default="silicate-29si")
    args = p.parse_args()
    from dynnmr.distributed import local_client
    from dynnmr.reader import iread

    n_atoms = len(next(iread(args.trajectory)).numbers)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        torch.set_num_threads(2)
        t0 = time.perf_counter()
        analyze(args.trajectory, Path(tmp) / "s.zarr", model=args.model, frames=args.frames,
                chunk_frames=args.chunk_frames, device="cpu", progress=False)  # fmt: skip
        rows.append(("single process, 2 threads", time.perf_counter() - t0))
        for workers, threads in ((1, 2), (2, 1)):
            with local_client(workers, threads) as client:
                t0 = time.perf_counter()
                analyze_distributed(args.trajectory, client, Path(tmp) / f"d{workers}.zarr", model=args.model,
                                    frames=args.frames, chunk_frames=args.chunk_frames, threads=threads,
                                    progress=False)  # fmt: skip
                rows.append((f"LocalCluster {workers} worker(s) x {threads} thread(s)", time.perf_counter() - t0))
    a, b, c = (int(x) if x else None for x in (args.frames.split(":") + [""] * 3)[:3])
    n_frames = len(range(a or 0, b, c or 1)) if b else None
    for name, wall in rows:
        rate = f"{n_frames * n_atoms / wall:,.0f} atoms/s" if n_frames else ""
        print(f"{name:<40} {wall:7.1f} s  {rate}")


if __name__ == "__main__":
    main()
