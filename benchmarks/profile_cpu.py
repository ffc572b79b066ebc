"""Where the time of one `analyze` chunk goes on CPU: reading and graphs, the model by
part (each layer's radial network, tensor product, linears, gate and products; the
gathers and scatters of the messages; the readouts), the store write.

Usage: python benchmarks/profile_cpu.py [--model sio2] [--threads 2] [--frames 0:8]
           [--trajectory trajectories/amorphous_sio2.extxyz.gz]
Stages come from the engine's own profile (one `analyze` run, 64-frame chunks). The
model breakdown times one forward pass over a frame with forward hooks on every part
(CPU work is synchronous, so wall time between hooks is the part's), twice: with the
fused message kernel ("fused": tensor product, gather and sum over edges in one, see
dynnmr/tensorproduct.py) and with e3nn's tensor product ("tp"); "messages" is each
block's time outside its parts: with e3nn the gather of neighbour features, the
scatter-add of the messages and the normalisation, with the kernel the edge ordering
and the normalisation. Mean of 5 passes.
"""

import argparse
import contextlib
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from dynnmr import tensorfiles, tensorproduct
from dynnmr.engine import Profile, analyze
from dynnmr.graphs import collate, structure_arrays
from dynnmr.modelfile import load_model

ROOT = Path(__file__).parents[1]


def part_times(model, graph, runs=5):
    """Mean seconds per model part over ``runs`` forward passes after one warm-up (means,
    so that the parts and the remainders add up to the total)."""
    times, start = defaultdict(list), {}

    def pre(name):
        return lambda module, args: start.__setitem__(name, time.perf_counter())

    def post(name):
        return lambda module, args, out: times[name].append(time.perf_counter() - start[name])

    hooks = []
    for k, block in enumerate(model.blocks):
        hooks += [block.register_forward_pre_hook(pre(f"layer {k + 1}")),
                  block.register_forward_hook(post(f"layer {k + 1}"))]  # fmt: skip
        for part in ("radial", "tp", "fused", "linear_up", "linear_down", "self_connection", "gate", "product"):
            m = getattr(block, part, None)
            if m is not None:
                name = f"layer {k + 1} {part}"
                hooks += [m.register_forward_pre_hook(pre(name)), m.register_forward_hook(post(name))]
    for t, m in model.readouts.items():
        hooks += [m.register_forward_pre_hook(pre(f"readout {t}")), m.register_forward_hook(post(f"readout {t}"))]
    total = []
    with torch.inference_mode():
        for r in range(runs + 1):
            t0 = time.perf_counter()
            model(graph)
            if r:
                total.append(time.perf_counter() - t0)
            else:
                times.clear()
    for h in hooks:
        h.remove()
    med = {k: statistics.fmean(v) for k, v in times.items()}
    for k in range(len(model.blocks)):
        inside = sum(v for n, v in med.items() if n.startswith(f"layer {k + 1} "))
        med[f"layer {k + 1} messages (gather, scatter-add)"] = med[f"layer {k + 1}"] - inside
    med["total forward"] = statistics.fmean(total)
    layers = sum(med[f"layer {k + 1}"] for k in range(len(model.blocks)))
    med["edge features, embedding (before the layers)"] = med["total forward"] - layers - sum(
        v for n, v in med.items() if n.startswith("readout"))  # fmt: skip
    return med


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="sio2")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frames", default="0:8")
    p.add_argument("--trajectory", default=str(ROOT / "trajectories" / "amorphous_sio2.extxyz.gz"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as d:
        prof = Profile()
        analyze(args.trajectory, Path(d) / "s.zarr", model=args.model, frames=args.frames, progress=False,
                device="cpu", profile=prof)  # fmt: skip
    print(prof.report())
    net, _ = load_model(args.model)
    atoms = tensorfiles.read(args.trajectory, index="0")[0]
    graph = collate([structure_arrays(atoms, net.cutoff)])
    for path, context in (("fused kernel", contextlib.nullcontext), ("e3nn tensor product", tensorproduct.reference)):
        with context():
            med = part_times(net, graph)
        total = med["total forward"]
        print(f"one forward pass ({path}), {len(atoms)} atoms, {len(graph.edge_src)} edges, {args.threads} threads:")
        for name, sec in sorted(med.items(), key=lambda kv: (not kv[0].startswith("total"), kv[0])):
            if name.count(" ") == 1 and name.startswith("layer"):
                continue  # the layer totals: their parts are listed
            print(f"  {name:48s} {1e3 * sec:8.1f} ms  {100 * sec / total:5.1f}%")


if __name__ == "__main__":
    main()
