"""Many machines: `analyze` as dask.distributed tasks, each writing its own store chunks.

The driver reads the first frame, builds (or loads) the trajectory's frame index, sizes
the store for every selected frame and submits one task per store chunk. A task carries
only paths and numbers: its worker seeks to the chunk's first frame (extended XYZ via
the saved frame index, binary formats natively), runs the model on its own device and
writes the chunk straight into the shared zarr store, then marks it in ``chunk_done``.
No frame passes through the scheduler.

Fault tolerance is dask's: tasks of a worker that dies are rerun elsewhere; a chunk is
written whole or rewritten whole, so the final store equals a single-process run's.
``resume`` skips chunks already marked, also in a store a single-process run began.

Workers need the trajectory, the model file and the store on a shared file system.
One worker per GPU (``--device cuda``), or CPU workers with a few threads each: give
them OMP_NUM_THREADS in their environment (:func:`thread_env`); dask sets it to 1.
A worker that imports torch before dynnmr also needs GOMP_SPINCOUNT there (the short
OpenMP spin of :mod:`dynnmr`; ``thread_env`` has it).
"""

from __future__ import annotations

import sys
import time
from functools import lru_cache

import numpy as np
import torch

from .engine import _Progress
from .errors import InputError
from .formats import check_file
from .inference import Job, load_for_inference
from .reader import count_frames, frame_index, iread, is_extxyz
from .spec import AnalysisSpec
from .store import StoreLock, TensorStore, check_output, source_attrs


@lru_cache(maxsize=4)
def _worker_job(spec: AnalysisSpec):
    """Per worker process: model and site selection, loaded once and reused by its tasks."""
    net, info, dev, batch = load_for_inference(spec.model, spec.device, spec.batch_atoms)
    start = spec.frames[0] or 0
    first = next(iread(spec.trajectory, slice(start, start + 1), format=spec.fmt, topology=spec.topology))
    return Job.for_spec(spec, first, net, info, dev, batch)


@lru_cache(maxsize=4)
def _index(trajectory):
    return frame_index(trajectory)


def run_chunk(chunk, spec: AnalysisSpec, n_frames, chunk_frames, threads=None):
    """One task: read, predict and write store chunk ``chunk`` of ``spec.output`` (the
    store's ``chunk_frames``, ``n_frames`` selected in all); returns (chunk, frames, seconds)."""
    t0 = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    job = _worker_job(spec)
    start, step = spec.frames[0] or 0, spec.frames[2] or 1
    first = chunk * chunk_frames
    n = min(chunk_frames, n_frames - first)
    frames = slice(start + first * step, start + (first + n - 1) * step + 1, step)
    index = _index(str(spec.trajectory)) if is_extxyz(spec.trajectory, spec.fmt, spec.topology) else None
    payload = []
    for frame in iread(spec.trajectory, frames, format=spec.fmt, topology=spec.topology, index=index):
        payload.append(job.prepare(frame, cpu_graphs=job.device.type == "cpu"))
    if len(payload) != n:
        raise InputError(spec.trajectory, f"expected {n} frames from frame {frames.start}, read {len(payload)}")
    data = job.infer(payload, spec)
    store = TensorStore.reopen(spec.output, {})
    store.write_frames(first, data)
    return chunk, n, time.perf_counter() - t0


def analyze_distributed(spec, client, output=None, *, threads=None, retries=1, **options):
    """:func:`dynnmr.engine.analyze` on a ``distributed.Client``; returns the store path.

    ``spec``: an :class:`~dynnmr.spec.AnalysisSpec` or the trajectory with ``output`` and
    the spec's fields as keywords; its ``device`` is each worker's (``cuda`` for GPU
    workers). ``threads``: torch threads per task; ``retries``: how often a failed task is
    resubmitted (a worker that dies does not count: dask reschedules its tasks by itself).
    """
    if not isinstance(spec, AnalysisSpec):
        spec = AnalysisSpec(spec, output, **options)
    elif output is not None or options:
        raise TypeError("analyze_distributed(spec, client) takes no other options: use spec.replace(...)")
    # workers on other machines see the same shared paths
    spec = spec.replace(trajectory=spec.trajectory.resolve(), output=spec.output.resolve())
    trajectory, output = spec.trajectory, spec.output
    start, stop, step = spec.frames[0] or 0, spec.frames[1], spec.frames[2] or 1
    check_file(trajectory)
    check_output(output, spec.resume, spec.overwrite)
    total = count_frames(trajectory, spec.fmt, spec.topology)  # builds and saves the frame index for extxyz
    n_frames = len(range(start, total if stop is None else min(stop, total), step))
    if n_frames == 0:
        raise InputError(trajectory, "no frames in the selection")
    net, info, _, _ = load_for_inference(spec.model, "cpu")  # the driver only needs the model's description
    first = next(iread(trajectory, slice(start, start + 1), format=spec.fmt, topology=spec.topology))
    job = Job.for_spec(spec, first, net, info, torch.device("cpu"), 0)
    expected = spec.expected_attrs(info, source_attrs(trajectory))
    with StoreLock(output):  # the driver holds it; workers write only the chunks it hands out
        return _run_locked(client, spec, net, job, expected, n_frames, threads, retries)


def _run_locked(client, spec, net, job, expected, n_frames, threads, retries):
    """:func:`analyze_distributed` once the output is checked and its writer lock held."""
    output = spec.output
    store = TensorStore.for_run(spec, expected, job)
    done = store.plan_chunks(n_frames)
    todo = [int(c) for c in np.flatnonzero(~done)]
    futures = client.map(run_chunk, todo, pure=False, retries=retries, spec=spec, n_frames=n_frames,
                         chunk_frames=store.chunk_frames, threads=threads)  # fmt: skip
    chunk_of = {f.key: c for f, c in zip(futures, todo)}
    bar = _Progress(spec.progress)
    n_atoms = len(job.numbers)
    frames_this_run, error = 0, None
    try:
        from distributed import as_completed, wait

        pending = as_completed(futures)
        for fut in pending:
            try:
                chunk, n, _ = fut.result()
            except Exception as exc:
                # like a sequential run: every chunk before the bad one is finished and
                # kept, the ones after it are dropped
                error, bad = exc, chunk_of[fut.key]
                client.cancel([f for f in futures if chunk_of[f.key] > bad])
                wait([f for f in futures if chunk_of[f.key] < bad])
                for f in futures:
                    if chunk_of[f.key] < bad and f.status == "finished":
                        done[chunk_of[f.key]] = True
                break
            done[chunk] = True
            frames_this_run += n
            bar.update(frames_this_run, frames_this_run * n_atoms, done.mean())
            store.group.attrs["frames_done"] = _prefix_frames(done, store.chunk_frames, n_frames)
    finally:
        if not done.all():
            client.cancel(futures)
        bar.update(frames_this_run, frames_this_run * n_atoms, float("nan"), force=True)
        bar.close()
        prefix = _prefix_frames(done, store.chunk_frames, n_frames)
        if done.all():
            store.finish(None, frames_done=n_frames)
        else:  # keep every written chunk: arrays stay full length, frames_done marks the complete prefix
            store.group.attrs.update({"frames_done": prefix, "complete": False,
                                      "error": str(error) if error else "interrupted"})  # fmt: skip
    if error is not None:
        raise error
    if spec.correlate:  # over the finished store, on the driver (it reads, the model is done)
        from .correlator import MultipleTau

        MultipleTau(output).run()
    print(f"{output}: {frames_this_run} frames in {len(todo)} chunks on {len(client.scheduler_info()['workers'])} "
          f"workers", file=sys.stderr)  # fmt: skip
    return output


def _prefix_frames(done, chunk_frames, n_frames):
    """Frames in the leading run of finished chunks (what a sequential resume may skip)."""
    k = int(np.argmin(done)) if not done.all() else len(done)
    return min(k * chunk_frames, n_frames)


def thread_env(threads) -> dict:
    """Worker environment for ``threads`` OpenMP/BLAS threads.

    dask starts worker processes with OMP_NUM_THREADS=MKL_NUM_THREADS=OPENBLAS_NUM_THREADS=1,
    and then ``torch.set_num_threads`` alone does not bring the other cores into play
    (measured: a 2-thread matrix product ran at 1-thread speed in a worker). It also
    carries this process's GOMP_SPINCOUNT (set on importing dynnmr), which a worker needs
    before torch loads libgomp: dask's own imports may load torch first.
    """
    import os

    env = {k: str(int(threads)) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    return {**env, "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT", "10000")}


def local_client(n_workers, threads=None):
    """A LocalCluster of ``n_workers`` processes (one task each, ``threads`` torch threads,
    default the machine's cores shared out) that closes with its client."""
    import os

    from distributed import Client

    threads = threads or max(1, (os.cpu_count() or 1) // n_workers)
    return Client(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                  env=thread_env(threads))  # fmt: skip


def client_for(address, threads=None):
    """A ``distributed.Client`` for ``tcp://host:port``, or ``local:N`` (:func:`local_client`)."""
    from distributed import Client

    if address.startswith("local:"):
        return local_client(int(address.split(":", 1)[1]), threads)
    return Client(address)
