"""Training configs: YAML -> a validated dict with defaults filled and paths resolved.

A config names its data files, targets, split, model and training settings and the
shift references (see ``configs/*.yaml``). Every key is checked against :data:`SCHEMA`:
a misspelt key (``trainng:``, ``chanels:``) is an error naming the file and the nearest
known key, not a setting silently left at its default.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path

import yaml

from .model import TARGET_COMPONENTS

DEFAULTS = {
    "name": "model",
    "targets": ["ms"],
    "split": {"val": 0.1, "test": 0.1, "seed": 0},
    "model": {"channels": 32, "vector_channels": 16, "lmax": 2, "layers": 2, "cutoff": 5.0,
              "num_basis": 8, "radial_hidden": 32},
    "training": {"epochs": 300, "batch_atoms": 2500, "lr": 0.005, "min_lr": 1e-5, "patience": 40,
                 "lr_patience": 10, "seed": 0, "threads": 2, "loss": "mse", "ema": 0.0,
                 "irrep_weights": [1.0, 1.0, 1.0]},
    "references": {},
}  # fmt: skip


#: The keys a config may hold, per section (None: a value, not a section). ``model`` keys
#: are :class:`~dynnmr.model.TensorGNN`'s hyperparameters and ``trunks`` (an
#: :class:`~dynnmr.model.Ensemble` of that many, :func:`~dynnmr.model.build_model`); ``references`` maps an element
#: to ``{structure, shift_ppm}``; ``split.site_holdout`` is :func:`dynnmr.samples.hold_out_sites`'s.
SCHEMA = {
    "base": None,
    "name": None,
    "data": None,
    "targets": None,
    "split": {"val", "test", "seed", "site_holdout", "test_structures", "train_fraction"},
    "model": {"channels", "vector_channels", "lmax", "layers", "cutoff", "num_basis", "radial_hidden",
              "readout_hidden", "products", "heads", "readout", "readout_channels", "trunks"},
    "training": set(DEFAULTS["training"]) | {"bootstrap"},  # bootstrap: absent means true
    "references": None,
}  # fmt: skip
REFERENCE_KEYS = {"structure", "shift_ppm"}
#: What a data item's labels are for besides the split (:func:`data_entry`; both false:
#: the file is split into training, validation and test structures).
ROLES = ("train_only", "calibration_only")


def _check_keys(path, where, keys, allowed):
    """Refuse keys outside ``allowed``, naming the nearest known one."""
    for key in keys:
        if key not in allowed:
            near = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; known: {', '.join(sorted(allowed))}"
            raise ValueError(f"{path}: unknown key {key!r} in {where}{hint}")


def validate(path, user: dict) -> None:
    """Check a config file's own keys (before defaults and ``base`` fill the rest)."""
    if not isinstance(user, dict):
        raise ValueError(f"{path}: a config is a mapping of sections, not {type(user).__name__}")
    _check_keys(path, "the config", user, SCHEMA)
    for section, allowed in SCHEMA.items():
        value = user.get(section)
        if allowed is not None and value is not None:
            if not isinstance(value, dict):
                raise ValueError(f"{path}: {section} is a mapping of settings, not {value!r}")
            _check_keys(path, section, value, allowed)
    for el, ref in (user.get("references") or {}).items():
        if not isinstance(ref, dict) or set(ref) != REFERENCE_KEYS:
            raise ValueError(f"{path}: references.{el} is {{structure: FILE, shift_ppm: VALUE}}, not {ref!r}")
    bad = sorted(set(user.get("targets") or []) - set(TARGET_COMPONENTS))
    if bad:
        raise ValueError(f"{path}: unknown target(s) {bad}; known: {', '.join(TARGET_COMPONENTS)}")


def load_config(path) -> dict:
    """Read a YAML config, fill defaults, and make data paths absolute (relative to the file).

    ``base: OTHER.yaml`` starts from another config (its paths relative to it) and changes
    only what this file gives, section by section: a variant of a recipe (e.g. one that
    holds out sites for evaluation) without a second copy of it.
    """
    path = Path(path)
    with open(path) as fh:
        user = yaml.safe_load(fh) or {}
    validate(path, user)
    cfg = load_config(path.parent / user.pop("base")) if "base" in user else copy.deepcopy(DEFAULTS)
    if "data" in user:
        user["data"] = [data_entry(path, entry) for entry in user["data"] or []]
    for ref in (user.get("references") or {}).values():
        ref["structure"] = str((path.parent / ref["structure"]).resolve())
    for key, value in user.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    if not cfg.get("data"):
        raise ValueError(f"{path}: config needs a 'data' list of tensor files")
    return cfg


def parse_setting(text: str) -> tuple[str, list]:
    """``"SECTION.KEY=V1,V2"`` -> ``("SECTION.KEY", [V1, V2])``, each value read as YAML
    (``model.lmax=1,2`` gives integers, ``model.readout=linear,tensor_product`` strings)."""
    key, sep, values = text.partition("=")
    if not sep or "." not in key or not values:
        raise ValueError(
            f"a setting is SECTION.KEY=VALUE[,VALUE...] (e.g. model.readout=linear,tensor_product), not {text!r}"
        )
    return key.strip(), [yaml.safe_load(v) for v in values.split(",")]


def apply_overrides(cfg: dict, overrides: dict, where="the command line") -> dict:
    """Set ``{"SECTION.KEY": value}`` in a loaded config, each key checked against
    :data:`SCHEMA` as a config file's are (a misspelt key is an error, not a no-op)."""
    for dotted, value in overrides.items():
        section, _, key = dotted.partition(".")
        _check_keys(where, "the config", [section], {k for k, v in SCHEMA.items() if v is not None})
        _check_keys(where, section, [key], SCHEMA[section])
        cfg[section][key] = value
    return cfg


def data_entry(config_path, entry) -> dict:
    """A ``data`` item as ``{"path": absolute, "scale": {target: factor}, "species": {target: [Z]}}``.

    An item is a file name or ``{path: FILE, scale: {efg: 0.91}, species: {ms: [O]}}``.
    ``scale``: a constant factor on a target's labels from that file (e.g. a documented
    correction of cluster C_Q towards experiment). It multiplies the whole tensor, so
    eta_Q, the asymmetry and the orientation are unchanged; the stored labels stay the raw
    DFT values. ``offset``: a constant (ppm) added to the diagonal of a shielding target
    after the scale, so ``scale: {ms: -1}, offset: {ms: C}`` turns a shift-like tensor
    (C - sigma) into shielding sigma; refused for the traceless EFG. ``species``: use only
    these elements' labels of a target from that file
    (e.g. cluster 29Si shieldings, which sit on another reference level than periodic
    GIPAW, kept out of a joint training); the other labels stay in the file.
    ``train_only: true``: the file's structures all train and none validates or tests
    (labels that are not DFT, such as a teacher model's predictions for distillation:
    early stopping, calibration and test metrics see only the other files' labels).
    ``calibration_only: true``: the file's labels neither train, validate nor test; a
    committee's calibration factors are fitted on them (independent structures, e.g.
    glasses quenched from other random starts, whose errors are those a user meets; see
    :func:`dynnmr.uncertainty.calibrate`).
    """
    from ase.data import atomic_numbers

    entry = {"path": entry} if isinstance(entry, str) else dict(entry)
    unknown = set(entry) - {"path", "scale", "offset", "species", *ROLES}
    if "path" not in entry or unknown:
        raise ValueError(f"{config_path}: a data item is a file name or {{path: FILE, scale: {{target: factor}}, "
                         f"offset: {{target: ppm}}, species: {{target: [elements]}}, train_only: BOOL, "
                         f"calibration_only: BOOL}}, not {entry!r}")  # fmt: skip
    scale = {str(t): float(f) for t, f in (entry.get("scale") or {}).items()}
    offset = {str(t): float(c) for t, c in (entry.get("offset") or {}).items()}
    if "efg" in offset:
        raise ValueError(
            f"{config_path}: an offset is an isotropic shift; the EFG is traceless (data item {entry['path']})"
        )
    species = {str(t): list(els) for t, els in (entry.get("species") or {}).items()}
    bad = (set(scale) | set(offset) | set(species)) - set(TARGET_COMPONENTS)
    if bad:
        raise ValueError(
            f"{config_path}: scale, offset or species for unknown target(s) {sorted(bad)} in data item {entry['path']}"
        )
    roles = {role: entry.get(role, False) for role in ROLES}
    for role, on in roles.items():
        if not isinstance(on, bool):
            raise ValueError(f"{config_path}: {role} is true or false, not {on!r} (data item {entry['path']})")
    if all(roles.values()):
        raise ValueError(f"{config_path}: a data item is train_only or calibration_only, not both ({entry['path']})")
    unknown_el = sorted({str(e) for els in species.values() for e in els} - set(atomic_numbers))
    if unknown_el:
        raise ValueError(f"{config_path}: unknown element(s) {unknown_el} in species of data item {entry['path']}")
    return {"path": str((Path(config_path).parent / entry["path"]).resolve()), "scale": scale, "offset": offset,
            "species": {t: sorted(atomic_numbers[str(e)] for e in els) for t, els in species.items()},
            **roles}  # fmt: skip
