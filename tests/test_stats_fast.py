"""The NumPy fast path of ``record`` (``deltaprop.stats._fastrec``) against the generic path.

The generic path (``forward`` + ``deltas`` + ``record_pass``) is the reference; the fast path
must give the same keys, shapes, counts, moments (to rounding) and identical histograms,
for every activation, loss, stack layout and option, with and without sub-batching.
"""

import numpy as np
import pytest

from deltaprop import Network
from deltaprop.stats import Histogram, _fastrec, record

CASES = [  # hidden, output, loss, n_L
    ("tanh", "identity", "mse", 2),
    ("sigmoid", "softmax", "softmax-cross-entropy", 3),
    ("relu", "sigmoid", "mse", 2),
    ("identity", "sigmoid", "sigmoid-cross-entropy", 2),
    ("tanh", "tanh", "mse", 2),
]
OPTIONS = [
    {},
    {"bins": 8},
    {"batch_size": 16, "bins": 16, "budget": 100},  # sub-batches of MIN_SUB samples
    {"quantities": ("delta",), "weight_grads": False, "cross": False},
    {"quantities": ("z", "df"), "cross": False},
    {"quantities": ("a",), "budget": 1},
]


def _data(rng, loss, m, nL, lead=()):
    x = rng.normal(size=lead + (m, 4))
    if loss == "softmax-cross-entropy":
        y = rng.integers(0, nL, m)
    elif loss == "sigmoid-cross-entropy":
        y = rng.integers(0, 2, lead + (m, nL)).astype(float)
    else:
        y = rng.normal(size=lead + (m, nL))
    return x, y


def _both(monkeypatch, net, x, y, loss, budget=None, **kw):
    with monkeypatch.context() as mp:
        mp.setattr(_fastrec, "applies", lambda *a: False)
        ref = record(net, x, y, loss, **kw)
    with monkeypatch.context() as mp:
        calls = []
        mp.setattr(_fastrec, "record_batch", _spy(_fastrec.record_batch, calls))
        if budget is not None:
            mp.setattr(_fastrec, "BUDGET", budget)
        got = record(net, x, y, loss, **kw)
        assert calls, "the fast path did not run"
    return ref, got


def _spy(fn, calls):
    def wrapped(*a, **k):
        calls.append(1)
        return fn(*a, **k)
    return wrapped


def _assert_same(ref, got, rtol=1e-9):
    assert list(ref.stats) == list(got.stats)
    assert (ref.K, ref.sizes) == (got.K, got.sizes)
    for key in ref.stats:
        for a, b in zip(ref.stats[key], got.stats[key], strict=True):
            assert a.count == b.count
            assert a.mean.shape == b.mean.shape and a.m2.shape == b.m2.shape
            np.testing.assert_allclose(b.mean, a.mean, rtol=rtol, atol=1e-12)
            # M2 to the rounding of the sums it comes from (scale count * mean^2)
            scale = a.count * float(np.max(np.asarray(a.mean, np.float64) ** 2))
            np.testing.assert_allclose(b.m2, a.m2, rtol=100 * rtol,
                                       atol=1e-10 + 10 * rtol * scale)
    assert set(ref.hist) == set(got.hist)
    for l, h in ref.hist.items():
        assert h.exponent == got.hist[l].exponent
        np.testing.assert_array_equal(h.counts, got.hist[l].counts)


@pytest.mark.parametrize("K", [None, 3])
@pytest.mark.parametrize("hidden,out,loss,nL", CASES)
@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: ",".join(map(str, o)) or "default")
def test_fast_record_matches_generic(monkeypatch, hidden, out, loss, nL, K, opts):
    rng = np.random.default_rng(0)
    net = Network.init([4, 7, 5, nL], hidden, out, K=K, seed=1, bias_std=0.1)
    x, y = _data(rng, loss, 50, nL)
    _assert_same(*_both(monkeypatch, net, x, y, loss, **opts))


@pytest.mark.parametrize("hidden,out,loss,nL",
                         [c for c in CASES if c[2] != "softmax-cross-entropy"])
def test_fast_record_per_network_inputs(monkeypatch, hidden, out, loss, nL):
    rng = np.random.default_rng(1)
    net = Network.init([4, 6, 6, nL], hidden, out, K=3, seed=2)
    x, y = _data(rng, loss, 40, nL, lead=(3,))
    _assert_same(*_both(monkeypatch, net, x, y, loss, bins=8, budget=3 * 6 * 8 * 32))


def test_fast_record_float32_and_large_mean(monkeypatch):
    """float32 to float32 rounding; a quantity with mean >> sd takes the two-pass M2."""
    rng = np.random.default_rng(2)
    net = Network.init([4, 8, 2], "sigmoid", K=2, seed=3, dtype="float32", bias_mean=30.0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = rng.normal(size=(64, 2)).astype("float32")
    ref, got = _both(monkeypatch, net, x, y, "mse", bins=8, budget=2 * 8 * 4 * 32)
    _assert_same(ref, got, rtol=2e-4)
    z = got.get("z", 1)[0]
    assert np.all(z.mean > 20) and np.all(z.m2 > 0)


def test_fast_path_rejects_bad_inputs():
    net = Network.init([4, 5, 2], "tanh", seed=0)
    x = np.ones((6, 4))
    x[2, 1] = np.nan
    with pytest.raises(ValueError):
        record(net, x, np.zeros((6, 2)), "mse")
    with pytest.raises(ValueError):
        record(net, np.ones((6, 3)), np.zeros((6, 2)), "mse")


def _reference_counts(x, bins, exponent):
    x = np.asarray(x, np.float64).reshape(-1)
    x = x[np.isfinite(x)]
    R = 2.0 ** exponent
    idx = np.clip(np.floor((x + R) * (bins / (2 * R))).astype(np.int64), 0, bins - 1)
    return np.bincount(idx, minlength=bins)


@pytest.mark.parametrize("bins", [16, 12])
@pytest.mark.parametrize("dtype", ["float64", "float32", "int64"])
def test_histogram_add_matches_reference_binning(dtype, bins):
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(7, 300)) * 3).astype(dtype)
    h = Histogram.empty(bins).add(x)
    R = 2.0 ** h.exponent
    assert R >= np.abs(x).max() and R / 2 <= np.abs(x).max()
    np.testing.assert_array_equal(h.counts, _reference_counts(x, bins, h.exponent))
    # values at +-R (the range doubles) and at bin edges, NaN and inf dropped
    edges = np.array([-R, R, 0.0, R / 8, -R / 8, -R / 4, np.nan, np.inf, -np.inf])
    h2 = h.add(edges)
    assert h2.exponent == h.exponent + 1
    both = np.concatenate([x.reshape(-1).astype(np.float64), edges])
    np.testing.assert_array_equal(h2.counts, _reference_counts(both, bins, h2.exponent))
    assert h2.total == h.total + 6
    zeros = Histogram.empty(8).add(np.zeros(5))  # all zero: the two middle bins' edge
    assert zeros.counts[4] == 5 and zeros.total == 5
    assert Histogram.empty(8).add(np.array([np.nan])).exponent is None
