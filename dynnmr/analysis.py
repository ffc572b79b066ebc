"""One pattern for every analysis over a store: prepare, one block of frames at a time, conclude.

MDAnalysis's ``AnalysisBase`` runs a per-frame method over a trajectory; a
:class:`StoreAnalysis` runs a per-block method over a dynnmr store. ``run()`` opens the
store, refuses a failed or unfinished one (unless asked), reads each target in blocks of
frames (constant memory; a damaged chunk is an error naming its file and frames; a
missing value where the model covers the species is an error, never skipped), hands
each block to ``_block`` and returns ``_conclude()``. A subclass says only what it
computes.
"""

from __future__ import annotations

import numpy as np

from . import tensors as T
from .errors import InputError
from .isotopes import isotope_for
from .params import QuadrupolarParameters, ShieldingParameters


class StoreAnalysis:
    """Base class: ``StoreAnalysis(path).run()``.

    Subclasses implement ``_prepare()`` (after the store is open: ``self.group``,
    ``self.numbers`` (sites' atomic numbers), ``self.n_frames``, ``self.attrs``,
    ``self.shift_reference``), one per-block method and ``_conclude()``, whose value
    ``run()`` returns. ``targets``: which of the store's arrays to read.

    ``by = "frames"`` (default): ``_block(target, start, block)`` with ``block`` the
    ``(frames, sites, 3, 3)`` float64 tensors of frames ``start..`` of every site, for
    analyses that accumulate over time (averages, statistics, streaming correlations).
    ``by = "sites"``: ``_sites_block(target, element, sites, block)`` with ``block`` the
    ``(frames, len(sites), 3, 3)`` series of a block of one element's ``sites`` (indices
    on the store's site axis) over all selected frames, sized to ``memory_gb``, for
    analyses that need each site's whole series (correlation functions); elements the
    model does not cover for a target are not handed over. ``species`` (symbols, e.g.
    ``"O"`` or ``"Si,O"``) and ``frames`` (a slice of the stored frames) narrow what is read.
    """

    targets: tuple = ("ms", "efg")
    by: str = "frames"

    def __init__(self, path, chunk_frames=None, allow_incomplete=False, species=None, frames=None, memory_gb=1.0):
        self.path, self.chunk_frames, self.allow_incomplete = path, chunk_frames, allow_incomplete
        self.species = [s.strip() for s in species.split(",")] if isinstance(species, str) else species
        self.frames = frames if frames is not None else slice(None)
        self.memory_gb = memory_gb

    def run(self):
        from .store import check_complete, open_store, read

        g = self.group = open_store(self.path)
        check_complete(g, self.path, self.allow_incomplete)
        self.attrs = dict(g.attrs)
        self.numbers = read(g, self.path, "numbers")
        rows = range(int(self.attrs.get("frames_done", 0)))[self.frames]
        self.rows = slice(rows.start, rows.stop, rows.step)  # the selected frames, as stored
        self.n_frames = len(rows)
        self.shift_reference = self.attrs.get("shift_reference", {})
        self._prepare()
        stored = self.attrs.get("targets", [t for t in ("ms", "efg") if t in g])
        for t in (t for t in stored if t in self.targets):
            if self.by == "sites":
                self._run_sites(t)
            else:
                self._run_frames(t)
        return self._conclude()

    def _run_frames(self, t):
        from ase.data import atomic_numbers

        from .store import read

        covers = self.attrs.get("covered_species", {}).get(t)
        covered = np.isin(self.numbers, [atomic_numbers[e] for e in covers]) if covers is not None else None
        rows = self.rows
        if rows.step != 1:
            raise ValueError("frame blocks need a contiguous frame selection (step 1)")
        step = self.chunk_frames or int(self.attrs["chunk_frames"])
        for a in range(rows.start, rows.stop, step):
            block = read(self.group, self.path, t, slice(a, min(a + step, rows.stop))).astype(np.float64)
            if covered is not None and not np.isfinite(block[:, covered]).all():
                raise InputError(self.path, f"{t} is missing in frames {a}..{a + len(block) - 1}: "
                                            "a lost or damaged chunk")  # fmt: skip
            self._block(t, a - rows.start, block.reshape(block.shape[:2] + (3, 3)))

    def _run_sites(self, t):
        from ase.data import chemical_symbols

        from .store import site_series

        per_site_bytes = max(self.n_frames, 1) * 9 * 8 * 4  # the series, a padded FFT and products
        size = max(1, int(self.memory_gb * 1e9 / per_site_bytes))
        for z in np.unique(self.numbers):
            el = chemical_symbols[int(z)]
            if self.species and el not in self.species:
                continue
            idx = np.flatnonzero(self.numbers == z)
            for a in range(0, len(idx), size):
                sites = idx[a : a + size]
                x = site_series(self.group, self.path, t, el, sites, self.rows)
                if x is None:
                    break  # the model does not predict this target for this element
                self._sites_block(t, el, sites, x.reshape(x.shape[:2] + (3, 3)))

    def _prepare(self):
        pass

    def _block(self, target, start, block):
        raise NotImplementedError

    def _sites_block(self, target, element, sites, block):
        raise NotImplementedError

    def _conclude(self):
        return None


class TimeAverage(StoreAnalysis):
    """Each site's tensors averaged over the run: ``{target: (sites, 3, 3)}`` (NaN rows for
    sites the model does not cover), the motionally averaged tensors."""

    def _prepare(self):
        self._sums: dict = {}

    def _block(self, target, start, block):
        self._sums[target] = self._sums.get(target, 0.0) + block.sum(axis=0)

    def _conclude(self):
        return {t: total / self.n_frames for t, total in self._sums.items()}


class SiteTensors(StoreAnalysis):
    """One element's tensors as the sites of a powder (the input of a spectrum):
    ``{"ms": (K, 3, 3) or None, "efg": (K, 3, 3) or None, "sigma_ref": ppm or None}``.

    ``average``: ``run``, each site's tensor averaged over the selected frames (what fast
    motion leaves); ``window``, averaged over windows of ``window_ps``; ``none``, every
    instantaneous tensor. ``sigma_ref`` is the store's shift reference for the element.
    """

    by = "sites"

    def __init__(self, path, element, average="run", window_ps=None, frames=None, allow_incomplete=False):
        super().__init__(path, allow_incomplete=allow_incomplete, species=element, frames=frames)
        self.element, self.average, self.window_ps = element, average, window_ps

    def _prepare(self):
        from ase.data import atomic_numbers

        if not (self.numbers == atomic_numbers[self.element]).any():
            raise ValueError(f"{self.path} stores no {self.element} sites")
        self._out: dict = {}

    def _sites_block(self, target, element, sites, block):
        from . import dynamics
        from .store import read

        if self.average == "run":
            block = dynamics.mean_tensors(block)[None]
        elif self.average == "window":
            block, _ = dynamics.window_means(block, read(self.group, self.path, "time_ps", self.rows), self.window_ps)
        self._out.setdefault(target, []).append(block)

    def _conclude(self):
        out = {t: np.concatenate(v, axis=1).reshape(-1, 3, 3) if t in self._out else None
               for t, v in ((t, self._out.get(t)) for t in ("ms", "efg"))}  # fmt: skip
        out["sigma_ref"] = self.shift_reference.get(self.element, {}).get("sigma_ref_ppm")
        return out


class Summary(TimeAverage):
    """Per-species statistics of a store, instantaneous and of the time-averaged tensors.

    ``run()`` returns ``{El: {parameter: {"instantaneous": (mean, sd), "time_averaged":
    (mean, sd)}}}``. Instantaneous: over every frame and site. Time-averaged: the
    parameters of each site's tensor averaged over the run (what a spectrum sees when the
    motion is fast), mean and sd over sites; derived from the averaged Cartesian tensors,
    never by averaging parameters. Parameters: sigma_iso and delta_iso (ppm, the shift
    when the store has a reference), span (ppm) and skew; |C_Q| (MHz, the element's
    default isotope) and eta_Q. Only parameters whose sign cannot flip between nearly
    equal tensors: the Haeberlen zeta changes sign as eta passes 1 and the sign of C_Q is
    undefined at eta_Q = 1, so span/skew and |C_Q| stand for them.

    A store with the committee spread (:mod:`dynnmr.uncertainty`) adds ``"model_sd"``
    (``(rms, None)``: the root mean square over frames and sites of the members' spread
    of that parameter, the typical model uncertainty of one site's value in one frame),
    and after ``run()`` the attribute ``flagged``: ``{El: (site-frames whose spread lies
    beyond the training range, all site-frames)}``.
    """

    KINDS = ("instantaneous", "time_averaged", "model_sd")

    def __init__(self, path, chunk_frames=None):
        super().__init__(path, chunk_frames, allow_incomplete=True)

    def _prepare(self):
        super()._prepare()
        self._stats: dict = {}  # (El, parameter, kind) -> (sum, sum of squares, count)
        self.flagged: dict = {}

    def _block(self, target, start, block):
        super()._block(target, start, block)
        self._accumulate(target, block, "instantaneous")
        if f"{target}_param_std" in self.group:
            self._spread(target, start, len(block))

    def _spread(self, target, start, n):
        """Accumulate the squared member spreads of frames ``start..start+n`` and the flags."""
        from ase.data import chemical_symbols

        from .store import read
        from .uncertainty import PARAMETERS, flagged

        sd = read(self.group, self.path, f"{target}_param_std", slice(start, start + n)).astype(np.float64)
        names = self.attrs.get("uncertainty", {}).get("param_std", {}).get(target, list(PARAMETERS[target]))
        for z in np.unique(self.numbers):
            el = chemical_symbols[int(z)]
            x = sd[:, self.numbers == z].reshape(-1, len(names))
            x = x[np.isfinite(x).all(axis=1)]
            if not len(x):
                continue
            for name, v in _spread_columns(target, el, dict(zip(names, x.T))).items():
                s, s2, c = self._stats.get((el, name, "model_sd"), (0.0, 0.0, 0))
                self._stats[(el, name, "model_sd")] = (s, s2 + float((v**2).sum()), c + len(v))
        for el, (k, total) in flagged(target, sd, self.numbers, self.attrs).items():
            a, b = self.flagged.get(el, (0, 0))
            self.flagged[el] = (a + k, b + total)

    def _accumulate(self, target, tensors, kind):
        from ase.data import chemical_symbols

        for z in np.unique(self.numbers):
            el = chemical_symbols[int(z)]
            x = tensors[:, self.numbers == z].reshape(-1, 3, 3)
            x = x[np.isfinite(x).all(axis=(1, 2))]  # uncovered species: NaN by design
            if not len(x):
                continue
            for name, v in _parameters(target, el, x, self.shift_reference).items():
                s, s2, c = self._stats.get((el, name, kind), (0.0, 0.0, 0))
                self._stats[(el, name, kind)] = (s + float(v.sum()), s2 + float((v**2).sum()), c + len(v))

    def _conclude(self):
        for target, mean in super()._conclude().items():
            self._accumulate(target, mean[None], "time_averaged")
        out: dict = {}
        for (el, name, kind), (s, s2, c) in self._stats.items():
            mean = s / c
            value = (float(np.sqrt(s2 / c)), None) if kind == "model_sd" else \
                (mean, float(np.sqrt(max(s2 / c - mean**2, 0.0))))  # fmt: skip
            out.setdefault(el, {}).setdefault(name, {})[kind] = value
        return out


def _spread_columns(target, element, sd) -> dict:
    """The committee spreads (``sd``: stored parameter name -> values) of the parameters
    :func:`_parameters` reports: delta_iso's is sigma_iso's, |C_Q|'s is C_Q's (MHz)."""
    if target == "ms":
        cols = {"sigma_iso_ppm": sd["sigma_iso_ppm"], "span_ppm": sd["span_ppm"], "skew": sd["skew"]}
        cols["delta_iso_ppm"] = sd["sigma_iso_ppm"]
        return cols
    iso = isotope_for(element)
    q = iso.quadrupole_moment_mb if iso else 0.0
    return {"abs_Cq_MHz": np.abs(T.quadrupolar_coupling_hz(sd["Vzz_au"], q)) * 1e-6, "eta_Q": sd["eta_Q"]}


def _parameters(target, element, tensors, refs) -> dict:
    """The sign-safe parameters of :class:`Summary` for one species' tensors."""
    if target == "ms":
        p = ShieldingParameters.of(tensors)
        cols = {"sigma_iso_ppm": p.sigma_iso_ppm, "span_ppm": p.span_ppm, "skew": p.skew}
        if element in refs:
            cols["delta_iso_ppm"] = p.delta_iso_ppm(refs[element]["sigma_ref_ppm"])
    else:
        iso = isotope_for(element)
        q = QuadrupolarParameters.of(tensors, iso.quadrupole_moment_mb if iso else 0.0)
        cols = {"abs_Cq_MHz": q.abs_Cq_MHz, "eta_Q": q.eta_Q}
    return {k: v for k, v in cols.items() if np.isfinite(v).all()}  # e.g. C_Q of a spin-1/2 isotope: NaN


def rms_spread(group, path, target, n_frames):
    """Each site's committee spread of ``target``'s parameters, root mean square over the
    first ``n_frames`` frames, ``(sites, P)`` (:data:`dynnmr.uncertainty.PARAMETERS`
    order); None when the store has no spread. Read in blocks (constant memory)."""
    from .store import read

    name = f"{target}_param_std"
    if name not in group or n_frames < 1:
        return None
    step, total = int(group.attrs["chunk_frames"]), 0.0
    for a in range(0, n_frames, step):
        sd = read(group, path, name, slice(a, min(a + step, n_frames))).astype(np.float64)
        total = total + (sd**2).sum(axis=0)
    return np.sqrt(total / n_frames)


def store_as_atoms(path):
    """A store's sites as one ``ase.Atoms`` with their time-averaged ``ms``/``efg`` arrays,
    ``atom_index`` (the sites' indices in the structure) and the store's model and shift
    references in ``info`` (:func:`dynnmr.tensorfiles.stamp`): what ``params`` tabulates.
    Positions are not meaningful (zeros): the parameters and lab-frame orientations are.

    With the committee spread stored, ``{target}_param_std`` is its root mean square
    over the frames: one site's model error hardly changes from frame to frame (the
    members disagree about the site's environment, not about its vibrations), so the
    averaged tensor is about as uncertain as one frame's, not sqrt(frames) times less."""
    from ase import Atoms

    from .store import read
    from .tensorfiles import stamp

    average = TimeAverage(path)
    tensors = average.run()
    atoms = Atoms(numbers=average.numbers)
    atoms.arrays["atom_index"] = read(average.group, path, "atom_index")
    for t, mean in tensors.items():
        atoms.arrays[t] = mean
        sd = rms_spread(average.group, path, t, average.n_frames)
        if sd is not None:
            atoms.arrays[f"{t}_param_std"] = sd
    stamp(atoms, {"name": average.attrs.get("model_name", ""), "shift_reference": average.shift_reference})
    return atoms


def summarize(path, chunk=None, flagged=False):
    """:class:`Summary` of a store (``chunk``: frames per block); with ``flagged`` the pair
    ``(stats, Summary.flagged)``."""
    summary = Summary(path, chunk)
    stats = summary.run()
    return (stats, summary.flagged) if flagged else stats


def format_summary(stats, flagged=None) -> str:
    """The summary as a table with a header that says what each column is; ``flagged``
    (:attr:`Summary.flagged`) adds how many site-frames are extrapolated, per species."""
    flags = flagged or {}
    spread = any("model_sd" in kinds for p in stats.values() for kinds in p.values())
    lines = [
        "per species; instantaneous: over every frame and site; time-averaged: each site's tensor",
        "averaged over the run (what fast motion leaves), then over sites; mean +- sd",
    ]
    if spread:
        lines.append("model sd: the committee's spread for one site in one frame (rms), the model's uncertainty")
    lines.append(f"{'species':>7}  {'parameter':<15} {'instantaneous':>22}   {'time-averaged':>22}"
                 + (f"   {'model sd':>9}" if spread else ""))  # fmt: skip
    for el, params in stats.items():
        for name, kinds in params.items():
            cells = [f"{kinds[k][0]:12.4f} +- {kinds[k][1]:<7.4f}" if k in kinds else "-" for k in Summary.KINDS[:2]]
            sd = f"   {kinds['model_sd'][0]:9.4f}" if "model_sd" in kinds else ("   " + " " * 8 + "-" if spread else "")
            lines.append(f"{el:>7}  {name:<15} {cells[0]:>22}   {cells[1]:>22}{sd}")
    for el, (k, total) in flags.items():
        lines.append(f"{el}: {k} of {total} site-frames ({100 * k / max(total, 1):.2f}%) have a committee spread "
                     f"beyond the training range: their predictions are extrapolated")  # fmt: skip
    return "\n".join(lines)
