"""Property tests over random architectures (hypothesis).

Depth L = 1..4, widths 1..6, batch m = 1..5, any hidden activations, any loss with an
admissible output activation, single networks and stacks of K = 2:

* every z[l], a[l], delta[l] is (m, n_l) (or (K, m, n_l)), dW[l] and db[l] are shaped like
  W[l] and b[l], J is () (or (K,));
* dW, db match central differences;
* the batch gradient is the mean of the single-sample gradients, and delta[l] of the batch
  holds each sample's own delta[l] (per sample, unscaled);
* theta views round-trip: ``net.with_theta(l, net.theta(l))`` is the same network and
  column 0 of theta is b;
* each loss's closed-form delta[L] equals dJ_i/da * f'(z) computed independently by
  autograd through a textbook form of the loss written in terms of a.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import HIDDEN, make_targets, rel_err, to_numpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import deltaprop as dp
from deltaprop import Network, losses
from deltaprop import activations as acts
from deltaprop.gradcheck import gradcheck

torch = pytest.importorskip("torch")

SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
LOSS_NAMES = ("mse", "sigmoid-cross-entropy", "softmax-cross-entropy")


@st.composite
def problems(draw, stacks=True):
    """(net, x, y, loss, l2): a random network and a batch for it."""
    L = draw(st.integers(1, 4))
    sizes = draw(st.lists(st.integers(1, 6), min_size=L + 1, max_size=L + 1))
    loss = draw(st.sampled_from(LOSS_NAMES))
    hidden = draw(st.lists(st.sampled_from(HIDDEN), min_size=L - 1, max_size=L - 1))
    output = {"mse": draw(st.sampled_from((*HIDDEN, "softmax"))),
              "sigmoid-cross-entropy": "sigmoid", "softmax-cross-entropy": "softmax"}[loss]
    m = draw(st.integers(1, 5))
    K = draw(st.sampled_from((None, 2))) if stacks else None
    seed = draw(st.integers(0, 2**16))
    l2 = draw(st.sampled_from((0.0, 0.0, 0.5)))
    labels = draw(st.booleans())
    net = Network.init(sizes, [*hidden, output], init="glorot_normal", seed=seed, K=K,
                       bias_std=0.3)
    rng = np.random.default_rng(seed + 1)
    x = rng.normal(size=(m, sizes[0]))
    y = make_targets(loss, rng, (m,), sizes[-1], labels=labels)
    return net, x, y, loss, l2


@SETTINGS
@given(problems())
def test_shapes(problem):
    net, x, y, loss, l2 = problem
    trace, g = dp.gradients(net, x, y, loss, l2)
    lead = () if net.K is None else (net.K,)
    m = x.shape[0]
    assert len(trace.z) == len(trace.a) == len(g.delta) == len(g.dW) == len(g.db) == net.L + 1
    assert trace.z[0] is None and g.delta[0] is None and g.dW[0] is None and g.db[0] is None
    assert trace.a[0].shape == x.shape
    for l in range(1, net.L + 1):
        n = net.sizes[l]
        assert trace.z[l].shape == trace.a[l].shape == g.delta[l].shape == (*lead, m, n)
        assert g.dW[l].shape == net.W[l].shape == (*lead, n, net.sizes[l - 1])
        assert g.db[l].shape == net.b[l].shape == (*lead, n)
    assert np.shape(g.J) == lead


@SETTINGS
@given(problems())
def test_gradients_match_central_differences(problem):
    net, x, y, loss, l2 = problem
    result = gradcheck(net, x, y, loss, l2)
    assert result.max_rel_error < 1e-7, result.as_dict()


@SETTINGS
@given(problems(stacks=False))
def test_batch_gradient_is_mean_of_sample_gradients(problem):
    net, x, y, loss, _ = problem
    _, g = dp.gradients(net, x, y, loss)
    singles = [dp.gradients(net, x[i:i + 1], y[i:i + 1], loss)[1] for i in range(x.shape[0])]
    assert rel_err(g.J, np.mean([s.J for s in singles])) < 1e-13
    for l in range(1, net.L + 1):
        assert rel_err(g.delta[l], np.concatenate([s.delta[l] for s in singles])) < 1e-13
        assert rel_err(g.dW[l], np.mean([s.dW[l] for s in singles], axis=0)) < 1e-13
        assert rel_err(g.db[l], np.mean([s.db[l] for s in singles], axis=0)) < 1e-13


@SETTINGS
@given(problems(), st.integers(0, 3))
def test_theta_round_trip(problem, pick):
    net = problem[0]
    l = 1 + pick % net.L
    theta = net.theta(l)
    lead = () if net.K is None else (net.K,)
    assert theta.shape == (*lead, net.sizes[l], net.sizes[l - 1] + 1)
    np.testing.assert_array_equal(theta[..., 0], net.b[l])
    np.testing.assert_array_equal(theta[..., 1:], net.W[l])
    same = net.with_theta(l, theta)
    for k in range(1, net.L + 1):
        np.testing.assert_array_equal(same.W[k], net.W[k])
        np.testing.assert_array_equal(same.b[k], net.b[k])
    new = theta + 1.0
    changed = net.with_theta(l, new)
    np.testing.assert_array_equal(changed.theta(l), new)
    np.testing.assert_array_equal(changed.b[l], new[..., 0])
    np.testing.assert_array_equal(net.theta(l), theta)  # the original is untouched


# --- delta[L] = dJ_i/da * f'(z), by autograd of the loss written in terms of a ---------------


def _textbook_loss(loss, a, y):
    """J_i as a function of the output activation a (the form before any simplification)."""
    if loss == "mse":
        return 0.5 * ((a - y) ** 2).sum(-1)
    if loss == "sigmoid-cross-entropy":  # Brawer, eq. (18)
        return -(y * torch.log(a) + (1 - y) * torch.log(1 - a)).sum(-1)
    return -(y * torch.log(a)).sum(-1)


@SETTINGS
@given(st.sampled_from(LOSS_NAMES), st.sampled_from((*HIDDEN, "softmax")), st.integers(1, 6),
       st.integers(1, 5), st.integers(0, 2**16))
def test_output_delta_is_dJ_da_times_df(loss, out, n, m, seed):
    loss_ = losses.get(loss)
    out = loss_.output or out
    f = acts.get(out)
    rng = np.random.default_rng(seed)
    z = rng.uniform(-4, 4, size=(m, n))
    if out in ("relu", "leaky_relu"):
        z = np.where(np.abs(z) < 1e-3, 0.5, z)  # away from the kink
    y = make_targets(loss, rng, (m,), n)
    a = f(z)
    delta = loss_.delta(z, a, y, f, np)
    # independent: a = f(z) by the engine's f on torch tensors (array-API code), then autograd
    # of the textbook J_i(a); the gradient w.r.t. z is dJ_i/da * f'(z) (for softmax, the
    # product with its Jacobian)
    zt = torch.tensor(z, requires_grad=True)
    at = f(zt)
    (ref,) = torch.autograd.grad(_textbook_loss(loss, at, torch.tensor(y)).sum(), zt)
    assert rel_err(delta, ref.numpy()) < 1e-12
    # and dJ_i/da * f'(z) spelled out for elementwise f
    if f.elementwise:
        a_leaf = torch.tensor(to_numpy(a), requires_grad=True)
        (dJ_da,) = torch.autograd.grad(_textbook_loss(loss, a_leaf, torch.tensor(y)).sum(),
                                       a_leaf)
        assert rel_err(delta, dJ_da.numpy() * f.derivative(z)) < 1e-12


@SETTINGS
@given(st.sampled_from(LOSS_NAMES), st.integers(1, 6), st.integers(1, 5), st.integers(0, 2**16))
def test_output_delta_is_gradient_of_per_sample_loss(loss, n, m, seed):
    """delta[L] against autograd of the engine's own per_sample(z, f(z), y) w.r.t. z."""
    loss_ = losses.get(loss)
    f = acts.get(loss_.output or "tanh")
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=3, size=(m, n))
    y = make_targets(loss, rng, (m,), n)
    zt = torch.tensor(z, requires_grad=True)
    yt = torch.tensor(y)
    from deltaprop._backend import namespace

    xp = namespace(zt)
    (ref,) = torch.autograd.grad(loss_.per_sample(zt, f.f(zt, xp), yt, xp).sum(), zt)
    # 1e-10, not 1e-12: f' = 1 - a^2 near saturation amplifies the last-bit difference
    # between NumPy's and torch's tanh by 1 / (1 - |a|)
    assert rel_err(loss_.delta(z, f(z), y, f, np), ref.numpy()) < 1e-10
