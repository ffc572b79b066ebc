"""The committed example trajectories: frame counts, cells, composition, times, temperatures."""

from pathlib import Path

import numpy as np
import pytest

from dynnmr.reader import iread_extxyz

TRAJ = Path(__file__).resolve().parents[1] / "trajectories"

# name: (frames, atoms, frame spacing in ps or None, temperature K or None)
EXPECTED = {
    "cristobalite_ramp.extxyz.gz": (551, 576, 0.6, None),
    "cristobalite_300K.extxyz.gz": (2000, 576, 0.01, 300.0),
    "cristobalite_900K.extxyz.gz": (2000, 576, 0.01, 900.0),
    "amorphous_sio2.extxyz.gz": (20, 3000, 0.1, 300.0),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_committed_trajectory(name):
    n_frames, n_atoms, spacing, temperature = EXPECTED[name]
    frames = list(iread_extxyz(TRAJ / name))
    assert len(frames) == n_frames
    f0 = frames[0]
    assert len(f0.numbers) == n_atoms
    assert np.sum(f0.numbers == 8) == 2 * np.sum(f0.numbers == 14) and set(f0.numbers) == {8, 14}
    assert all(np.array_equal(f.numbers, f0.numbers) for f in frames)
    cells = np.array([f.cell for f in frames])
    assert np.abs(cells * (1 - np.eye(3))).max() < 1e-9 and (np.diagonal(cells, axis1=1, axis2=2) > 10).all()
    times = np.array([f.time_ps for f in frames])
    np.testing.assert_allclose(np.diff(times), spacing, rtol=1e-3)
    temps = np.array([float(f.info["temperature_K"]) for f in frames])
    if temperature is not None:
        assert abs(temps.mean() - temperature) < 0.05 * temperature
    frac = [np.linalg.solve(f.cell.T, f.positions.T).T for f in frames[:: max(1, n_frames // 10)]]
    assert all(((x > -1e-6) & (x < 1 + 1e-6)).all() for x in frac), "positions wrapped into the cell"


def test_ramp_heats_and_expands():
    frames = list(iread_extxyz(TRAJ / "cristobalite_ramp.extxyz.gz"))
    temps = np.array([float(f.info["temperature_K"]) for f in frames])
    vols = np.array([abs(np.linalg.det(f.cell)) for f in frames])
    assert temps[:25].mean() == pytest.approx(300, rel=0.05) and temps[-25:].mean() == pytest.approx(900, rel=0.05)
    assert vols[-25:].mean() / vols[:25].mean() > 1.03  # the beta phase is less dense


def test_amorphous_density():
    f = next(iread_extxyz(TRAJ / "amorphous_sio2.extxyz.gz"))
    mass_g = (np.sum(f.numbers == 14) * 28.0855 + np.sum(f.numbers == 8) * 15.999) / 6.02214076e23
    density = mass_g / (abs(np.linalg.det(f.cell)) * 1e-24)
    assert density == pytest.approx(2.2, abs=0.005)
