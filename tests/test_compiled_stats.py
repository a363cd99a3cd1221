"""The laboratory's compiled kernels: histogram counting and the record's per-slab sums.

``histogram.bin_counts`` must count exactly what ``Histogram.add``'s NumPy path counts (the
same bin indices, from the same float64 operations): checked three ways on the same values,
compiled by Numba, as its plain Python function (runs without Numba) and the NumPy path
(``DELTAPROP_NUMBA=0``), over float32 and float64, NaN and +-inf, 1e-300 to 1e300 and
subnormals, values exactly at +-R and bin counts that are not powers of two.
``record.slab_sums`` takes the same sums as the NumPy path's BLAS products in another order:
its compiled and plain Python forms agree bit for bit, and with NumPy to rounding.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import deltaprop as dp
from deltaprop import _compiled
from deltaprop.stats import histogram
from deltaprop.stats.histogram import Histogram
from deltaprop.stats.record import record

RECORD = sys.modules["deltaprop.stats.record"]

pytestmark = pytest.mark.smoke

needs_numba = pytest.mark.skipif(not _compiled.enabled(),
                                 reason="Numba is not installed (pip install deltaprop[fast])")

BINS = (4, 12, 20, 64, 100)


@pytest.fixture
def counting(monkeypatch):
    """``counting(way)`` switches ``Histogram.add`` to ``"numpy"``, ``"compiled"`` or
    ``"python"`` (the kernel's plain Python loop, no Numba needed)."""

    def switch(way):
        monkeypatch.undo()  # the previous way's switches
        monkeypatch.setattr(histogram, "bin_counts", histogram.bin_counts if way != "python"
                            else _Plain(histogram.bin_counts))
        monkeypatch.setenv("DELTAPROP_NUMBA", "0" if way == "numpy" else "1")
        _compiled.enabled.cache_clear()
        if way == "python":
            monkeypatch.setattr(_compiled, "enabled", lambda: True)

    yield switch
    monkeypatch.undo()
    _compiled.enabled.cache_clear()


class _Plain:
    def __init__(self, k):
        self.kernel = k

    def __call__(self, *args):
        return self.kernel.py(*args)


def _edge_cases():
    rng = np.random.default_rng(0)
    tiny64, tiny32 = np.finfo(np.float64).tiny, np.finfo(np.float32).tiny
    cases = [rng.standard_normal(3000) * s for s in (1e-300, 1e-30, 1e-3, 1.0, 1e6, 1e300)]
    cases += [
        np.array([-4.0, 4.0, 2.0, -2.0, 0.0, 1.0, -1.0, 3.999, -0.0]),  # powers of two
        np.array([np.nextafter(4.0, 0), -np.nextafter(4.0, 0), np.nextafter(2.0, 0)]),
        np.array([5e-324, -5e-324, 1e-310, -tiny64, tiny64 / 3]),  # subnormals
        np.array([np.finfo(np.float64).max, -np.finfo(np.float64).max, 1.0, -2.0 ** 1023]),
        np.array([0.0, -0.0, 0.0]),
        np.array([np.nan, 1.5, np.inf, -np.inf, -0.75, np.nan]),
        np.array([np.nan, np.inf]),  # nothing finite
        (rng.standard_normal(2000) * 1e-3).round(4),  # many ties with bin edges
        rng.uniform(-1, 1, 2000) * 2.0 ** rng.integers(-60, 60, 2000),
    ]
    out = [(c, np.float64) for c in cases]
    with np.errstate(over="ignore", under="ignore"):
        out += [(c.astype(np.float32), np.float32) for c in cases]
    out += [(np.array([tiny32 / 5, -tiny32 / 7, tiny32], np.float32), np.float32),
            (np.array([np.finfo(np.float32).max, -1.0], np.float32), np.float32)]
    return out


CASES = _edge_cases()


def _histograms(values, bins):
    """Histograms of each value array alone, and of all of them added in turn (widening)."""
    alone = [Histogram.empty(bins).add(v) for v in values]
    h = Histogram.empty(bins)
    for v in values:
        h = h.add(v).add(v[::3] * 0.5)
    return [(g.exponent, g.counts.copy()) for g in (*alone, h)]


def _assert_same(a, b):
    assert len(a) == len(b)
    for (ea, ca), (eb, cb) in zip(a, b, strict=True):
        assert ea == eb
        np.testing.assert_array_equal(ca, cb)


@pytest.mark.parametrize("bins", BINS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plain_loop_counts_what_numpy_counts(counting, bins, dtype):
    values = [c for c, d in CASES if d is dtype]
    counting("numpy")
    want = _histograms(values, bins)
    counting("python")
    _assert_same(_histograms(values, bins), want)
    assert sum(int(c.sum()) for _, c in want) > 0


@needs_numba
@pytest.mark.parametrize("bins", BINS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_counts_what_numpy_counts(counting, bins, dtype):
    values = [c for c, d in CASES if d is dtype]
    values.append(np.random.default_rng(1).standard_normal((16, 128, 64)).astype(dtype))
    counting("numpy")
    want = _histograms(values, bins)
    counting("compiled")
    _assert_same(_histograms(values, bins), want)


@pytest.mark.parametrize("bins", BINS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_values_just_inside_the_range_land_in_the_end_bins(counting, bins, dtype):
    """R = 2^e > max |x| always; +-x just below R round to the index ``bins`` (folded into
    the last bin) and to 0, in every way of counting."""
    x = np.nextafter(dtype(4), dtype(0))
    for way in ("python", "numpy") + (("compiled",) if _compiled.enabled() else ()):
        counting(way)
        h = Histogram.empty(bins).add(np.array([-x, x, 0.0, -0.0], dtype))
        assert h.exponent == 2 and h.total == 4
        assert h.counts[0] == 1 and h.counts[-1] == 1 and h.counts[bins // 2] == 2


_floats = st.sampled_from([np.float32, np.float64]).flatmap(
    lambda d: hnp.arrays(d, st.integers(1, 60),
                         elements=hnp.from_dtype(np.dtype(d), allow_subnormal=True)))


@settings(max_examples=150, deadline=None)
@given(x=_floats, more=_floats, bins=st.sampled_from(BINS))
def test_counting_is_the_same_on_any_floats(x, more, bins):
    """Any finite, infinite or NaN float32/float64 values, two batches: the plain loop (and
    the compiled one, where Numba runs) counts what NumPy counts."""
    ways = ["numpy", "python"] + (["compiled"] if _compiled.enabled() else [])
    with pytest.MonkeyPatch.context() as mp:
        got = {}
        for way in ways:
            if way == "python":
                mp.setattr(histogram, "bin_counts", _Plain(histogram.bin_counts))
                mp.setattr(_compiled, "enabled", lambda: True)
            else:
                mp.setenv("DELTAPROP_NUMBA", "0" if way == "numpy" else "1")
                _compiled.enabled.cache_clear()
            with np.errstate(over="ignore"):
                got[way] = _histograms([x, more], bins)
            mp.undo()
        _compiled.enabled.cache_clear()
    for way in ways[1:]:
        _assert_same(got[way], got["numpy"])


# ---------------------------------------------------------------------- record sums
def _slab(dtype, G=3, m=37, n=13, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((G, m, n)) + 0.3).astype(dtype)
    St = rng.standard_normal((G, 1, m)).astype(dtype)
    return x, St


def _numpy_sums(x, St):
    """The sums ``slab_sums`` takes, by NumPy reductions (float64)."""
    x, S = x.astype(np.float64), St.astype(np.float64).transpose(0, 2, 1)
    x2 = x * x
    return [x.sum(1), x2.sum(1), (x2 * x2).sum(1), x.mean(2), x2.mean(2),
            (S * x).sum(1), (S * S * x2).sum(1), (S ** 4 * x2 * x2).sum(1)]


def _run_slab_sums(fn, x, St, cross):
    G, m, n = x.shape
    cols = np.full((6 if cross else 3, G, n), np.nan, x.dtype)
    rows = np.full((2, G, m), np.nan, x.dtype)
    fn(x, St if cross else x, cols, rows)
    return [cols[0], cols[1], cols[2], rows[0], rows[1], *cols[3:]]


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-13), (np.float32, 1e-5)])
@pytest.mark.parametrize("n", [1, 8, 13, 64, 130])
@pytest.mark.parametrize("cross", [False, True])
def test_slab_sums_plain_loop_takes_the_sums(dtype, rtol, n, cross):
    x, St = _slab(dtype, n=n)
    got = _run_slab_sums(RECORD.slab_sums.py, x, St, cross)
    want = _numpy_sums(x, St)
    for g, w in zip(got, want, strict=False):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * np.abs(w).max())


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 8, 13, 64, 130])
@pytest.mark.parametrize("cross", [False, True])
def test_slab_sums_compiled_is_the_plain_loop_bit_for_bit(dtype, n, cross):
    x, St = _slab(dtype, n=n, seed=n)
    got = _run_slab_sums(RECORD.slab_sums, x, St, cross)
    want = _run_slab_sums(RECORD.slab_sums.py, x, St, cross)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


# ---------------------------------------------------------------------- whole records
def _record(monkeypatch, on, dtype, **kw):
    monkeypatch.setenv("DELTAPROP_NUMBA", "1" if on else "0")
    _compiled.enabled.cache_clear()
    rng = np.random.default_rng(4)
    net = dp.Network.init([6, 16, 12, 3], "tanh", K=4, seed=1, dtype=dtype, bias_std=0.1)
    x = rng.standard_normal((150, 6)).astype(dtype)
    y = rng.standard_normal((150, 3)).astype(dtype)
    try:
        return record(net, x, y, "mse", batch_size=64, bins=kw.pop("bins", 64), **kw)
    finally:
        monkeypatch.delenv("DELTAPROP_NUMBA")
        _compiled.enabled.cache_clear()


@needs_numba
@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-11), ("float32", 1e-4)])
@pytest.mark.parametrize("bins", [64, 20])
def test_record_with_and_without_numba(monkeypatch, dtype, rtol, bins):
    """Identical histograms; moments equal to rounding (the sums in another order)."""
    off = _record(monkeypatch, False, dtype, bins=bins)
    on = _record(monkeypatch, True, dtype, bins=bins)
    assert set(on.hist) == set(off.hist) and set(on.stats) == set(off.stats)
    for l, h in off.hist.items():
        assert on.hist[l].exponent == h.exponent
        np.testing.assert_array_equal(on.hist[l].counts, h.counts)
    for key, moms in off.stats.items():
        for a, b in zip(moms, on.stats[key], strict=True):
            assert a.count == b.count
            np.testing.assert_allclose(b.mean, a.mean, rtol=rtol, atol=rtol * 1e-3)
            np.testing.assert_allclose(b.m2, a.m2, rtol=10 * rtol,
                                       atol=rtol * float(np.abs(a.m2).max()))


@needs_numba
def test_compiled_record_slabs_change_no_bit(monkeypatch):
    """With the compiled sums, one slab of all networks and one slab per network give the
    very same bits (each network's sums are the same loop)."""
    whole = _record(monkeypatch, True, "float64")
    monkeypatch.setattr(RECORD, "CHUNK", 1)
    slabs = _record(monkeypatch, True, "float64")
    for key, moms in whole.stats.items():
        for a, b in zip(moms, slabs.stats[key], strict=True):
            assert np.array_equal(a.mean, b.mean) and np.array_equal(a.m2, b.m2), key
