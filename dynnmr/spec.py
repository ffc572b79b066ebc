"""What an ``analyze`` run is asked to do, as one checked, immutable value.

The single-process engine, the distributed driver and each of its chunk tasks all take an
:class:`AnalysisSpec`, so a new option is added in one place, checked once (before any
work), recorded in the store the same way by every path, and sent to dask workers as one
small picklable object.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from . import DEFAULT_MODEL

GRAPHS = ("auto", "cpu", "device")


def parse_frames(text: str | None) -> slice:
    """``start:stop:step`` (any part optional) -> slice; None -> all frames."""
    if not text:
        return slice(None)
    parts = text.split(":")
    if len(parts) > 3:
        raise ValueError(f"--frames expects start:stop:step, got {text!r}")
    try:
        vals = [int(p) if p.strip() else None for p in parts] + [None] * (3 - len(parts))
    except ValueError:
        raise ValueError(f"--frames expects whole numbers start:stop:step, got {text!r}") from None
    if any(v is not None and v < 0 for v in vals) or vals[2] == 0:
        raise ValueError(f"--frames takes non-negative start/stop and a positive step, got {text!r}")
    return slice(*vals)


@dataclass(frozen=True)
class AnalysisSpec:
    """One ``analyze`` run: input, output, model, selection and how to run it.

    ``frames``: ``"start:stop:step"``, a slice or a (start, stop, step) tuple (stored as
    the tuple); ``species``: element symbols ``"Si,O"`` or atomic numbers whose sites are
    stored (default: every species the model covers); ``dt_ps``: time between stored
    frames when the file has none (ps); ``md_timestep_ps``: ps per MD step, for step
    numbers (LAMMPS dumps); ``chunk_frames``: frames per store chunk and per task;
    ``batch_atoms``: atoms per inference batch (default 4,000 on CPU, 100,000 on GPU);
    ``graphs``: where neighbour lists are built, ``cpu`` (reader thread), ``device`` (vesin
    on the model's device) or ``auto`` (device when that is a GPU); ``fmt``/``topology``:
    reader format and the element-naming file of binary trajectories; ``correlate``: the
    multiple-tau correlator over the store once it is written (:class:`dynnmr.correlator.MultipleTau`);
    ``uncertainty``: store the committee spread of a model that has members
    (:mod:`dynnmr.uncertainty`).
    """

    trajectory: Path
    output: Path | None = None  # default: TRAJECTORY.nmr.zarr beside the input
    model: str = DEFAULT_MODEL
    frames: tuple = (None, None, None)
    species: str | tuple | None = None
    dt_ps: float | None = None
    md_timestep_ps: float | None = None
    chunk_frames: int = 64
    batch_atoms: int | None = None
    device: str = "cpu"
    graphs: str = "auto"
    fmt: str | None = None
    topology: Path | None = None
    save_positions: bool = False
    allow_unknown: bool = False
    resume: bool = False
    overwrite: bool = False
    correlate: bool = False
    progress: bool = True
    uncertainty: bool = True

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731  (frozen)
        set_("trajectory", Path(self.trajectory))
        set_(
            "output",
            Path(self.output) if self.output else self.trajectory.with_name(self.trajectory.name + ".nmr.zarr"),
        )
        set_("model", str(self.model))
        f = self.frames
        sel = parse_frames(f) if f is None or isinstance(f, str) else f if isinstance(f, slice) else slice(*f)
        set_("frames", (sel.start, sel.stop, sel.step))
        if self.species is not None and not isinstance(self.species, str):
            set_("species", tuple(sorted(int(z) for z in self.species)))
        if self.topology is not None:
            set_("topology", Path(self.topology))
        if int(self.chunk_frames) < 1:
            raise ValueError(f"chunk_frames must be at least 1, got {self.chunk_frames}")
        if self.batch_atoms is not None and int(self.batch_atoms) < 1:
            raise ValueError(f"batch_atoms must be at least 1, got {self.batch_atoms}")
        for name in ("dt_ps", "md_timestep_ps"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if self.graphs not in GRAPHS:
            raise ValueError(f"graphs must be {', '.join(GRAPHS)}, not {self.graphs!r}")
        if self.resume and self.overwrite:
            raise ValueError("resume and overwrite exclude each other")

    @property
    def selection(self) -> slice:
        return slice(*self.frames)

    def replace(self, **changes) -> AnalysisSpec:
        """A copy with some fields changed (checked again)."""
        return replace(self, **changes)

    def expected_attrs(self, info, source) -> dict:
        """Store attributes that must match for a run to resume: the model, the source's
        content, and every option that changes what is stored (frames, times, positions, sites)."""
        species = self.species if self.species is None or isinstance(self.species, str) else list(self.species)
        return {"model_sha256": info["sha256"], "source": source, "frame_selection": list(self.frames),
                "options": {"dt_ps": self.dt_ps, "md_timestep_ps": self.md_timestep_ps,
                            "save_positions": bool(self.save_positions), "species": species,
                            "uncertainty": bool(self.uncertainty)}}  # fmt: skip
