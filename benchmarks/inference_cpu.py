"""CPU inference speed of a tensor model: graph building and forward pass, atoms/s.

Usage: python benchmarks/inference_cpu.py [--model silicate-29si] [--threads 2] [--repeat 7x7x7]
System: an alpha-quartz supercell (9 atoms x repeat; 7x7x7 = 3,087 atoms, 2.65 g/cm^3,
denser than amorphous SiO2 so a slightly pessimistic edge count), rattled by 0.05 A.
Reports the median of several timed runs after one warm-up run.
"""

import argparse
import statistics
import time
from pathlib import Path

import torch

from dynnmr import tensorfiles
from dynnmr.graphs import collate, structure_arrays
from dynnmr.modelfile import load_model


def quartz_supercell(repeat):
    """The bundled alpha-quartz cell repeated ``repeat`` (3 ints) times, rattled by 0.05 A."""
    quartz = tensorfiles.read(Path(tensorfiles.__file__).parent / "data" / "alpha_quartz.extxyz")[0]
    atoms = quartz.repeat(tuple(repeat))
    atoms.rattle(0.05, seed=0)
    return atoms


def time_forward(model, build_graph, runs, sync=lambda: None):
    """Median seconds of graph building and of the forward pass over ``runs`` timed runs
    after one warm-up; ``sync`` waits for the device (CUDA) before each clock reading.
    Returns ``(graph_s, model_s, last graph)``."""
    t_graph, t_model = [], []
    for k in range(runs + 1):
        sync()
        t0 = time.perf_counter()
        graph = build_graph()
        sync()
        t1 = time.perf_counter()
        with torch.inference_mode():
            model(graph)
        sync()
        t2 = time.perf_counter()
        if k:
            t_graph.append(t1 - t0)
            t_model.append(t2 - t1)
    return statistics.median(t_graph), statistics.median(t_model), graph


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="silicate-29si")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", default="7x7x7")
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    atoms = quartz_supercell(int(x) for x in args.repeat.split("x"))
    model, info = load_model(args.model)
    g, m, graph = time_forward(model, lambda: collate([structure_arrays(atoms, model.cutoff)]), args.runs)
    n = len(atoms)
    print(
        f"model {info['name']} ({info['hyperparameters']['channels']} ch, {info['hyperparameters']['layers']} layers), "
        f"{n} atoms, {graph.edge_src.numel() / n:.1f} neighbours/atom, {args.threads} threads"
    )
    print(
        f"graph {g * 1e3:.1f} ms  model {m * 1e3:.1f} ms  ->  model {n / m:.0f} atoms/s, end to end {n / (g + m):.0f} atoms/s"
    )


if __name__ == "__main__":
    main()
