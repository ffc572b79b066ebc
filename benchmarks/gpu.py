"""GPU speed: model forward pass and end-to-end `dynnmr analyze`, on a CUDA machine.

Usage: python benchmarks/gpu.py [--model silicate-29si] [--kernel fused|e3nn] [--json results.json]

1. Forward pass only (float32, all atoms predicted), alpha-quartz supercells of 3,087,
   24,696 and 98,784 atoms rattled by 0.05 A; graphs built on the GPU with vesin-torch
   and timed separately; median of 5 runs after a warm-up, with CUDA synchronisation.
2. `analyze` of the bundled 3,000-atom amorphous SiO2 trajectory, graphs on the GPU
   and in the CPU reader thread.
3. `analyze` of a 24,000-atom glass (the bundled frames tiled 2x2x2, 300 frames, each
   pass through the 20 frames strained a little more: no batch repeats); for a
   committee model also with ``uncertainty`` off, graphs on the GPU: the committee's
   cost factor (spread stored against the members' mean alone, same trunk).
End-to-end rates count trajectory atoms (frames x atoms per frame) per second of wall
time, model loading and store creation included; silicate-29si stores the Si sites.
``--kernel e3nn`` runs everything on e3nn's tensor product (``tensorproduct.reference``);
``fused`` (default) uses cuequivariance's kernel where it is installed (see
``tensorproduct.cuda_kernels``, recorded in the JSON), ``fused-padded`` the same with
the edges padded to a few lengths (``tensorproduct.PAD_EDGES``), so calls compare the paths;
``--eigen closed`` takes the committee spread's eigenvalues in closed form
(``tensors.TORCH_EIGEN``; default: torch's solver).
"""

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from inference_cpu import quartz_supercell, time_forward  # benchmarks/, beside this script

from dynnmr import tensorproduct, tensors
from dynnmr.engine import Profile, analyze
from dynnmr.graphs import collate_on_device
from dynnmr.modelfile import load_model
from dynnmr.reader import iread

REPO = Path(__file__).parents[1]
GLASS = REPO / "trajectories" / "amorphous_sio2.extxyz.gz"


class _Frame:
    def __init__(self, atoms):
        self.numbers, self.positions = atoms.numbers, atoms.positions
        self.cell, self.pbc = atoms.cell.array, atoms.pbc


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def forward(model, n_rep, device, runs=5):
    atoms = quartz_supercell((n_rep, n_rep, n_rep))
    g, m, _ = time_forward(model, lambda: collate_on_device([_Frame(atoms)], model.cutoff, device), runs, _sync)
    n = len(atoms)
    return {"atoms": n, "graph_ms": g * 1e3, "model_ms": m * 1e3, "model_atoms_per_s": n / m,
            "graph_plus_model_atoms_per_s": n / (g + m), "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else 0.0}  # fmt: skip


def tiled_glass(path, frames, reps=2, strain=2e-5):
    """``frames`` frames of the bundled glass tiled reps^3 times, cycling through its 20
    frames (times continue), as extended XYZ written directly (ase is slow at this size).
    Each pass through the 20 frames is scaled by another ``strain`` (positions and cell,
    1 + strain x pass), so that no two batches repeat their edge counts, as in a real
    trajectory (the structure changes by 1e-4 of its size over 150 frames)."""
    src = list(iread(GLASS))
    shifts = np.array([(i, j, k) for i in range(reps) for j in range(reps) for k in range(reps)], float)
    sym_of = {14: "Si", 8: "O"}
    names = [np.tile([sym_of[z] for z in f.numbers], len(shifts)) for f in src]
    tiled = [(f.positions[None] + (shifts @ f.cell)[:, None]).reshape(-1, 3) for f in src]
    with open(path, "w") as fh:
        for k in range(frames):
            f, c = src[k % len(src)], 1.0 + strain * (k // len(src))
            body = "".join(
                f"{n} {x:.6f} {y:.6f} {z:.6f}\n" for n, (x, y, z) in zip(names[k % len(src)], c * tiled[k % len(src)])
            )
            fh.write(f"{len(names[k % len(src)])}\nLattice=\"{' '.join(f'{v:.8f}' for v in (c * f.cell * reps).ravel())}\" "
                     f"Properties=species:S:1:pos:R:3 pbc=\"T T T\" time_ps={0.01 * k:.4f}\n{body}")  # fmt: skip
    return len(src[0].numbers) * len(shifts)


def end_to_end(traj, model, graphs, device, frames=None, uncertainty=True):
    prof = Profile()
    with tempfile.TemporaryDirectory() as tmp:
        analyze(traj, Path(tmp) / "s.zarr", model=model, frames=frames, device=device, graphs=graphs,
                progress=False, overwrite=True, profile=prof, uncertainty=uncertainty)  # fmt: skip
    return {"graphs": graphs, "uncertainty": uncertainty, "frames": prof.frames, "atoms": prof.atoms, "wall_s": prof.wall,
            "atoms_per_s": prof.atoms / prof.wall, "read_graph_s": prof.read_graph, "model_s": prof.model,
            "store_s": prof.write}  # fmt: skip


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="silicate-29si")
    p.add_argument("--json")
    p.add_argument("--big-frames", type=int, default=300)
    p.add_argument("--glass-frames", help="start:stop:step of the 3,000-atom glass (default all)")
    p.add_argument("--sizes", default="7,14,22", help="quartz supercell repeats for the forward pass")
    p.add_argument("--device", default="cuda", help="cuda (cpu only to try the script)")
    p.add_argument("--kernel", default="fused", choices=["fused", "fused-padded", "e3nn"],
                   help="message path (e3nn: the reference)")  # fmt: skip
    p.add_argument("--device-graphs-only", action="store_true",
                   help="analyze rows with graphs on the GPU only (skip the CPU reader-thread rows)")  # fmt: skip
    p.add_argument("--eigen", default="solver", choices=["solver", "closed"],
                   help="eigenvalues of the committee spread on the GPU (tensors.TORCH_EIGEN)")  # fmt: skip
    args = p.parse_args()
    tensorproduct.PAD_EDGES = args.kernel == "fused-padded"
    tensors.TORCH_EIGEN = args.eigen
    with tensorproduct.reference() if args.kernel == "e3nn" else contextlib.nullcontext():
        run(args)


def run(args):
    torch.backends.cuda.matmul.allow_tf32 = False  # report plain float32
    dev = args.device
    name = torch.cuda.get_device_name() if dev == "cuda" else "cpu"
    res = {"device": name, "torch": torch.__version__, "model": args.model, "date": time.strftime("%Y-%m-%d"),
           "kernel": args.kernel, "eigen": args.eigen, "cuequivariance": tensorproduct.cuda_kernels()}  # fmt: skip
    model, info = load_model(args.model, device=dev)
    res["forward"] = [forward(model, int(n), dev) for n in args.sizes.split(",")]
    for r in res["forward"]:
        print(f"forward {r['atoms']:>6} atoms: graph {r['graph_ms']:.1f} ms, model {r['model_ms']:.1f} ms, "
              f"{r['model_atoms_per_s']:,.0f} atoms/s (model), {r['graph_plus_model_atoms_per_s']:,.0f} (graph+model), "
              f"peak {r['peak_gpu_mb']:.0f} MB", flush=True)  # fmt: skip
    graphs = ("device",) if args.device_graphs_only else ("device", "cpu")
    res["glass_3000"] = [end_to_end(GLASS, args.model, g, dev, args.glass_frames) for g in graphs]
    big = Path(tempfile.gettempdir()) / f"dynnmr-glass24k-{args.big_frames}.extxyz"  # written once per machine
    if not big.exists():
        tiled_glass(big.with_suffix(".part"), args.big_frames)
        big.with_suffix(".part").rename(big)
    res["glass_24000_atoms"] = 8 * len(next(iread(GLASS)).numbers)  # tiled 2x2x2
    res["glass_24000"] = [end_to_end(big, args.model, g, dev) for g in graphs]
    if getattr(model, "heads", 1) > 1:
        res["glass_24000"].append(end_to_end(big, args.model, "device", dev, uncertainty=False))
        on, off = res["glass_24000"][0], res["glass_24000"][-1]
        res["committee_factor"] = off["atoms_per_s"] / on["atoms_per_s"]
    for key in ("glass_3000", "glass_24000"):
        for r in res[key]:
            print(f"analyze {key} graphs={r['graphs']} uncertainty={r['uncertainty']}: {r['frames']} frames, {r['atoms_per_s']:,.0f} atoms/s "
                  f"(read+graph {r['read_graph_s']:.1f} s, model {r['model_s']:.1f} s, store {r['store_s']:.1f} s, "
                  f"wall {r['wall_s']:.1f} s)", flush=True)  # fmt: skip
    if "committee_factor" in res:
        print(f"committee cost, uncertainty on / off (24,000 atoms, graphs on the GPU): x{res['committee_factor']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
