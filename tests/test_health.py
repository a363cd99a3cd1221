"""The health check after training (:mod:`deltaprop.stats.health`): each pathology built on
purpose gives its warning, a healthy network gives none, fit warns (or not, health=False)."""

import warnings

import numpy as np
import pytest

from deltaprop import Network
from deltaprop.app import data
from deltaprop.app.train import fit, prepare
from deltaprop.stats.health import HealthWarning, check

CE = "softmax-cross-entropy"


def _xy(m=200, n0=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(m, n0))
    return x, (x[:, 0] > 0).astype(int) + (x[:, 1] > 0).astype(int) * (classes > 2)


def _check(net, x, y, loss=CE, **kw):
    X, Y = prepare(net, loss, x, y)
    return check(net, X, Y, loss, **kw)


def _kinds(found):
    return [f.kind for f in found]


def _set(net, l, W=None, b=None):
    Ws, bs = list(net.W), list(net.b)
    if W is not None:
        Ws[l] = W
    if b is not None:
        bs[l] = b
    return net.replace(W=tuple(Ws), b=tuple(bs))


def test_a_healthy_network_gives_no_warning():
    x, y = _xy()
    net = Network.init([4, 16, 16, 3], "tanh", "softmax", seed=0)
    assert _check(net, x, y) == []
    trained = fit(net, x, y, CE, optimizer="adam", learning_rate=0.01, epochs=20)
    assert trained.health == [] and _check(trained.net, x, y, trained=True) == []


def test_dead_relu_units():
    """Biases of -100 on 5 of 16 relu units: z < 0 for every input, delta = 0 for every
    sample; the others stay alive (no warning about them)."""
    x, y = _xy()
    net = Network.init([4, 16, 3], "relu", "softmax", init="he_normal", seed=0)
    b = np.zeros(16)
    b[:5] = -100.0
    found = _check(_set(net, 1, b=b), x, y)
    assert _kinds(found) == ["dead"]
    assert found[0].layer == 1 and found[0].value == 5 and "5 of 16 relu" in str(found[0])


@pytest.mark.parametrize("act", ["tanh", "sigmoid"])
def test_saturated_units(act):
    """Weights of std 1000 pin tanh/sigmoid units at their ends: f'(z) < 1% of f'(0)
    on all but about 0.1% of the samples (|z| < 3 with z ~ N(0, 2000^2))."""
    x, y = _xy()
    net = Network.init([4, 8, 3], act, "softmax", seed=0)
    W = np.random.default_rng(1).normal(scale=1000.0, size=(8, 4))
    found = _check(_set(net, 1, W=W), x, y)
    sat = [f for f in found if f.kind == "saturated"]
    assert len(sat) == 1 and sat[0].layer == 1 and sat[0].value >= 6, found
    assert act in str(sat[0])


def test_vanishing_delta_from_layer_to_layer():
    """Weights of std 0.01 in a deep sigmoid network: E[delta^2] shrinks by about
    n sigma_w^2 f'^2 = 16e-4/16 per layer, far below the threshold 1/100."""
    x, y = _xy()
    sizes = [4, 16, 16, 16, 3]
    net = Network.init(sizes, "sigmoid", "softmax", init="normal", std=0.01, seed=0)
    found = _check(net, x, y)
    van = [f for f in found if f.kind == "vanishing"]
    assert [f.layer for f in van] == [3, 2, 1] and all(f.value < 1e-2 for f in van)
    assert "threshold 1/100" in str(van[0])


def test_exploding_delta_from_layer_to_layer():
    """Linear layers with weights of std 10 over 50 units: E[delta^2] grows about
    50 x 100 = 5000 times per layer."""
    x, y = _xy()
    net = Network.init([4, 50, 50, 3], "identity", "softmax", init="normal", std=10.0,
                       seed=0)
    # the output layer small, so the softmax does not saturate
    net = _set(net, 3, W=np.random.default_rng(2).normal(scale=1e-4, size=(3, 50)))
    found = _check(net, x, y)
    assert [f.layer for f in found if f.kind == "exploding"] == [1], found


def test_constant_output():
    """Zero weights into the output layer: a[L] = softmax(b[L]) for every input."""
    x, y = _xy()
    net = Network.init([4, 8, 3], "tanh", "softmax", seed=0)
    found = _check(_set(net, 2, W=np.zeros((3, 8)), b=np.array([0.1, 0.2, 0.3])), x, y)
    assert "constant_output" in _kinds(found)
    assert _check(net, x, y) == []


def test_bounded_sample():
    x, y = _xy(m=3000)
    net = Network.init([4, 16, 3], "relu", "softmax", seed=0)
    b = np.zeros(16)
    b[:2] = -100.0
    found = _check(_set(net, 1, b=b), x, y, max_samples=100)
    assert "for all 100 samples" in str(found[0])


def test_fit_warns_and_health_false_is_silent():
    """The iris run of docs/training.md at learning rate 0.05: every relu unit dies by
    epoch 3 (the loss then stays at log 3); fit says so."""
    ds = data.load("iris")
    x = (ds.x - ds.x.mean(0)) / ds.x.std(0)
    net = Network.init([4, 16, 16, 3], "relu", "softmax", seed=0)
    kw = dict(optimizer="nesterov", learning_rate=0.05, schedule="cosine", batch_size=1,
              epochs=5)
    with pytest.warns(HealthWarning, match="dead"):
        res = fit(net, x, ds.y, CE, **kw)
    assert "dead" in _kinds(res.health)
    with warnings.catch_warnings():
        warnings.simplefilter("error", HealthWarning)
        quiet = fit(net, x, ds.y, CE, health=False, **kw)
    assert quiet.health == []


def test_torch_network_is_checked_alike():
    torch = pytest.importorskip("torch")
    x, y = _xy()
    net = Network.init([4, 16, 3], "relu", "softmax", init="he_normal", seed=0)
    b = np.zeros(16)
    b[:5] = -100.0
    net = _set(net, 1, b=b)
    ref = _check(net, x, y)
    got = _check(net.to("torch"), torch.asarray(x), y)
    assert [f.to_dict() for f in got] == [f.to_dict() for f in ref]


def test_underfit_after_training_that_hardly_moved_the_loss():
    """XOR with Adam at lr 1e-4 for 3 epochs: the loss stays within 5% of the entropy of the
    class frequencies (log 2 for balanced classes); at lr 0.03 it falls far below it."""
    ds = data.load("xor")
    x = (ds.x - ds.x.mean(0)) / ds.x.std(0)
    net = Network.init([2, 16, 2], "tanh", "softmax", seed=0)
    slow = fit(net, x, ds.y, CE, optimizer="adam", learning_rate=1e-4, epochs=3,
               health=False).net
    found = _check(slow, x, ds.y, trained=True)
    assert _kinds(found) == ["underfit"] and found[0].value > 0.95, found
    assert "try a larger learning rate (--lr) or more epochs" in str(found[0])
    assert _check(slow, x, ds.y) == []  # only asked of a trained network
    good = fit(net, x, ds.y, CE, optimizer="adam", learning_rate=0.03, epochs=40,
               health=False).net
    assert _check(good, x, ds.y, trained=True) == []


def test_underfit_rules_by_loss():
    from deltaprop.stats.health import underfit

    rng = np.random.default_rng(0)
    y = rng.normal(2.0, 3.0, size=(200, 2))
    a = np.broadcast_to(y.mean(0), y.shape)  # the mean target: J = J_0 = (1/2) sum Var y_k
    found = underfit("mse", a, a, y)
    assert _kinds(found) == ["underfit"] and found[0].value == pytest.approx(1.0)
    assert "always predicting the mean target" in str(found[0])
    assert underfit("mse", y + 0.1, y + 0.1, y) == []  # J = 0.01 << J_0 = 9
    # a classifier that always answers the most frequent class (70%), confidently: its loss
    # is large, and its accuracy is the majority share
    y1 = np.eye(2)[(rng.uniform(size=200) < 0.3).astype(int)]
    z = np.tile([5.0, -5.0], (200, 1))
    a = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    found = underfit(CE, z, a, y1)
    assert _kinds(found) == ["underfit"] and "training accuracy 0." in str(found[0])
    # sigmoid cross-entropy on one output: probabilities equal to the class frequency
    p = y1[:, 1:].mean()
    zs = np.full((200, 1), np.log(p / (1 - p)))
    found = underfit("sigmoid-cross-entropy", zs, 1 / (1 + np.exp(-zs)), y1[:, 1:])
    assert found and found[0].value == pytest.approx(1.0)
    assert underfit("sigmoid-cross-entropy", 20 * (y1[:, 1:] - 0.5), y1[:, 1:], y1[:, 1:]) == []
