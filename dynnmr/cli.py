"""The ``dynnmr`` command line: one subcommand per job, each a thin layer over the API."""

from __future__ import annotations

import argparse
import functools
import math
import sys
from pathlib import Path

from . import formats
from .errors import InputError, StoreBusy


def _key_values(items, what):
    """Parse ``["O=17O", "Si=29Si"]`` into a dict; a clear error for a malformed item."""
    out = {}
    for item in items or []:
        for part in item.split(","):
            key, sep, value = part.partition("=")
            if not sep or not key or not value:
                raise SystemExit(f"dynnmr: error: --{what} expects ELEMENT=VALUE, got {part!r}")
            out[key.strip()] = value.strip()
    return out


def cmd_params(args):
    from . import params, tensorfiles

    if formats.detect(args.input).name == "store":
        from .analysis import store_as_atoms

        images = [store_as_atoms(args.input)]  # each site's time-averaged tensors
    else:
        images = tensorfiles.read(args.input)
    isotopes = _key_values(args.isotope, "isotope")
    given = {k: float(v) for k, v in _key_values(args.reference, "reference").items()}
    refs = {**tensorfiles.shift_references(images), **given} or None  # the file's, unless given
    stem = Path(args.input).name
    names = (
        [images[0].info.get("structure_id", stem)]
        if len(images) == 1
        else [a.info.get("structure_id", f"{stem}:{k}") for k, a in enumerate(images)]
    )
    rows = params.site_table(images, names=names, isotopes=isotopes, references=refs)
    if args.species:
        rows = [r for r in rows if r["species"] in args.species.split(",")]
    if not rows:
        raise InputError(args.input, "no atom carries an ms or efg tensor")
    if args.output:
        with open(args.output, "w", newline="") as fh:
            params.write_csv(rows, fh, comment=tensorfiles.provenance(args.input))
        _info(args, f"wrote {len(rows)} sites to {args.output}")
    else:
        sys.stdout.write(params.format_table(rows))
    return 0


def cmd_train(args):
    from .train import log_stderr, train

    log = (lambda message: None) if args.quiet else log_stderr
    if args.vary:
        from .compare import compare
        from .config import parse_setting

        if args.seed is not None or args.split_seed is not None:
            raise SystemExit("dynnmr train: --vary takes its seeds from --seeds, not --seed/--split-seed")
        try:
            vary = dict(parse_setting(v) for v in args.vary)
        except ValueError as exc:
            raise SystemExit(f"dynnmr train: {exc}") from None
        compare(args.config, args.output, vary, args.learning_curve or [1.0], args.seeds, epochs=args.epochs, log=log)
        return 0
    if args.learning_curve:
        from .learning_curve import learning_curve

        if args.seed is not None or args.split_seed is not None:
            raise SystemExit("dynnmr train: --learning-curve takes its seeds from --seeds, not --seed/--split-seed")
        learning_curve(args.config, args.output, args.learning_curve, args.seeds, epochs=args.epochs, log=log)
        return 0
    train(args.config, args.output, epochs=args.epochs, seed=args.seed, split_seed=args.split_seed, log=log)
    return 0


def cmd_predict(args):
    from . import tensorfiles
    from .inference import predict_images, resolve_device
    from .modelfile import load_model

    device = resolve_device(args.device)
    model, info = load_model(args.model, device=device)
    images = tensorfiles.read(args.input)
    for atoms in images:  # predictions replace any tensors already in the file
        for t in info["targets"]:
            for name in (t, f"{t}_std", f"{t}_param_std"):
                atoms.arrays.pop(name, None)
    predict_images(model, info, images, device=device, allow_unknown=args.allow_unknown, source=args.input,
                   uncertainty=args.uncertainty)  # fmt: skip
    tensorfiles.write_extxyz(args.output, images)
    n = sum(len(a) for a in images)
    _info(args, f"wrote {len(images)} structure(s), {n} atoms, with {', '.join(info['targets'])} to {args.output}")
    return 0


def _analysis_spec(args, device):
    from .spec import AnalysisSpec

    return AnalysisSpec(
        args.trajectory, args.output, model=args.model, frames=args.frames, species=args.species, dt_ps=args.dt,
        md_timestep_ps=args.md_timestep, chunk_frames=args.chunk_frames, batch_atoms=args.batch_atoms, device=device,
        graphs=args.graphs, fmt=args.format, topology=args.topology, save_positions=args.save_positions,
        allow_unknown=args.allow_unknown, resume=args.resume, overwrite=args.overwrite, correlate=args.correlate,
        progress=not args.quiet, uncertainty=args.uncertainty,
    )  # fmt: skip


def cmd_analyze(args):
    from .analysis import format_summary, summarize
    from .engine import Profile, analyze

    if args.scheduler:
        return _analyze_distributed(args)
    prof = Profile()
    out = analyze(_analysis_spec(args, args.device), profile=prof)
    _info(args, f"wrote {out}: {prof.frames} frames this run")
    print(format_summary(*summarize(out, flagged=True)))
    if args.profile:
        print(prof.report(), file=sys.stderr)
    return 0


def _analyze_distributed(args):
    from .analysis import format_summary, summarize
    from .distributed import analyze_distributed, client_for

    if args.profile:
        raise ValueError("--profile is a single-process option")
    device = "cpu" if args.device == "auto" else args.device  # each worker's device; auto means the driver's
    spec = _analysis_spec(args, device)
    with client_for(args.scheduler, args.worker_threads) as client:
        out = analyze_distributed(spec, client, threads=args.worker_threads)
    print(format_summary(*summarize(out, flagged=True)))
    return 0


def cmd_dynamics(args):
    import json

    from .dynamics import analyse_store

    res = analyse_store(args.store, window_ps=args.window, field_t=args.field, species=args.species,
                        max_lag_ps=args.max_lag, allow_incomplete=args.allow_incomplete)  # fmt: skip
    cols = ["sigma_iso_ppm_avg", "abs_Cq_MHz_avg", "eta_Q_avg", "tau_c_ps", "R1_per_s", "R1_ct_per_s"]
    print("species  " + "  ".join(f"{c:>22}" for c in cols) + "  resolved")
    for el, d in res["species"].items():
        cells = []
        for c in cols:
            err = (
                d.get(c.replace("_ps", "_err_ps").replace("_per_s", "_err_per_s"))
                if c.startswith(("tau", "R1"))
                else d.get(c.replace("_avg", "_model_sd"))  # the committee's uncertainty, when stored
            )
            if c not in d:
                cells.append(f"{'-':>22}")
            elif err is not None and err == err:
                cells.append(f"{f'{d[c]:.4g} +- {err:.2g}':>22}")
            else:
                cells.append(f"{d[c]:22.5g}")
        print(f"{el:>7}  " + "  ".join(cells) + f"  {'yes' if d['resolved'] else 'NO'}")
    for el, d in res["species"].items():
        for key, label, unit in (("window_sigma_iso_ppm", "sigma_iso", "ppm"), ("window_abs_Cq_MHz", "|C_Q|", "MHz")):
            if key in d:
                w = d[key]
                print(f"{el:>7}  {w['n_windows']} windows of {res['window_ps']:g} ps: {label} {w['mean']:.4g} +- "
                      f"{w['sd_over_windows_and_sites']:.2g} {unit} (mean, sd over windows and sites)")  # fmt: skip
    for el, d in res["species"].items():
        for w in d["warnings"]:
            print(f"warning: {el}: {w}", file=sys.stderr)
    print("(averages are over sites of each site's time-averaged tensor; tau_c of the l=2 EFG fluctuation where "
          "there is one, else the shielding's; R1: non-selective initial rate, R1_ct: central-transition-selective; "
          "errors: standard errors over time blocks; +- on averages: the committee's model sd of one site)")  # fmt: skip
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)
        _info(args, f"wrote {args.json}")
    return 0


def _deprecated(args, old, new):
    """A one-line warning for an option spelling kept for one release."""
    if not getattr(args, "quiet", False):
        print(f"warning: {old} is deprecated and will be removed; use {new}", file=sys.stderr)


def _observed_isotope(args):
    """The isotope a spectrum observes: ``--isotope`` (``17O`` or ``O=17O``; the old
    ``--nucleus``), else the usual NMR nucleus of ``--species``; both must agree."""
    from .isotopes import get_isotope

    name = args.isotope or args.nucleus
    if args.nucleus:
        _deprecated(args, "--nucleus", "--species EL (its usual isotope) or --isotope ISO")
    if name:
        iso = get_isotope(name.partition("=")[2] or name)
        if args.species and args.species != iso.element:
            raise ValueError(f"--isotope {iso.name} is not an isotope of --species {args.species}")
        return iso
    if not args.species:
        raise ValueError("give --species EL (e.g. --species O for 17O) or --isotope ISO")
    return get_isotope(args.species)


def cmd_spectrum(args):
    import numpy as np

    from . import tensors as T
    from .spec import parse_frames
    from .spectrum import (
        broaden,
        fraction_outside,
        plot_spectrum,
        provisional_range,
        site_tensors,
        static_spectrum,
        support_range,
    )
    from .tensorfiles import provenance

    iso = _observed_isotope(args)
    ms, efg, ref = site_tensors(args.input, iso.element, args.average, args.window,
                                parse_frames(args.frames) if args.frames else None,
                                allow_incomplete=args.allow_incomplete)  # fmt: skip
    refs = {k: float(v) for k, v in _key_values(args.reference, "reference").items()}
    ref = refs.get(iso.element, ref)
    if ms is None and efg is None:
        raise InputError(args.input, f"no {iso.element} tensors to simulate")
    if ms is not None and ref is None:
        raise InputError(
            args.input, f"no shift reference for {iso.element}: give --reference {iso.element}=SIGMA_REF_PPM"
        )
    lo, hi = args.range if args.range is not None else (-300.0, 200.0)  # MQMAS keeps a fixed default
    n = len(ms if ms is not None else efg)
    if args.export_mrsim:
        from .mrsim import save_spin_systems

        save_spin_systems(args.export_mrsim, iso.name, ms, ref, efg)
        _info(args, f"wrote {n} mrsimulator spin systems to {args.export_mrsim}")
    if args.mqmas:
        from .mrsim import simulate
        from .spectrum import plot_2d

        direct, iso_ppm, z = simulate(iso.name, args.field, ms, ref, efg, experiment="mqmas", ppm_range=(lo, hi),
                                      points=args.points, iso_points=args.iso_points)  # fmt: skip
        if args.output:
            with open(args.output, "w") as fh:
                fh.write(provenance(args.input) + f"# {iso.name} 3QMAS, {args.field:g} T\n")
                fh.write("ppm_direct,ppm_iso,intensity\n")
                fh.writelines(
                    f"{a:.6f},{b:.6f},{z[j, i]:.8g}\n" for j, b in enumerate(iso_ppm) for i, a in enumerate(direct)
                )
        if args.plot:
            plot_2d(direct, iso_ppm, z, iso.name, args.field, args.plot,
                    description=provenance(args.input).lstrip("# ").strip())  # fmt: skip
        _info(args, f"{iso.name} 3QMAS at {args.field:g} T: {n} tensors")
        return 0
    mas = args.mas is not None or args.rotor_angle is not None
    spinning = float("inf") if args.mas is None or args.mas.lower() == "inf" else float(args.mas)
    angle = 54.7356 if args.rotor_angle is None else args.rotor_angle
    shift = T.shift_tensor(ms, ref) if ms is not None else None

    def simulate_1d(lo, hi, points):
        if mas:
            from .mrsim import simulate

            ppm, y = simulate(iso.name, args.field, ms, ref, efg, spinning_hz=spinning, rotor_angle_deg=angle,
                              ppm_range=(lo, hi), points=points)  # fmt: skip
            return ppm, broaden(y, abs(ppm[1] - ppm[0]), args.broadening)
        ppm = np.linspace(hi, lo, points)
        return ppm, static_spectrum(ppm, iso.name, args.field, shift=shift, efg=efg, transitions=args.transitions,
                                    zcw_index=args.zcw, broadening_ppm=args.broadening)  # fmt: skip

    # a first look over a range sure to hold every line (sidebands included), then either the
    # range where the intensity is, or the given one with a warning if it cuts intensity off
    wide = provisional_range(iso.name, args.field, shift, efg, args.transitions, args.broadening)
    if mas and np.isfinite(spinning):  # sidebands: the spinning rate in ppm, a few orders out
        sideband_ppm = spinning / abs(iso.larmor_mhz(args.field))
        wide = (wide[0] - 4 * sideband_ppm, wide[1] + 4 * sideband_ppm)
    ppm, y = simulate_1d(*wide, max(args.points, 8192))
    if args.range is None:
        lo, hi = support_range(ppm, y)
    else:
        outside = fraction_outside(ppm, y, lo, hi)
        if outside > 0.005:
            span = support_range(ppm, y, margin=0)
            print(f"warning: {100 * outside:.1f}% of the intensity lies outside --range {lo:g}:{hi:g} ppm "
                  f"(it spans about {span[0]:.0f}:{span[1]:.0f} ppm)", file=sys.stderr)  # fmt: skip
    ppm, y = simulate_1d(lo, hi, args.points)
    what = "time-averaged tensor per site" if args.average == "run" else (
        "tensors averaged per window" if args.average == "window" else "every frame's tensors")  # fmt: skip
    if mas:
        title = f"{iso.name} {'MAS' if abs(angle - 54.7356) < 1e-3 else f'VAS {angle:g} deg'}, " \
                f"{'infinite speed' if np.isinf(spinning) else f'{spinning / 1e3:g} kHz'}, {args.field:g} T"  # fmt: skip
    else:
        title = f"static {iso.name}, {args.field:g} T"
    if formats.detect(args.input).name == "store":
        title += f"; {what}"
    if args.output:
        with open(args.output, "w") as fh:
            fh.write(provenance(args.input) + f"# {title}\n")
            fh.write("ppm,intensity\n")
            fh.writelines(f"{a:.6f},{b:.8g}\n" for a, b in zip(ppm, y))
    if args.plot:
        plot_spectrum(ppm, y, iso.name, args.field, args.plot, title=title,
                      description=provenance(args.input).lstrip("# ").strip() + f"; {title}")  # fmt: skip
    cog = f"centre of gravity {(ppm * y).sum() / y.sum():.2f} ppm" if y.sum() > 0 else "no intensity in the range"
    _info(args, f"{iso.name} at {args.field:g} T: {n} tensors, {cog} ({ppm.min():.1f} to {ppm.max():.1f} ppm)")
    return 0


def cmd_label(args):
    from .label import frame_to_atoms, label_sites
    from .reader import iread
    from .spec import parse_frames

    if args.threads:
        from pyscf import lib

        lib.num_threads(args.threads)
    frames = (
        (f.index, frame_to_atoms(f)) for f in iread(args.input, parse_frames(args.frames), topology=args.topology)
    )
    if args.sites:
        _deprecated(args, "--sites", "--species")
    species = args.sites or args.species
    images = label_sites(frames, args.output, Path(args.input).name, species=species.split(","),
                         properties=args.properties.split(","), max_sites=args.max_sites, shells=args.shells,
                         xc=args.xc, basis=args.basis, centre_basis=args.centre_basis, seed=args.seed,
                         select_by=args.select_by, random_share=args.random_share,
                         new_atoms=args.new_atoms)  # fmt: skip
    n = sum(int((a.arrays["label_status"] == 1).sum()) for a in images)
    _info(args, f"{args.output}: {n} labelled sites in {len(images)} frames")
    return 0


def _number(kind, low=None, high=None, low_open=False):
    """argparse type: a finite number of ``kind`` within [low, high] (low excluded if low_open),
    rejected before any work with the option's own words."""

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {'whole ' if kind is int else ''}number: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
        if low is not None and (value <= low if low_open else value < low):
            raise argparse.ArgumentTypeError(f"must be {'>' if low_open else '>='} {low}, got {text!r}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high}, got {text!r}")
        return value

    return parse


POSITIVE = _number(float, 0, low_open=True)
NON_NEGATIVE = _number(float, 0)
COUNT = _number(int, 1)


def _ppm_range(text):
    """argparse type for LO:HI (ppm), LO < HI."""
    try:
        lo, hi = (float(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects LO:HI in ppm, got {text!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise argparse.ArgumentTypeError(f"expects LO < HI, got {text!r}")
    return lo, hi


def _frames(text):
    """argparse type for start:stop:step."""
    from .spec import parse_frames

    try:
        parse_frames(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("--frames ", "")) from None
    return text


def _element(text):
    """argparse type for one element symbol."""
    names = _elements(text)
    if "," in names:
        raise argparse.ArgumentTypeError(f"one element, not {text!r}")
    return names


def _elements(text):
    """argparse type for a comma-separated list of element symbols."""
    from ase.data import atomic_numbers

    names = [s.strip() for s in text.split(",")]
    bad = [s for s in names if s not in atomic_numbers or not s]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown element(s): {', '.join(repr(s) for s in bad) or repr(text)}")
    return ",".join(names)


def _info(args, message):
    """A line of information on stderr, unless the command runs with -q."""
    if not getattr(args, "quiet", False):
        print(message, file=sys.stderr)


class _Help(argparse.RawDescriptionHelpFormatter):
    """Every option's default in its help (unless the help already states it)."""

    def _get_help_string(self, action):
        text = action.help or ""
        shown = "default" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings
        return text if shown else f"{text} (default: %(default)s)"


def _inference_options(q):
    """The options of ``predict`` and ``analyze`` that choose the model and how it runs."""
    from . import DEFAULT_MODEL

    q.add_argument("--model", default=DEFAULT_MODEL, help=f"bundled model name or model file (default {DEFAULT_MODEL})")
    q.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="where the model runs; auto: a GPU when one is visible",
    )
    q.add_argument("--allow-unknown", action="store_true", help="NaN for elements the model has never seen")
    q.add_argument(
        "--no-uncertainty",
        dest="uncertainty",
        action="store_false",
        help="skip the committee spread (ms_std, efg_std, *_param_std) of a committee model",
    )


def build_parser():
    p = argparse.ArgumentParser(prog="dynnmr", description="Dynamic solid-state NMR from molecular dynamics.")
    from . import __version__

    p.add_argument("--version", action="version", version=f"dynnmr {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress or information lines on stderr")
    common.add_argument("-v", "--verbose", action="store_true",
                        help="also the Python traceback of an error (for a bug report)")  # fmt: skip
    sub = p.add_subparsers(dest="command", required=True, parser_class=functools.partial(
        argparse.ArgumentParser, parents=[common], formatter_class=_Help))  # fmt: skip

    q = sub.add_parser("params", help="per-site NMR parameters from a tensor file (magres, extxyz, JSON)")
    q.add_argument(
        "input",
        help="tensor file (CASTEP .magres, extended XYZ with ms/efg, silicate JSON) or a dynnmr store (each site's time-averaged tensors)",
    )
    q.add_argument("-o", "--output", help="write CSV here instead of printing a table")
    q.add_argument("--species", type=_elements, help="only these elements' sites, e.g. O (default all)")
    q.add_argument("--isotope", action="append", metavar="EL=ISO",
                   help="isotope per element for C_Q, e.g. N=14N (default: the usual NMR nucleus)")  # fmt: skip
    q.add_argument(
        "--reference", action="append", metavar="EL=PPM",
        help="shielding reference sigma_ref (ppm) per element; adds delta_iso_ppm = sigma_ref - sigma_iso",
    )  # fmt: skip
    q.set_defaults(func=cmd_params)

    q = sub.add_parser("train", help="train a tensor model from a YAML config (resumes from a checkpoint)")
    q.add_argument("config", help="YAML config (see configs/silicate-29si.yaml)")
    q.add_argument("-o", "--output", required=True, help="output folder: checkpoint, metrics.json, plots, model")
    q.add_argument("--epochs", type=int, help="override the config's maximum number of epochs")
    q.add_argument("--seed", type=int,
                   help="override training.seed (initial weights, shuffling); the split keeps split.seed")  # fmt: skip
    q.add_argument("--split-seed", type=int,
                   help="override split.seed: other test/validation structures (to judge a recipe on more of the data)")  # fmt: skip
    q.add_argument("--learning-curve", type=float, nargs="+", metavar="FRACTION",
                   help="train on these nested shares of the training structures (e.g. 0.1 0.25 0.5 1), same "
                        "validation and test; writes learning_curve.json/.png in the output folder")  # fmt: skip
    q.add_argument("--vary", action="append", metavar="SECTION.KEY=V1,V2",
                   help="compare variants of the config, e.g. model.readout=linear,tensor_product (repeat for "
                        "every combination, e.g. also model.lmax=1,2): each trains per --seeds (and "
                        "--learning-curve shares); writes comparison.json/.md/.png, accuracy and atoms/s")  # fmt: skip
    q.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="training seeds per share with --learning-curve or --vary (default 0 1 2)")  # fmt: skip
    q.set_defaults(func=cmd_train)

    q = sub.add_parser("predict", help="predict ms/efg tensors for structures; writes extended XYZ")
    q.add_argument("input", help="any structure file ase reads, or a dynnmr tensor format")
    q.add_argument("-o", "--output", required=True, help="output extended XYZ (ms ppm, efg au; 9 columns each)")
    _inference_options(q)
    q.set_defaults(func=cmd_predict)

    q = sub.add_parser(
        "analyze",
        help="stream a trajectory through a model into a zarr store of tensor time series",
        epilog="input formats (chosen by name, or with --format):\n" + formats.table(),
    )
    q.add_argument("trajectory", help="extended XYZ (.gz too), DCD/XTC/TRR (+ --topology), ASE .traj, LAMMPS dump")
    q.add_argument("-o", "--output", help="store path (default TRAJ.nmr.zarr)")
    _inference_options(q)
    q.add_argument("--frames", type=_frames, help="start:stop:step of the file's frames (default all)")
    q.add_argument("--dt", type=POSITIVE, help="ps between the file's frames, when the file has no times")
    q.add_argument(
        "--md-timestep", type=POSITIVE, help="ps per MD step, to time frames by their step number (LAMMPS dump)"
    )
    q.add_argument("--species", type=_elements, help="elements to store, e.g. Si,O (default: all the model covers)")
    q.add_argument("--chunk-frames", type=COUNT, default=64, help="frames per store chunk (default 64)")
    q.add_argument("--batch-atoms", type=COUNT, help="atoms per inference batch (default 4000 on CPU, 100000 on GPU)")
    q.add_argument(
        "--graphs",
        default="auto",
        choices=["auto", "cpu", "device"],
        help="neighbour lists in the reader thread (cpu) or on the model's device (default: device if GPU)",
    )
    q.add_argument(
        "--format", help="force an input format: extxyz, magres, silicate-json, mdanalysis, or an ase format name"
    )
    q.add_argument("--topology", help="topology naming the elements, for DCD/XTC/TRR (read with MDAnalysis)")
    q.add_argument("--resume", action="store_true", help="continue an interrupted run into the same store")
    q.add_argument("--overwrite", action="store_true", help="replace an existing store")
    q.add_argument("--save-positions", action="store_true", help="also store the selected sites' positions")
    q.add_argument(
        "--correlate",
        action="store_true",
        help="multiple-tau autocorrelations per irrep into the store's analysis/ group, once it is written",
    )
    q.add_argument("--profile", action="store_true", help="print time per stage at the end (start-up apart)")
    q.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on a dask cluster: tcp://HOST:PORT of its scheduler, or local:N for N local workers",
    )
    q.add_argument("--worker-threads", type=COUNT, help="torch threads per task on each dask worker")
    q.set_defaults(func=cmd_analyze)

    q = sub.add_parser("dynamics", help="motional averages, correlation times and relaxation rates of a store")
    q.add_argument("store", help="a store written by dynnmr analyze")
    q.add_argument("--window", type=POSITIVE, help="also average over consecutive windows of this many ps")
    q.add_argument("--field", type=POSITIVE, default=14.1, help="B0 in Tesla for the relaxation rates (default 14.1)")
    q.add_argument("--species", type=_elements, help="elements to analyse, e.g. O (default: all stored)")
    q.add_argument("--max-lag", type=POSITIVE, help="longest correlation lag in ps (default: half the run)")
    q.add_argument("-o", "--json", "--output", dest="json", help="write per-species and per-site results here (JSON)")
    q.add_argument("--allow-incomplete", action="store_true", help="analyse the frames of a failed or unfinished run")
    q.set_defaults(func=cmd_dynamics)

    q = sub.add_parser("spectrum", help="static powder spectrum from a store or a tensor file")
    q.add_argument("input", help="a store from dynnmr analyze, or a tensor file (magres, extxyz, JSON)")
    q.add_argument("--species", type=_element, help="element whose sites make the spectrum, e.g. O (observed as its "
                   "usual NMR isotope: 17O, 29Si, 1H, 15N, ...)")  # fmt: skip
    q.add_argument("--isotope", help="the isotope to observe instead, e.g. 14N (or N=14N)")
    q.add_argument("--nucleus", help=argparse.SUPPRESS)  # the old name of --isotope, deprecated
    q.add_argument("--field", type=POSITIVE, default=14.1, help="B0 in Tesla (default 14.1)")
    q.add_argument(
        "--average",
        default="run",
        choices=["run", "window", "none"],
        help="store: time-averaged tensors per site (run, window) or every frame's (none)",
    )
    q.add_argument("--window", type=POSITIVE, help="window length in ps for --average window")
    q.add_argument("--frames", type=_frames, help="start:stop:step of the store's frames")
    q.add_argument("--allow-incomplete", action="store_true", help="use the frames of a failed or unfinished run")
    q.add_argument("--reference", action="append", metavar="EL=PPM", help="sigma_ref (ppm); default: the store's")
    q.add_argument(
        "--transitions",
        default="central",
        choices=["central", "all"],
        help="quadrupolar nuclei: the central transition or all",
    )
    q.add_argument("--broadening", type=NON_NEGATIVE, default=1.0, help="Gaussian FWHM in ppm (default 1)")
    q.add_argument(
        "--range", type=_ppm_range, help="ppm range LO:HI (default: where the intensity is; 3QMAS: -300:200)"
    )
    q.add_argument("--points", type=_number(int, 2, 10**6), default=2048, help="points of the ppm axis (default 2048)")
    q.add_argument(
        "--zcw", type=_number(int, 1, 22), default=12, help="ZCW powder set index (default 12: 6765 orientations)"
    )
    q.add_argument("--mas", help="magic-angle spinning rate in Hz, or inf (mrsimulator; default static)")
    q.add_argument(
        "--rotor-angle", type=float, help="rotor angle in degrees for VAS (mrsimulator; default magic angle)"
    )
    q.add_argument(
        "--mqmas", action="store_true", help="3QMAS 2D spectrum (mrsimulator); CSV ppm_direct,ppm_iso,intensity"
    )
    q.add_argument("--iso-points", type=int, default=256, help="points of the MQMAS isotropic dimension")
    q.add_argument("--export-mrsim", metavar="FILE", help="also write the sites as mrsimulator spin systems (JSON)")
    q.add_argument("-o", "--output", help="CSV with columns ppm,intensity")
    q.add_argument("--plot", help="PNG plot")
    q.set_defaults(func=cmd_spectrum)

    q = sub.add_parser("label", help="DFT reference labels (EFG, GIAO shielding) of cluster-centred sites with PySCF")
    q.add_argument("input", help="structure or trajectory file (periodic frames)")
    q.add_argument("-o", "--output", required=True, help="extended XYZ of labelled frames; rerun to resume")
    q.add_argument("--species", type=_elements, default="O", help="elements whose sites to label, e.g. O,Si")
    q.add_argument("--sites", type=_elements, help=argparse.SUPPRESS)  # the old name of --species, deprecated
    q.add_argument("--properties", default="efg,ms", help="efg, ms or both (default efg,ms)")
    q.add_argument("--max-sites", type=COUNT, help="sites to label per frame (default all)")
    q.add_argument("--frames", type=_frames, help="start:stop:step of the file's frames (default all)")
    q.add_argument("--topology", help="topology naming the elements, for DCD/XTC/TRR")
    q.add_argument("--shells", type=int, default=2, help="bond shells around the site before H caps (default 2)")
    q.add_argument("--xc", default="b3lyp", help="functional (default b3lyp)")
    q.add_argument("--basis", default="pcSseg-1", help="basis set from basis_set_exchange (default pcSseg-1)")
    q.add_argument("--centre-basis", default="pcSseg-2", help="basis on the site's own atom (default pcSseg-2)")
    q.add_argument("--seed", type=int, default=0, help="seed of the site order (default 0)")
    q.add_argument(
        "--select-by",
        metavar="MODEL",
        help="active learning: take the sites where this committee model's members disagree most",
    )
    q.add_argument(
        "--random-share",
        type=_number(float, 0.0, 1.0),
        default=0.25,
        help="with --select-by, the share of sites still taken in random order (default 0.25)",
    )
    q.add_argument(
        "--new-atoms",
        action="store_true",
        help="pass over atoms another frame of the same trajectory in the output file already labels "
        "(frames ps apart are one network: the same atom is nearly the same site, and a held-out one leaks)",
    )
    q.add_argument("--threads", type=COUNT, help="PySCF threads (default: all cores)")
    q.set_defaults(func=cmd_label)
    return p


def main(argv=None):
    given, argv = list(sys.argv[1:] if argv is None else argv), []
    while given:  # "--range -200:600": a value that starts with "-" is still the value
        a = given.pop(0)
        argv.append(f"--range={given.pop(0)}" if a == "--range" and given and given[0].startswith("-") else a)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (InputError, KeyError, OSError, ValueError, StoreBusy, ModuleNotFoundError) as exc:
        message = _message(exc)
        if message is None:
            raise
        if args.verbose:
            import traceback

            traceback.print_exc()
        print(f"dynnmr: error: {message}", file=sys.stderr)
        return 2


def _message(exc):
    """The one line for an error a user causes (bad input, unknown names, model, store,
    disk or option problems: the message names the file), or None for a bug."""
    if isinstance(exc, ModuleNotFoundError):  # an optional extra that is not installed: say which
        top = (exc.name or "").split(".")[0]
        if top not in OPTIONAL_EXTRAS:
            return None
        return f"this needs {top}, an optional dependency: pip install 'dynnmr[{OPTIONAL_EXTRAS[top]}]'"
    if isinstance(exc, KeyError):  # unknown isotope/element names from the tables
        return exc.args[0]
    return str(exc)


#: Optional packages and the extra that installs each (pyproject.toml).
OPTIONAL_EXTRAS = {"mrsimulator": "mrsim", "distributed": "dask", "dask": "dask", "pyscf": "qm",
                   "basis_set_exchange": "qm"}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
