"""The committed example trajectories: frame counts, cells, composition, times, temperatures,
and the structural numbers that make their NMR worth reading (trajectories/README.md)."""

import itertools
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from dynnmr import structure
from dynnmr.reader import iread_extxyz

TRAJ = Path(__file__).resolve().parents[1] / "trajectories"

# name: (frames, atoms, frame spacing in ps or None, temperature K or None)
EXPECTED = {
    "cristobalite_ramp.extxyz.gz": (537, 648, 0.8, None),
    "cristobalite_300K.extxyz.gz": (2000, 576, 0.01, 300.0),
    "cristobalite_900K.extxyz.gz": (2000, 648, 0.01, 900.0),
    "amorphous_sio2.extxyz.gz": (20, 3000, 0.1, 300.0),
    **{f"densities/glass_{d}gcc.extxyz.gz": (5, 648, 2.0, 300.0) for d in ("2.0", "2.2", "2.4", "2.6")},
    **{f"densities/test_glass_{d}gcc.extxyz.gz": (5, 648, 2.0, 300.0) for d in ("2.2", "2.6")},
    **{f"densities/calibration_glass_{d}gcc.extxyz.gz": (5, 648, 2.0, 300.0) for d in ("2.2", "2.4")},
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


def test_ramp_cools_through_the_inversion():
    """beta-cristobalite cooled 1100 -> 300 K: the cell shrinks by several per cent, most
    of it in one step (the first-order beta -> alpha inversion), not as a smooth drift."""
    frames = list(iread_extxyz(TRAJ / "cristobalite_ramp.extxyz.gz"))
    temps = np.array([float(f.info["temperature_K"]) for f in frames])
    vols = np.array([abs(np.linalg.det(f.cell)) for f in frames])
    assert temps[:25].mean() == pytest.approx(1100, rel=0.05) and temps[-25:].mean() == pytest.approx(300, rel=0.05)
    assert vols[-25:].mean() / vols[:25].mean() < 0.95
    smooth = np.convolve(vols, np.ones(15) / 15, mode="valid")
    steepest = np.max(smooth[:-15] - smooth[15:])  # largest drop over 15 frames (12 ps, about 25 K)
    assert steepest > 0.3 * (smooth[0] - smooth[-1])


def _network(name, frame=0):
    """Network descriptors of one frame, read with dynnmr's streaming reader (ase would
    index every frame of a 2,000-frame file first)."""
    f = list(itertools.islice(iread_extxyz(TRAJ / name), frame + 1))[frame]
    return structure.network(Atoms(numbers=f.numbers, positions=f.positions, cell=f.cell, pbc=True))


def test_glass_is_a_connected_network_at_its_density():
    """The 3,000-atom glass (trajectories/README.md): >= 98% 4-fold Si and 2-fold O, Si-O
    near the 1.61 A of vitreous silica, Si-O-Si spread of the width NMR reconstructs."""
    net = _network("amorphous_sio2.extxyz.gz")
    assert net["density_g_cm3"] == pytest.approx(2.2, abs=0.005)
    assert net["si_4fold"] >= 0.98 and net["o_2fold"] >= 0.98
    assert 1.60 < net["si_o_mean_A"] < 1.63
    assert 145 < net["si_o_si_mean_deg"] < 155 and 8 < net["si_o_si_std_deg"] < 16


@pytest.mark.parametrize(
    ("name", "density"),
    [
        *(("glass", d) for d in ("2.0", "2.2", "2.4", "2.6")),
        *(("test_glass", d) for d in ("2.2", "2.6")),
        *(("calibration_glass", d) for d in ("2.2", "2.4")),
    ],
)
def test_density_series(name, density):
    """The small glasses, the test and calibration glasses among them: at their density
    and regular."""
    net = _network(f"densities/{name}_{density}gcc.extxyz.gz", frame=4)
    assert net["density_g_cm3"] == pytest.approx(float(density), abs=0.005)
    assert net["si_4fold"] >= 0.95 and 1.60 < net["si_o_mean_A"] < 1.64


@pytest.mark.parametrize(
    ("name", "twin"),
    [
        ("test_glass_2.2gcc", "glass_2.2gcc"),
        ("test_glass_2.6gcc", "glass_2.6gcc"),
        ("calibration_glass_2.2gcc", "glass_2.2gcc"),
        ("calibration_glass_2.2gcc", "test_glass_2.2gcc"),
        ("calibration_glass_2.4gcc", "glass_2.4gcc"),
    ],
)
def test_test_glass_is_another_network(name, twin):
    """A test or calibration glass: another quench (another random start) than the other
    glasses of its density, not the same atoms in the same places."""
    a, b = (next(iread_extxyz(TRAJ / "densities" / f"{n}.extxyz.gz")) for n in (name, twin))
    d = np.linalg.solve(a.cell.T, (a.positions - b.positions).T).T
    assert np.median(np.linalg.norm(d - np.round(d), axis=1)) > 0.2  # random: about 0.48 of the cell


@pytest.mark.parametrize(
    ("name", "v_per_sio2"), [("cristobalite_300K.extxyz.gz", 42.8), ("cristobalite_900K.extxyz.gz", 46.4)]
)
def test_cristobalite_isotherms(name, v_per_sio2):
    """alpha at 300 K (experiment 42.8 A^3 per SiO2) within 3%; beta at 900 K, the cell of
    the ramp's beta phase near 900 K; every Si 4-fold (>= 97% in the hot beta phase)."""
    net = _network(name)
    assert net["volume_per_SiO2_A3"] == pytest.approx(v_per_sio2, rel=0.03)
    assert net["si_4fold"] >= (1.0 if "300K" in name else 0.97)
    assert 1.60 < net["si_o_mean_A"] < 1.63
