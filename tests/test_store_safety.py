"""A store nobody can corrupt: the writer lock, a safe --overwrite, refusing unfinished stores,
and training checkpoints that cannot run code."""

import json
import os

import numpy as np
import pytest
import zarr
from test_engine import make_traj, run, tiny_model  # noqa: F401  (fixture)
from test_train_predict import tiny_config  # noqa: F401  (fixture)

from dynnmr.cli import main
from dynnmr.errors import InputError
from dynnmr.store import StoreBusy, StoreLock, TensorStore


def test_second_writer_is_refused_and_the_store_is_untouched(tmp_path, tiny_model, capsys):  # noqa: F811
    make_traj(tmp_path / "t.extxyz", n_frames=6)
    out = run(tmp_path / "t.extxyz", tmp_path / "s.zarr", tiny_model)
    before = zarr.open_group(str(out), mode="r")["ms"][:]
    with StoreLock(out):  # a run writing this store right now
        with pytest.raises(StoreBusy, match="is being written by process"):
            run(tmp_path / "t.extxyz", out, tiny_model, overwrite=True)
        with pytest.raises(StoreBusy):
            run(tmp_path / "t.extxyz", out, tiny_model, resume=True)
        assert main(["analyze", str(tmp_path / "t.extxyz"), "-o", str(out), "--model", str(tiny_model), "--overwrite",
                     "-q"]) == 2  # fmt: skip
        assert "is being written" in capsys.readouterr().err
    np.testing.assert_array_equal(zarr.open_group(str(out), mode="r")["ms"][:], before)
    assert not (tmp_path / "s.zarr.lock").exists()  # released
    run(tmp_path / "t.extxyz", out, tiny_model, overwrite=True)  # and free again
    assert not (tmp_path / "s.zarr.lock").exists()


def test_stale_lock_is_reported_not_broken(tmp_path, tiny_model):  # noqa: F811
    make_traj(tmp_path / "t.extxyz", n_frames=6)
    lock = tmp_path / "s.zarr.lock"
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)  # a process id that no longer runs
    lock.write_text(json.dumps({"host": os.uname().nodename, "pid": dead, "started": "yesterday"}))
    with pytest.raises(StoreBusy, match="stale lock .* no longer running"):
        run(tmp_path / "t.extxyz", tmp_path / "s.zarr", tiny_model)
    assert lock.exists() and not (tmp_path / "s.zarr").exists()


def test_overwrite_replaces_only_a_dynnmr_store(tmp_path, tiny_model):  # noqa: F811
    make_traj(tmp_path / "t.extxyz", n_frames=6)
    docs = tmp_path / "mydocs"
    (docs / "sub").mkdir(parents=True)
    (docs / "thesis.tex").write_text("precious")
    (docs / "sub" / "data.csv").write_text("1,2")
    with pytest.raises(InputError, match="not a dynnmr store"):
        run(tmp_path / "t.extxyz", docs, tiny_model, overwrite=True)
    assert (docs / "thesis.tex").read_text() == "precious" and (docs / "sub" / "data.csv").exists()
    plain = tmp_path / "file.zarr"
    plain.write_text("not a store")
    with pytest.raises(InputError, match="not a dynnmr store"):
        run(tmp_path / "t.extxyz", plain, tiny_model, overwrite=True)
    with pytest.raises(InputError, match="not a dynnmr store"):
        TensorStore.create(docs, targets=["ms"], numbers=[14], atom_index=[0], chunk_frames=2, attrs={}, overwrite=True)
    assert (docs / "thesis.tex").exists()


def test_dynamics_and_spectrum_refuse_unfinished_stores(tmp_path, tiny_model, capsys):  # noqa: F811
    make_traj(tmp_path / "t.extxyz", n_frames=12)
    out = run(tmp_path / "t.extxyz", tmp_path / "s.zarr", tiny_model)
    g = zarr.open_group(str(out), mode="r+")
    g.attrs.update({"complete": False, "error": "t.extxyz:99: frame 11: bad line"})
    for argv in (["dynamics", str(out)], ["spectrum", str(out), "--nucleus", "29Si"]):
        assert main(argv) == 2
        assert "failed (t.extxyz:99: frame 11: bad line)" in capsys.readouterr().err
    g.attrs.update({"complete": False, "error": None})
    assert main(["dynamics", str(out)]) == 2
    assert "incomplete" in capsys.readouterr().err
    assert main(["dynamics", str(out), "--allow-incomplete"]) == 0
    assert main(["dynamics", str(tmp_path / "t.extxyz")]) == 2  # a file, not a store
    assert "not a dynnmr store" in capsys.readouterr().err


def test_training_checkpoint_cannot_run_code(tiny_config, tmp_path):  # noqa: F811
    """Resuming a run from a crafted checkpoint.pt that would run code when unpickled is refused."""
    import pickle

    from dynnmr.train import train

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    out = tmp_path / "run"
    out.mkdir()
    with open(out / "checkpoint.pt", "wb") as fh:
        pickle.dump({"model": Evil()}, fh)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        train(tiny_config, out, log=lambda m: None)
    assert not (tmp_path / "pwned").exists()
