"""The committee spread's cost on a GPU, and an alternative eigenvalue method, measured.

Usage: python benchmarks/gpu_spread.py [--device cuda] [--sites 96000] [--heads 4] [--json out.json]

`analyze` with a committee computes, per batch, every member's NMR parameters
(:func:`dynnmr.uncertainty.spread`): one 3x3 symmetric eigenvalue problem per site, head
and target. A batch of the default model on a 24,000-atom glass (4 frames, 4 heads) is
about 384,000 matrices per target. This script times, on random symmetric tensors of
that size in float64:

* the package path: :func:`dynnmr.uncertainty.spread` on device tensors, whose
  eigenvalues come from torch's batched solver (cuSOLVER on a GPU) in chunks of
  ``tensors.TORCH_EIGEN_BATCH``, and the same with ``tensors.TORCH_EIGEN = "closed"``;
* torch's solver alone, chunked as the package does;
* the closed-form eigenvalues alone (:func:`dynnmr.tensors.closed_form_eigvalsh`,
  elementwise): its largest difference from NumPy's LAPACK eigenvalues is printed, since
  near-degenerate pairs lose digits in the arccos;
* NumPy on the host (the path before the spread moved to the GPU).

Median of 5 runs after a warm-up, with CUDA synchronisation.
"""

import argparse
import json
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from array_api_compat import array_namespace

from dynnmr import tensors as T
from dynnmr import uncertainty as U


def closed_form(fn, *args):
    """``fn(*args)`` with the package's torch eigenvalues in closed form (``tensors.TORCH_EIGEN``)."""
    with mock.patch.object(T, "TORCH_EIGEN", "closed"):
        return fn(*args)


def timed(fn, device, runs=5):
    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    fn()
    sync()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda")
    p.add_argument("--sites", type=int, default=96000, help="sites per batch (24,000-atom frames x 4)")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--json")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    host = rng.normal(size=(args.sites, args.heads, 3, 3)) * 30
    host = 0.5 * (host + np.swapaxes(host, -1, -2))
    dev = torch.from_numpy(host).to(args.device)
    n = args.sites * args.heads

    res = {"device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu", "torch": torch.__version__,
           "matrices_per_target": n, "date": time.strftime("%Y-%m-%d"),
           "spread_ms_package_s": timed(lambda: U.spread("ms", dev), args.device),
           "spread_efg_package_s": timed(lambda: U.spread("efg", dev), args.device),
           "eigvalsh_torch_chunked_s": timed(lambda: T._eigvalsh(dev, array_namespace(dev)), args.device),
           "eigvalsh_closed_form_s": timed(lambda: T.closed_form_eigvalsh(dev), args.device),
           "spread_ms_package_closed_form_s": timed(lambda: closed_form(U.spread, "ms", dev), args.device),
           "spread_ms_numpy_host_s": timed(lambda: U.spread("ms", host), "cpu", runs=2)}  # fmt: skip
    ref = np.linalg.eigvalsh(host)
    res["closed_form_max_abs_diff"] = float(np.abs(T.closed_form_eigvalsh(dev).cpu().numpy() - ref).max())
    res["torch_max_abs_diff"] = float(np.abs(T.eigenvalues(dev).cpu().numpy() - ref).max())
    for k, v in res.items():
        print(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
