"""Self-describing model files and the registry of bundled models.

A model file (``torch.save`` of plain types and tensors, loadable with
``weights_only=True``) carries the weights, hyperparameters, species, targets and
units, the per-species normalisation (inside the weights), a SHA-256 of the training
data, the test metrics, the shift reference per element, and the dynnmr version.
Bundled models live in ``dynnmr/data/models/NAME.pt`` and load by name.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from . import DEFAULT_MODEL, __version__  # noqa: F401  (DEFAULT_MODEL: imported from here too)
from .errors import InputError
from .model import TARGET_UNITS, build_model, e3nn_options

FORMAT = "dynnmr-model"
#: Bumped whenever weights or metadata change meaning; files of another version are refused.
FORMAT_VERSION = 1
BUNDLED_DIR = Path(__file__).parent / "data" / "models"


def sha256_files(paths) -> str:
    h = hashlib.sha256()
    for p in sorted(str(p) for p in paths):
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def save_model(path, model, hyperparameters: dict, **meta) -> None:
    """Write a model file; ``meta`` adds e.g. ``metrics``, ``shift_reference_ppm``."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dynnmr_version": __version__,
        "hyperparameters": dict(hyperparameters),
        "species": list(model.species),
        "targets": list(model.targets),
        "units": {t: TARGET_UNITS[t] for t in model.targets},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **meta,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(path) + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # atomic: a crash never leaves half a model file


def update_metadata(path, **changes) -> None:
    """Change metadata entries of a model file (e.g. a calibration re-fitted on the same
    split), weights untouched; written atomically like :func:`save_model`."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(path, "not a dynnmr model file")
    if {"state_dict", "format", "format_version", "hyperparameters"} & set(changes):
        raise ValueError("update_metadata changes metadata only, not weights or format")
    payload.update(changes)
    tmp = Path(str(path) + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def resolve(name_or_path) -> Path:
    """A bundled model name (``silicate-29si``) or a path to a model file."""
    p = Path(name_or_path)
    if p.suffix == ".pt" or p.exists():
        if not p.exists():
            raise FileNotFoundError(f"model file {p} does not exist")
        return p
    bundled = BUNDLED_DIR / f"{name_or_path}.pt"
    if not bundled.exists():
        names = sorted(x.stem for x in BUNDLED_DIR.glob("*.pt"))
        raise FileNotFoundError(f"no bundled model {name_or_path!r}; bundled: {', '.join(names) or 'none'}")
    return bundled


def load_model(name_or_path, device="cpu"):
    """Load a model file; returns ``(model, info)`` with ``info`` the file's metadata."""
    path = resolve(name_or_path)
    try:
        info = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not a model (text, cut short)
        raise InputError(
            path, f"not a dynnmr model file ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
        ) from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise InputError(path, "not a dynnmr model file")
    if info.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} is model format version {info.get('format_version')} (written by dynnmr "
            f"{info.get('dynnmr_version')}), but this dynnmr ({__version__}) reads version "
            f"{FORMAT_VERSION}: retrain it or use a matching dynnmr"
        )
    # On CPU the fused kernels (dynnmr.tensorproduct) run the message and product sums;
    # e3nn's search for the best contraction order of the rest (linears, gates, readouts)
    # is most of the load time and gains nothing measurable in the forward pass there
    # (benchmarks/README.md, "Start-up without the contraction search").
    fast_load = {"optimize_einsums": False} if torch.device(device).type == "cpu" else {}
    try:
        with e3nn_options(**fast_load):
            model = build_model(info["species"], info["targets"], **info["hyperparameters"])
        model.load_state_dict(info["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:  # damaged or hand-edited: weights that do not fit
        raise InputError(path, f"damaged model file ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})") from None
    model.eval()
    info["path"] = str(path)
    info["name"] = path.stem
    info["sha256"] = sha256_files([path])
    return model.to(device), info
