"""A store nobody can corrupt: the writer lock, a safe --overwrite, refusing unfinished stores,
and training checkpoints that cannot run code."""

import json
import os

import numpy as np
import pytest
import zarr

from dynnmr.analysis import summarize
from dynnmr.cli import main
from dynnmr.errors import InputError
from dynnmr.store import StoreBusy, TensorStore

from helpers import make_traj, run


def test_second_writer_is_refused_and_the_store_is_untouched(tmp_path, tiny_model, capsys):
    """The lock is an OS lock: another process holding it is seen (a subprocess here)."""
    import subprocess
    import sys

    make_traj(tmp_path / "t.extxyz", n_frames=6)
    out = run(tmp_path / "t.extxyz", tmp_path / "s.zarr", tiny_model)
    before = zarr.open_group(str(out), mode="r")["ms"][:]
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from dynnmr.store import StoreLock\n"
                               f"with StoreLock({str(out)!r}):\n print('locked', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert holder.stdout.readline().strip() == "locked"  # a run writing this store right now
    try:
        with pytest.raises(StoreBusy, match=f"is being written by process {holder.pid}"):
            run(tmp_path / "t.extxyz", out, tiny_model, overwrite=True)
        with pytest.raises(StoreBusy):
            run(tmp_path / "t.extxyz", out, tiny_model, resume=True)
        assert main(["analyze", str(tmp_path / "t.extxyz"), "-o", str(out), "--model", str(tiny_model), "--overwrite",
                     "-q"]) == 2  # fmt: skip
        assert "is being written" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    np.testing.assert_array_equal(zarr.open_group(str(out), mode="r")["ms"][:], before)
    run(tmp_path / "t.extxyz", out, tiny_model, overwrite=True)  # the killed holder's lock is free again
    assert f"left by process {holder.pid}" in capsys.readouterr().err
    assert not (tmp_path / "s.zarr.lock").exists()  # released at the end of the run


def test_lock_of_a_dead_writer_is_free_and_reported(tmp_path, tiny_model, capsys):
    """kill -9 cannot leave a store locked (the OS drops the lock), but the dead writer's
    note left in the lock file is reported."""
    make_traj(tmp_path / "t.extxyz", n_frames=6)
    lock = tmp_path / "s.zarr.lock"
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)  # a process id that no longer runs
    lock.write_text(json.dumps({"host": os.uname().nodename, "pid": dead, "started": "yesterday"}))
    run(tmp_path / "t.extxyz", tmp_path / "s.zarr", tiny_model)
    assert f"left by process {dead}" in capsys.readouterr().err
    assert not lock.exists() and zarr.open_group(str(tmp_path / "s.zarr"), mode="r").attrs["complete"]


def test_overwrite_replaces_only_a_dynnmr_store(tmp_path, tiny_model):
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


def test_dynamics_and_spectrum_refuse_unfinished_stores(tmp_path, tiny_model, capsys):
    make_traj(tmp_path / "t.extxyz", n_frames=12)
    out = run(tmp_path / "t.extxyz", tmp_path / "s.zarr", tiny_model)
    g = zarr.open_group(str(out), mode="r+")
    g.attrs.update({"complete": False, "error": "t.extxyz:99: frame 11: bad line"})
    for argv in (["dynamics", str(out)], ["spectrum", str(out), "--species", "Si"]):
        assert main(argv) == 2
        assert "failed (t.extxyz:99: frame 11: bad line)" in capsys.readouterr().err
    g.attrs.update({"complete": False, "error": None})
    assert main(["dynamics", str(out)]) == 2
    assert "incomplete" in capsys.readouterr().err
    assert main(["dynamics", str(out), "--allow-incomplete"]) == 0
    assert main(["dynamics", str(tmp_path / "t.extxyz")]) == 2  # a file, not a store
    assert "not a dynnmr store" in capsys.readouterr().err


def test_training_checkpoint_cannot_run_code(tiny_config, tmp_path):
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


def test_overlapping_atoms_and_unit_mixups_are_errors_naming_frame_and_atoms(tmp_path, tiny_model, capsys):
    frames = make_traj(tmp_path / "t.extxyz", n_frames=6)
    bad = [f.copy() for f in frames]
    bad[4].positions[7] = bad[4].positions[3]  # two atoms on one spot in frame 4
    from ase.io import write

    write(tmp_path / "overlap.extxyz", bad, format="extxyz")
    out = tmp_path / "o.zarr"
    assert main(["analyze", str(tmp_path / "overlap.extxyz"), "-o", str(out), "--model", str(tiny_model), "-q",
                 "--chunk-frames", "2"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "frame 4" in err and "atoms 3 and 7 are 0.000 A apart" in err
    g = zarr.open_group(str(out), mode="r")
    assert g.attrs["frames_done"] == 4 and not g.attrs["complete"] and np.isfinite(g["ms"][:4]).all()
    nm = [f.copy() for f in frames[:2]]
    for f in nm:  # coordinates in nm read as Angstrom: everything within the cutoff
        f.set_cell(f.cell / 10, scale_atoms=True)
    write(tmp_path / "nm.extxyz", nm, format="extxyz")
    assert main(["analyze", str(tmp_path / "nm.extxyz"), "-o", str(tmp_path / "n.zarr"), "--model", str(tiny_model),
                 "-q"]) == 2  # fmt: skip
    assert "not in Angstrom" in capsys.readouterr().err


def test_neighbour_count_guard(monkeypatch):
    from dynnmr.graphs import frame_arrays

    grid = np.stack(np.meshgrid(*[np.arange(12)] * 3, indexing="ij"), -1).reshape(-1, 3) * 0.6
    cell = np.eye(3) * 7.2  # a simple cubic lattice 0.6 A apart: about 2,400 neighbours within 5 A
    with pytest.raises(InputError, match=r"dense.xyz: frame 3: atom \d+ has \d+ neighbours within 5.0 A .*in Angstrom"):
        frame_arrays(np.full(len(grid), 8), grid, cell, [True] * 3, 5.0, source="dense.xyz", frame=3)
    sparse = frame_arrays(np.full(len(grid), 8), grid * 3, cell * 3, [True] * 3, 5.0)  # 1.8 A apart: 81 neighbours
    assert np.bincount(sparse["dst"]).max() < 300
    with pytest.raises(InputError, match="neighbours"):
        frame_arrays(np.full(len(grid), 8), grid * 3, cell * 3, [True] * 3, 5.0, max_neighbours=50)
    monkeypatch.setenv("DYNNMR_MAX_NEIGHBOURS", "50")  # the limit is configurable from the environment
    with pytest.raises(InputError, match=r"at most 50 expected.*DYNNMR_MAX_NEIGHBOURS"):
        frame_arrays(np.full(len(grid), 8), grid * 3, cell * 3, [True] * 3, 5.0)
    monkeypatch.setenv("DYNNMR_MAX_NEIGHBOURS", "3000")
    assert len(frame_arrays(np.full(len(grid), 8), grid, cell, [True] * 3, 5.0)["dst"]) > 300 * len(grid)
    monkeypatch.setenv("DYNNMR_MAX_NEIGHBOURS", "many")
    with pytest.raises(ValueError, match="DYNNMR_MAX_NEIGHBOURS must be a whole number"):
        frame_arrays(np.full(len(grid), 8), grid, cell, [True] * 3, 5.0)


def test_a_lost_chunk_is_an_error_not_a_smaller_data_set(tmp_path, tiny_model, capsys):
    import shutil

    make_traj(tmp_path / "t.extxyz", n_frames=12)
    out = run(tmp_path / "t.extxyz", tmp_path / "s.zarr", tiny_model)
    g = zarr.open_group(str(out), mode="r")
    assert g.attrs["covered_species"] == {"ms": ["O", "Si"], "efg": ["O"]}
    chunk = next(p for p in (out / "ms" / "c").rglob("*") if p.is_file())
    chunk.unlink()  # one shielding chunk file gone: reads as NaN (the fill value)
    shutil.rmtree(out / "analysis", ignore_errors=True)
    assert main(["dynamics", str(out)]) == 2
    assert "ms of" in capsys.readouterr().err
    assert main(["spectrum", str(out), "--species", "O", "-o", str(tmp_path / "s.csv")]) == 2
    assert "lost or corrupt chunk" in capsys.readouterr().err


def test_resume_refuses_other_options_and_any_changed_byte(tmp_path, tiny_model):
    make_traj(tmp_path / "t.extxyz", n_frames=12)
    text = (tmp_path / "t.extxyz").read_text().replace(" time=", " t_other=")  # times from --dt
    (tmp_path / "u.extxyz").write_text(text)
    out = run(tmp_path / "u.extxyz", tmp_path / "s.zarr", tiny_model, dt_ps=0.07, save_positions=True)
    with pytest.raises(ValueError, match="different options"):
        run(tmp_path / "u.extxyz", out, tiny_model, dt_ps=0.4, save_positions=True, resume=True)
    with pytest.raises(ValueError, match="different options"):
        run(tmp_path / "u.extxyz", out, tiny_model, dt_ps=0.07, resume=True)
    run(tmp_path / "u.extxyz", out, tiny_model, dt_ps=0.07, save_positions=True, resume=True)  # the same: fine
    lines = text.splitlines(keepends=True)
    k = len(lines) // 2 + 3  # an atom line in the middle of the file
    fields = lines[k].split()
    lines[k] = lines[k].replace(fields[1], fields[1][:-1] + ("1" if fields[1][-1] != "1" else "2"), 1)
    (tmp_path / "u.extxyz").write_text("".join(lines))  # same size, one digit changed
    assert (tmp_path / "u.extxyz").stat().st_size == len(text.encode())
    with pytest.raises(ValueError, match="different source"):
        run(tmp_path / "u.extxyz", out, tiny_model, dt_ps=0.07, save_positions=True, resume=True)


def test_truncated_gzip_keeps_its_whole_frames(tmp_path, tiny_model, capsys):
    import gzip

    make_traj(tmp_path / "t.extxyz", n_frames=30)
    whole = gzip.compress((tmp_path / "t.extxyz").read_bytes())
    (tmp_path / "cut.extxyz.gz").write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "c.zarr"
    assert main(["analyze", str(tmp_path / "cut.extxyz.gz"), "-o", str(out), "--model", str(tiny_model), "-q",
                 "--chunk-frames", "2"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "the file ends early" in err
    readable = gzip.open(tmp_path / "cut.extxyz.gz", "rt")
    text = ""
    try:
        while chunk := readable.read(1000):
            text += chunk
    except EOFError:
        pass
    whole_frames = text.count("Lattice") - 1  # the last one is cut
    g = zarr.open_group(str(out), mode="r")
    assert f"frame {whole_frames}:" in err and g.attrs["frames_done"] == whole_frames // 2 * 2  # whole chunks kept
    assert np.isfinite(g["ms"][:]).all()


def test_folders_and_non_model_files_are_named_errors(tmp_path, tiny_model, capsys):
    make_traj(tmp_path / "t.extxyz", n_frames=3)
    (tmp_path / "text.pt").write_text("hello")
    (tmp_path / "cut.pt").write_bytes(tiny_model.read_bytes()[:500])
    for argv, message in [
        (["analyze", str(tmp_path), "-o", str(tmp_path / "a.zarr"), "--model", str(tiny_model)], "is a folder"),
        (["analyze", str(tmp_path / "t.extxyz"), "-o", str(tmp_path / "b.zarr"), "--model", str(tmp_path / "text.pt")],
         "text.pt: not a dynnmr model file"),
        (["predict", str(tmp_path / "t.extxyz"), "-o", str(tmp_path / "p.extxyz"), "--model", str(tmp_path / "cut.pt")],
         "cut.pt: not a dynnmr model file"),
    ]:  # fmt: skip
        assert main(argv + ["-q"] if argv[0] == "analyze" else argv) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "b.zarr").exists()


def test_a_failed_create_leaves_nothing_behind(tmp_path):
    with pytest.raises(ValueError, match="chunk_frames"):
        TensorStore.create(tmp_path / "s.zarr", targets=["ms"], numbers=[14], atom_index=[0], chunk_frames=0, attrs={})
    with pytest.raises(ValueError):  # fails after the arrays are made: they are removed again
        TensorStore.create(
            tmp_path / "s.zarr", targets=["ms"], numbers=["Si"], atom_index=[0], chunk_frames=2, attrs={}
        )
    assert not (tmp_path / "s.zarr").exists()
    TensorStore.create(tmp_path / "s.zarr", targets=["ms"], numbers=[14], atom_index=[0], chunk_frames=2, attrs={})


def test_a_damaged_chunk_is_named_by_file_and_frames(tmp_path, tiny_model, capsys):
    make_traj(tmp_path / "t.extxyz", n_frames=12)
    out = run(tmp_path / "t.extxyz", tmp_path / "s.zarr", tiny_model)
    chunk = out / "ms" / "c" / "1" / "0" / "0"  # frames 5..9 (chunks of 5)
    data = bytearray(chunk.read_bytes())
    data[16:48] = bytes(32)  # zeroes inside the compressed stream
    chunk.write_bytes(bytes(data))
    message = "chunk file ms/c/1/0/0 (frames 5..9) is damaged"
    for argv in (["dynamics", str(out)], ["spectrum", str(out), "--species", "Si", "-o", str(tmp_path / "s.csv")]):
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        summarize(out)


def test_a_full_disk_stops_with_a_named_error_and_resumes_identically(tmp_path, tiny_model, monkeypatch, capsys):
    import errno

    import zarr.storage._local as local

    make_traj(tmp_path / "t.extxyz", n_frames=12)
    clean = run(tmp_path / "t.extxyz", tmp_path / "clean.zarr", tiny_model)
    real_put, calls = local._put, []

    def put(path, value, exclusive=False):  # the disk fills while the second chunk is written
        if "/c/1/" in str(path).replace(os.sep, "/"):
            calls.append(path)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_put(path, value, exclusive=exclusive)

    monkeypatch.setattr(local, "_put", put)
    argv = ["analyze", str(tmp_path / "t.extxyz"), "-o", str(tmp_path / "s.zarr"), "--model", str(tiny_model),
            "--chunk-frames", "5", "--device", "cpu", "-q"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert calls and "disk full while writing frames 5..9; the 5 frames before are kept" in err
    assert "Traceback" not in err
    monkeypatch.setattr(local, "_put", real_put)
    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    assert g.attrs["frames_done"] == 5 and not g.attrs["complete"]
    assert main(argv + ["--resume"]) == 0
    a, b = (zarr.open_group(str(p), mode="r") for p in (clean, tmp_path / "s.zarr"))
    for name in ("ms", "efg", "time_ps", "cell"):
        np.testing.assert_array_equal(a[name][:], b[name][:])


def test_an_unreadable_trajectory_is_a_named_error(tmp_path, tiny_model, monkeypatch, capsys):
    """Permission denied (simulated: the test machines run as root, which reads every file)."""
    import builtins

    import dynnmr.formats

    make_traj(tmp_path / "t.extxyz", n_frames=2)

    def denied(path, *args, **kw):
        if str(path) == str(tmp_path / "t.extxyz"):
            raise PermissionError(13, "Permission denied", str(path))
        return builtins.open(path, *args, **kw)

    monkeypatch.setattr(dynnmr.formats, "open", denied, raising=False)
    argv = ["analyze", str(tmp_path / "t.extxyz"), "-o", str(tmp_path / "s.zarr"), "--model", str(tiny_model), "-q"]
    assert main(argv) == 2
    assert f"{tmp_path / 't.extxyz'}: cannot be read (Permission denied)" in capsys.readouterr().err
    assert not (tmp_path / "s.zarr").exists()
