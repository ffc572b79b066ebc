"""End-to-end `dynnmr analyze` speed and peak memory on CPU.

Usage: python benchmarks/engine_cpu.py TRAJ [--model silicate-29si] [--frames 0:N] [--threads 2]
       python benchmarks/engine_cpu.py TRAJ --memory N   # peak RSS for N and 10 N frames

Speed: one analyze run with the per-stage profile (reading + graphs run in their own
thread, overlapping inference). Memory: each run in a fresh process, peak resident set
size from getrusage, so a store that grows with the trajectory would show here.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path


def one_run(traj, frames, model, threads, out):
    import torch

    from dynnmr.engine import Profile, analyze

    torch.set_num_threads(threads)
    prof = Profile()
    analyze(traj, out, model=model, frames=frames, overwrite=True, progress=False, device="cpu", profile=prof)
    return {"frames": prof.frames, "atoms": prof.atoms, "wall_s": prof.wall, "atoms_per_s": prof.atoms / prof.wall,
            "read_graph_s": prof.read_graph, "model_s": prof.model, "store_s": prof.write,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip


def main():
    p = argparse.ArgumentParser()
    p.add_argument("trajectory")
    p.add_argument("--model", default="silicate-29si")
    p.add_argument("--frames", default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--memory", type=int, help="compare peak RSS for N and 10 N frames")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.zarr"
        if args.child or not args.memory:
            res = one_run(args.trajectory, args.frames, args.model, args.threads, out)
            print(json.dumps(res))
            return
        for n in (args.memory, 10 * args.memory):
            cmd = [sys.executable, __file__, args.trajectory, "--model", args.model, "--frames", f"0:{n}",
                   "--threads", str(args.threads), "--child"]  # fmt: skip
            res = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
            print(f"{res['frames']} frames: peak RSS {res['peak_rss_mb']:.0f} MB, {res['atoms_per_s']:,.0f} atoms/s")


if __name__ == "__main__":
    main()
