"""The fused training step and the update: :func:`deltaprop.backprop.train_step` is
``step(net, gradients(...)[1], eta)`` with -eta/m folded into delta, and ``step`` is
``p - eta dp`` exactly.

Every row of the engine case table (every activation, every loss, L2 or not, labels or
distributions), for a single network and stacks of K networks (shared and per-network
inputs), float64 and float32, pure and donating; scratch buffers reused across calls and
never returned; the input checks of ``train_step`` are those of ``gradients``.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CASES, rel_err

from deltaprop import Workspace
from deltaprop import backprop as bp

TOL = {"float64": 1e-13, "float32": 2e-6}

# (K, x stacked too?): single network, stack with shared x, stack with per-network x
STACKS = [(None, False), (3, False), (3, True)]


def _data(case, K, stacked_x, dtype):
    x, y = case.data(K=K if stacked_x else None)
    return x.astype(dtype), y


def _copy(net):
    return net.replace(W=[None] + [w.copy() for w in net.W[1:]],
                       b=[None] + [v.copy() for v in net.b[1:]])


def _assert_close(got, want, tol, what):
    for l, (p, q) in enumerate(zip(got, want, strict=True)):
        if q is None:
            assert p is None, (what, l)
            continue
        assert p.shape == q.shape and p.dtype == q.dtype, (what, l, p.shape, q.shape)
        assert rel_err(p, q) <= tol, (what, l, rel_err(p, q))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("donate", [False, True], ids=["pure", "donate"])
@pytest.mark.parametrize("K,stacked_x", STACKS, ids=["single", "K3-shared-x", "K3-stacked-x"])
def test_train_step_equals_gradients_then_step(case, K, stacked_x, donate, dtype):
    net = case.network(K=K, dtype=dtype)
    x, y = _data(case, K, stacked_x, dtype)
    eta = 0.3
    _, g0 = bp.gradients(net, x, y, case.loss, case.l2)
    want = bp.step(net, g0, eta)
    before = [w.copy() for w in net.W[1:]] + [v.copy() for v in net.b[1:]]
    ws = Workspace()
    # a first step on other data fills the workspace: the second must not see its leftovers
    other = bp.train_step(_copy(net), 2 * x, y, case.loss, eta, case.l2, workspace=ws)
    assert other[0].K == net.K
    new, J = bp.train_step(net, x, y, case.loss, eta, case.l2, workspace=ws, donate=donate)
    tol = TOL[dtype] * 10
    _assert_close(new.W, want.W, tol, "W")
    _assert_close(new.b, want.b, tol, "b")
    assert rel_err(J, g0.J) <= TOL[dtype]
    unchanged = all(np.array_equal(p, q) for p, q in
                    zip([*net.W[1:], *net.b[1:]], before, strict=True))
    assert unchanged != donate or all(np.array_equal(p, q) for p, q in zip(
        [*new.W[1:], *new.b[1:]], before, strict=True))


def test_train_step_non_contiguous_inputs():
    case = CASES[2]
    net = case.network()
    x, y = case.data()
    W = list(net.W)
    W[1] = np.asfortranarray(W[1])
    want = bp.step(net, bp.gradients(net, x, y, case.loss, case.l2)[1], 0.2)
    got, _ = bp.train_step(net.replace(W=W), np.asfortranarray(x), y, case.loss, 0.2, case.l2)
    _assert_close(got.W, want.W, 1e-13, "W")


def test_returned_trace_is_never_overwritten():
    case = CASES[3]
    net = case.network()
    x, y = case.data()
    t1, g1 = bp.gradients(net, x, y, case.loss, case.l2)
    keep = [v.copy() for v in (*t1.z[1:], *t1.a[1:], *g1.delta[1:], *g1.dW[1:])]
    ws = Workspace()
    for s in range(3):
        bp.gradients(net, x + s, y, case.loss, case.l2)
        bp.train_step(net, x + s, y, case.loss, 0.1, case.l2, workspace=ws)
    now = (*t1.z[1:], *t1.a[1:], *g1.delta[1:], *g1.dW[1:])
    assert all(np.array_equal(p, q) for p, q in zip(now, keep, strict=True))


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
def test_train_step_checks_like_gradients(name, i, bad):
    case = CASES[i]
    net = case.network()
    x, y = bad(*case.data())
    outcomes = []
    for run in (lambda: bp.train_step(net, x, y, case.loss, 0.1, case.l2),
                lambda: (lambda g: (bp.step(net, g, 0.1), g.J))(
                    bp.gradients(net, x, y, case.loss, case.l2)[1])):
        try:
            new, J = run()
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


def test_finite_check_survives_an_overflowing_sum():
    # the one-pass check sums x; these finite values overflow the sum, so the exact check
    # decides (and accepts them); a NaN is still caught
    from deltaprop import _backend, _checks

    case = CASES[0]
    net = case.network()
    x = np.full((2, case.sizes[0]), 1e308)
    with np.errstate(over="raise"):  # the shortcut's own overflow stays silent
        assert _checks.check_x(net, x, _backend.namespace(x)) is x
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        bp.forward(net, x)


@pytest.mark.parametrize("name", ["mse", "softmax-cross-entropy"])
def test_train_step_uses_a_users_own_loss_object(name):
    # a Loss that borrows a registered name has no kernel: its own formulas run
    from deltaprop.losses import Loss, get

    builtin = get(name)
    mine = Loss(name, lambda z, a, y, xp: 3.0 * builtin.per_sample(z, a, y, xp),
                lambda z, a, y, f, xp: 3.0 * builtin.delta(z, a, y, f, xp), "3 x " + name,
                output=builtin.output, targets=builtin.targets)
    case = next(c for c in CASES if c.loss == name and c.activations[-1] ==
                ("softmax" if name != "mse" else "identity"))
    net = case.network()
    x, y = case.data()
    a, Ja = bp.train_step(net, x, y, mine, 0.1)
    b, Jb = bp.train_step(net, x, y, name, 0.3)  # 3 x the gradient = 3 x the step
    _assert_close(a.W, b.W, 1e-13, "W")
    assert rel_err(Ja, 3 * Jb) <= 1e-13


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("K", [None, 3], ids=["single", "K3"])
def test_step_is_p_minus_eta_dp_exactly(case, K, dtype):
    net = case.network(K=K, dtype=dtype)
    x, y = case.data()
    _, g = bp.gradients(net, x.astype(dtype), y, case.loss, case.l2)
    new = bp.step(net, g, 0.37)
    want = [p - 0.37 * d for p, d in zip([*net.W[1:], *net.b[1:]], [*g.dW[1:], *g.db[1:]],
                                         strict=True)]
    for p, q in zip([*new.W[1:], *new.b[1:]], want, strict=True):
        assert p.dtype == q.dtype and np.array_equal(p, q)
    assert new.activations == net.activations and new.K == net.K


def test_step_with_mismatched_gradients_is_an_error():
    case = CASES[1]
    net = case.network()
    x, y = CASES[0].data()
    _, g = bp.gradients(CASES[0].network(), x, y, CASES[0].loss)
    with pytest.raises((ValueError, TypeError)):
        bp.step(net, g, 0.1)


@pytest.mark.parametrize("K", [None, 2], ids=["single", "K2"])
@pytest.mark.parametrize("sizes,m", [([3, 40, 5], 10), ([30, 4, 6], 12)],
                         ids=["narrow-input", "narrow-hidden"])
def test_train_step_scales_delta_or_the_product_alike(sizes, m, K):
    # layer_step applies -eta/m to the smaller of delta (m, n_l) and the product
    # (n_l, n_{l-1}); these sizes take each branch in some layer (m > n_{l-1} and m <= n_{l-1})
    import deltaprop as dp

    net = dp.Network.init(sizes, "tanh", "identity", K=K, seed=3)
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((m, sizes[0])), rng.standard_normal((m, sizes[-1]))
    want = bp.step(net, bp.gradients(net, x, y, "mse", 0.2)[1], 0.3)
    for donate in (False, True):
        got, _ = bp.train_step(_copy(net), x, y, "mse", 0.3, 0.2, workspace=Workspace(),
                               donate=donate)
        _assert_close(got.W, want.W, 1e-13, "W")
        _assert_close(got.b, want.b, 1e-13, "b")


def test_donating_step_returns_the_network_it_updated():
    case = CASES[0]
    net = _copy(case.network())
    x, y = case.data()
    new, _ = bp.train_step(net, x, y, case.loss, 0.1, case.l2, donate=True)
    assert new is net
    assert bp.train_step(net, x, y, case.loss, 0.1, case.l2)[0] is not net


def test_unchecked_step_with_checked_targets_equals_the_checked_step():
    # fit checks once and calls train_step(check=False) with one-hot rows for labels
    from deltaprop import _checks, losses

    case = next(c for c in CASES if c.loss == "softmax-cross-entropy" and c.labels)
    net = case.network()
    x, y = case.data()
    loss = losses.get(case.loss)
    Y = _checks.check_y(net, loss, y, x.shape[0], net.xp)
    a, Ja = bp.train_step(net, x, y, case.loss, 0.2, case.l2)
    b, Jb = bp.train_step(net, x, Y, loss, 0.2, case.l2, check=False, workspace=Workspace())
    _assert_close(b.W, a.W, 0, "W")
    assert Ja == Jb


@pytest.mark.parametrize("K", [None, 3], ids=["single", "K3"])
@pytest.mark.parametrize("name", ["mse", "softmax-cross-entropy"])
def test_loss_kernels_equal_the_generic_cost(name, K):
    # Loss.cost_into (mse) and Loss.fused (softmax CE) against the mean of per_sample
    from deltaprop import _backend
    from deltaprop import equations as eq
    from deltaprop.activations import get as act
    from deltaprop.losses import get

    loss, xp = get(name), _backend.namespace(np.zeros(1))
    rng = np.random.default_rng(5)
    shape = (7, 4) if K is None else (K, 7, 4)
    z = 3 * rng.standard_normal(shape)
    y = rng.dirichlet(np.ones(4), size=shape[:-1])
    f = act("softmax" if name != "mse" else "identity")
    a, J = eq.output_and_cost(loss, f, z, y, xp)
    want = np.mean(loss.per_sample(z, f.f(z, xp), y, xp), axis=-1)
    assert J.shape == want.shape == (() if K is None else (K,))
    np.testing.assert_allclose(J, want, rtol=1e-14)
    np.testing.assert_allclose(a, f.f(z, xp), rtol=1e-14)


def test_replace_checks_new_parameters_like_the_constructor():
    # no validation bypass: a layout seen before is remembered, a new one is checked
    case = CASES[0]
    net = case.network()
    W = list(net.W)
    W[1] = np.zeros((W[1].shape[0] + 1, W[1].shape[1]))
    with pytest.raises(ValueError, match="b\\[1\\] has shape"):
        net.replace(W=W)
    W[1] = net.W[1].astype(np.float32)
    with pytest.raises(TypeError, match="one dtype"):
        net.replace(W=W)
    same = net.replace(W=[None] + [w + 1 for w in net.W[1:]])
    assert same.sizes == net.sizes and same.activations == net.activations


def test_one_workspace_serves_networks_and_batches_in_turn():
    # the workspace remembers the last donated network's buffers; switching networks or batch
    # sizes between donating steps must take each one's own buffers
    import deltaprop as dp

    rng = np.random.default_rng(6)
    nets = [dp.Network.init(s, "sigmoid", "identity", seed=7) for s in ([4, 6, 2], [4, 3, 2])]
    xs = [rng.standard_normal((m, 4)) for m in (5, 8)]
    ys = [rng.standard_normal((m, 2)) for m in (5, 8)]
    shared, own = Workspace(), [Workspace(), Workspace()]
    a, b = [_copy(n) for n in nets], [_copy(n) for n in nets]
    for s in range(6):
        i, j = s % 2, (s // 2) % 2
        a[i], Ja = bp.train_step(a[i], xs[j], ys[j], "mse", 0.2, workspace=shared, donate=True)
        b[i], Jb = bp.train_step(b[i], xs[j], ys[j], "mse", 0.2, workspace=own[i], donate=True)
        assert Ja == Jb
    for p, q in zip(a, b, strict=True):
        _assert_close(p.W, q.W, 0, "W")


@pytest.mark.parametrize("loss,out", [("mse", "identity"), ("softmax-cross-entropy", "softmax"),
                                      ("sigmoid-cross-entropy", "sigmoid")])
@pytest.mark.parametrize("K", [None, 2])
def test_output_and_loss_is_the_forward_pass_and_its_loss(loss, out, K):
    """output_and_loss (fit's per-epoch evaluation) gives forward(...).a[L] and
    loss_value(...); its hidden buffers are reused from call to call, its output is not."""
    import deltaprop as dp
    from deltaprop.app.train import prepare

    rng = np.random.default_rng(8)
    net = dp.Network.init([5, 7, 6, 3], "tanh", out, K=K, seed=9)
    x = rng.standard_normal((40, 5))
    y = rng.integers(0, 3, 40) if loss == "softmax-cross-entropy" else \
        (rng.random((40, 3)) > 0.5).astype(float)
    X, Y = prepare(net[0] if K else net, loss, x, y)
    ws = Workspace()
    a, J = bp.output_and_loss(net, X, Y, loss, workspace=ws)
    trace = bp.forward(net, X)
    np.testing.assert_allclose(a, trace.a[-1], rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(J, bp.loss_value(net, trace, Y, loss), rtol=1e-13)
    buffers = dict(ws._buf)
    a2, J2 = bp.output_and_loss(net, X, Y, loss, workspace=ws)
    assert a2 is not a and np.array_equal(a2, a) and np.array_equal(J2, J)
    assert all(ws._buf[k] is v for k, v in buffers.items()) and len(ws._buf) == len(buffers)


def test_output_and_loss_on_torch():
    torch = pytest.importorskip("torch")
    import deltaprop as dp

    net = dp.Network.init([4, 6, 2], "sigmoid", "identity", seed=1)
    x, y = np.random.default_rng(2).standard_normal((9, 4)), np.zeros((9, 2))
    a, J = bp.output_and_loss(net.to("torch"), torch.asarray(x), torch.asarray(y), "mse",
                              workspace=Workspace())
    trace = bp.forward(net, x)
    np.testing.assert_allclose(a.numpy(), trace.a[-1], rtol=1e-14)
    np.testing.assert_allclose(float(J), bp.loss_value(net, trace, y, "mse"), rtol=1e-13)
