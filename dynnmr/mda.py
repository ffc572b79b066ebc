"""NMR tensors over an MDAnalysis Universe: an ``AnalysisBase`` for people who already have one.

``NMRTensors(atomgroup).run()`` predicts the shielding (ppm) and EFG (atomic units) tensors
of every atom of the group in every frame, with the same inference code as ``dynnmr
analyze`` (:class:`dynnmr.inference.Job`: the same batches, hence the same numbers), and
keeps them in memory in ``results``. For long runs, or to resume, use ``dynnmr analyze``,
which streams into a store. The model sees the whole Universe (an O's tensor depends on its
Si neighbours whether or not they are selected); results are for the group's atoms. The
elements come from the topology (``elements``); the cell from the timestep's box (none when
the box has no volume).
"""

from __future__ import annotations

import numpy as np
from MDAnalysis.analysis.base import AnalysisBase

from . import DEFAULT_MODEL
from .inference import Job, load_for_inference
from .reader import mda_frame, mda_numbers


class NMRTensors(AnalysisBase):
    """Per-frame NMR tensors of an AtomGroup (or a whole Universe).

    After ``run()``: ``results.ms`` and ``results.efg``, ``(n_frames, n_atoms, 3, 3)``
    (ppm; atomic units), NaN rows for atoms the model does not cover; with a committee
    model also ``results.ms_std``/``efg_std`` (same shape and units) and
    ``results.ms_param_std``/``efg_param_std`` (:mod:`dynnmr.uncertainty`); ``results.times``
    (ps) and ``results.frames``; ``results.model`` (name) and ``results.shift_reference``.
    ``chunk_frames`` frames are inferred together (batches, as in ``analyze``).
    """

    def __init__(self, atomgroup, model=DEFAULT_MODEL, device="cpu", chunk_frames=16, allow_unknown=False, **kwargs):
        atomgroup = getattr(atomgroup, "atoms", atomgroup)
        super().__init__(atomgroup.universe.trajectory, **kwargs)
        self.atomgroup = atomgroup
        self.model, self.device, self.chunk_frames, self.allow_unknown = model, device, chunk_frames, allow_unknown

    def _prepare(self):
        self._source = f"Universe {self.atomgroup.universe.filename}"
        self._everything = self.atomgroup.universe.atoms
        self._numbers = mda_numbers(self._everything, self._source)
        net, info, dev, batch = load_for_inference(self.model, self.device)
        self._net_info = (net, info, dev, batch)
        self._job = None
        self._pending = []
        self._out = {t: [] for t in net.targets}  # and the committee spread, when the model has one
        self.results.model = info["name"]
        self.results.shift_reference = info.get("shift_reference", {})

    def _single_frame(self):
        frame = mda_frame(self._ts, self._numbers, self._everything.positions, self.n_frames)
        if self._job is None:
            net, info, dev, batch = self._net_info
            self._job = Job.create(self._source, frame, net, info, dev, batch, allow_unknown=self.allow_unknown,
                                   sites=self.atomgroup.indices)  # fmt: skip
        self._pending.append(self._job.prepare(frame, cpu_graphs=True))
        if len(self._pending) >= self.chunk_frames:
            self._flush()

    def _flush(self):
        if self._pending:
            data = self._job.tensors(self._pending)
            for name, values in data.items():
                if name.split("_")[0] in self._net_info[0].targets:  # ms, ms_std, ms_param_std, ...
                    shape = values.shape[:2] + ((3, 3) if values.shape[2] == 9 else values.shape[2:])
                    self._out.setdefault(name, []).append(values.astype(np.float64).reshape(shape))
            self._pending = []

    def _conclude(self):
        self._flush()
        n_atoms = len(self.atomgroup)
        for t, rows in self._out.items():
            self.results[t] = np.concatenate(rows) if rows else np.empty((0, n_atoms, 3, 3))
        self.results.frames = np.asarray(self.frames)
        self.results.times = np.asarray(self.times)
