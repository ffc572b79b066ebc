"""Property: a corrupted extended XYZ file never gives a traceback, and every frame that lies
wholly before the corruption is read back unchanged."""

import gzip

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynnmr.errors import InputError
from dynnmr.reader import iread_extxyz


def frame_text(k, rng):
    pos = rng.uniform(0, 8, (3, 3))
    body = "".join(f"{s} {x:.5f} {y:.5f} {z:.5f}\n" for s, (x, y, z) in zip(("Si", "O", "O"), pos))
    return f'3\nLattice="8 0 0 0 8 0 0 0 8" Properties=species:S:1:pos:R:3 time={0.01 * k:.2f}\n' + body


FRAMES = [frame_text(k, np.random.default_rng(k)) for k in range(6)]
GOOD = "".join(FRAMES).encode()
STARTS = np.cumsum([0] + [len(f.encode()) for f in FRAMES])
REFERENCE = None


def read_all(path):
    """Frames read before the reader stopped, and whether it stopped with an InputError."""
    out = []
    try:
        for f in iread_extxyz(path):
            out.append(f)
    except InputError:
        return out, True
    return out, False


corruption = st.one_of(
    st.tuples(st.just("truncate"), st.integers(1, len(GOOD) - 1)),
    st.tuples(st.just("byte"), st.integers(0, len(GOOD) - 1), st.binary(min_size=1, max_size=3)),
    st.tuples(st.just("delete"), st.integers(0, len(GOOD) - 1), st.integers(1, 40)),
    st.tuples(st.just("insert"), st.integers(0, len(GOOD) - 1), st.binary(min_size=1, max_size=40)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(corruption, st.booleans())
def test_corruptions_never_traceback_and_keep_good_frames(tmp_path, case, zipped):
    global REFERENCE
    ref_path = tmp_path / "good.extxyz"
    ref_path.write_bytes(GOOD)
    REFERENCE = REFERENCE or read_all(ref_path)[0]
    kind, at = case[0], case[1]
    if kind == "truncate":
        data = GOOD[:at]
    elif kind == "byte":
        data = GOOD[:at] + case[2] + GOOD[at + 1 :]
    elif kind == "delete":
        data = GOOD[:at] + GOOD[at + case[2] :]
    else:
        data = GOOD[:at] + case[2] + GOOD[at:]
    path = tmp_path / ("bad.extxyz.gz" if zipped else "bad.extxyz")
    path.write_bytes(gzip.compress(data) if zipped else data)
    frames, _ = read_all(path)  # any other exception fails the test with its traceback
    intact = int(np.searchsorted(STARTS, at, side="right")) - 1  # frames that end before the corruption
    assert len(frames) >= intact
    for a, b in zip(frames[:intact], REFERENCE[:intact]):
        assert np.array_equal(a.numbers, b.numbers) and np.array_equal(a.positions, b.positions)
        assert np.array_equal(a.cell, b.cell) and a.time_ps == b.time_ps
