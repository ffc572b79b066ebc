"""`analyze` on a dask LocalCluster: the store equals a single-process run's, also after a
worker is killed mid-run and across resumes between the two modes; the frame index."""

import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from dynnmr.cli import main
from dynnmr.distributed import analyze_distributed
from dynnmr.dynamics import analyse_store
from dynnmr.engine import analyze
from dynnmr.reader import frame_index, iread_extxyz

from helpers import make_traj

ARRAYS = ("ms", "efg", "time_ps", "frame_index", "cell")


@pytest.fixture(scope="module")
def client():
    from distributed import Client

    with Client(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


def assert_same_store(a, b):
    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    for name in ARRAYS:
        np.testing.assert_array_equal(gb[name][:], ga[name][:], err_msg=name)
    for key in ("frames_done", "complete", "model_sha256", "source", "frame_selection", "species"):
        assert gb.attrs[key] == ga.attrs[key], key


def single(traj, out, model, **kw):
    return analyze(traj, out, model=str(model), chunk_frames=4, progress=False, device="cpu", **kw)


def distributed(traj, out, model, client, **kw):
    return analyze_distributed(traj, client, out, model=str(model), chunk_frames=4, progress=False, **kw)


def test_frame_index_seeks_like_a_sequential_read(tmp_path):
    make_traj(tmp_path / "t.extxyz", n_frames=9)
    index = frame_index(tmp_path / "t.extxyz")
    assert (tmp_path / "t.extxyz.frames.npz").exists() and index.shape == (9, 2)
    assert np.all(index[:, 1] == 1 + np.arange(9) * (72 + 2))  # 72 atoms + 2 header lines per frame
    seq = list(iread_extxyz(tmp_path / "t.extxyz", slice(3, 9, 2)))
    jump = list(iread_extxyz(tmp_path / "t.extxyz", slice(3, 9, 2), index=index))
    assert [f.index for f in jump] == [3, 5, 7] and [f.line for f in jump] == [f.line for f in seq]
    assert all(np.array_equal(a.positions, b.positions) for a, b in zip(seq, jump))
    import gzip

    gz = tmp_path / "t.extxyz.gz"  # gzip: the same index (uncompressed offsets), seeking by decompressing
    gz.write_bytes(gzip.compress((tmp_path / "t.extxyz").read_bytes()))
    assert np.array_equal(frame_index(gz), index)
    zipped = list(iread_extxyz(gz, slice(3, 9, 2), index=frame_index(gz)))
    assert all(np.array_equal(a.positions, b.positions) for a, b in zip(seq, zipped)) and len(zipped) == 3
    make_traj(tmp_path / "t.extxyz", n_frames=5)  # the file changed: the saved index is rebuilt
    assert frame_index(tmp_path / "t.extxyz").shape == (5, 2)


def test_distributed_store_equals_single_process(tmp_path, tiny_model, client):
    make_traj(tmp_path / "t.extxyz", n_frames=22)
    a = single(tmp_path / "t.extxyz", tmp_path / "a.zarr", tiny_model, frames="1::1")
    b = distributed(tmp_path / "t.extxyz", tmp_path / "b.zarr", tiny_model, client, frames="1::1")
    assert_same_store(a, b)
    assert zarr.open_group(str(b), mode="r")["chunk_done"][:].all()
    # the dynamics (FFT over the store) see the same series
    ra, rb = analyse_store(a), analyse_store(b)
    assert ra["species"]["Si"]["sigma_iso_ppm_avg"] == rb["species"]["Si"]["sigma_iso_ppm_avg"]


async def _die():
    os._exit(1)  # the worker process dies at once, its running and queued tasks with it


def test_worker_killed_mid_run(tmp_path, tiny_model, client):
    make_traj(tmp_path / "t.extxyz", n_frames=80, repeat=(3, 3, 2))
    ref = single(tmp_path / "t.extxyz", tmp_path / "a.zarr", tiny_model)
    out = tmp_path / "b.zarr"
    result = {}
    run = threading.Thread(
        target=lambda: result.update(path=distributed(tmp_path / "t.extxyz", out, tiny_model, client))
    )
    run.start()
    victim = sorted(client.scheduler_info()["workers"])[0]
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until the run is under way, then kill a worker process
        try:
            done = zarr.open_group(str(out), mode="r")["chunk_done"][:]
        except (KeyError, FileNotFoundError, ValueError):
            done = np.zeros(1, bool)
        if done.any():
            break
        time.sleep(0.05)
    assert 0 < done.sum() < len(done), "the run must still be going when the worker is killed"
    client.run(_die, workers=[victim], wait=False)
    run.join(300)
    assert result.get("path") == out
    assert_same_store(ref, out)
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it for the tests that follow


def test_resume_across_modes(tmp_path, tiny_model, client):
    make_traj(tmp_path / "t.extxyz", n_frames=18)
    ref = single(tmp_path / "t.extxyz", tmp_path / "ref.zarr", tiny_model)
    # a single-process run stopped after 8 frames -> resumed on the cluster
    part = tmp_path / "part.zarr"
    shutil.copytree(ref, part)
    g = zarr.open_group(str(part), mode="r+")
    for name in ARRAYS:
        g[name].resize((8,) + g[name].shape[1:])
    g.attrs.update({"frames_done": 8, "complete": False})
    assert_same_store(ref, distributed(tmp_path / "t.extxyz", part, tiny_model, client, resume=True))
    # a cluster run with chunks 1 and 3 unfinished -> resumed by either mode
    for mode in ("single", "distributed"):
        holes = tmp_path / f"holes-{mode}.zarr"
        distributed(tmp_path / "t.extxyz", holes, tiny_model, client)
        g = zarr.open_group(str(holes), mode="r+")
        for c in (1, 3):
            for name in ARRAYS:
                g[name][4 * c : 4 * c + 4] = g[name].fill_value
            g["chunk_done"][c] = False
        g.attrs.update({"frames_done": 4, "complete": False})
        if mode == "single":
            single(tmp_path / "t.extxyz", holes, tiny_model, resume=True)
        else:
            distributed(tmp_path / "t.extxyz", holes, tiny_model, client, resume=True)
        assert_same_store(ref, holes)


def test_bad_frame_keeps_finished_chunks_and_names_the_line(tmp_path, tiny_model, client):
    make_traj(tmp_path / "t.extxyz", n_frames=12)
    lines = (tmp_path / "t.extxyz").read_text().splitlines(keepends=True)
    bad = 9 * 74 + 2 + 5  # frame 9, atom 6
    lines[bad] = "Si 0.0 nan 0.0\n"
    (tmp_path / "t.extxyz").write_text("".join(lines))
    with pytest.raises(Exception, match=rf"t.extxyz:{9 * 74 + 1 + 2 + 5}: frame 9: atom 6: non-finite"):
        distributed(tmp_path / "t.extxyz", tmp_path / "b.zarr", tiny_model, client)
    g = zarr.open_group(str(tmp_path / "b.zarr"), mode="r")
    assert g.attrs["complete"] is False and "frame 9" in g.attrs["error"]
    assert g["chunk_done"][:2].all() and not g["chunk_done"][2]
    assert np.isfinite(g["ms"][:8][:, g["numbers"][:] == 14]).all()


def test_cli_scheduler_local(tmp_path, tiny_model, capsys):
    make_traj(tmp_path / "t.extxyz", n_frames=6)
    assert main(["analyze", str(tmp_path / "t.extxyz"), "-o", str(tmp_path / "c.zarr"), "--model", str(tiny_model),
                 "--scheduler", "local:2", "--chunk-frames", "2", "-q"]) == 0  # fmt: skip
    assert zarr.open_group(str(tmp_path / "c.zarr"), mode="r").attrs["complete"] is True
    assert main(["analyze", str(tmp_path / "t.extxyz"), "-o", str(tmp_path / "d.zarr"), "--model", str(tiny_model),
                 "--scheduler", "local:1", "--profile"]) == 2  # fmt: skip
    assert "single-process" in capsys.readouterr().err


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU (run on the device machine)")
def test_gpu_worker_store_equals_single_process_gpu_run(tmp_path, tiny_model, client):
    make_traj(tmp_path / "t.extxyz", n_frames=10)
    a = analyze(tmp_path / "t.extxyz", tmp_path / "a.zarr", model=str(tiny_model), chunk_frames=4, progress=False,
                device="cuda")  # fmt: skip
    b = distributed(tmp_path / "t.extxyz", tmp_path / "b.zarr", tiny_model, client, device="cuda")
    # GPU sums use atomic adds in no fixed order: two GPU runs agree to float32 rounding,
    # not bit for bit (measured up to 6e-5 relative), whatever the mode
    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    for name in ("ms", "efg"):
        np.testing.assert_allclose(gb[name][:], ga[name][:], rtol=2e-4, atol=1e-4, err_msg=name)
    for name in ("time_ps", "frame_index", "cell"):
        np.testing.assert_array_equal(gb[name][:], ga[name][:])
    assert gb.attrs["complete"] is True and gb.attrs["frames_done"] == 10


def test_frame_index_of_a_read_only_folder_goes_to_the_cache(tmp_path, monkeypatch):
    """A shared, read-only data set: the index is kept in $DYNNMR_CACHE instead of failing."""
    make_traj(tmp_path / "t.extxyz", n_frames=5)
    cache = tmp_path / "cache"
    monkeypatch.setenv("DYNNMR_CACHE", str(cache))
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path else real(p, mode))
    index = frame_index(tmp_path / "t.extxyz")
    assert index.shape == (5, 2) and not (tmp_path / "t.extxyz.frames.npz").exists()
    saved = list(cache.glob("t.extxyz.*.frames.npz"))
    assert len(saved) == 1
    np.testing.assert_array_equal(frame_index(tmp_path / "t.extxyz"), index)  # loaded from there


def _worker_env():
    import os

    return {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "GOMP_SPINCOUNT")}


def test_local_workers_get_the_thread_count_and_the_short_spin(monkeypatch):
    """Local workers run with the threads asked for and this process's GOMP_SPINCOUNT
    (needed before torch loads libgomp in the worker)."""
    from dynnmr.distributed import local_client, thread_env

    monkeypatch.setenv("GOMP_SPINCOUNT", "1234")
    assert thread_env(3) == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "3",
                             "GOMP_SPINCOUNT": "1234"}  # fmt: skip
    with local_client(1, threads=2) as c:
        (env,) = c.run(_worker_env).values()
    assert env == {"OMP_NUM_THREADS": "2", "GOMP_SPINCOUNT": "1234"}
