"""The NumPy fast path (:mod:`deltaprop._fast`) equals the generic array-API path.

Every row of the engine case table (every activation, every loss, L2 or not, labels or
distributions), for a single network and for stacks of K networks (shared inputs and
per-network inputs), in float64 (to ~1e-13) and float32 (to ~1e-6): the trace, the error
vectors, the gradients, and the fused training step :func:`deltaprop.backprop.train_step`
against ``step(gradients(...))`` on the generic path.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CASES, rel_err

from deltaprop import _fast
from deltaprop import backprop as bp

TOL = {"float64": 1e-13, "float32": 2e-6}

# (K, x stacked too?): single network, stack with shared x, stack with per-network x
STACKS = [(None, False), (3, False), (3, True)]


def _data(case, K, stacked_x, dtype):
    x, y = case.data(K=K if stacked_x else None)
    return x.astype(dtype), y


def _assert_close(fast, generic, tol, what):
    for l, (p, q) in enumerate(zip(fast, generic, strict=True)):
        if q is None:
            assert p is None, (what, l)
            continue
        assert p.shape == q.shape and p.dtype == q.dtype, (what, l, p.shape, q.shape)
        assert rel_err(p, q) <= tol, (what, l, rel_err(p, q))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("K,stacked_x", STACKS, ids=["single", "K3-shared-x", "K3-stacked-x"])
def test_gradients_fast_equals_generic(case, K, stacked_x, dtype):
    net = case.network(K=K, dtype=dtype)
    x, y = _data(case, K, stacked_x, dtype)
    tol = TOL[dtype]
    t1, g1 = bp.gradients(net, x, y, case.loss, case.l2, fast=True)
    t0, g0 = bp.gradients(net, x, y, case.loss, case.l2, fast=False)
    _assert_close(t1.z, t0.z, tol, "z")
    _assert_close(t1.a, t0.a, tol, "a")
    _assert_close(g1.delta, g0.delta, tol, "delta")
    _assert_close(g1.dW, g0.dW, tol, "dW")
    _assert_close(g1.db, g0.db, tol, "db")
    assert np.shape(g1.J) == np.shape(g0.J)
    assert rel_err(g1.J, g0.J) <= tol


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("donate", [False, True], ids=["pure", "donate"])
@pytest.mark.parametrize("K,stacked_x", STACKS, ids=["single", "K3-shared-x", "K3-stacked-x"])
def test_train_step_equals_gradients_then_step(case, K, stacked_x, donate, dtype):
    net = case.network(K=K, dtype=dtype)
    x, y = _data(case, K, stacked_x, dtype)
    eta = 0.3
    _, g0 = bp.gradients(net, x, y, case.loss, case.l2, fast=False)
    want = bp.step(net, g0, eta)
    before = [w.copy() for w in net.W[1:]] + [v.copy() for v in net.b[1:]]
    ws = _fast.Workspace()
    # a first step on other data fills the workspace: the second must not see its leftovers
    other = bp.train_step(net.replace(W=[None] + [w.copy() for w in net.W[1:]],
                                      b=[None] + [v.copy() for v in net.b[1:]]),
                          2 * x, y, case.loss, eta, case.l2, workspace=ws)
    assert other[0].K == net.K
    new, J = bp.train_step(net, x, y, case.loss, eta, case.l2, workspace=ws, donate=donate,
                           fast=True)
    tol = TOL[dtype] * 10
    _assert_close(new.W, want.W, tol, "W")
    _assert_close(new.b, want.b, tol, "b")
    assert rel_err(J, g0.J) <= TOL[dtype]
    unchanged = all(np.array_equal(p, q) for p, q in
                    zip([*net.W[1:], *net.b[1:]], before, strict=True))
    assert unchanged != donate or all(np.array_equal(p, q) for p, q in zip(
        [*new.W[1:], *new.b[1:]], before, strict=True))


def test_train_step_generic_path_matches_fast():
    case = CASES[1]
    net = case.network()
    x, y = case.data()
    a, Ja = bp.train_step(net, x, y, case.loss, 0.1, fast=True)
    b, Jb = bp.train_step(net, x, y, case.loss, 0.1, fast=False)
    _assert_close(a.W, b.W, 1e-13, "W")
    assert rel_err(Ja, Jb) <= 1e-13


def test_train_step_non_contiguous_inputs():
    # Fortran-order x and a transposed (non-contiguous) weight take the non-BLAS branch
    case = CASES[2]
    net = case.network()
    x, y = case.data()
    W = list(net.W)
    W[1] = np.asfortranarray(W[1])
    netF = net.replace(W=W)
    want = bp.step(net, bp.gradients(net, x, y, case.loss, case.l2, fast=False)[1], 0.2)
    got, _ = bp.train_step(netF, np.asfortranarray(x), y, case.loss, 0.2, case.l2)
    _assert_close(got.W, want.W, 1e-13, "W")


def test_returned_trace_is_never_overwritten():
    case = CASES[3]
    net = case.network()
    x, y = case.data()
    t1, g1 = bp.gradients(net, x, y, case.loss, case.l2)
    keep = [v.copy() for v in (*t1.z[1:], *t1.a[1:], *g1.delta[1:], *g1.dW[1:])]
    ws = _fast.Workspace()
    for s in range(3):
        bp.gradients(net, x + s, y, case.loss, case.l2)
        bp.train_step(net, x + s, y, case.loss, 0.1, case.l2, workspace=ws)
    now = (*t1.z[1:], *t1.a[1:], *g1.delta[1:], *g1.dW[1:])
    assert all(np.array_equal(p, q) for p, q in zip(now, keep, strict=True))


def test_switch_routes_to_generic(monkeypatch):
    case = CASES[0]
    net = case.network()
    x, y = case.data()
    calls = []
    real = _fast.forward
    monkeypatch.setattr(_fast, "forward", lambda *a: calls.append(1) or real(*a))
    bp.forward(net, x)
    assert calls == [1]
    bp.forward(net, x, fast=False)
    monkeypatch.setattr(_fast, "ENABLED", False)
    bp.forward(net, x)
    assert calls == [1]
    bp.forward(net, x, fast=True)
    assert calls == [1, 1]


def test_fast_path_is_numpy_only():
    torch = pytest.importorskip("torch")
    case = CASES[0]
    net = case.network().to("torch")
    x, _ = case.data()
    assert not _fast.applies(net, torch.asarray(x))
    assert _fast.applies(case.network(), x)
    assert not _fast.applies(case.network(dtype="float32"), x, fast=False)


def _bad_inputs():
    """(name, case index, transform of (x, y)) for inputs the checks must reject or convert."""
    soft = next(i for i, c in enumerate(CASES) if c.loss == "softmax-cross-entropy" and c.labels)
    dist = next(i for i, c in enumerate(CASES)
                if c.loss == "softmax-cross-entropy" and not c.labels)
    sig = next(i for i, c in enumerate(CASES) if c.loss == "sigmoid-cross-entropy")
    mse = next(i for i, c in enumerate(CASES) if c.loss == "mse")

    def nan_x(x, y):
        x = x.copy()
        x[0, 0] = np.nan
        return x, y

    def inf_y(x, y):
        y = y.copy()
        y[-1, -1] = np.inf
        return x, y

    return [
        ("nan-x", mse, nan_x),
        ("inf-y", mse, inf_y),
        ("int-x", mse, lambda x, y: (np.round(x).astype(np.int64), y)),
        ("x-wrong-width", mse, lambda x, y: (x[:, :-1], y)),
        ("x-empty", mse, lambda x, y: (x[:0], y[:0])),
        ("label-too-big", soft, lambda x, y: (x, y + 100)),
        ("label-negative", soft, lambda x, y: (x, y - 100)),
        ("labels-wrong-length", soft, lambda x, y: (x, y[:-1])),
        ("labels-float32", soft, lambda x, y: (x, y.astype(np.float32))),
        ("rows-not-summing-to-1", dist, lambda x, y: (x, 2 * y)),
        ("y-outside-0-1", sig, lambda x, y: (x, y + 1.5)),
        ("y-float32", sig, lambda x, y: (x, y.astype(np.float32))),
    ]


@pytest.mark.parametrize("name,i,bad", _bad_inputs(), ids=[b[0] for b in _bad_inputs()])
def test_train_step_checks_like_the_generic_path(name, i, bad):
    case = CASES[i]
    net = case.network()
    x, y = bad(*case.data())
    outcomes = []
    for fast in (True, False):
        try:
            new, J = bp.train_step(net, x, y, case.loss, 0.1, case.l2, fast=fast)
            outcomes.append(("ok", [w.copy() for w in new.W[1:]], J))
        except (TypeError, ValueError) as exc:
            outcomes.append((type(exc).__name__, str(exc), None))
    (k1, v1, J1), (k0, v0, J0) = outcomes
    assert k1 == k0, outcomes
    if k1 == "ok":
        _assert_close([None, *v1], [None, *v0], 1e-12, "W")
        assert np.allclose(J1, J0, rtol=1e-12, equal_nan=True)
    else:
        assert v1 == v0


def test_finite_shortcut_falls_back_to_the_exact_check():
    # the sum of these finite values overflows: the shortcut says "not sure", the exact
    # check (deltaprop._checks) accepts them
    case = CASES[0]
    net = case.network()
    x = np.full((2, case.sizes[0]), 1e308)
    assert not _fast._finite(x)
    assert _fast._check_x(net, x) is x
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        _fast._check_x(net, x)


@pytest.mark.parametrize("name", ["mse", "softmax-cross-entropy"])
def test_train_step_uses_a_users_own_loss_object(name):
    # a Loss that borrows a registered name must not get the fused built-in formulas
    from deltaprop.losses import Loss, get

    builtin = get(name)
    mine = Loss(name, lambda z, a, y, xp: 3.0 * builtin.per_sample(z, a, y, xp),
                lambda z, a, y, f, xp: 3.0 * builtin.delta(z, a, y, f, xp), "3 x " + name,
                output=builtin.output, targets=builtin.targets)
    case = next(c for c in CASES if c.loss == name and c.activations[-1] ==
                ("softmax" if name != "mse" else "identity"))
    net = case.network()
    x, y = case.data()
    a, Ja = bp.train_step(net, x, y, mine, 0.1, fast=True)
    b, Jb = bp.train_step(net, x, y, mine, 0.1, fast=False)
    c, Jc = bp.train_step(net, x, y, name, 0.1, fast=True)
    _assert_close(a.W, b.W, 1e-13, "W")
    assert rel_err(Ja, Jb) <= 1e-13 and rel_err(Ja, 3 * Jc) <= 1e-13


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("K", [None, 3], ids=["single", "K3"])
def test_step_fast_is_bit_identical_to_generic(case, K, dtype):
    net = case.network(K=K, dtype=dtype)
    x, y = case.data()
    _, g = bp.gradients(net, x.astype(dtype), y, case.loss, case.l2)
    a = bp.step(net, g, 0.37, fast=True)
    b = bp.step(net, g, 0.37, fast=False)
    for p, q in zip([*a.W[1:], *a.b[1:]], [*b.W[1:], *b.b[1:]], strict=True):
        assert p.dtype == q.dtype and np.array_equal(p, q)
    assert a.activations == net.activations and a.K == net.K


def test_step_with_mismatched_gradients_takes_the_generic_path():
    case = CASES[1]
    net, other = case.network(), CASES[0].network()
    x, y = CASES[0].data()
    _, g = bp.gradients(other, x, y, CASES[0].loss)
    assert _fast.step(net, g.dW, g.db, 0.1) is None
    with pytest.raises((ValueError, TypeError)):
        bp.step(net, g, 0.1)
