"""What the committee costs: `analyze` end to end with one head, and with several heads
with and without the stored spread, on the same trajectory, in one run.

Usage: python benchmarks/committee_cpu.py [--model sio2] [--heads 4] [--threads 2]
           [--trajectory trajectories/amorphous_sio2.extxyz.gz] [--frames 0:20]
           [--ensemble 2x16/8 ...]
The models are the given model's architecture with random weights (the cost does not
depend on the weights): 1 head, and ``--heads`` heads; each ``--ensemble NxC/V`` adds an
ensemble of N trunks of C scalar / V vector channels with ``--heads`` heads each
(:class:`dynnmr.model.Ensemble`). Each configuration runs twice, interleaved; the faster
run counts. Rates are atoms over the whole `analyze` call
(model load and store creation included, about 1 s), as a user sees them.
"""

import argparse
import tempfile
from pathlib import Path

import torch

from dynnmr.engine import Profile, analyze
from dynnmr.model import build_model
from dynnmr.modelfile import load_model, save_model

ROOT = Path(__file__).parents[1]


def random_model(info, heads, path, **changes):
    """The architecture of a loaded model's ``info`` with ``heads`` heads and ``changes``
    (e.g. ``trunks``, ``channels``), random weights."""
    hp = dict(info["hyperparameters"], heads=heads, **changes)
    torch.manual_seed(0)
    net = build_model(info["species"], info["targets"], **hp)
    save_model(path, net, hp, covered_species=info.get("covered_species"),
               shift_reference=info.get("shift_reference", {}))  # fmt: skip
    return path


def atoms_per_s(model, trajectory, frames, out, uncertainty, threads):
    torch.set_num_threads(threads)
    prof = Profile()
    analyze(trajectory, out, model=str(model), frames=frames, overwrite=True, progress=False, device="cpu",
            uncertainty=uncertainty, profile=prof)  # fmt: skip
    return prof.atoms / prof.wall, prof


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="sio2")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--trajectory", default=str(ROOT / "trajectories" / "amorphous_sio2.extxyz.gz"))
    p.add_argument("--frames", default="0:20")
    p.add_argument("--ensemble", nargs="*", default=[], metavar="NxC/V",
                   help="also ensembles of N trunks of C scalar / V vector channels, e.g. 2x16/8")  # fmt: skip
    args = p.parse_args()
    _, info = load_model(args.model)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        one = random_model(info, 1, d / "one.pt")
        many = random_model(info, args.heads, d / "many.pt")
        configs = {"1 head": (one, False), f"{args.heads} heads, no spread": (many, False),
                   f"{args.heads} heads, spread stored": (many, True)}  # fmt: skip
        for spec in args.ensemble:
            n, channels = spec.split("x")
            c, v = (int(x) for x in channels.split("/"))
            ens = random_model(info, args.heads, d / f"ens-{n}-{c}-{v}.pt", trunks=int(n), channels=c,
                               vector_channels=v)  # fmt: skip
            configs[f"{n} trunks {c}/{v}, {args.heads} heads each, spread stored"] = (ens, True)
        best = {}
        for _ in range(2):
            for name, (model, unc) in configs.items():
                rate, prof = atoms_per_s(model, args.trajectory, args.frames, d / "s.zarr", unc, args.threads)
                best[name] = max(best.get(name, 0.0), rate)
        base = best["1 head"]
        for name, rate in best.items():
            print(f"{name:48s} {rate:9,.0f} atoms/s   cost x{base / rate:.2f}")


if __name__ == "__main__":
    main()
