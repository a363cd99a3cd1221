"""``record`` against statistics computed directly from ``gradients``, on every backend.

The reference takes the trace and the error vectors of one :func:`deltaprop.gradients`
call on the whole batch and summarises them with plain NumPy (means and sums of squared
deviations over the samples, per-sample unit averages, the per-sample weight-gradient mean
square, the question's cross terms, a histogram of all of delta at once).  ``record`` must give
the same keys, shapes, counts, moments (to rounding) and identical histograms, for every
activation, loss, stack layout and option, whether a batch is taken whole, in batches or
in sub-batches (``BUDGET`` forced down), on NumPy, torch and array_api_strict.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from conftest import to_numpy

import deltaprop as dp
from deltaprop.stats import Histogram, Moments, record

RECORD = importlib.import_module("deltaprop.stats.record")

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


def _moments(v):
    """The four Moments of a (K, m, n) array: of v and v^2 per unit, of their unit means."""
    out = []
    for u in (v, v * v):
        mean = u.mean(axis=1)
        out.append(Moments(float(u.shape[1]), mean, ((u - mean[:, None]) ** 2).sum(axis=1)))
    for u in (v, v * v):
        r = u.mean(axis=-1)
        mean = r.mean(axis=-1)
        out.append(Moments(float(r.shape[-1]), mean, ((r - mean[:, None]) ** 2).sum(axis=-1)))
    return out[0], out[1], out[2], out[3]


def reference(net, x, y, loss, *, quantities=RECORD.QUANTITIES, bins=None, weight_grads=True,
              cross=True):
    """The Record's stats and histograms from one gradients() pass, in plain NumPy."""
    trace, g = dp.gradients(net, x, y, loss)
    f, L = net.activations, net.L

    def st(v):
        v = np.asarray(to_numpy(v), dtype=np.float64)
        return v if v.ndim == 3 else v[None]

    stats, hist = {}, {}
    for l in range(1, L + 1):
        vals = {"delta": st(g.delta[l]), "z": st(trace.z[l]), "a": st(trace.a[l])}
        if f[l].elementwise and not (l == L and f[l].name == "identity"):
            vals["df"] = f[l].df(vals["z"], vals["a"], np)
        for q in quantities:
            if q in vals:
                stats[(q, l)] = _moments(vals[q])
        if weight_grads:
            a_prev = st(trace.a[l - 1])
            g2 = (vals["delta"] ** 2).mean(-1) * (a_prev ** 2).mean(-1)
            stats[("dW2", l)] = _moments(g2[..., None])
        if bins:
            hist[l] = Histogram.empty(bins).add(vals["delta"])
    l = L - 1
    if cross and l >= 1 and f[l].elementwise:
        z, a = st(trace.z[l]), st(trace.a[l])
        df = f[l].df(z, a, np)
        stats[("fdf", l)] = _moments(df * a)
        stats[("dfS", l)] = _moments(df * a.sum(-1, keepdims=True))
    return stats, hist


def _assert_matches(rec, want, rtol=1e-9):
    stats, hist = want
    assert set(rec.stats) == set(stats)
    for key, moms in stats.items():
        got = rec.get(*key)
        for a, b in zip(moms, got, strict=True):
            assert a.count == b.count, key
            assert a.mean.shape == b.mean.shape and a.m2.shape == b.m2.shape, key
            np.testing.assert_allclose(b.mean, a.mean, rtol=rtol, atol=1e-12, err_msg=str(key))
            # M2 to the rounding of the sums it comes from (scale count * mean^2)
            scale = a.count * float(np.max(a.mean ** 2))
            np.testing.assert_allclose(b.m2, a.m2, rtol=100 * rtol,
                                       atol=1e-10 + 10 * rtol * scale, err_msg=str(key))
    assert set(rec.hist) == set(hist)
    for l, h in hist.items():
        assert h.exponent == rec.hist[l].exponent
        np.testing.assert_array_equal(h.counts, rec.hist[l].counts)


def _record(monkeypatch, net, x, y, loss, budget=None, **kw):
    if budget is not None:
        monkeypatch.setattr(RECORD, "BUDGET", budget)
    return record(net, x, y, loss, **kw)


@pytest.mark.parametrize("K", [None, 3])
@pytest.mark.parametrize("hidden,out,loss,nL", CASES)
@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: ",".join(map(str, o)) or "default")
def test_record_matches_direct_statistics(monkeypatch, hidden, out, loss, nL, K, opts):
    rng = np.random.default_rng(0)
    net = dp.Network.init([4, 7, 5, nL], hidden, out, K=K, seed=1, bias_std=0.1)
    x, y = _data(rng, loss, 50, nL)
    opts = dict(opts)
    budget, batch_size = opts.pop("budget", None), opts.pop("batch_size", None)
    rec = _record(monkeypatch, net, x, y, loss, budget, batch_size=batch_size, **opts)
    _assert_matches(rec, reference(net, x, y, loss, **opts))


@pytest.mark.parametrize("hidden,out,loss,nL",
                         [c for c in CASES if c[2] != "softmax-cross-entropy"])
def test_record_per_network_inputs(monkeypatch, hidden, out, loss, nL):
    rng = np.random.default_rng(1)
    net = dp.Network.init([4, 6, 6, nL], hidden, out, K=3, seed=2)
    x, y = _data(rng, loss, 40, nL, lead=(3,))
    rec = _record(monkeypatch, net, x, y, loss, 3 * 6 * 8 * 32, bins=8)
    _assert_matches(rec, reference(net, x, y, loss, bins=8))


def test_record_float32_and_large_mean(monkeypatch):
    """float32 to float32 rounding; a quantity with mean >> sd takes the two-pass M2."""
    rng = np.random.default_rng(2)
    net = dp.Network.init([4, 8, 2], "sigmoid", K=2, seed=3, dtype="float32", bias_mean=30.0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = rng.normal(size=(64, 2)).astype("float32")
    rec = _record(monkeypatch, net, x, y, "mse", 2 * 8 * 4 * 32, bins=8)
    _assert_matches(rec, reference(net, x, y, "mse", bins=8), rtol=2e-4)
    z = rec.get("z", 1)[0]
    assert np.all(z.mean > 20) and np.all(z.m2 > 0)


@pytest.mark.parametrize("hidden,out,loss,nL", CASES)
def test_record_sums_slab_by_slab_change_nothing(monkeypatch, hidden, out, loss, nL):
    """The sums of each quantity taken over slabs of one network (CHUNK forced down) give
    the reference's statistics, and the very same bits as one slab of all K networks."""
    rng = np.random.default_rng(5)
    net = dp.Network.init([4, 7, 5, nL], hidden, out, K=3, seed=1, bias_std=0.1)
    x, y = _data(rng, loss, 50, nL)
    whole = _record(monkeypatch, net, x, y, loss, batch_size=20, bins=8)
    monkeypatch.setattr(RECORD, "CHUNK", 1)  # one network per slab: three slabs
    slabs = _record(monkeypatch, net, x, y, loss, batch_size=20, bins=8)
    _assert_matches(slabs, reference(net, x, y, loss, bins=8))
    assert set(slabs.stats) == set(whole.stats)
    for key, moms in whole.stats.items():
        for a, b in zip(moms, slabs.stats[key], strict=True):
            assert np.array_equal(a.mean, b.mean) and np.array_equal(a.m2, b.m2), key


def test_record_sub_batches_on_every_backend(monkeypatch, xp):
    """One path for every library: sub-batches, stacked networks (their sums taken network
    by network: CHUNK forced down), histograms."""
    monkeypatch.setattr(RECORD, "CHUNK", 1)
    rng = np.random.default_rng(3)
    net = dp.Network.init([4, 6, 5, 3], "tanh", "softmax", K=2, seed=4, bias_std=0.2)
    x, y = _data(rng, "softmax-cross-entropy", 70, 3)
    rec = _record(monkeypatch, net.to(xp), xp.asarray(x), xp.asarray(y),
                  "softmax-cross-entropy", 2 * 6 * 8 * 32, batch_size=50, bins=16)
    _assert_matches(rec, reference(net, x, y, "softmax-cross-entropy", bins=16))


@pytest.mark.parametrize("per_network_x", [False, True])
def test_a_stack_is_recorded_a_few_networks_at_a_time(monkeypatch, per_network_x):
    """A budget that fits two networks with the whole batch: the K = 5 stack goes in parts
    of 2, 2 and 1 networks (record.chunk), each part in sub-batches of samples where it
    must; the concatenated record is the reference's, histograms pooled over all five."""
    rng = np.random.default_rng(5)
    net = dp.Network.init([4, 7, 5, 3], "tanh", "identity", K=5, seed=6, bias_std=0.1)
    x, y = _data(rng, "mse", 40, 3, lead=(5,) if per_network_x else ())
    budget = 2 * 40 * 7 * 8
    monkeypatch.setattr(RECORD, "BUDGET", budget)
    assert RECORD.chunk(net, 40) == 2 and RECORD.chunk(net, 40, budget=10**9) == 5
    assert RECORD.chunk(net, 400) == 1  # one network of 400 samples is over the budget
    rec = record(net, x, y, "mse", bins=16)
    assert rec.K == 5
    _assert_matches(rec, reference(net, x, y, "mse", bins=16))
    whole = _record(monkeypatch, net, x, y, "mse", budget=10**9, bins=16)
    for key, moms in whole.stats.items():
        for a, b in zip(moms, rec.stats[key], strict=True):
            np.testing.assert_allclose(b.mean, a.mean, rtol=1e-12, atol=1e-15)
    for l, h in whole.hist.items():
        np.testing.assert_array_equal(rec.hist[l].counts, h.counts)


def test_record_rejects_bad_inputs():
    net = dp.Network.init([4, 5, 2], "tanh", seed=0)
    x = np.ones((6, 4))
    x[2, 1] = np.nan
    with pytest.raises(ValueError):
        record(net, x, np.zeros((6, 2)), "mse")
    with pytest.raises(ValueError):
        record(net, np.ones((6, 3)), np.zeros((6, 2)), "mse")
