"""Update rules against hand-computed numbers and against torch.optim on the same gradients."""

import math

import numpy as np
import pytest

from deltaprop import Network, backprop, optim
from deltaprop.backprop import Gradients


def _net(seed=0):
    return Network.init([3, 4, 2], "tanh", "identity", seed=seed, bias_std=0.1)


def _grads(net, rng):
    dW = (None, *(rng.normal(size=w.shape) for w in net.W[1:]))
    db = (None, *(rng.normal(size=b.shape) for b in net.b[1:]))
    return Gradients(0.0, (None,) * (net.L + 1), dW, db)


def _one_param():
    """A 1x1 network: W[1] = [[1.0]], b[1] = [0.5]; gradient dW = 2, db = -1 every step."""
    net = Network.from_layers([np.array([[1.0]])], [np.array([0.5])], ["identity"])
    g = Gradients(0.0, (None, None), (None, np.array([[2.0]])), (None, np.array([-1.0])))
    return net, g


# --- hand-computed --------------------------------------------------------------------

def test_gd_is_backprop_step():
    net, g = _one_param()
    opt = optim.get("sgd", 0.1)
    state = opt.init(net)
    net2, state = opt.update(net, g, state)
    # W = 1 - 0.1 * 2 = 0.8, b = 0.5 - 0.1 * (-1) = 0.6
    assert net2.W[1][0, 0] == pytest.approx(0.8) and net2.b[1][0] == pytest.approx(0.6)
    ref = backprop.step(net, g, 0.1)
    assert np.array_equal(ref.W[1], net2.W[1]) and np.array_equal(ref.b[1], net2.b[1])
    assert net.W[1][0, 0] == 1.0  # the caller's network is untouched


def test_momentum_by_hand():
    net, g = _one_param()
    opt = optim.get("momentum", 0.1, momentum=0.5)
    s = opt.init(net)
    net, s = opt.update(net, g, s)  # v = 2, W = 1 - 0.2 = 0.8
    net, s = opt.update(net, g, s)  # v = 0.5*2 + 2 = 3, W = 0.8 - 0.3 = 0.5
    assert net.W[1][0, 0] == pytest.approx(0.5)
    assert s["v.W.1"][0, 0] == pytest.approx(3.0) and s["t"] == 2
    assert net.b[1][0] == pytest.approx(0.5 + 0.1 + 0.15)  # v_b = -1, then -1.5


def test_nesterov_by_hand():
    net, g = _one_param()
    opt = optim.get("nesterov", 0.1, momentum=0.5)
    s = opt.init(net)
    net, s = opt.update(net, g, s)  # v = 2, W = 1 - 0.1 (2 + 1) = 0.7
    assert net.W[1][0, 0] == pytest.approx(0.7)
    net, s = opt.update(net, g, s)  # v = 3, W = 0.7 - 0.1 (2 + 1.5) = 0.35
    assert net.W[1][0, 0] == pytest.approx(0.35)


def test_adam_by_hand():
    net, g = _one_param()
    opt = optim.get("adam", 0.01)
    s = opt.init(net)
    net, s = opt.update(net, g, s)
    # first step: m_hat = g, v_hat = g^2, so W moves by eta * g / (|g| + eps) ~ eta sign(g)
    assert net.W[1][0, 0] == pytest.approx(1 - 0.01 * 2 / (2 + 1e-8), abs=1e-15)
    assert net.b[1][0] == pytest.approx(0.5 + 0.01, abs=1e-9)
    assert s["m.W.1"][0, 0] == pytest.approx(0.2) and s["v.W.1"][0, 0] == pytest.approx(0.004)


def test_lr_override_and_state_is_pure():
    net, g = _one_param()
    opt = optim.get("momentum", 0.1)
    s0 = opt.init(net)
    net1, s1 = opt.update(net, g, s0, lr=0.01)
    assert net1.W[1][0, 0] == pytest.approx(1 - 0.01 * 2)
    assert s0["v.W.1"][0, 0] == 0.0 and s0["t"] == 0  # old state untouched


@pytest.mark.parametrize("bad", [
    lambda: optim.get("rmsprop"), lambda: optim.get("sgd", -1.0),
    lambda: optim.get("sgd", float("nan")), lambda: optim.get("momentum", momentum=1.5),
    lambda: optim.get("adam", beta1=1.0), lambda: optim.get("sgd", 0.1, momentum=0.9),
    lambda: optim.schedule("warmup", 0.1), lambda: optim.schedule("step", 0.1, foo=1),
])
def test_bad_options(bad):
    with pytest.raises(ValueError):
        bad()


# --- schedules -------------------------------------------------------------------------

@pytest.mark.parametrize("name, kw, want", [
    ("constant", {}, [0.1, 0.1, 0.1]),
    ("step", {"step_size": 2, "gamma": 0.5}, [0.1, 0.1, 0.05, 0.05, 0.025]),
    ("exponential", {"gamma": 0.5}, [0.1, 0.05, 0.025]),
    ("cosine", {"epochs": 4}, [0.1, 0.1 * (1 + math.cos(math.pi / 4)) / 2, 0.05,
                               0.1 * (1 + math.cos(3 * math.pi / 4)) / 2, 0.0]),
    ("inverse-time", {"decay": 1.0}, [0.1, 0.05, 0.1 / 3]),
])
def test_schedules(name, kw, want):
    f = optim.schedule(name, 0.1, **kw)
    assert [f(e) for e in range(len(want))] == pytest.approx(want)


# --- against PyTorch -------------------------------------------------------------------

@pytest.mark.parametrize("name, kw, torch_opt", [
    ("gd", {}, lambda p, lr: ("SGD", {"lr": lr})),
    ("momentum", {"momentum": 0.9}, lambda p, lr: ("SGD", {"lr": lr, "momentum": 0.9})),
    ("nesterov", {"momentum": 0.8},
     lambda p, lr: ("SGD", {"lr": lr, "momentum": 0.8, "nesterov": True})),
    ("adam", {}, lambda p, lr: ("Adam", {"lr": lr})),
    ("adam", {"beta1": 0.5, "beta2": 0.9, "eps": 1e-6},
     lambda p, lr: ("Adam", {"lr": lr, "betas": (0.5, 0.9), "eps": 1e-6})),
])
def test_matches_torch_optim(name, kw, torch_opt):
    torch = pytest.importorskip("torch")
    lr = 0.05
    net = _net()
    opt = optim.get(name, lr, **kw)
    state = opt.init(net)
    params = [torch.tensor(p, dtype=torch.float64, requires_grad=True)
              for l in range(1, net.L + 1) for p in (net.W[l], net.b[l])]
    cls, options = torch_opt(params, lr)
    topt = getattr(torch.optim, cls)(params, **options)
    rng = np.random.default_rng(1)
    for _ in range(6):
        g = _grads(net, rng)
        net, state = opt.update(net, g, state)
        for p, gp in zip(params, [x for l in range(1, net.L + 1) for x in (g.dW[l], g.db[l])],
                         strict=True):
            p.grad = torch.tensor(gp, dtype=torch.float64)
        topt.step()
    ours = [p for l in range(1, net.L + 1) for p in (net.W[l], net.b[l])]
    for a, t in zip(ours, params, strict=True):
        np.testing.assert_allclose(a, t.detach().numpy(), rtol=0, atol=1e-12)


def test_state_keys_name_the_parameters():
    net = _net()
    s = optim.get("adam").init(net)
    assert set(s) == {"t"} | {f"{k}.{p}.{l}" for k in "mv" for p in "Wb" for l in (1, 2)}
    assert s["m.W.2"].shape == net.W[2].shape


@pytest.mark.parametrize("shape", [(3, 2), (300, 200)])  # 300 x 200 float64: NumPy elides
def test_rules_are_the_textbook_expressions_bit_for_bit_and_pure(shape):
    """The rules are written (-eta d) + p to let NumPy reuse temporaries; that must give the
    same bits as p - eta d, and never write into the arrays passed in."""
    rng = np.random.default_rng(2)
    for dt in (np.float64, np.float32):
        p, g, v, m = (rng.normal(size=shape).astype(dt) for _ in range(4))
        v = np.abs(v)
        saved = [a.copy() for a in (p, g, v, m)]
        eta, mu = 0.03, 0.9
        p1, v1 = optim.momentum_update(p, g, m, eta, mu)
        assert np.array_equal(v1, mu * m + g) and np.array_equal(p1, p - eta * (mu * m + g))
        p2, _ = optim.nesterov_update(p, g, m, eta, mu)
        assert np.array_equal(p2, p - eta * (g + mu * (mu * m + g)))
        t, b1, b2, eps = 3, 0.9, 0.999, 1e-8
        p3 = optim.adam_update(p, m, v, t, eta, b1, b2, eps, np)
        step = eta / (1 - b1 ** t)
        assert np.array_equal(p3, p - step * (m / (np.sqrt(v) / math.sqrt(1 - b2 ** t) + eps)))
        assert all(p_.dtype == dt for p_ in (p1, v1, p2, p3))
        assert all(np.array_equal(a, b) for a, b in zip((p, g, v, m), saved, strict=True))


def test_is_plain_gd():
    assert optim.is_plain_gd(optim.get("sgd", 0.3))
    assert not any(optim.is_plain_gd(optim.get(n)) for n in ("momentum", "nesterov", "adam"))
    gd = optim.get("gd")
    assert not optim.is_plain_gd(optim.Optimizer(gd.init, lambda *a, **k: gd.update(*a, **k),
                                                 "gd"))  # a user's own rule named gd


def test_malformed_state_still_reaches_the_network_checks():
    net = _net()
    opt = optim.get("momentum", 0.1)
    s = opt.init(net)
    s["v.W.1"] = np.zeros((2, *net.W[1].shape))  # broadcasts to a stack: not W[1]'s shape
    with pytest.raises(ValueError, match="has shape"):
        opt.update(net, _grads(net, np.random.default_rng(0)), s)


# --- the fused step: train_step(optimizer=..., state=...) equals gradients + update ------

@pytest.mark.parametrize("donate", [False, True], ids=["pure", "donate"])
@pytest.mark.parametrize("name,hyper", [("gd", {}), ("momentum", {"momentum": 0.7}),
                                        ("nesterov", {"momentum": 0.7}), ("adam", {})])
@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_train_step_with_an_optimizer_equals_gradients_then_update(name, hyper, donate, l2):
    rng = np.random.default_rng(2)
    net = Network.init([5, 7, 3], "tanh", "identity", seed=4, bias_std=0.1)
    x, y = rng.normal(size=(6, 5)), rng.normal(size=(6, 3))
    opt = optim.get(name, 0.05, **hyper)
    ref_net, ref_state = net, opt.init(net)
    fused_net = net.replace(W=[None] + [w.copy() for w in net.W[1:]],
                            b=[None] + [v.copy() for v in net.b[1:]])
    state, ws = opt.init(net), backprop.Workspace()
    for _ in range(3):
        _, g = backprop.gradients(ref_net, x, y, "mse", l2)
        ref_net, ref_state = opt.update(ref_net, g, ref_state)
        fused_net, J = backprop.train_step(fused_net, x, y, "mse", 0.05, l2, workspace=ws,
                                           donate=donate, optimizer=opt, state=state)
        assert np.isclose(J, g.J, rtol=1e-13)
    assert state["t"] == ref_state["t"] == 3
    tol = 1e-12 if name == "gd" else 1e-13  # gd folds -eta/m into delta: a few ulp
    for p, q in zip([*fused_net.W[1:], *fused_net.b[1:]], [*ref_net.W[1:], *ref_net.b[1:]],
                    strict=True):
        np.testing.assert_allclose(p, q, rtol=tol, atol=tol)
    for k, v in ref_state.items():
        np.testing.assert_allclose(state[k], v, rtol=1e-12, atol=1e-15)


def test_donating_rules_round_like_the_pure_ones():
    # the in-place form of each rule gives the very same numbers (not just close ones)
    rng = np.random.default_rng(3)
    p, g, v, m = (rng.normal(size=(4, 3)) for _ in range(4))
    v2 = np.abs(v)
    for law in (optim.momentum_update, optim.nesterov_update):
        want = law(p, g, v, 0.1, 0.9)
        got = law(p.copy(), g.copy(), v.copy(), 0.1, 0.9, donate=True)
        assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    want = optim.adam_moments(g, m, v2, 0.9, 0.999)
    got = optim.adam_moments(g.copy(), m.copy(), v2.copy(), 0.9, 0.999, donate=True)
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    want = optim.adam_update(p, m, v2, 3, 0.01, 0.9, 0.999, 1e-8, np)
    got = optim.adam_update(p.copy(), m, v2, 3, 0.01, 0.9, 0.999, 1e-8, np, donate=True)
    assert np.array_equal(got, want)


def test_is_plain_gd_is_the_rule_not_a_tag():
    assert optim.is_plain_gd(optim.get("gd")) and optim.is_plain_gd(optim.get("sgd", 0.5))
    assert not any(optim.is_plain_gd(optim.get(n)) for n in ("momentum", "nesterov", "adam"))
    gd = optim.get("gd")
    mine = optim.Optimizer(gd.init, gd.update, "mine")  # a user's own: no rule
    assert not optim.is_plain_gd(mine) and not hasattr(gd.update, "plain_gd")
    net = _net()
    with pytest.raises(ValueError, match="no per-parameter rule"):
        backprop.train_step(net, np.zeros((2, 3)), np.zeros((2, 2)), "mse", 0.1,
                            optimizer=mine, state={"t": 0})
    with pytest.raises(ValueError, match="needs its state"):
        backprop.train_step(net, np.zeros((2, 3)), np.zeros((2, 2)), "mse", 0.1,
                            optimizer=optim.get("adam"))
