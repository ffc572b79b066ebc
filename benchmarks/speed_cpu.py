"""CPU speed of `analyze` against a plain e3nn model, in one run: the issue's yardstick.

Usage: python benchmarks/speed_cpu.py [--threads 2] [--frames 0:20] [--runs 2]
           [--trajectory trajectories/amorphous_sio2.extxyz.gz]

Rows, all on the same machine state (configurations interleaved, the faster of
``--runs`` runs counts):

* plain e3nn: e3nn's own message-passing network (``e3nn.nn.models.v2106``,
  ``NetworkForAGraphWithAttributes``, 32 channels of every l <= 2 and both parities,
  output 0e + 1e + 2e per atom, random weights), forward pass only, on our periodic
  neighbour list (graph building not counted): the fastest of 3 passes over the first
  frame (a burst, the issue's measure), and one pass over each frame `analyze` reads
  (as long as `analyze` runs, so that a host whose speed drifts treats both alike; for
  the 3-convolution network, four times slower and only a reference, the first frame). Two sizes:
  2 message-passing layers (e3nn's ``layers=1``: input -> hidden -> output, two
  convolutions, as our two interaction blocks), the yardstick, and e3nn's ``layers=2``
  (three convolutions), for reference;
* `analyze` end to end (whole call: model load, reading, graphs, model, store) with the
  bundled default `sio2`, a committee of 4 heads, with the uncertainty on (the member
  spread and the members' parameters stored, the default) and off, each with the fused
  message kernel and with e3nn's tensor product (``tensorproduct.reference()``).
Rates are trajectory atoms per second, for `analyze` twice: over the whole call, and
after its start-up (checks, model load, store creation: :class:`dynnmr.engine.Profile`),
which a long trajectory pays once; the issue's "end to end (start-up excluded)" is the
second. Accuracy, on the same frame with the bundled
`sio2`: the largest difference of the float32 kernel's tensors from the float64 e3nn
path's (the float32 rounding inference accepts), next to float32 e3nn's.
"""

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import torch
from e3nn import o3
from e3nn.nn.models.v2106.gate_points_networks import NetworkForAGraphWithAttributes

from dynnmr import tensorfiles, tensorproduct
from dynnmr.engine import Profile, analyze
from dynnmr.graphs import collate, structure_arrays
from dynnmr.modelfile import load_model

ROOT = Path(__file__).parents[1]


def plain_e3nn_rates(frames, cutoff, runs, layers):
    """Atoms/s of e3nn's 32-channel network's forward pass (``layers`` hidden layers, one
    convolution more): the fastest of ``runs`` passes over the first frame, and one pass
    over each of ``frames`` (the frames `analyze` reads, graphs built beforehand)."""
    graphs = [collate([structure_arrays(atoms, cutoff)]) for atoms in frames]
    n = len(frames[0])
    torch.manual_seed(0)
    net = NetworkForAGraphWithAttributes(
        "2x0e", "1x0e", "1x0e", "0e+1e+2e", max_radius=cutoff,
        num_neighbors=len(graphs[0].edge_src) / n, num_nodes=n, mul=32, layers=layers, lmax=2, pool_nodes=False,
    ).eval()  # fmt: skip

    def forward(graph):
        species = (graph.numbers == 14).long()
        data = {
            "pos": graph.positions, "x": torch.nn.functional.one_hot(species, 2).float(),
            "node_attr": torch.ones(n, 1), "edge_attr": torch.ones(len(graph.edge_src), 1),
            "edge_index": torch.stack([graph.edge_src, graph.edge_dst]),
        }  # fmt: skip
        # periodic edge vectors: e3nn takes pos[src] - pos[dst]; give it positions that make them ours
        vec = graph.edge_vectors()
        net.preprocess = lambda d: (torch.zeros(n, dtype=torch.long), d["x"], d["node_attr"], d["edge_attr"],
                                    graph.edge_src, graph.edge_dst, vec)  # fmt: skip
        t0 = time.perf_counter()
        out = net(data)
        seconds = time.perf_counter() - t0
        assert out.shape == (n, o3.Irreps("0e+1e+2e").dim)
        return seconds

    with torch.inference_mode():
        forward(graphs[0])
        best = min(forward(graphs[0]) for _ in range(runs))
        every = sum(forward(g) for g in graphs)
    return n / best, n * len(graphs) / every


def float32_errors(atoms):
    """``{path: {target: max |T32 - T64|}}`` (ppm, au) for the bundled `sio2` on ``atoms``;
    float64 is e3nn's path with the model converted to float64."""
    net, _ = load_model("sio2")
    graph = collate([structure_arrays(atoms, net.cutoff)])
    with torch.inference_mode():
        with tensorproduct.reference():
            exact = net.double()(graph.to(dtype=torch.float64))
            net.float()
            e3nn = net(graph)
        fused = net(graph)
    return {name: {t: float((out[t].double() - exact[t]).abs().max()) for t in exact}
            for name, out in (("fused kernel", fused), ("e3nn", e3nn))}  # fmt: skip


def analyze_rates(model, trajectory, frames, out, uncertainty, fused):
    """Atoms/s of one `analyze` call: over the whole call, and after its start-up."""
    prof = Profile()
    with tensorproduct.reference() if not fused else contextlib.nullcontext():
        analyze(trajectory, out, model=model, frames=frames, overwrite=True, progress=False, device="cpu",
                uncertainty=uncertainty, profile=prof)  # fmt: skip
    return prof.rate(), prof.rate(startup=False)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frames", default="0:20")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--trajectory", default=str(ROOT / "trajectories" / "amorphous_sio2.extxyz.gz"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    atoms = tensorfiles.read(args.trajectory, index="0")[0]
    configs = {
        "sio2 + uncertainty, fused kernel": ("sio2", True, True),
        "sio2 + uncertainty, e3nn tensor product": ("sio2", True, False),
        "sio2 --no-uncertainty, fused kernel": ("sio2", False, True),
        "sio2 --no-uncertainty, e3nn tensor product": ("sio2", False, False),
    }
    plain = {"plain e3nn forward, 2 message-passing layers": 1, "plain e3nn forward, 3 (e3nn layers=2)": 2}
    frames = tensorfiles.read(args.trajectory, index=args.frames)
    best = {}
    with tempfile.TemporaryDirectory() as d:
        for _ in range(args.runs):
            for name, layers in plain.items():
                rates = plain_e3nn_rates(frames if layers == 1 else frames[:1], 5.0, 3, layers)  # the yardstick: all
                best[name] = tuple(max(a, b) for a, b in zip(best.get(name, (0.0, 0.0)), rates))
            for name, (model, unc, fused) in configs.items():
                rates = analyze_rates(model, args.trajectory, args.frames, Path(d) / "s.zarr", unc, fused)
                best[name] = tuple(max(a, b) for a, b in zip(best.get(name, (0.0, 0.0)), rates))
    base, sustained = best["plain e3nn forward, 2 message-passing layers"]
    print(f"{len(atoms)} atoms a frame, frames {args.frames}, {args.threads} threads")
    for name, err in float32_errors(atoms).items():
        print(f"  float32 {name}: max |T - T(float64)| " + ", ".join(f"{t} {v:.2e}" for t, v in err.items()))
    print("  atoms/s (x plain e3nn 2 layers: frame 0's fastest pass / every frame); columns: plain e3nn frame 0's")
    print("  fastest pass, every frame; analyze whole call, after start-up")
    for name, rates in best.items():
        print(f"  {name:52s}" + "".join(f" {r:9,.0f} (x{r / base:5.2f} / x{r / sustained:5.2f})" for r in rates))


if __name__ == "__main__":
    main()
