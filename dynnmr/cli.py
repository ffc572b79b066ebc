"""The ``dynnmr`` command line: one subcommand per job, each a thin layer over the API."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import InputError


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
    from . import io, params

    images = io.read(args.input)
    isotopes = _key_values(args.isotope, "isotope")
    refs = {k: float(v) for k, v in _key_values(args.reference, "reference").items()} or None
    stem = Path(args.input).name
    names = [images[0].info.get("structure_id", stem)] if len(images) == 1 else [
        a.info.get("structure_id", f"{stem}:{k}") for k, a in enumerate(images)
    ]
    rows = params.site_table(images, names=names, isotopes=isotopes, references=refs)
    if not rows:
        raise InputError(args.input, "no atom carries an ms or efg tensor")
    if args.output:
        with open(args.output, "w", newline="") as fh:
            params.write_csv(rows, fh)
        print(f"wrote {len(rows)} sites to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(params.format_table(rows))
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="dynnmr", description="Dynamic solid-state NMR from molecular dynamics.")
    from . import __version__

    p.add_argument("--version", action="version", version=f"dynnmr {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    q = sub.add_parser("params", help="per-site NMR parameters from a tensor file (magres, extxyz, JSON)")
    q.add_argument("input", help="tensor file: CASTEP .magres, extended XYZ with ms/efg, silicate JSON")
    q.add_argument("-o", "--output", help="write CSV here instead of printing a table")
    q.add_argument("--isotope", action="append", metavar="EL=ISO", help="isotope per element, e.g. O=17O")
    q.add_argument(
        "--reference", action="append", metavar="EL=PPM",
        help="shielding reference sigma_ref (ppm) per element; adds delta_iso_ppm = sigma_ref - sigma_iso",
    )  # fmt: skip
    q.set_defaults(func=cmd_params)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"dynnmr: error: {exc}", file=sys.stderr)
        return 2
    except KeyError as exc:  # unknown isotope/element names from the tables
        print(f"dynnmr: error: {exc.args[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
