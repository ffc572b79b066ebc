"""The streaming analysis engine: trajectory -> per-site tensor time series in a zarr store.

One pass, constant memory. A reader thread parses frames and builds neighbour graphs for
the next chunk while the model runs on the current one, so the slower stage sets the
pace. Each chunk of ``chunk_frames`` frames is written to the store as soon as it is
done (see :mod:`dynnmr.store` for the layout and the crash-safety argument).

Bad input stops the run with an :class:`~dynnmr.errors.InputError` naming file, frame
and line; every complete frame before it is written and the store records the error.
"""

from __future__ import annotations

import errno
import queue
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from .correlator import MultipleTau
from .errors import InputError
from .formats import check_file
from .inference import Job, load_for_inference
from .reader import iread
from .spec import AnalysisSpec
from .store import StoreLock, TensorStore, check_output, open_store, source_attrs


@dataclass
class Profile:
    """Seconds spent per stage (reading and graphs, and the store writes, run in threads of
    their own, overlapped with the model). ``startup`` is the part of ``wall`` before the
    first chunk: checks, loading the model (building its modules), creating the store; a
    long trajectory pays it once, so the rate after it is the run's throughput."""

    read_graph: float = 0.0
    model: float = 0.0
    write: float = 0.0
    frames: int = 0
    atoms: int = 0
    wall: float = 0.0
    startup: float = 0.0

    def rate(self, startup=True) -> float:
        """Atoms per second over the whole call, or (``startup`` False) after start-up."""
        seconds = self.wall if startup else self.wall - self.startup
        return self.atoms / seconds if seconds > 0 else 0.0

    def report(self) -> str:
        return (f"profile: {self.frames} frames, {self.atoms} atoms in {self.wall:.2f} s ({self.rate():,.0f} atoms/s; "
                f"{self.rate(startup=False):,.0f} after {self.startup:.2f} s start-up); read+graph "
                f"{self.read_graph:.2f} s (reader thread), model {self.model:.2f} s, store {self.write:.2f} s "
                f"(writer thread)")  # fmt: skip


class _Progress:
    """One status line on stderr, refreshed about once a second: frames/s, atoms/s, ETA."""

    def __init__(self, enabled, stream=None):
        self.enabled, self.stream = enabled, stream or sys.stderr  # the stderr of now, not of import time
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.t0 = self.last = time.perf_counter()
        self.f0 = None

    def update(self, frames, atoms, fraction, force=False):
        now = time.perf_counter()
        # a terminal gets one line redrawn every second; a log file a new line every 10 s
        if not self.enabled or (now - self.last < (1.0 if self.tty else 10.0) and not force):
            return
        if self.f0 is None:
            self.f0 = fraction
        self.last = now
        dt = max(now - self.t0, 1e-9)
        eta = ""
        if np.isfinite(fraction) and fraction > (self.f0 or 0):
            left = dt * (1 - fraction) / (fraction - (self.f0 or 0))
            eta = f" | ETA {int(left // 60)}m{int(left % 60):02d}s"
        # the share of the file behind the last frame done (compressed bytes for gzip), not of the
        # selected frames, which are not counted ahead (that would mean reading the file twice)
        pct = f" | {100 * fraction:.0f}% of the file" if np.isfinite(fraction) else ""
        line = f"{frames} frames done{pct} | {frames / dt:.1f} frames/s | {atoms / dt:,.0f} atoms/s{eta}"
        self.stream.write(f"\r{line}   " if self.tty else line + "\n")
        self.stream.flush()

    def close(self):
        if self.enabled and self.tty:
            self.stream.write("\n")


class _Writer:
    """Writes finished chunks in order in a thread of its own, so that the model computes
    the next chunk while zarr compresses and writes this one (on a GPU the store write was
    a quarter of the wall time). At most ``depth`` chunks wait, which bounds memory. A
    failed write stops the writing (later chunks are dropped, every earlier one is kept)
    and is raised by the next :meth:`put` or by :meth:`close`."""

    def __init__(self, store, output, prof: Profile, depth=2):
        self.store, self.output, self.prof = store, output, prof
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while (item := self.q.get()) is not None:
            if self.error is not None:
                continue  # after a failure: drain, write nothing more
            position, data = item
            t0 = time.perf_counter()
            try:
                self.store.write_chunk(position, data)
            except OSError as exc:
                self.error = exc
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    n = len(data["time_ps"])
                    self.error = OSError(exc.errno, f"{self.output}: disk full while writing frames {position}.."
                                                    f"{position + n - 1}; the {position} frames before are kept: "
                                                    "free space and run the same command with --resume")  # fmt: skip
                    self.error.__cause__ = exc
            except BaseException as exc:
                self.error = exc
            self.prof.write += time.perf_counter() - t0

    def put(self, position, data):
        if self.error is not None:
            raise self.error
        self.q.put((position, data))

    def close(self):
        """Wait for every queued chunk; raise the write error, if any."""
        self.q.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


def _producer(reader, out: queue.Queue, chunk_frames, job, prof: Profile, stop: threading.Event, cpu_graphs):
    """Read frames, validate them and (for CPU graphs) build graph arrays, one chunk per queue item."""
    chunk = []
    try:
        for frame in reader:
            t0 = time.perf_counter()
            chunk.append(job.prepare(frame, cpu_graphs))
            prof.read_graph += time.perf_counter() - t0
            if len(chunk) == chunk_frames:
                out.put(("chunk", chunk))
                chunk = []
            if stop.is_set():
                return
        out.put(("chunk", chunk))
        out.put(("end", None))
    except BaseException as exc:  # hand every failure to the main thread, with the frames before it
        out.put(("chunk", chunk))
        out.put(("error", exc))


def analyze(spec, output=None, *, profile=None, **options):
    """Predict tensors for every selected frame into a zarr store; returns its path.

    ``spec``: an :class:`~dynnmr.spec.AnalysisSpec`, or the trajectory path with
    ``output`` and the spec's fields as keyword arguments (``model``, ``frames``,
    ``species``, ``dt_ps``, ``chunk_frames``, ``device``, ``resume``, ...; see there).
    ``profile``: a :class:`Profile` to fill with the time spent per stage.
    """
    if not isinstance(spec, AnalysisSpec):
        spec = AnalysisSpec(spec, output, **options)
    elif output is not None or options:
        raise TypeError("analyze(spec) takes no other options: use spec.replace(...)")
    prof = profile if profile is not None else Profile()
    t_wall = time.perf_counter()
    check_file(spec.trajectory)
    check_output(spec.output, spec.resume, spec.overwrite)
    net, info, dev, batch_atoms = load_for_inference(spec.model, spec.device, spec.batch_atoms)
    expected = spec.expected_attrs(info, source_attrs(spec.trajectory))
    with StoreLock(spec.output):
        return _analyze_locked(spec, net, info, dev, batch_atoms, expected, prof, t_wall)


def _analyze_locked(spec: AnalysisSpec, net, info, dev, batch_atoms, expected, prof, t_wall):
    """:func:`analyze` once the output is checked and its writer lock held."""
    trajectory, output, sel = spec.trajectory, spec.output, spec.selection
    start, step = sel.start or 0, sel.step or 1
    done = 0
    if spec.resume:  # restart on a chunk boundary
        attrs = open_store(output).attrs
        done = int(attrs["frames_done"]) // int(attrs["chunk_frames"]) * int(attrs["chunk_frames"])
    reader = iread(trajectory, slice(start + done * step, sel.stop, step), format=spec.fmt, topology=spec.topology)
    try:
        head = [next(reader)]
    except StopIteration:
        if not done:
            raise InputError(trajectory, "no frames in the selection") from None
        head = []  # every frame was stored before: the run only checks the store and marks it complete
    first = (
        head[0] if head else next(iread(trajectory, slice(start, start + 1), format=spec.fmt, topology=spec.topology))
    )
    job = Job.for_spec(spec, first, net, info, dev, batch_atoms)
    store = TensorStore.for_run(spec, expected, job)
    chunk_frames = store.chunk_frames

    def frames_with_first():
        yield from head
        yield from reader

    q: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    cpu_graphs = spec.graphs == "cpu" or (spec.graphs == "auto" and dev.type == "cpu")
    worker = threading.Thread(target=_producer, daemon=True,
                              args=(frames_with_first(), q, chunk_frames, job, prof, stop, cpu_graphs))  # fmt: skip
    worker.start()
    bar = _Progress(spec.progress)
    n_atoms = len(job.numbers)
    error = None
    position = done
    writer = _Writer(store, output, prof)
    prof.startup = time.perf_counter() - t_wall
    try:
        while True:
            kind, payload = q.get()
            if kind == "end":
                break
            if kind == "error":
                error = payload
                break
            if not payload:
                continue
            t0 = time.perf_counter()
            data = job.infer(payload, spec)
            prof.model += time.perf_counter() - t0
            writer.put(position, data)
            position += len(payload)
            prof.frames += len(payload)
            prof.atoms += len(payload) * n_atoms
            bar.update(position, prof.atoms, payload[-1][0].fraction)
    except BaseException as exc:
        error = exc
        raise
    finally:
        stop.set()
        try:
            writer.close()  # every chunk computed is written before the store is closed
        except BaseException as exc:
            error = error or exc  # a failure already raised wins; else this one is raised below
        if prof.frames:
            bar.update(position, prof.atoms, float("nan"), force=True)
        bar.close()
        prof.wall = time.perf_counter() - t_wall
        try:
            store.finish(None if error is None else str(error))
        except OSError:  # e.g. the full disk that stopped the run: frames_done still says what is kept
            if error is None:
                raise
    if error is None and spec.correlate:  # over the whole store: a resumed run is correlated whole too
        MultipleTau(output).run()
    if error is not None:  # bad input met by the reader thread, raised after the good frames are stored
        raise error
    return output
