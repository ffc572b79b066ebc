"""One table of formats (dynnmr.formats) picks the reader for trajectories and tensor files alike."""

import numpy as np
import pytest
from ase.io import write

from dynnmr import formats, tensorfiles
from dynnmr.errors import InputError
from dynnmr.reader import count_frames, iread

from helpers import QUARTZ, make_traj, run


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("run.extxyz.gz", {}, "extxyz"),
        ("RUN.XYZ", {}, "extxyz"),
        ("site.magres", {}, "magres"),
        ("data.json", {}, "silicate-json"),
        ("md.xtc", {}, "mdanalysis"),
        ("md.pdb", {"topology": "md.pdb"}, "mdanalysis"),
        ("run.traj", {}, "ase"),
        ("dump.lammpstrj", {"format": "lammps-dump-text"}, "ase"),
        ("frames.txt", {"format": "xyz"}, "extxyz"),
        ("frames.txt", {"format": "magres"}, "magres"),
    ],
)
def test_detect_by_suffix_or_by_the_user(name, kwargs, expected):
    assert formats.detect(name, **kwargs).name == expected


def test_a_store_is_detected_by_content_and_refused_as_a_trajectory(tmp_path, tiny_model):
    make_traj(tmp_path / "t.extxyz", n_frames=2)
    store = run(tmp_path / "t.extxyz", tmp_path / "plain_folder_name", tiny_model)
    assert formats.detect(store).name == "store" and formats.detect(tmp_path).name == "ase"
    (tmp_path / "other.zarr").mkdir()  # a zarr-named folder that dynnmr did not write is no store
    assert formats.detect(tmp_path / "other.zarr").name == "ase"
    with pytest.raises(InputError, match="is a dynnmr store, not a trajectory"):
        next(iread(store))
    with pytest.raises(InputError, match="is a dynnmr store, not a file"):
        tensorfiles.read(store)


def test_json_that_is_not_the_silicate_json_goes_to_ase(tmp_path):
    """Before, every .json was taken for the silicate JSON and an ase JSON failed."""
    write(tmp_path / "quartz.json", QUARTZ, format="json")
    (atoms,) = tensorfiles.read(tmp_path / "quartz.json")
    np.testing.assert_allclose(atoms.positions, QUARTZ.positions)
    (tmp_path / "broken.json").write_text('{"structure": [1, 2\n')
    with pytest.raises(InputError, match="invalid JSON"):
        tensorfiles.read(tmp_path / "broken.json")


def test_tensor_files_stream_as_frames(shared_data):
    """A magres file is a one-frame trajectory for analyze, read by the same magres reader."""
    path = shared_data / "magres" / "ethanol.magres"
    (frame,) = list(iread(path))
    atoms = tensorfiles.read(path)[0]
    np.testing.assert_array_equal(frame.numbers, atoms.numbers)
    np.testing.assert_allclose(frame.positions, atoms.positions)
    assert count_frames(path) == 1


def test_the_table_lists_every_format():
    text = formats.table()
    assert all(f.name in text for f in formats.FORMATS) and ".magres" in text


def test_a_forced_format_reaches_the_reader(tmp_path, shared_data):
    """--format magres on a file whose name says nothing: read by the magres reader."""
    (tmp_path / "site.txt").write_bytes((shared_data / "magres" / "ethanol.magres").read_bytes())
    (frame,) = list(iread(tmp_path / "site.txt", format="magres"))
    (atoms,) = tensorfiles.read(tmp_path / "site.txt", format="magres")
    assert "ms" in atoms.arrays and len(frame.numbers) == len(atoms)
