"""Silica network descriptors against crystallographic values and hand-made defects."""

import itertools
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.io import read

from dynnmr import structure
from dynnmr.reader import iread_extxyz
from dynnmr.structure import c_over_a, order_parameters, running_mean, transition_temperature

DATA = Path(__file__).resolve().parents[1] / "dynnmr" / "data"


def test_quartz_and_cristobalite_against_their_crystal_structures():
    """Le Page & Donnay (1976) quartz: Si-O 1.605/1.613 A, Si-O-Si 143.7 deg, 37.7 A^3 per SiO2,
    2.65 g/cm^3; Pluth et al. (1985) cristobalite: Si-O 1.603 A, Si-O-Si 146.5 deg."""
    q = structure.network(read(DATA / "alpha_quartz.extxyz").repeat((2, 2, 2)))
    assert q["si_4fold"] == 1.0 and q["o_2fold"] == 1.0
    assert q["si_o_mean_A"] == pytest.approx(1.609, abs=0.001)
    assert q["si_o_si_mean_deg"] == pytest.approx(143.7, abs=0.1) and q["si_o_si_std_deg"] < 1e-6
    assert q["volume_per_SiO2_A3"] == pytest.approx(37.67, abs=0.01)
    assert q["density_g_cm3"] == pytest.approx(2.649, abs=0.002)
    assert q["o_si_o_mean_deg"] == pytest.approx(109.47, abs=0.05)  # the mean of a tetrahedron's six angles
    c = structure.network(read(DATA / "alpha_cristobalite.extxyz"))
    assert c["si_o_mean_A"] == pytest.approx(1.603, abs=0.001)
    assert c["si_o_si_mean_deg"] == pytest.approx(146.5, abs=0.1)


def test_angles_agree_with_ase_and_defects_are_counted():
    atoms = read(DATA / "alpha_quartz.extxyz").repeat((2, 2, 2))
    o = int(np.flatnonzero(atoms.numbers == 8)[0])
    i, j, _ = structure.si_o_bonds(atoms)
    si = j[i == o]
    assert len(si) == 2
    angles = structure.si_o_si_angles(atoms)
    assert angles[0] == pytest.approx(atoms.get_angle(int(si[0]), o, int(si[1]), mic=True), abs=1e-8)
    del atoms[o]  # two Si become 3-fold
    net = structure.network(atoms)
    n_si = int(np.sum(atoms.numbers == 14))
    assert net["si_4fold"] == pytest.approx((n_si - 2) / n_si)
    assert net["si_coordination"] == {3: pytest.approx(2 / n_si), 4: pytest.approx((n_si - 2) / n_si)}
    assert net["o_2fold"] == 1.0  # every remaining O still bridges


def test_averaged_positions_undo_wrapping():
    """A frame whose atoms crossed the cell boundary averages to the structure, not to the cell centre."""
    atoms = read(DATA / "alpha_cristobalite.extxyz")
    shifted = atoms.copy()
    shifted.positions += 0.3 * atoms.cell[0] / np.linalg.norm(atoms.cell[0])
    back = shifted.copy()
    back.positions -= 0.6 * atoms.cell[0] / np.linalg.norm(atoms.cell[0])
    for a in (shifted, back):
        a.wrap()
    avg = structure.averaged_positions([shifted, back])
    d = avg.get_scaled_positions(wrap=False) - atoms.get_scaled_positions(wrap=False)  # +0.3 and -0.3 A average to 0
    assert np.abs(d - np.round(d)).max() < 1e-9
    assert structure.network(avg)["si_o_mean_A"] == pytest.approx(1.603, abs=0.001)


def test_order_parameters_see_the_beta_phase_at_the_start_of_the_ramp():
    """Dynamic disorder of beta-cristobalite: averaged O positions straighten Si-O-Si, the
    instantaneous ones stay bent; the cubic supercell reads c/a = sqrt(2)."""
    ramp = Path(__file__).resolve().parents[1] / "trajectories" / "cristobalite_ramp.extxyz.gz"
    frames = [Atoms(numbers=f.numbers, positions=f.positions, cell=f.cell, pbc=True)
              for f in itertools.islice(iread_extxyz(ramp), 12)]  # fmt: skip
    p = order_parameters(frames, repeat=None, window=10)
    assert np.mean(p["angle_avg"]) > np.mean(p["angle_inst"]) + 8  # about 167 against 152 deg
    assert abs(np.mean(p["c_over_a"]) - np.sqrt(2)) < 0.02
    assert c_over_a([10.0, 10.0, 10.0]) == pytest.approx(np.sqrt(2))
    steps = np.r_[np.zeros(100), np.ones(100)]
    assert np.allclose(running_mean(np.full(50, 3.0)), 3.0)
    assert transition_temperature(np.arange(200.0), steps) == pytest.approx(100, abs=2)
