"""Where the time of `analyze` goes on the GPU: the engine's stages and torch.profiler's
operators over a short `analyze` of the 24,000-atom glass (the bundled frames tiled
2x2x2, as benchmarks/gpu.py), graphs on the GPU, the model's default outputs (a
committee stores its spread), once per message path: the fused kernel, the fused kernel
with its edges padded to a few lengths (``tensorproduct.PAD_EDGES``), and e3nn.

Usage: python benchmarks/profile_gpu.py [--model sio2] [--frames 12]

Each path runs one unprofiled `analyze` of the glass's first batch (4 frames: model
load, CUDA context, kernel set-up) first, then the profiled one over the next
``--frames`` frames (at most 16: the glass has 20 distinct frames), so that the profiled
batches have edge counts the warm-up did not see, as every batch of a real trajectory
has (a kernel compiled per edge count would show). Printed per path: the engine's stage
profile, then the operators with the most GPU time (self) and with the most CPU time
(total: CPU work launching, converting and waiting, which a GPU-bound run would not
show). ``--device cpu`` tries the script where no GPU is (CPU operators only).
"""

import argparse
import contextlib
import tempfile
from functools import partial
from pathlib import Path
from unittest import mock

import torch
from gpu import tiled_glass  # benchmarks/, beside this script
from torch.profiler import ProfilerActivity, profile

from dynnmr import tensorproduct
from dynnmr.engine import Profile, analyze

padded_edges = partial(mock.patch.object, tensorproduct, "PAD_EDGES", True)  # the fused kernel pads its edges
WARM = 4  # frames of the warm-up run: one GPU batch of the 24,000-atom glass


def profiled_analyze(traj, model, device, frames):
    """``(engine stage report, torch.profiler result)`` of one `analyze` of frames
    ``WARM:WARM + frames``, after an unprofiled warm-up run over frames ``0:WARM``."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with tempfile.TemporaryDirectory() as tmp:
        run = dict(model=model, device=device, graphs="device", progress=False, overwrite=True)
        analyze(traj, Path(tmp) / "warm.zarr", frames=f"0:{WARM}", **run)
        stages = Profile()
        with profile(activities=activities) as prof:
            analyze(traj, Path(tmp) / "s.zarr", frames=f"{WARM}:{WARM + frames}", profile=stages, **run)
            if device == "cuda":
                torch.cuda.synchronize()
    return stages.report(), prof


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="sio2")
    p.add_argument("--frames", type=int, default=12, choices=range(1, 17), metavar="1-16",
                   help="frames of the 24,000-atom glass in the profiled run")  # fmt: skip
    p.add_argument("--device", default="cuda")
    p.add_argument("--rows", type=int, default=25)
    args = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    with tempfile.TemporaryDirectory() as tmp:
        traj = Path(tmp) / "glass24k.extxyz"
        atoms = tiled_glass(traj, WARM + args.frames)
        for path, context in (("fused", contextlib.nullcontext), ("fused, padded edges", padded_edges),
                              ("e3nn", tensorproduct.reference)):  # fmt: skip
            with context():
                stages, prof = profiled_analyze(traj, args.model, args.device, args.frames)
            events = prof.key_averages()
            text = [f"{args.model}, {path} path, {args.frames} frames x {atoms} atoms, {args.device}", stages]
            if args.device == "cuda":
                text += [
                    "operators by GPU time (self):",
                    events.table(sort_by="self_device_time_total", row_limit=args.rows),
                ]
            text += ["operators by CPU time (total):", events.table(sort_by="cpu_time_total", row_limit=args.rows)]
            print("\n".join(text), flush=True)


if __name__ == "__main__":
    main()
