"""NMR isotope table: spin, quadrupole moment and gyromagnetic ratio.

Sources (one per quantity, so values are traceable):

* Quadrupole moments Q (millibarn): P. Pyykko, "Year-2008 nuclear quadrupole
  moments", Mol. Phys. 106, 1965-1974 (2008). These are also the values CASTEP
  prints in its magres readout (e.g. 17O -25.58 mb, 14N 20.44 mb, 2H 2.860 mb).
* Spins and gyromagnetic ratios gamma/2pi (MHz/T): R. K. Harris et al., "NMR
  nomenclature. Nuclear spin properties and conventions for chemical shifts (IUPAC
  Recommendations 2001)", Pure Appl. Chem. 73, 1795-1818 (2001), Table 1
  (Xi-derived gamma values divided by 2pi).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Isotope:
    """One NMR isotope. ``gamma_mhz_per_t`` is gamma / 2pi in MHz/T (signed)."""

    name: str  # e.g. "17O"
    element: str
    spin: float
    quadrupole_moment_mb: float  # 0 for I = 1/2
    gamma_mhz_per_t: float

    @property
    def is_quadrupolar(self) -> bool:
        return self.spin >= 1.0

    def larmor_mhz(self, field_t: float) -> float:
        """Larmor frequency nu_0 = gamma B0 / 2pi in MHz at ``field_t`` Tesla (signed)."""
        return self.gamma_mhz_per_t * field_t


_TABLE = [
    # name, element, I, Q (mb, Pyykko 2008), gamma/2pi (MHz/T, Harris 2001)
    ("1H", "H", 0.5, 0.0, 42.577478),
    ("2H", "H", 1.0, 2.860, 6.5359),
    ("7Li", "Li", 1.5, -40.0, 16.5483),
    ("9Be", "Be", 1.5, 52.88, -5.9837),
    ("11B", "B", 1.5, 40.59, 13.6630),
    ("13C", "C", 0.5, 0.0, 10.7084),
    ("14N", "N", 1.0, 20.44, 3.0777),
    ("15N", "N", 0.5, 0.0, -4.3173),
    ("17O", "O", 2.5, -25.58, -5.7743),
    ("19F", "F", 0.5, 0.0, 40.0776),
    ("23Na", "Na", 1.5, 104.0, 11.2694),
    ("25Mg", "Mg", 2.5, 199.4, -2.6084),
    ("27Al", "Al", 2.5, 146.6, 11.1031),
    ("29Si", "Si", 0.5, 0.0, -8.4655),
    ("31P", "P", 0.5, 0.0, 17.2515),
    ("33S", "S", 1.5, -67.8, 3.2717),
    ("35Cl", "Cl", 1.5, -81.65, 4.1765),
    ("39K", "K", 1.5, 58.5, 1.9895),
    ("43Ca", "Ca", 3.5, -40.8, -2.8697),
    ("87Rb", "Rb", 1.5, 133.5, 13.9840),
    ("87Sr", "Sr", 4.5, 305.0, -1.8525),
    ("133Cs", "Cs", 3.5, -3.43, 5.6234),
]

ISOTOPES: dict[str, Isotope] = {row[0]: Isotope(*row) for row in _TABLE}

#: Default isotope per element where the table has more than one: the nucleus solid-state
#: NMR usually observes (1H, not 2H; 15N, not the quadrupolar 14N with its broad lines).
#: Others by name (``--isotope N=14N``, ``--isotope H=2H``).
_USUAL = {"H": "1H", "N": "15N"}

#: Default isotope per element: :data:`_USUAL`, else the element's one tabulated NMR isotope
#: (13C, 17O, 29Si, ...).
DEFAULT_ISOTOPE: dict[str, str] = {}
for _iso in ISOTOPES.values():
    DEFAULT_ISOTOPE.setdefault(_iso.element, _USUAL.get(_iso.element, _iso.name))


def get_isotope(name: str) -> Isotope:
    """Look up an isotope by name (``"17O"``) or element symbol (default isotope)."""
    if name in ISOTOPES:
        return ISOTOPES[name]
    if name in DEFAULT_ISOTOPE:
        return ISOTOPES[DEFAULT_ISOTOPE[name]]
    raise KeyError(f"unknown isotope or element {name!r}; known isotopes: {', '.join(ISOTOPES)}")


def isotope_for(element: str, overrides: dict[str, str] | None = None) -> Isotope | None:
    """The isotope used for ``element``: an override (``{"O": "17O"}``) or the default."""
    if overrides and element in overrides:
        iso = get_isotope(overrides[element])
        if iso.element != element:
            raise ValueError(f"isotope {iso.name} does not belong to element {element}")
        return iso
    name = DEFAULT_ISOTOPE.get(element)
    return ISOTOPES[name] if name else None
