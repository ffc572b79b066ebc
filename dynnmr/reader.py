"""Streaming trajectory reading: frames in chunks, constant memory, exact numbers.

Extended XYZ (plain or ``.gz``) is parsed by a numba kernel straight from a byte
buffer: Python reads each frame's two header lines, the kernel reads the atom lines.
Decimal fields are converted exactly (an integer mantissa times an exactly
representable power of ten is one correctly rounded operation, the same result as
Python's ``float``); the rare field outside that fast path (more than 18 significant
digits, huge exponents) is re-parsed by Python, so coordinates equal ase's bit for bit.

Times: ``time_ps=`` in the comment line, else ``time=`` or ``Time=`` (LAMMPS and OVITO;
taken as ps, which is LAMMPS's metal units), else none.
Errors name the file, the frame and the line.
"""

from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np
from ase.data import atomic_numbers

from .errors import InputError
from .formats import check_file, detect

_BLOCK = 1 << 24  # bytes read at a time; the buffer holds about one block plus one frame


@dataclass
class Frame:
    """One trajectory frame: numbers, positions (A), cell (A, rows) or None, time (ps) or None."""

    index: int
    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray | None
    pbc: np.ndarray
    time_ps: float | None
    line: int | None  # 1-based line number of the frame's atom-count line (text formats)
    info: dict = field(default_factory=dict)
    fraction: float = float("nan")  # share of the file read so far, for progress and ETA


# numba kernels ------------------------------------------------------------------------
_POW10 = np.array([10.0**k for k in range(23)])
OK, BAD_NUMBER, TOO_FEW_COLUMNS, NOT_FINITE, NEED_MORE = 0, 1, 2, 3, 4


@numba.njit(cache=True, nogil=True)
def _nth_newline(buf, start, n):
    """Offset just past the n-th newline at or after ``start``; -1 if the buffer ends first."""
    count = 0
    for k in range(start, buf.size):
        if buf[k] == 10:
            count += 1
            if count == n:
                return k + 1
    return -1


@numba.njit(cache=True, nogil=True)
def _parse_float(buf, k, end, pow10):
    """Parse one decimal at buf[k:end]; returns (value, status) with status 0 ok, 1 bad, 2 slow path."""
    neg = False
    if k < end and (buf[k] == 45 or buf[k] == 43):  # - +
        neg = buf[k] == 45
        k += 1
    mant = 0
    ndig = 0
    exp10 = 0
    seen = False
    while k < end and 48 <= buf[k] <= 57:
        if ndig < 18:
            mant = mant * 10 + (buf[k] - 48)
            if mant > 0:
                ndig += 1
        else:
            exp10 += 1
            if buf[k] != 48:
                return 0.0, 2
        seen = True
        k += 1
    if k < end and buf[k] == 46:  # .
        k += 1
        while k < end and 48 <= buf[k] <= 57:
            if ndig < 18:
                mant = mant * 10 + (buf[k] - 48)
                exp10 -= 1
                if mant > 0:
                    ndig += 1
            elif buf[k] != 48:
                return 0.0, 2
            seen = True
            k += 1
    if not seen:
        return 0.0, 1
    if k < end and (buf[k] == 101 or buf[k] == 69 or buf[k] == 100 or buf[k] == 68):  # e E d D
        k += 1
        eneg = False
        if k < end and (buf[k] == 45 or buf[k] == 43):
            eneg = buf[k] == 45
            k += 1
        e = 0
        edig = 0
        while k < end and 48 <= buf[k] <= 57:
            e = e * 10 + (buf[k] - 48)
            edig += 1
            k += 1
            if e > 10000:
                return 0.0, 2
        if edig == 0:
            return 0.0, 1
        exp10 += -e if eneg else e
    if k != end:
        return 0.0, 1
    if mant == 0:
        return -0.0 if neg else 0.0, 0
    if mant > 9007199254740992 or exp10 > 22 or exp10 < -22:
        return 0.0, 2
    v = mant * pow10[exp10] if exp10 >= 0 else mant / pow10[-exp10]
    return -v if neg else v, 0


@numba.njit(cache=True, nogil=True)
def _parse_atoms(buf, start, natoms, ncols, species_col, pos_col, pow10, positions, species_code, slow):
    """Parse ``natoms`` lines from ``start``. Returns (offset after block, status, bad line, bad column).

    ``species_code`` packs the first 4 bytes of the element token into an int;
    ``slow`` collects (atom, column, token start, token end) of fields for Python.
    """
    k = start
    nslow = 0
    for a in range(natoms):
        col = 0
        while True:
            while k < buf.size and (buf[k] == 32 or buf[k] == 9 or buf[k] == 13):
                k += 1
            if k >= buf.size or buf[k] == 10:
                break
            t0 = k
            while k < buf.size and buf[k] != 32 and buf[k] != 9 and buf[k] != 10 and buf[k] != 13:
                k += 1
            if k >= buf.size:  # the token may be cut by the end of the buffer
                return k, NEED_MORE, a, col
            if col == species_col:
                code = 0
                for b in range(min(4, k - t0)):
                    code |= np.int64(buf[t0 + b]) << (8 * b)
                species_code[a] = code
            elif pos_col <= col < pos_col + 3:
                v, st = _parse_float(buf, t0, k, pow10)
                if st == 1:
                    # nan/inf spelled out are not numbers we accept as coordinates
                    if (buf[t0] | 32) in (110, 105) or (k - t0 > 1 and (buf[t0 + 1] | 32) in (110, 105)):
                        return k, NOT_FINITE, a, col
                    return k, BAD_NUMBER, a, col
                if st == 2:
                    slow[nslow, 0] = a
                    slow[nslow, 1] = col - pos_col
                    slow[nslow, 2] = t0
                    slow[nslow, 3] = k
                    nslow += 1
                positions[a, col - pos_col] = v
            col += 1
        if k >= buf.size:  # the buffer ends inside this line: the caller reads on
            return k, NEED_MORE, a, col
        if col < ncols:
            return k, TOO_FEW_COLUMNS, a, col
        k += 1  # past the newline
    return k, OK, nslow, 0


# header ------------------------------------------------------------------------------
_KV = re.compile(r'(\w+)=("[^"]*"|\'[^\']*\'|\S+)')


def parse_comment(line: str) -> dict:
    """key=value pairs of an extended XYZ comment line (quotes removed)."""
    return {k: v.strip("\"'") for k, v in _KV.findall(line)}


def _columns(props: str):
    """(total columns, species column, first position column) from a Properties string."""
    parts = props.split(":")
    col, species, pos = 0, None, None
    for name, _, n in zip(parts[0::3], parts[1::3], parts[2::3]):
        if name == "species":
            species = col
        elif name == "pos":
            pos = col
        col += int(n)
    if species is None or pos is None:
        raise ValueError(f"Properties={props!r} lacks species or pos")
    return col, species, pos


def _open(path: Path):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _symbol_codes():
    table = {}
    for sym, z in atomic_numbers.items():
        if sym == "X":
            continue
        code = 0
        for b, ch in enumerate(sym.encode()[:4]):
            code |= ch << (8 * b)
        table[code] = z
    return table


_CODES = _symbol_codes()


def _selected(k, frames: slice):
    start, stop, step = frames.start or 0, frames.stop, frames.step or 1
    return k >= start and (stop is None or k < stop) and (k - start) % step == 0


def iread_extxyz(path, frames: slice = slice(None), index=None):
    """Yield :class:`Frame` objects from an extended XYZ file (plain or gzip), streaming.

    With ``index`` (from :func:`frame_index`) reading starts at the first selected frame
    by seeking (a plain file jumps there; gzip decompresses up to it), for workers that
    each read their own frame range.
    """
    path = check_file(path)
    fh = _open(path)
    start = None
    if index is not None:
        k0 = frames.start or 0
        if k0 >= len(index):
            fh.close()
            return
        start = (int(index[k0, 0]), int(index[k0, 1]), k0)
    try:
        yield from _frames(fh, path, frames, start)
    finally:
        fh.close()


def index_path(path) -> Path:
    """Where the frame index of ``path`` lives: ``NAME.frames.npz`` beside it, or, when that
    folder is not writable (a shared, read-only data set), in ``$DYNNMR_CACHE`` (default
    ``~/.cache/dynnmr``) under a name made from the file's absolute path."""
    import hashlib
    import os

    path = Path(path)
    beside = path.with_name(path.name + ".frames.npz")
    if os.access(path.parent, os.W_OK):
        return beside
    cache = Path(os.environ.get("DYNNMR_CACHE", Path.home() / ".cache" / "dynnmr"))
    cache.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    return cache / f"{path.name}.{key}.frames.npz"


def frame_index(path, save=True) -> np.ndarray:
    """``(n_frames, 2)`` int64: uncompressed byte offset and 1-based line of each frame's
    atom-count line in an extended XYZ file.

    Built by one streaming pass and saved next to the trajectory as ``NAME.frames.npz``
    with the file's size and a quick fingerprint (:func:`index_path`: elsewhere when that
    folder is read-only); a later call loads it, and rebuilds it if the trajectory changed.
    """
    from .store import quick_fingerprint

    path = Path(path)
    cache = index_path(path)
    size, fp = path.stat().st_size, quick_fingerprint(path)
    if cache.exists():
        with np.load(cache) as z:
            if int(z["size_bytes"]) == size and str(z["fingerprint"]) == fp:
                return z["index"]
    offsets: list = []
    fh = _open(path)
    try:
        for _ in _frames(fh, path, slice(None), offsets=offsets):
            pass
    finally:
        fh.close()
    index = np.array(offsets, dtype=np.int64).reshape(-1, 2)
    if save:
        tmp = cache.with_name(cache.name + ".tmp.npz")
        np.savez(tmp, index=index, size_bytes=size, fingerprint=fp)
        tmp.replace(cache)
    return index


def _gzip_salvage(path, offset):
    """The decompressed bytes of a damaged gzip file after ``offset``, as far as they go."""
    d = zlib.decompressobj(wbits=31)
    out, seen = bytearray(), 0
    with open(path, "rb") as raw:
        while chunk := raw.read(1 << 20):
            try:
                data = d.decompress(chunk)
            except zlib.error:
                break
            if seen + len(data) > offset:
                out += data[max(0, offset - seen) :]
            seen += len(data)
    return bytes(out)


def _frames(fh, path, frames, start=None, offsets=None):
    """Frames of an open extxyz stream; ``start``: (byte offset, line, frame number) to seek
    to first; ``offsets``: a list to which (offset, line) of every frame is appended, in
    which case no frame is parsed (index building)."""
    size = path.stat().st_size
    raw = getattr(fh, "fileobj", None)  # gzip: progress from the compressed position
    base, line, k = 0, 1, 0  # base: file offset (uncompressed) of buf[0]
    if start is not None:
        base, line, k = start
        fh.seek(base)

    layout_cache = {}
    broken = None  # why a compressed stream ended early; its whole frames are still read

    def read(n, offset):
        """Up to n bytes; a damaged gzip stream gives what it holds after ``offset`` and ends."""
        nonlocal broken
        try:
            return fh.read(n)
        except (EOFError, OSError, zlib.error) as exc:
            broken = str(exc) or type(exc).__name__
            return _gzip_salvage(path, offset)

    def more(buf, pos):
        nonlocal eof, base
        chunk = read(max(_BLOCK, buf.size - pos), base + buf.size)
        eof = len(chunk) == 0 or eof or broken is not None
        base += pos
        return np.concatenate([buf[pos:], np.frombuffer(chunk, dtype=np.uint8)]), 0

    def ended_early():
        return InputError(path, f"the file ends early ({broken}); the {k} whole frames before are read", frame=k,
                          line=line)  # fmt: skip

    # always a writable array, so the numba kernels see one type (and compile once)
    buf = np.frombuffer(bytearray(read(_BLOCK, base)), dtype=np.uint8)
    eof = buf.size < _BLOCK or broken is not None
    pos = 0

    while True:
        end = _nth_newline(buf, pos, 2)
        while end < 0 and not eof:
            buf, pos = more(buf, pos)
            end = _nth_newline(buf, pos, 2)
        if end < 0:  # fewer than two lines left: only whitespace may remain
            rest = bytes(buf[pos:]).strip()
            if broken is not None:
                raise ended_early()
            if rest:
                raise InputError(path, "truncated frame: header without atoms", frame=k, line=line)
            if k == 0:
                raise InputError(path, "no frames found")
            return
        head = bytes(buf[pos:end]).decode("utf-8", "replace").split("\n")
        count = head[0].strip()
        if not count and not bytes(buf[pos:]).strip():
            if broken is not None:
                raise ended_early()
            if k == 0:
                raise InputError(path, "no frames found")
            return
        try:
            natoms = int(count)
            if natoms < 0:
                raise ValueError
        except ValueError:
            raise InputError(path, f"expected an atom count, got {count[:40]!r}", frame=k, line=line) from None
        body = end
        selected = offsets is None and _selected(k, frames)
        if offsets is not None:
            offsets.append((base + pos, line))
        while True:  # parse (selected) or skip the atom lines, reading on until they are all here
            if selected:
                frame, stop = _frame(buf, body, natoms, head[1], path, k, line, layout_cache)
            else:
                stop = _nth_newline(buf, body, natoms) if natoms else body
            if stop >= 0:
                break
            if not eof:
                buf, _ = more(buf, pos)
                body, end, pos = body - pos, end - pos, 0
                continue
            if broken is not None:
                raise ended_early()
            n_lines = int(np.count_nonzero(buf[body:] == 10))
            tail = bytes(buf[body:]).rsplit(b"\n", 1)[-1].strip()
            if n_lines + (1 if tail else 0) < natoms:
                raise InputError(path, f"truncated frame: {natoms} atoms announced, "
                                 f"{n_lines + (1 if tail else 0)} lines present", frame=k, line=line)  # fmt: skip
            buf = np.concatenate([buf, np.frombuffer(b"\n", dtype=np.uint8)])  # last line lacks its newline
        if selected:
            frame.fraction = (raw.tell() if raw is not None else base + stop) / size
            yield frame
        elif offsets is None and frames.stop is not None and k >= frames.stop - 1:
            return
        line += natoms + 2
        pos = stop
        k += 1
        if pos > _BLOCK and not eof:
            buf, base, pos = buf[pos:].copy(), base + pos, 0


def _numbers(codes, path, k, line):
    """Atomic numbers from packed element tokens; a clear error for an unknown element."""
    uniq, inverse = np.unique(codes, return_inverse=True)
    try:
        return np.array([_CODES[int(c)] for c in uniq], dtype=np.int64)[inverse]
    except KeyError as exc:
        bad = int(np.flatnonzero(codes == exc.args[0])[0])
        token = bytes(int(exc.args[0]).to_bytes(4, "little")).rstrip(b"\0").decode("ascii", "replace")
        raise InputError(path, f"atom {bad + 1}: unknown element {token!r}", frame=k, line=line + 2 + bad) from None


#: ``_frame``'s cache holds column layouts under their Properties string and the last
#: species mapping under this key, which no Properties string can equal.
_SPECIES_KEY = ("species",)


def _frame(buf, body, natoms, comment, path, k, line, cache):
    """Parse one frame's atom lines; ``(None, -1)`` if the buffer ends before they do."""
    info = parse_comment(comment)
    props = info.get("Properties", "species:S:1:pos:R:3")
    if props not in cache:
        try:
            cache[props] = _columns(props)
        except ValueError as exc:
            raise InputError(path, str(exc), frame=k, line=line + 1) from None
    ncols, species_col, pos_col = cache[props]
    positions = np.empty((natoms, 3))
    codes = np.zeros(natoms, dtype=np.int64)
    slow = np.empty((natoms * 3, 4), dtype=np.int64)
    stop, status, a, col = _parse_atoms(buf, body, natoms, ncols, species_col, pos_col, _POW10, positions, codes, slow)
    if status == NEED_MORE:
        return None, -1
    if status != OK:
        what = {BAD_NUMBER: "non-numeric coordinate", TOO_FEW_COLUMNS: f"expected {ncols} columns, found {col}",
                NOT_FINITE: "non-finite coordinate (nan/inf)"}[status]  # fmt: skip
        raise InputError(path, f"atom {a + 1}: {what}", frame=k, line=line + 2 + a)
    for atom, c, t0, t1 in slow[:a]:  # ``a`` holds the number of slow-path fields here
        positions[atom, c] = float(bytes(buf[t0:t1]).replace(b"d", b"e").replace(b"D", b"e"))
    if not np.isfinite(positions).all():
        bad = int(np.flatnonzero(~np.isfinite(positions).all(axis=1))[0])
        raise InputError(path, f"atom {bad + 1}: non-finite coordinate (nan/inf)", frame=k, line=line + 2 + bad)
    prev = cache.get(_SPECIES_KEY)
    if prev is not None and np.array_equal(prev[0], codes):  # the usual case: same species order
        numbers = prev[1].copy()  # frames never share arrays
    else:
        numbers = _numbers(codes, path, k, line)
        cache[_SPECIES_KEY] = (codes, numbers)
    cell, pbc = None, np.zeros(3, bool)

    if "Lattice" in info:
        try:
            cell = np.array(info["Lattice"].split(), dtype=float).reshape(3, 3)
        except ValueError:
            raise InputError(path, f"bad Lattice {info['Lattice'][:60]!r}", frame=k, line=line + 1) from None
        pbc = np.ones(3, bool)
    if "pbc" in info:
        pbc = np.array([p in ("T", "True", "1") for p in info["pbc"].split()])
    time_ps = info.get("time_ps", info.get("time", info.get("Time")))
    try:
        time_ps = None if time_ps is None else float(time_ps)
    except ValueError:
        raise InputError(path, f"bad time {time_ps!r}", frame=k, line=line + 1) from None
    return Frame(k, numbers, positions, cell, pbc, time_ps, line, info), stop


# any format -----------------------------------------------------------------------------
def iread(path, frames: slice = slice(None), format: str | None = None, topology=None, index=None):
    """Yield :class:`Frame` objects from any trajectory, one reader per format
    (:func:`dynnmr.formats.detect`).

    Extended XYZ (plain or gzip): the fast reader above. Binary MD formats (DCD, XTC,
    TRR, NetCDF, H5MD) with a ``topology`` file that names the elements: MDAnalysis.
    Tensor files (magres, silicate JSON): their structures as frames. Everything else
    (ASE ``.traj``, LAMMPS dump, ...): ``ase.io.iread``.
    """
    path = Path(path)
    fmt = detect(path, format, topology)
    if fmt.name == "extxyz":
        yield from iread_extxyz(path, frames, index)
        return
    if fmt.name == "store":
        raise InputError(
            path, "is a dynnmr store, not a trajectory (read it with dynnmr dynamics, spectrum or open_store)"
        )
    check_file(path)
    if fmt.name == "mdanalysis":
        yield from _iread_mdanalysis(path, topology, frames)
        return
    start, step = frames.start or 0, frames.step or 1
    if fmt.name in ("magres", "silicate-json"):
        from .tensorfiles import read

        images = read(path, format=format)[slice(start, frames.stop, step)]
    else:
        from ase.io import iread as ase_iread

        images = ase_iread(str(path), index=slice(start, frames.stop, step), format=format)
    k = start
    try:
        for atoms in images:
            cell = atoms.cell.array.copy() if atoms.pbc.any() else None
            t = atoms.info.get("time_ps", atoms.info.get("time"))  # a LAMMPS dump gives info["timestep"]
            yield Frame(k, atoms.numbers.astype(np.int64), atoms.positions.copy(), cell, atoms.pbc.copy(),
                        None if t is None else float(t), None, dict(atoms.info))  # fmt: skip
            k += step
    except InputError:
        raise
    except Exception as exc:  # ase raises many types; name the file and the frame
        raise InputError(path, f"cannot read: {exc}", frame=k) from None


def is_extxyz(path, format=None, topology=None) -> bool:
    """Whether :func:`iread` reads ``path`` with the extended XYZ reader."""
    return detect(path, format, topology).name == "extxyz"


def count_frames(path, format=None, topology=None) -> int:
    """Frames in a trajectory: from the frame index (extxyz), the header (MDAnalysis), or by reading."""
    path = Path(path)
    fmt = detect(path, format, topology).name
    if fmt == "extxyz":
        return len(frame_index(path))
    if fmt == "mdanalysis":
        import MDAnalysis as mda

        return len(mda.Universe(str(topology), str(path)).trajectory)
    return sum(1 for _ in iread(path, format=format, topology=topology))


def _iread_mdanalysis(path, topology, frames):
    """Binary trajectories through MDAnalysis; the topology must give element symbols."""
    if topology is None:
        raise InputError(
            path, "binary trajectory formats need --topology (a file naming the elements: PDB, PSF, GRO, ...)"
        )
    import warnings

    import MDAnalysis as mda

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            u = mda.Universe(str(topology), str(path))
    except Exception as exc:  # MDAnalysis raises many types; name both files
        raise InputError(path, f"cannot open with topology {topology}: {exc}") from None
    numbers = mda_numbers(u.atoms, topology)
    for ts in u.trajectory[frames]:
        yield mda_frame(ts, numbers, ts.positions, len(u.trajectory))


def mda_numbers(atomgroup, source) -> np.ndarray:
    """Atomic numbers of an MDAnalysis AtomGroup from its ``elements``; an error naming
    ``source`` (the topology) when it has none or unknown ones."""
    import MDAnalysis as mda

    try:
        symbols = [e.strip().capitalize() for e in atomgroup.elements]
        return np.array([atomic_numbers[s] for s in symbols], dtype=np.int64)
    except (AttributeError, KeyError, mda.exceptions.NoDataError):
        raise InputError(source, "the topology names no (valid) elements") from None


def mda_frame(ts, numbers, positions, n_frames) -> Frame:
    """A :class:`Frame` from an MDAnalysis timestep (A, ps; a cell when the box has volume)."""
    box = ts.triclinic_dimensions
    periodic = box is not None and abs(np.linalg.det(box)) > 1e-8
    return Frame(int(ts.frame), numbers, np.asarray(positions, np.float64), box.astype(np.float64) if periodic else None,
                 np.full(3, periodic), float(ts.time), None, {}, (ts.frame + 1) / n_frames)  # fmt: skip
