"""AnalysisSpec: one checked, immutable description of an analyze run."""

import dataclasses
import pickle
from pathlib import Path

import pytest

from dynnmr.spec import AnalysisSpec, parse_frames


def test_spec_normalises_and_is_a_hashable_picklable_value(tmp_path):
    spec = AnalysisSpec(str(tmp_path / "t.extxyz"), frames="2::3", species=[14, 8])
    assert spec.output == tmp_path / "t.extxyz.nmr.zarr" and spec.frames == (2, None, 3)
    assert spec.selection == slice(2, None, 3) and spec.species == (8, 14)
    assert AnalysisSpec(tmp_path / "t.extxyz", frames=slice(2, None, 3), species=(8, 14)) == spec
    assert hash(spec) == hash(pickle.loads(pickle.dumps(spec)))  # sent to dask workers, cached per worker
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.dt_ps = 1.0
    changed = spec.replace(dt_ps=0.01)
    assert changed.dt_ps == 0.01 and spec.dt_ps is None


@pytest.mark.parametrize("bad, message", [
    ({"chunk_frames": 0}, "chunk_frames"), ({"dt_ps": 0.0}, "dt_ps"), ({"md_timestep_ps": -1.0}, "md_timestep_ps"),
    ({"graphs": "gpu"}, "graphs"), ({"resume": True, "overwrite": True}, "exclude"),
    ({"frames": "a:b"}, "whole numbers"),
    ({"batch_atoms": 0}, "batch_atoms"),
])  # fmt: skip
def test_spec_refuses_bad_options_before_any_work(bad, message):
    with pytest.raises(ValueError, match=message):
        AnalysisSpec(Path("t.extxyz"), **bad)
    with pytest.raises(ValueError, match=message):  # and a changed copy is checked again
        AnalysisSpec(Path("t.extxyz")).replace(**bad)


def test_expected_attrs_record_every_option_that_changes_the_data():
    info = {"sha256": "abc"}
    a = AnalysisSpec(Path("t.extxyz"), frames="0:10", species="Si,O", dt_ps=0.5)
    attrs = a.expected_attrs(info, {"name": "t.extxyz"})
    assert attrs["frame_selection"] == [0, 10, None] and attrs["options"]["species"] == "Si,O"
    for change in ({"dt_ps": 0.25}, {"frames": "0:20"}, {"save_positions": True}, {"species": "O"},
                   {"md_timestep_ps": 0.001}):  # fmt: skip
        assert a.replace(**change).expected_attrs(info, {"name": "t.extxyz"}) != attrs, change
    # how the run is executed does not change what is stored
    for same in ({"chunk_frames": 8}, {"device": "cuda"}, {"batch_atoms": 100}, {"progress": False}):
        assert a.replace(**same).expected_attrs(info, {"name": "t.extxyz"}) == attrs, same


def test_parse_frames():
    assert parse_frames(None) == slice(None) and parse_frames("5") == slice(5, None, None)
    assert parse_frames(":100:10") == slice(None, 100, 10)
    for bad in ("1:2:3:4", "-1:", "::0"):
        with pytest.raises(ValueError):
            parse_frames(bad)
