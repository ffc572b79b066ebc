"""The streaming extxyz reader: same numbers as ase, frame selection, gzip, clear errors."""

import gzip

import numpy as np
import pytest
from ase.io import iread, write

from dynnmr import tensorfiles
from dynnmr.errors import InputError
from dynnmr.reader import iread_extxyz

QUARTZ = tensorfiles.read(__import__("pathlib").Path(tensorfiles.__file__).parent / "data" / "alpha_quartz.extxyz")[0]


@pytest.fixture(scope="module")
def traj(tmp_path_factory):
    rng = np.random.default_rng(0)
    frames = []
    for k in range(7):
        a = QUARTZ.repeat((2, 2, 1))
        a.positions += rng.normal(scale=0.3, size=a.positions.shape) * 10.0 ** rng.integers(
            -3, 2, size=a.positions.shape
        )
        a.info["time"] = 0.01 * k
        a.arrays["velo"] = rng.normal(size=(len(a), 3))
        frames.append(a)
    path = tmp_path_factory.mktemp("traj") / "t.extxyz"
    write(path, frames, format="extxyz")
    return path


def assert_same_as_ase(path, frames=slice(None)):
    ref = list(iread(str(path), index=frames))
    got = list(iread_extxyz(path, frames=frames))
    assert len(got) == len(ref) > 0
    for r, g in zip(ref, got):
        np.testing.assert_array_equal(g.positions, r.positions)  # bit for bit
        np.testing.assert_array_equal(g.numbers, r.numbers)
        if r.pbc.any():
            np.testing.assert_array_equal(g.cell, r.cell.array)
        np.testing.assert_array_equal(g.pbc, r.pbc)
    return got


def test_matches_ase_written_file_with_extra_columns(traj):
    got = assert_same_as_ase(traj)
    assert [f.time_ps for f in got] == pytest.approx([0.01 * k for k in range(7)])
    assert [f.index for f in got] == list(range(7))
    assert got[1].line == 2 + len(got[0].numbers) + 1


def test_frame_selection_and_gzip(traj, tmp_path):
    got = assert_same_as_ase(traj, slice(1, 6, 2))
    assert [f.index for f in got] == [1, 3, 5]
    gz = tmp_path / "t.extxyz.gz"
    gz.write_bytes(gzip.compress(traj.read_bytes()))
    plain = list(iread_extxyz(traj))
    for a, b in zip(plain, iread_extxyz(gz)):
        np.testing.assert_array_equal(a.positions, b.positions)


@pytest.mark.parametrize("block", [53, 200, 1777])
def test_buffer_boundaries_anywhere(traj, tmp_path, monkeypatch, block):
    """Tiny read blocks split lines and numbers at every possible place; results stay exact."""
    import dynnmr.reader as reader

    monkeypatch.setattr(reader, "_BLOCK", block)
    assert_same_as_ase(traj)
    assert_same_as_ase(traj, slice(2, 7, 3))
    gz = tmp_path / "t.extxyz.gz"
    gz.write_bytes(gzip.compress(traj.read_bytes().rstrip(b"\n")))  # and no final newline
    got = list(iread_extxyz(gz))
    ref = list(iread(str(traj)))
    assert len(got) == len(ref)
    np.testing.assert_array_equal(got[-1].positions, ref[-1].positions)


def test_exact_decimal_conversion_edge_cases(tmp_path):
    values = ["0", "-0.0", "1e-5", "2.5E+3", "123456789.123456789012", "0.1", "-7.00000000000000000001",
              "+3.", ".5", "1.7976931348623157e308", "4.9e-324", "12345678901234567890"]  # fmt: skip
    lines = [str(len(values)), 'Properties=species:S:1:pos:R:3 pbc="F F F"']
    lines += [f"O {v} 1.0 -2.0" for v in values]
    path = tmp_path / "edge.extxyz"
    path.write_text("\n".join(lines) + "\n")
    got = next(iread_extxyz(path))
    np.testing.assert_array_equal(got.positions[:, 0], [float(v) for v in values])


def test_ovito_and_lammps_style_headers(tmp_path):
    text = (
        "3\n"
        'Lattice="10.0 0.0 0.0 0.0 10.0 0.0 0.0 0.0 10.0" Origin="0 0 0" '
        "Properties=id:I:1:species:S:1:pos:R:3:c_pe:R:1 Time=200.0 time_ps=0.2\n"
        "1 Si 0.1 0.2 0.3 -5.1\n2 O 1.7 0.2 0.3 -3.2\n3 O\t-1.5  0.2   0.3 -3.2\r\n"
    )
    path = tmp_path / "ovito.xyz"
    path.write_text(text)
    f = next(iread_extxyz(path))
    assert f.numbers.tolist() == [14, 8, 8] and f.pbc.all() and f.time_ps == 0.2
    np.testing.assert_array_equal(f.positions[2], [-1.5, 0.2, 0.3])
    np.testing.assert_array_equal(f.cell, np.eye(3) * 10)


def write_bad(tmp_path, text):
    path = tmp_path / "bad.extxyz"
    path.write_text(text)
    return path


GOOD = '2\nLattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3\nSi 0 0 0\nO 1.6 0 0\n'


@pytest.mark.parametrize(
    "text, message, frame, line",
    [
        (GOOD + GOOD + "2\nheader\nSi 0 0 0\n", "truncated frame: 2 atoms announced, 1 lines present", 2, 9),
        (GOOD + "two\nheader\n", "expected an atom count, got 'two'", 1, 5),
        (GOOD + GOOD.replace("1.6", "1.x6"), "atom 2: non-numeric coordinate", 1, 8),
        (GOOD.replace("1.6", "nan"), "atom 2: non-finite coordinate (nan/inf)", 0, 4),
        (GOOD.replace("1.6 0 0", "inf 0 0"), "atom 2: non-finite coordinate (nan/inf)", 0, 4),
        (GOOD.replace("O 1.6 0 0", "O 1.6 0"), "atom 2: expected 4 columns, found 3", 0, 4),
        (GOOD.replace("O 1.6", "Qq 1.6"), "atom 2: unknown element 'Qq'", 0, 4),
        (GOOD + "3\n", "truncated frame: header without atoms", 1, 5),
        # a Properties string equal to a name the parser keeps for itself (found by the fuzz test)
        (GOOD + GOOD.replace("species:S:1:pos:R:3", "species"), "Properties='species' lacks species or pos", 1, 6),
    ],
)
def test_bad_input_names_file_frame_and_line(tmp_path, text, message, frame, line):
    path = write_bad(tmp_path, text)
    with pytest.raises(InputError) as err:
        list(iread_extxyz(path))
    assert str(err.value) == f"{path}:{line}: frame {frame}: {message}"


def test_frames_before_an_error_are_delivered(tmp_path):
    path = write_bad(tmp_path, GOOD + GOOD + "2\nh\nSi 0 0 0\n")
    got = []
    with pytest.raises(InputError):
        for f in iread_extxyz(path):
            got.append(f.index)
    assert got == [0, 1]


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        list(iread_extxyz(tmp_path / "none.extxyz"))
    (tmp_path / "empty.extxyz").write_text("")
    with pytest.raises(InputError, match="empty"):
        list(iread_extxyz(tmp_path / "empty.extxyz"))
    (tmp_path / "blank.extxyz").write_text("\n\n")
    with pytest.raises(InputError, match="no frames"):
        list(iread_extxyz(tmp_path / "blank.extxyz"))


def test_species_read_per_frame_when_they_change(tmp_path):
    path = write_bad(tmp_path, GOOD + GOOD.replace("Si 0 0 0\nO 1.6 0 0", "O 0 0 0\nSi 1.6 0 0"))
    a, b = iread_extxyz(path)
    assert a.numbers.tolist() == [14, 8] and b.numbers.tolist() == [8, 14]
    first, second = list(iread_extxyz(write_bad(tmp_path, GOOD * 2)))
    first.numbers[0] = 1  # frames of one reader do not share arrays
    assert second.numbers.tolist() == [14, 8]
