"""Which reader reads a file: one table of formats, chosen by name, by content, or by the user.

Two kinds of input reach dynnmr: trajectories, streamed frame by frame
(:func:`dynnmr.reader.iread`, for ``analyze``), and tensor files, read whole as
``ase.Atoms`` with ``ms``/``efg`` arrays (:func:`dynnmr.tensorfiles.read`, for
``params``, ``predict``, ``train``, ``spectrum``). Both ask :func:`detect`, so a file is
read the same way everywhere, and both check the path with :func:`check_file` first.
A dynnmr store (a zarr folder) is detected too, for the commands that read one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError


@dataclass(frozen=True)
class Format:
    """A file format: its name (``--format``), the names it is known by, and what reads it."""

    name: str
    suffixes: tuple[str, ...]
    reader: str


#: Every format, in the order :func:`detect` tries their suffixes; ``ase`` takes the rest.
FORMATS = (
    Format("extxyz", (".xyz", ".extxyz", ".xyz.gz", ".extxyz.gz"),
           "dynnmr's streaming extended XYZ reader (plain or gzip); ms/efg columns are tensors"),
    Format("magres", (".magres",), "CASTEP magres (ms ppm, efg au)"),
    Format("silicate-json", (".json",),
           "the silicate GIPAW JSON (structure, species, atom_selector, nmr_tensor); other JSON goes to ase"),
    Format("mdanalysis", (".dcd", ".xtc", ".trr", ".nc", ".ncdf", ".h5md"),
           "MDAnalysis, with a topology naming the elements (--topology: PDB, PSF, GRO, ...)"),
    Format("store", (), "a dynnmr store: a zarr folder with dynnmr's attributes (found by content)"),
    Format("ase", (), "ase.io (ASE .traj, LAMMPS dump, CIF, ...), with --format passed on as ase's format name"),
)  # fmt: skip
BY_NAME = {f.name: f for f in FORMATS}
#: The silicate JSON's top-level fields (:func:`dynnmr.tensorfiles.read_silicate_json`).
SILICATE_JSON_FIELDS = frozenset({"structure", "species", "atom_selector", "nmr_tensor"})


def check_file(path) -> Path:
    """A clear error for a path that cannot be read as a file: missing, a folder, empty,
    unreadable. Returns the path."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file")
    if path.is_dir():
        raise InputError(path, "is a dynnmr store, not a file" if is_store(path) else "is a folder, not a file")
    if path.stat().st_size == 0:
        raise InputError(path, "file is empty")
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror})") from None
    return path


def is_store(path) -> bool:
    """Whether ``path`` is a store written by dynnmr (a zarr group with dynnmr's attributes)."""
    try:
        attrs = json.loads((Path(path) / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError):
        return False
    return "dynnmr_version" in attrs and "conventions" in attrs


def detect(path, format: str | None = None, topology=None) -> Format:
    """The format of ``path``: ``format`` when given (a name of :data:`FORMATS`, else an ase
    format name, read by ase), MDAnalysis when a ``topology`` is given, a store when the path
    is a zarr folder, else by suffix (case-insensitive); anything unknown goes to ase."""
    if format is not None:
        return BY_NAME.get("extxyz" if format == "xyz" else format, BY_NAME["ase"])
    if topology is not None:
        return BY_NAME["mdanalysis"]
    if is_store(path):
        return BY_NAME["store"]
    name = Path(path).name.lower()
    for fmt in FORMATS:
        if fmt.suffixes and name.endswith(fmt.suffixes):
            return fmt
    return BY_NAME["ase"]


def table() -> str:
    """The formats as a text table (for ``--help`` and the docs)."""

    def names(f):
        return ", ".join(f.suffixes) or ("(a folder)" if f.name == "store" else "(any other)")

    return "\n".join(f"  {f.name:14s} {names(f):34s} {f.reader}" for f in FORMATS)
