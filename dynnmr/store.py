"""The zarr (v3) store of per-site tensor time series, written chunk by chunk.

Layout (dimension names in brackets; readable with plain ``zarr`` and
``xarray.open_zarr(path, consolidated=False)``):

* ``ms`` [frame, site, component] float32, ppm: shielding tensors, 9 row-major components
* ``efg`` [frame, site, component] float32, atomic units: EFG tensors, 9 components
* ``time_ps`` [frame] float64, ps (NaN where the trajectory has no time and no --dt)
* ``frame_index`` [frame] int64: frame number in the source file
* ``cell`` [frame, vector, xyz] float64, Angstrom (NaN for non-periodic frames)
* ``numbers`` [site] int64, ``atom_index`` [site] int64: element and index in the structure
* ``positions`` [frame, site, xyz] float32, Angstrom (only with ``--save-positions``)
* ``ms_std``, ``efg_std`` [frame, site, component] float32, same units as ``ms``/``efg``:
  the committee's spread per component; ``ms_param_std`` [frame, site, parameter]
  (sigma_iso ppm, zeta ppm, eta, span ppm, skew) and ``efg_param_std`` (Vzz au, eta_Q): the spread of
  the parameters over the members (:mod:`dynnmr.uncertainty`; committee models, unless
  ``--no-uncertainty``; the attribute ``uncertainty`` says what they hold)

Root attributes record the model (name, SHA-256, targets, units, shift references),
conventions, dynnmr version, the source (name, size, hash of its content), the frame and
species selection, ``frames_done`` and ``complete``/``error``.

Crash safety: zarr's local store writes every file atomically. Per chunk the engine
grows the arrays, writes the chunk, and only then records ``frames_done``; a killed run
leaves at worst one chunk that ``--resume`` rewrites identically. Writers that work on
chunks in any order (dask workers, :mod:`dynnmr.distributed`) get arrays sized up front
and mark each finished chunk in ``chunk_done`` [chunk]; ``frames_done`` then counts the
leading run of finished chunks, so a sequential ``--resume`` can take over too.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from . import __version__
from .errors import InputError, StoreBusy  # noqa: F401  (StoreBusy: raised here, imported from here)
from .formats import is_store
from .uncertainty import PARAMETERS

COMPRESSOR = BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")
CONVENTIONS = (
    "ms: absolute shielding tensor sigma (ppm), row-major 3x3; shift delta = sigma_ref - sigma (IUPAC). "
    "efg: electric field gradient (atomic units, 1 au = 9.7173624e21 V/m^2), row-major 3x3. "
    "Parameters follow dynnmr.tensors (Haeberlen; |Vzz| >= |Vyy| >= |Vxx|)."
)


def fingerprint(path, block=1 << 24) -> str:
    """BLAKE2b over the file's size and every byte: a changed coordinate anywhere in the
    source changes it (hashing runs at several hundred MB/s, a small part of any analysis)."""
    path = Path(path)
    h = hashlib.blake2b(str(path.stat().st_size).encode(), digest_size=32)
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


def quick_fingerprint(path, block=1 << 20) -> str:
    """SHA-256 over the size, modification time and first and last MiB: a cheap check that
    a file is unchanged, for caches beside it (the frame index), not for data provenance."""
    path = Path(path)
    st = path.stat()
    h = hashlib.sha256(f"{st.st_size} {st.st_mtime_ns}".encode())
    with open(path, "rb") as fh:
        h.update(fh.read(block))
        if st.st_size > block:
            fh.seek(max(block, st.st_size - block))
            h.update(fh.read(block))
    return h.hexdigest()


def source_attrs(path) -> dict:
    path = Path(path)
    return {"name": path.name, "size_bytes": path.stat().st_size, "fingerprint_blake2b": fingerprint(path)}


def check_output(path, resume=False, overwrite=False):
    """Refuse to start a run whose output is taken: an existing store without ``--overwrite``
    or ``--resume``, and, with ``--overwrite``, anything that is not a dynnmr store (a
    folder of other files must never be deleted)."""
    path = Path(path)
    if resume:
        if not is_store(path):
            raise InputError(path, "--resume: no dynnmr store here" if not path.exists() else
                             "--resume: not a dynnmr store")  # fmt: skip
        return
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{path} exists: use --overwrite to replace it or --resume to continue it")
        if not is_store(path):
            raise InputError(path, "exists and is not a dynnmr store: --overwrite replaces only stores written "
                                   "by dynnmr analyze; choose another output")  # fmt: skip


def check_complete(group, path, allow_incomplete=False):
    """Refuse a store whose run failed or did not finish (``--allow-incomplete`` reads the
    frames it has)."""
    attrs = group.attrs
    if allow_incomplete:
        return
    if attrs.get("error"):
        raise InputError(path, f"the run that wrote this store failed ({attrs['error']}); finish it with "
                               "dynnmr analyze --resume, or read its frames with --allow-incomplete")  # fmt: skip
    if not attrs.get("complete", False):
        raise InputError(path, f"the store is incomplete ({attrs.get('frames_done', 0)} frames written; being "
                               "written or killed): finish it with dynnmr analyze --resume, or read its frames "
                               "with --allow-incomplete")  # fmt: skip


class StoreLock:
    """Exclusive writer lock of a store: an OS lock (``flock``) on ``STORE.lock`` beside it,
    which holds the writer's host, process id and start time.

    A second writer is refused, naming the first. The operating system releases the lock
    of a process that dies (kill -9, power loss), so ``--resume`` after a crash just works;
    the dead writer's note is still found in the file and reported, never passed over
    silently.
    """

    def __init__(self, store):
        self.store = Path(store)
        self.path = self.store.with_name(self.store.name + ".lock")
        self.fd = None

    def __enter__(self):
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _read_owner(fd)
                os.close(fd)
                raise StoreBusy(f"{self.store} is being written by {_who(owner)} (lock {self.path}); wait for it "
                                f"or write elsewhere") from None  # fmt: skip
            try:  # the file may have been removed by the writer we waited for: lock the current one
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        previous = _read_owner(fd)
        if previous:
            print(f"dynnmr: note: {self.path} was left by {_who(previous)}, which ended without releasing it "
                  f"(killed?); its lock is free, taking it over", file=sys.stderr)  # fmt: skip
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(owner).encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # while still locked: nobody can take a stale file
            os.close(self.fd)
            self.fd = None


def _read_owner(fd) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}


def _who(owner) -> str:
    return f"process {owner.get('pid', '?')} on {owner.get('host', '?')} since {owner.get('started', '?')}"


class TensorStore:
    """Writer for one analysis store (create, or reopen to resume)."""

    def __init__(self, group, chunk_frames):
        self.group = group
        self.chunk_frames = int(chunk_frames)

    @classmethod
    def create(cls, path, *, targets, numbers, atom_index, chunk_frames, attrs, save_positions=False, overwrite=False,
               n_frames=0, uncertainty=False):  # fmt: skip
        """A new store; ``n_frames`` > 0 sizes the frame arrays up front (NaN until written)
        and adds ``chunk_done`` [chunk] so independent writers can mark their chunks;
        ``uncertainty`` adds the committee spread arrays of each target."""
        path = Path(path)
        if int(chunk_frames) < 1:
            raise ValueError(f"chunk_frames must be at least 1, got {chunk_frames}")
        check_output(path, overwrite=overwrite)
        try:
            return cls._create(path, targets, numbers, atom_index, chunk_frames, attrs, save_positions, n_frames,
                               uncertainty)  # fmt: skip
        except BaseException:  # a failed create (disk full, bad arguments) leaves nothing to block the next run
            import shutil

            shutil.rmtree(path, ignore_errors=True)
            raise

    @classmethod
    def _create(cls, path, targets, numbers, atom_index, chunk_frames, attrs, save_positions, n_frames, uncertainty):
        group = zarr.open_group(str(path), mode="w", zarr_format=3)
        n = len(numbers)
        c = int(chunk_frames)

        def arr(name, shape, chunks, dtype, dims, fill):
            group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, dimension_names=dims,
                               compressors=COMPRESSOR, fill_value=fill)  # fmt: skip

        f = int(n_frames)
        for t in targets:
            arr(t, (f, n, 9), (c, n, 9), "float32", ("frame", "site", "component"), np.nan)
            if uncertainty:
                p = len(PARAMETERS[t])
                arr(f"{t}_std", (f, n, 9), (c, n, 9), "float32", ("frame", "site", "component"), np.nan)
                arr(f"{t}_param_std", (f, n, p), (c, n, p), "float32", ("frame", "site", f"{t}_parameter"), np.nan)
        if save_positions:
            arr("positions", (f, n, 3), (c, n, 3), "float32", ("frame", "site", "xyz"), np.nan)
        arr("time_ps", (f,), (c,), "float64", ("frame",), np.nan)
        arr("frame_index", (f,), (c,), "int64", ("frame",), -1)
        arr("cell", (f, 3, 3), (c, 3, 3), "float64", ("frame", "vector", "xyz"), np.nan)
        store = cls(group, c)
        if f:
            store.plan_chunks(f)
        group.create_array("numbers", data=np.asarray(numbers, np.int64), dimension_names=("site",))
        group.create_array("atom_index", data=np.asarray(atom_index, np.int64), dimension_names=("site",))
        group.attrs.update({**attrs, "chunk_frames": c, "frames_done": 0, "complete": False,
                            "dynnmr_version": __version__, "conventions": CONVENTIONS})  # fmt: skip
        return store

    @classmethod
    def for_run(cls, spec, expected: dict, job):
        """The store of an analyze run (:class:`~dynnmr.spec.AnalysisSpec`) of ``job``
        (:class:`~dynnmr.inference.Job`: its targets, sites and spread): reopened when it
        resumes (model, source, options and sites must match ``expected``), else created
        with ``expected`` and the job's attributes."""
        sites = job.sites
        if not spec.resume:
            return cls.create(spec.output, targets=job.net.targets, numbers=job.numbers[sites], atom_index=sites,
                              chunk_frames=spec.chunk_frames, attrs={**expected, **job.attrs(spec.dt_ps)},
                              save_positions=spec.save_positions, overwrite=spec.overwrite,
                              uncertainty=job.uncertainty)  # fmt: skip
        store = cls.reopen(spec.output, expected)
        if not np.array_equal(np.asarray(store.group["atom_index"][:]), sites):
            raise ValueError(f"--resume: {spec.output} stores other sites than this run selects")
        return store

    @classmethod
    def reopen(cls, path, expected: dict):
        """Open an interrupted store; refuse if model or input differ from ``expected``."""
        path = Path(path)
        check_output(path, resume=True)
        group = zarr.open_group(str(path), mode="r+", zarr_format=3)
        attrs = dict(group.attrs)
        for key, value in expected.items():
            if attrs.get(key) != value:
                raise ValueError(f"--resume: {path} was made with a different {key} "
                                 f"({attrs.get(key)!r} vs {value!r}); use --overwrite to start again")  # fmt: skip
        return cls(group, attrs["chunk_frames"])

    @property
    def frames_done(self) -> int:
        return int(self.group.attrs["frames_done"])

    def plan_chunks(self, n_frames) -> np.ndarray:
        """Size the frame arrays for ``n_frames`` and return which chunks are already written.

        For writers that work on chunks in any order (dask workers). Chunks written by a
        sequential run count as done up to its ``frames_done``, so either mode resumes
        the other's store.
        """
        n_chunks = -(-int(n_frames) // self.chunk_frames)
        for name in self.group.array_keys():
            a = self.group[name]
            if "frame" in (a.metadata.dimension_names or ()) and a.shape[0] != n_frames:
                a.resize((n_frames,) + a.shape[1:])
        if "chunk_done" not in self.group:
            self.group.create_array("chunk_done", shape=(n_chunks,), chunks=(1,), dtype="bool", fill_value=False,
                                    dimension_names=("chunk",))  # fmt: skip
        done = np.asarray(self.group["chunk_done"][:])
        done[: self.frames_done // self.chunk_frames] = True
        if self.frames_done >= n_frames:
            done[:] = True
        return done

    def write_frames(self, start, data: dict):
        """Write frames ``start..start+len`` into arrays already sized (any chunk, any order)."""
        stop = start + len(data["time_ps"])
        for name, values in data.items():
            self.group[name][start:stop] = values
        if "chunk_done" in self.group:
            self.group["chunk_done"][start // self.chunk_frames] = True

    def write_chunk(self, start, data: dict):
        """Write frames ``start..start+len`` (a whole chunk, or the last partial one), then record them."""
        if start % self.chunk_frames:
            raise ValueError("chunks must start on a chunk boundary")
        stop = start + len(data["time_ps"])
        for name in data:
            a = self.group[name]
            if a.shape[0] < stop:
                a.resize((stop,) + a.shape[1:])
        self.write_frames(start, data)
        self.group.attrs["frames_done"] = stop

    def finish(self, error=None, frames_done=None):
        if frames_done is not None:
            self.group.attrs["frames_done"] = int(frames_done)
        done = self.frames_done
        for name in self.group.array_keys():
            a = self.group[name]
            if "frame" in (a.metadata.dimension_names or ()) and a.shape[0] != done:
                a.resize((done,) + a.shape[1:])
        self.group.attrs.update({"complete": error is None, "error": error})


def read(group, path, name, selection=slice(None)) -> np.ndarray:
    """``group[name][selection]`` (a tuple selects orthogonally); a chunk that cannot be
    decoded (a damaged file) is an :class:`InputError` naming its file and frames."""
    a = group[name]
    try:
        return np.asarray(a.get_orthogonal_selection(selection) if isinstance(selection, tuple) else a[selection])
    except Exception as exc:  # the codecs raise RuntimeError, ValueError, ... on damaged bytes
        raise InputError(path, f"{_damaged_chunk(a, name)} ({type(exc).__name__}: {exc}); the other chunks "
                               "are intact: analyze again with --overwrite to rebuild it") from exc  # fmt: skip


def _damaged_chunk(a, name) -> str:
    """Which chunk of array ``a`` fails to decode, as file and frame range."""
    step = a.chunks[0]
    for i in range(-(-a.shape[0] // step)):
        try:
            a[i * step : (i + 1) * step]
        except Exception:
            key = a.metadata.chunk_key_encoding.encode_chunk_key((i,) + (0,) * (a.ndim - 1))
            frames = f"frames {i * step}..{min((i + 1) * step, a.shape[0]) - 1}"
            return f"{name}: chunk file {name}/{key} ({frames}) is damaged"
    return f"{name}: a chunk is damaged"


def site_series(group, path, target, element, sites, rows=slice(None)):
    """Tensors ``(frames, sites, 9)`` (float64) of ``target`` for ``sites`` of one element.

    None where the model does not cover the element for that target (the store's
    ``covered_species``); a covered value that is missing (NaN: a lost or corrupt chunk)
    is an error naming the frames. Stores without ``covered_species`` read NaN as not
    covered, as they were written.
    """
    covers = group.attrs.get("covered_species", {}).get(target)
    if covers is not None and element not in covers:
        return None
    x = read(group, path, target, (rows, sites, slice(None))).astype(np.float64)
    if not np.isfinite(x).all():
        if covers is None:
            return None
        bad = np.flatnonzero(~np.isfinite(x).all(axis=(1, 2)))
        raise InputError(path, f"{target} of {element} is missing in {len(bad)} frames ({bad[0]}..{bad[-1]} of the "
                               f"selection): a lost or corrupt chunk")  # fmt: skip
    return x


def open_store(path):
    """Open a finished or partial store read-only (a zarr Group)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such store")
    if not is_store(path):
        raise InputError(path, "not a dynnmr store (made by dynnmr analyze)")
    return zarr.open_group(os.fspath(path), mode="r", zarr_format=3)
