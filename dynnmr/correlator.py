"""Streaming multiple-tau autocorrelation of per-site tensor fluctuations (numba).

Ramirez, Sukumaran, Vorselaars and Likhtman, J. Chem. Phys. 133, 154103 (2010): level 0
correlates the incoming frames at lags 0..p-1; every ``m`` values of a level are
averaged and passed to the next, which covers lags p/m..p-1 in units of m^level frames.
Memory grows with the number of levels, i.e. with log(run length), not with the run, so
:class:`MultipleTau` runs it over a store of any length block by block of frames
(``dynnmr analyze --correlate`` does so once the store is written).

Fluctuations are about each site's mean over the whole run, which is not known while
streaming; the correlator keeps the first p values of each level besides the last p, from
which the sums of the earlier and later members of the pairs at every lag follow, and
subtracts the mean exactly at the end. Level ``l`` then equals, to
round-off, the unbiased autocorrelation (:func:`dynnmr.dynamics.autocorrelation`) of the
series averaged over blocks of m^l frames, about that series' mean.

Numba pays here: the update is a sequential recurrence over frames with small inner
loops (lags x sites x components), which numpy cannot vectorise without a Python loop
over frames.
"""

from __future__ import annotations

import numba
import numpy as np

from . import tensors as T
from .analysis import StoreAnalysis


@numba.njit(cache=True, nogil=True)
def _update(chunk, p, m, buf, head, npushed, acc, total, pending, npending):
    n_levels = buf.shape[0]
    n_sites, n_comp = chunk.shape[1], chunk.shape[2]
    value = np.empty((n_sites, n_comp))
    for f in range(chunk.shape[0]):
        value[:, :] = chunk[f]
        level = 0
        while level < n_levels:
            n = npushed[level]
            buf[level, n % p] = value
            if n < p:
                head[level, n] = value
            jmin = 0 if level == 0 else p // m
            for j in range(jmin, min(p, n + 1)):
                past = buf[level, (n - j) % p]
                out = acc[level, j]
                for s in range(n_sites):
                    for c in range(n_comp):
                        out[s, c] += past[s, c] * value[s, c]
            for s in range(n_sites):
                for c in range(n_comp):
                    total[level, s, c] += value[s, c]
                    pending[level, s, c] += value[s, c]
            npushed[level] = n + 1
            npending[level] += 1
            if npending[level] < m or level + 1 >= n_levels:
                break
            for s in range(n_sites):  # pass the block average up a level
                for c in range(n_comp):
                    value[s, c] = pending[level, s, c] / m
                    pending[level, s, c] = 0.0
            npending[level] = 0
            level += 1


class MultipleTauCorrelator:
    """Streaming per-site, per-irrep autocorrelation of Cartesian tensor series.

    ``n_sites`` sites; ``p`` lags per level (even), block factor ``m``, ``levels`` levels
    (the longest lag is about p m^(levels-1) frames). Feed ``(frames, sites, 9)`` chunks
    of Cartesian components to :meth:`update`; :meth:`result` gives lags and C_l(lag).
    """

    def __init__(self, n_sites, p=32, m=2, levels=16):
        if p % m:
            raise ValueError("p must be a multiple of m")
        self.p, self.m, self.levels = int(p), int(m), int(levels)
        shape = (self.levels, self.p, n_sites, 9)
        self.buf = np.zeros(shape)  # the last p values of each level (ring)
        self.head = np.zeros(shape)  # the first p values of each level
        self.acc = np.zeros(shape)  # sum over pairs of x(t) x(t + lag), per component
        self.npushed = np.zeros(self.levels, np.int64)
        self.total = np.zeros((self.levels, n_sites, 9))
        self.pending = np.zeros((self.levels, n_sites, 9))
        self.npending = np.zeros(self.levels, np.int64)

    def update(self, chunk):
        """Consume frames ``(F, S, 9)`` (Cartesian, row-major), in time order."""
        sph = T.to_spherical(np.asarray(chunk, dtype=np.float64).reshape(chunk.shape[:2] + (3, 3)))
        _update(np.ascontiguousarray(sph), self.p, self.m, self.buf, self.head, self.npushed, self.acc,
                self.total, self.pending, self.npending)  # fmt: skip

    def result(self):
        """``(lags_in_frames, {l: (n_lags, S)})`` over all levels with data, lags increasing.

        With n values at a level, the pairs at lag j are (t, t + j) for t < n - j; their
        later members sum to the total less the first j values, their earlier members to
        the total less the last j values, which makes the mean subtraction exact.
        """
        lags, parts = [], {0: [], 1: [], 2: []}
        for level in range(self.levels):
            n = int(self.npushed[level])
            if n == 0:
                break
            total = self.total[level]
            mean = total / n  # (S, 9)
            first = np.cumsum(self.head[level, : min(n, self.p)], axis=0)  # sums of the first 1.. values
            ring = self.buf[level]
            jmin = 0 if level == 0 else self.p // self.m
            for j in range(jmin, min(self.p, n)):
                late = total - (first[j - 1] if j else 0.0)
                early = total - (sum(ring[(n - 1 - k) % self.p] for k in range(j)) if j else 0.0)
                cnt = n - j
                cov = self.acc[level, j] - mean * (early + late) + cnt * mean * mean
                for l, sl in T.IRREP_SLICES.items():
                    parts[l].append(cov[:, sl].sum(axis=1) / cnt)
                lags.append(j * self.m**level)
        return np.array(lags), {l: np.array(v) for l, v in parts.items()}


class MultipleTau(StoreAnalysis):
    """The multiple-tau correlator over a store, one block of frames at a time, into its
    ``analysis/`` group: ``mtau_{target}_l{l}`` (mtau_lag, site), per irrep, and
    ``mtau_lag_frames`` (mtau_lag), lags in frames (they are not those of ``dynamics``).
    Sites the model does not cover for a target give NaN. Returns the group's path."""

    def _prepare(self):
        self._corr: dict = {}

    def _block(self, target, start, block):
        corr = self._corr.setdefault(target, MultipleTauCorrelator(block.shape[1]))
        corr.update(block.reshape(block.shape[:2] + (9,)))

    def _conclude(self):
        import zarr

        out = zarr.open_group(str(self.path), mode="r+").require_group("analysis")
        for t, corr in self._corr.items():
            lags, c = corr.result()
            out.create_array("mtau_lag_frames", data=lags, overwrite=True, dimension_names=("mtau_lag",))
            for l, v in c.items():
                out.create_array(f"mtau_{t}_l{l}", data=v.astype(np.float64), overwrite=True,
                                 dimension_names=("mtau_lag", "site"))  # fmt: skip
        return self.path
