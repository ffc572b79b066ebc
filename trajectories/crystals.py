"""Experimental crystal structures of alpha-quartz and alpha-cristobalite (extended XYZ).

alpha-quartz: L. Levien, C. T. Prewitt, D. J. Weidner, Am. Mineral. 65, 920 (1980),
P3_221, a = 4.9134 A, c = 5.4052 A, Si (0.4697, 0, 0), O (0.4135, 0.2669, 0.1191)
(origin shifted by 2c/3 to match ase's setting of space group 154).
alpha-cristobalite: J. J. Pluth, J. V. Smith, J. Faber, J. Appl. Phys. 57, 1045 (1985),
P4_12_12, a = 4.9717 A, c = 6.9223 A, Si (0.3003, 0.3003, 0), O (0.2392, 0.1044, 0.1787).
These are the geometries behind the experimental 17O and 29Si parameters we compare to,
so model and cluster-DFT values can be set against experiment without MD bias.

    python trajectories/crystals.py   # writes alpha_quartz.extxyz, alpha_cristobalite.extxyz
"""

from pathlib import Path

from ase.io import write
from ase.spacegroup import crystal

HERE = Path(__file__).parent
STRUCTURES = {
    "alpha_quartz": dict(symbols=["Si", "O"], basis=[(0.4697, 0.0, 2 / 3), (0.4135, 0.2669, 0.1191 + 2 / 3)],
                         spacegroup=154, cellpar=[4.9134, 4.9134, 5.4052, 90, 90, 120]),
    "alpha_cristobalite": dict(symbols=["Si", "O"], basis=[(0.3003, 0.3003, 0.0), (0.2392, 0.1044, 0.1787)],
                               spacegroup=92, cellpar=[4.9717, 4.9717, 6.9223, 90, 90, 90]),
}  # fmt: skip


def build(name):
    return crystal(**STRUCTURES[name])


if __name__ == "__main__":
    for name in STRUCTURES:
        write(HERE / f"{name}.extxyz", build(name), format="extxyz")
        print(f"wrote {name}.extxyz")
