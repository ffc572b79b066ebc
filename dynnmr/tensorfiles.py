"""Tensor file formats: one ``read``/``write`` pair over every format dynnmr understands.

Readers return ``ase.Atoms`` objects. Per-atom NMR tensors live on them as arrays of
shape ``(N, 3, 3)`` under one name per property (NaN rows mark atoms without a label;
a missing label is never a zero):

* ``atoms.arrays["ms"]``  magnetic shielding tensor, ppm (absolute shielding)
* ``atoms.arrays["efg"]`` electric field gradient tensor, atomic units
  (1 au = 9.7173624e21 V/m^2)

Formats:

* CASTEP ``.magres`` (CCP-NC magres-abinitio-v1.0): ``ms`` ppm, ``efg`` au; indented
  lines, symmetry lines and custom site labels handled; ``isc`` blocks ignored.
* Extended XYZ with per-atom columns ``ms`` and ``efg``, 9 numbers each in row-major
  order (xx, xy, xz, yx, ...), the layout of the published amorphous-SiO2 dataset.
* The silicate JSON of ``shared/data`` (pymatgen structure dicts, ``atom_selector``
  marking the labelled atoms, ``nmr_tensor`` their 3x3 tensors in ppm, read as they are:
  described as shielding, they run as (constant - shielding); see :func:`read_silicate_json`).
* Anything else ase can read (structures without tensors).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from ase import Atoms

from .errors import InputError
from .formats import SILICATE_JSON_FIELDS, check_file, detect

TENSOR_PROPERTIES = ("ms", "efg")
#: Per-atom 3x3 arrays written as 9 row-major columns: the tensors and their committee
#: spread (:mod:`dynnmr.uncertainty`), same units.
TENSOR_COLUMNS = TENSOR_PROPERTIES + ("ms_std", "efg_std")
UNITS = {"ms": "ppm", "efg": "au"}


# CASTEP magres ------------------------------------------------------------------------
def read_magres(path) -> Atoms:
    """Read a CASTEP ``.magres`` file into Atoms with ``ms`` (ppm) and ``efg`` (au) arrays."""
    path = check_file(path)
    block = None
    lattice = None
    species, labels, indices, positions = [], [], [], []
    tensors = {name: {} for name in TENSOR_PROPERTIES}
    info = {}
    with open(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if (line[0] in "[<") and line[-1] in "]>":
                name = line[1:-1].strip()
                block = None if name.startswith("/") else name
                continue
            words = line.split()
            try:
                if block == "calculation":
                    info["magres_" + words[0]] = " ".join(words[1:])
                elif block == "atoms":
                    if words[0] == "units" and words[1] in ("lattice", "atom") and words[2] != "Angstrom":
                        raise InputError(path, f"unsupported {words[1]} unit {words[2]!r}", line=lineno)
                    if words[0] == "lattice":
                        lattice = np.array(words[1:10], dtype=float).reshape(3, 3)
                    elif words[0] == "atom":
                        species.append(words[1])
                        labels.append(words[2])
                        indices.append(int(words[3]))
                        positions.append([float(x) for x in words[4:7]])
                elif block == "magres":
                    if words[0] == "units" and words[1] in UNITS and words[2] != UNITS[words[1]]:
                        raise InputError(path, f"{words[1]} in {words[2]!r}, expected {UNITS[words[1]]!r}", line=lineno)
                    if words[0] in TENSOR_PROPERTIES:
                        key = (words[1], int(words[2]))
                        values = np.array(words[3:12], dtype=float)
                        if values.size != 9:
                            raise InputError(path, f"{words[0]} needs 9 numbers, got {values.size}", line=lineno)
                        tensors[words[0]][key] = (values.reshape(3, 3), lineno)
            except (ValueError, IndexError) as exc:
                if isinstance(exc, InputError):
                    raise
                raise InputError(path, f"cannot parse {line[:60]!r}: {exc}", line=lineno) from None
    if not species:
        raise InputError(path, "no [atoms] block with atom lines found")
    atoms = Atoms(
        symbols=species,
        positions=positions,
        cell=lattice if lattice is not None else np.zeros((3, 3)),
        pbc=lattice is not None,
    )
    atoms.info.update(info)
    atoms.arrays["magres_label"] = np.array(labels)
    atoms.arrays["magres_index"] = np.array(indices)
    site_of = {key: i for i, key in enumerate(zip(labels, indices))}
    for name, found in tensors.items():
        if not found:
            continue
        arr = np.full((len(atoms), 3, 3), np.nan)
        for key, (value, lineno) in found.items():
            if key not in site_of:
                raise InputError(path, f"{name} for unknown site {key[0]} {key[1]}", line=lineno)
            arr[site_of[key]] = value
        atoms.arrays[name] = arr
    return atoms


# silicate JSON (shared/data) ------------------------------------------------------------
def read_silicate_json(path) -> list[Atoms]:
    """Read the silicate 29Si GIPAW JSON: one periodic Atoms per structure, ``ms`` in ppm.

    Unlabelled atoms get NaN tensors; ``arrays["Qn"]`` holds the Q^n connectivity of
    labelled Si (-1 elsewhere); ``info["structure_id"]`` the key in the file. The tensors
    are the file's numbers, unchanged. The file calls them shielding, but they behave as
    (constant - sigma): Q4 sites carry the lowest values and the traceless parts are the
    negative of GIAO shielding tensors (studies/gipaw_sign.py), so training negates
    them (``scale: {ms: -1}, offset: {ms: 833.0}`` in ``configs/``).
    """
    return _silicate_atoms(check_file(path), _load_json(path))


def _load_json(path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"invalid JSON: {exc.msg}", line=exc.lineno) from None


def _silicate_atoms(path, data) -> list[Atoms]:
    """The structures of a loaded silicate JSON (:func:`read_silicate_json`)."""
    if not isinstance(data, dict):
        raise InputError(path, "not a silicate tensor JSON: not a mapping of fields")
    missing = SILICATE_JSON_FIELDS - set(data)
    if missing:
        raise InputError(path, f"not a silicate tensor JSON: missing fields {sorted(missing)}")
    out = []
    for sid, struct in data["structure"].items():
        numbers = np.asarray(data["species"][sid], dtype=int)
        xyz = np.array([site["xyz"] for site in struct["sites"]], dtype=float)
        if len(xyz) != len(numbers):
            raise InputError(path, f"structure {sid}: {len(xyz)} sites but {len(numbers)} species")
        atoms = Atoms(numbers=numbers, positions=xyz, cell=struct["lattice"]["matrix"], pbc=True)
        selector = np.asarray(data["atom_selector"][sid], dtype=bool)
        labelled = np.asarray(data["nmr_tensor"][sid], dtype=float).reshape(-1, 3, 3)
        if selector.sum() != len(labelled):
            raise InputError(path, f"structure {sid}: {selector.sum()} selected atoms but {len(labelled)} tensors")
        ms = np.full((len(atoms), 3, 3), np.nan)
        ms[selector] = labelled
        atoms.arrays["ms"] = ms
        qn = np.full(len(atoms), -1, dtype=int)
        if "Qn" in data:
            qn[selector] = data["Qn"][sid]
        atoms.arrays["Qn"] = qn
        atoms.info["structure_id"] = sid
        out.append(atoms)
    return out


# extended XYZ ----------------------------------------------------------------------------
def _tensors_from_columns(atoms: Atoms) -> Atoms:
    for name in TENSOR_COLUMNS:
        if name in atoms.arrays and atoms.arrays[name].ndim == 2:
            value = atoms.arrays.pop(name)
            if value.shape[1] != 9:
                raise ValueError(f"per-atom {name} must have 9 columns, got {value.shape[1]}")
            atoms.arrays[name] = value.reshape(-1, 3, 3).astype(float)
    return atoms


def _tensors_to_columns(atoms: Atoms) -> Atoms:
    out = atoms.copy()
    out.calc = None
    for name in TENSOR_COLUMNS:
        if name in out.arrays:
            out.arrays[name] = np.ascontiguousarray(out.arrays.pop(name).reshape(len(out), 9))
    return out


def write_extxyz(path, images) -> None:
    """Write Atoms (one or a list) to extended XYZ; ``ms``/``efg`` become 9 row-major columns."""
    from ase.io import write

    if isinstance(images, Atoms):
        images = [images]
    write(os.fspath(path), [_tensors_to_columns(a) for a in images], format="extxyz")


# dispatch ---------------------------------------------------------------------------------
def read(path, index=":", format=None) -> list[Atoms]:
    """Read every structure in ``path`` as a list of Atoms, the format chosen by
    :func:`dynnmr.formats.detect`: ``.magres``; ``.json`` with the silicate JSON's fields
    (other JSON, e.g. an ase database, goes to ase); anything else through ase (extended
    XYZ with ``ms``/``efg`` columns, CIF, ...); ``format`` overrides the guess (a name of
    :data:`dynnmr.formats.FORMATS` or of ase's). ``index`` selects frames of multi-frame
    files, in ase's syntax.
    """
    path = check_file(path)
    fmt = detect(path, format).name
    if fmt == "magres":
        return [read_magres(path)]
    if fmt == "silicate-json":
        data = _load_json(path)
        if isinstance(data, dict) and SILICATE_JSON_FIELDS <= set(data):
            return _silicate_atoms(path, data)
    from ase.io import read as ase_read

    try:
        images = ase_read(os.fspath(path), index=index, format={"ase": format, "extxyz": "extxyz"}.get(fmt))
    except Exception as exc:  # ase raises many types; the user needs the file and reason
        raise InputError(path, f"cannot read structure file: {exc}") from None
    if isinstance(images, Atoms):
        images = [images]
    try:
        return [_tensors_from_columns(a) for a in images]
    except ValueError as exc:
        raise InputError(path, str(exc)) from None


# provenance -------------------------------------------------------------------------------
def stamp(atoms: Atoms, info: dict) -> Atoms:
    """Record which model made a structure's tensors: ``info["model"]``,
    ``info["dynnmr_version"]`` and each element's shift reference as
    ``info["sigma_ref_ppm_El"]`` (plain numbers, so they survive extended XYZ), so that
    ``params`` and ``spectrum`` find the reference without it being copied by hand."""
    from . import __version__

    atoms.info["model"] = info.get("name", "")
    atoms.info["dynnmr_version"] = __version__
    for el, ref in (info.get("shift_reference") or {}).items():
        atoms.info[f"sigma_ref_ppm_{el}"] = float(ref["sigma_ref_ppm"])
    return atoms


def shift_references(images) -> dict:
    """``{El: sigma_ref (ppm)}`` recorded on structures by :func:`stamp` (the first found)."""
    refs: dict = {}
    for atoms in images:
        for key, value in atoms.info.items():
            if key.startswith("sigma_ref_ppm_"):
                refs.setdefault(key.removeprefix("sigma_ref_ppm_"), float(value))
    return refs


def provenance(path) -> str:
    """One comment line for an output made from ``path`` (a store or a tensor file):
    ``# dynnmr VERSION; from NAME; tensors by model M (dynnmr V)``, the model being the
    one the input records (:func:`stamp`; a store's attributes), or "unknown model" for
    tensors from elsewhere (DFT files). CSV readers skip it as a comment (``comment="#"``)."""
    from . import __version__

    path = Path(path)
    if detect(path).name == "store":
        from .store import open_store

        attrs = open_store(path).attrs
        model, made_by = attrs.get("model_name"), attrs.get("dynnmr_version")
    else:
        info = read(path, index="0")[0].info
        model, made_by = info.get("model"), info.get("dynnmr_version")
    by = f"tensors by model {model} (dynnmr {made_by})" if model else "tensors not from a dynnmr model"
    return f"# dynnmr {__version__}; from {path.name}; {by}\n"
