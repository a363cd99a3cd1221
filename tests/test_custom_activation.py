"""A user's own activation is computed by its own f and df, on every backend and every path.

The built-in rows carry in-place NumPy kernels (:mod:`deltaprop._kernels`); a user's
:class:`~deltaprop.activations.Activation` has none, whatever its name, so nothing may
replace its f by a built-in's.  Two such activations: one that borrows the name "tanh"
for a different function (softsign), one with a name no registry knows (arctan).  Each
network (a single one and a stack, custom output layer and custom hidden layers under the
fused softmax cross-entropy) runs on NumPy, torch and array_api_strict through forward,
backward, train_step, record and gradcheck, against

* PyTorch autograd of the same network, every activation evaluated by the row's own ``f``
  on torch tensors (so ``df`` is checked too): relative error < 1e-10;
* fourth-order central differences (:func:`deltaprop.gradcheck.gradcheck`): < 1e-7.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import rel_err, to_numpy

import deltaprop as dp
from deltaprop.activations import Activation
from deltaprop.gradcheck import gradcheck
from deltaprop.stats import record

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _softsign(z, xp):
    return z / (1 + xp.abs(z))


def _dsoftsign(z, a, xp):
    d = 1 + xp.abs(z)
    return 1 / (d * d)


def _arctan(z, xp):
    return xp.atan(z)


def _darctan(z, a, xp):
    return 1 / (1 + z * z)


#: a different function under a built-in's name, and a name no registry knows
IMPOSTOR = Activation("tanh", _softsign, _dsoftsign, "f(z) = z / (1 + |z|), named tanh")
UNKNOWN = Activation("arctan-of-mine", _arctan, _darctan, "f(z) = atan z")

# (sizes, activations of layers 1..L, loss)
NETS = [
    ([3, 5, 4, 2], [IMPOSTOR, UNKNOWN, IMPOSTOR], "mse"),
    ([3, 5, 4, 3], [UNKNOWN, IMPOSTOR, "softmax"], "softmax-cross-entropy"),
]
IDS = ["custom-output-mse", "custom-hidden-softmax-ce"]
M, ETA = 9, 0.4


def _problem(i, K):
    sizes, acts, loss = NETS[i]
    net = dp.Network.init(sizes, acts, init="glorot_normal", seed=i, K=K, bias_std=0.3)
    rng = np.random.default_rng(10 + i)
    x = 2.0 * rng.normal(size=(M, sizes[0]))
    y = rng.normal(size=(M, sizes[-1])) if loss == "mse" else rng.integers(0, sizes[-1], M)
    return net, x, y, loss


def _reference(net, x, y, loss, k=None):
    """z, a, J, delta, dW, db of network k by PyTorch autograd; each activation is the
    row's own f evaluated on torch tensors (through array-api-compat's torch namespace)."""
    import array_api_compat.torch as tx

    pick = (lambda p: p) if k is None else (lambda p: p[k])
    W = [None] + [torch.tensor(pick(w), requires_grad=True) for w in net.W[1:]]
    b = [None] + [torch.tensor(pick(v), requires_grad=True) for v in net.b[1:]]
    a, z = [torch.tensor(x)], [None]
    for l in range(1, net.L + 1):
        z.append(F.linear(a[l - 1], W[l], b[l]))
        z[l].retain_grad()
        a.append(net.activations[l].f(z[l], tx))
    yt = torch.tensor(y)
    per = 0.5 * ((a[-1] - yt) ** 2).sum(-1) if loss == "mse" else \
        F.cross_entropy(z[-1], yt, reduction="none")
    J = per.mean()
    per.sum().backward(retain_graph=True)
    delta = [None] + [t.grad.clone().numpy() for t in z[1:]]
    grads = torch.autograd.grad(J, W[1:] + b[1:])
    L = net.L
    return {"z": [None] + [t.detach().numpy() for t in z[1:]],
            "a": [t.detach().numpy() for t in a], "J": J.detach().numpy(), "delta": delta,
            "dW": [None, *(g.numpy() for g in grads[:L])],
            "db": [None, *(g.numpy() for g in grads[L:])]}


def _refs(net, x, y, loss):
    return [_reference(net, x, y, loss, k) for k in range(net.K)] if net.K else \
        [_reference(net, x, y, loss)]


def _at(arr, k):
    arr = to_numpy(arr)
    return arr if k is None else arr[k]


@pytest.fixture(params=[None, 2], ids=["single", "K2"])
def K(request):
    return request.param


@pytest.mark.parametrize("i", range(len(NETS)), ids=IDS)
def test_forward_and_gradients(xp, i, K):
    net, x, y, loss = _problem(i, K)
    refs = _refs(net, x, y, loss)
    trace, g = dp.gradients(net.to(xp), xp.asarray(x), xp.asarray(y), loss)
    for k, ref in zip([None] if K is None else range(K), refs, strict=True):
        assert rel_err(_at(g.J, k), ref["J"]) < 1e-10
        for l in range(1, net.L + 1):
            assert rel_err(_at(trace.z[l], k), ref["z"][l]) < 1e-12
            assert rel_err(_at(trace.a[l], k), ref["a"][l]) < 1e-12, (l, "a")
            for q in ("delta", "dW", "db"):
                assert rel_err(_at(getattr(g, q)[l], k), ref[q][l]) < 1e-10, (l, q)


def test_a_user_tanh_is_not_numpys_tanh():
    """The symptom of a second engine that dispatched on names: 0.98 apart at layer 1."""
    net, x, _, _ = _problem(0, None)
    trace = dp.forward(net, x)
    np.testing.assert_allclose(trace.a[1], _softsign(trace.z[1], np), rtol=1e-15)
    assert np.max(np.abs(trace.a[1] - np.tanh(trace.z[1]))) > 0.1


@pytest.mark.parametrize("i", range(len(NETS)), ids=IDS)
def test_train_step(xp, i, K):
    net, x, y, loss = _problem(i, K)
    refs = _refs(net, x, y, loss)
    ks = [None] if K is None else range(K)
    want = [[(_at(net.W[l], k) - ETA * ref["dW"][l], _at(net.b[l], k) - ETA * ref["db"][l])
             for l in range(1, net.L + 1)] for k, ref in zip(ks, refs, strict=True)]
    new, J = dp.train_step(net.to(xp), xp.asarray(x), xp.asarray(y), loss, ETA,
                           workspace=dp.Workspace(), donate=True)
    for k, ref, layers in zip(ks, refs, want, strict=True):
        assert rel_err(_at(J, k), ref["J"]) < 1e-10
        for l, (want_W, want_b) in enumerate(layers, start=1):
            assert rel_err(_at(new.W[l], k), want_W) < 1e-12
            assert rel_err(_at(new.b[l], k), want_b) < 1e-12


@pytest.mark.parametrize("i", range(len(NETS)), ids=IDS)
def test_record(xp, i, K):
    net, x, y, loss = _problem(i, K)
    refs = _refs(net, x, y, loss)
    rec = record(net.to(xp), xp.asarray(x), xp.asarray(y), loss, batch_size=4, bins=8)
    for l in range(1, net.L + 1):
        f = net.activations[l]
        want = {"delta": np.stack([r["delta"][l] for r in refs]),
                "z": np.stack([r["z"][l] for r in refs]),
                "a": np.stack([r["a"][l] for r in refs])}
        if f.elementwise:
            want["df"] = f.df(want["z"], want["a"], np)
        for q, v in want.items():
            s = rec.layer_summary(l, q)
            assert s["mean"] == pytest.approx(v.mean(), rel=1e-10, abs=1e-14), (l, q)
            assert s["second_moment"] == pytest.approx((v * v).mean(), rel=1e-10), (l, q)
        assert rec.hist[l].total == want["delta"].size


@pytest.mark.parametrize("i", range(len(NETS)), ids=IDS)
def test_gradcheck(xp, i):
    net, x, y, loss = _problem(i, None)
    result = gradcheck(net.to(xp), xp.asarray(x), xp.asarray(y), loss)
    assert result.checked > 0 and result.max_rel_error < 1e-7, result.as_dict()
