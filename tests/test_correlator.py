"""The streaming multiple-tau correlator against the FFT autocorrelation of the same data."""

import numpy as np
import pytest

from dynnmr import dynamics as D
from dynnmr.correlator import MultipleTauCorrelator


def block_average(x, size):
    n = len(x) // size
    return x[: n * size].reshape((n, size) + x.shape[1:]).mean(axis=1)


@pytest.mark.parametrize("p, m", [(8, 2), (16, 4)])
def test_levels_equal_fft_of_block_averaged_series(p, m):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 3, 9)) + np.arange(9) * 10.0  # with a mean to remove
    corr = MultipleTauCorrelator(3, p=p, m=m, levels=6)
    for chunk in np.array_split(x, [1, 7, 300, 301, 777]):  # arbitrary chunk boundaries
        corr.update(chunk)
    lags, c = corr.result()
    checked = 0
    for level in range(6):
        coarse = block_average(x, m**level)
        if len(coarse) < 2:
            break
        ref = D.correlation_functions(coarse)
        jmin = 0 if level == 0 else p // m
        for j in range(jmin, min(p, len(coarse))):
            k = int(np.flatnonzero(lags == j * m**level)[0]) if level == 0 else \
                int(np.flatnonzero(lags == j * m**level)[-1])  # fmt: skip
            for l in (0, 1, 2):
                np.testing.assert_allclose(c[l][k], ref[l][j], rtol=1e-10, atol=1e-10)
            checked += 1
    assert checked >= 28  # p=8, m=2: 8 lags at level 0, 4 at each of 5 higher levels
    assert np.all(np.diff(lags) >= 0)


def test_memory_grows_with_levels_not_frames():
    corr = MultipleTauCorrelator(2, p=16, m=2, levels=10)
    sizes = lambda: sum(a.nbytes for a in vars(corr).values() if isinstance(a, np.ndarray))  # noqa: E731
    before = sizes()
    corr.update(np.random.default_rng(1).normal(size=(5000, 2, 9)))
    assert sizes() == before
    lags, c = corr.result()
    assert lags.max() == 8 * 2**9  # level 9 has received 5000 // 512 = 9 block averages
