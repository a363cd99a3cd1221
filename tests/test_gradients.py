"""Gradients of every case of the table: central differences, PyTorch autograd, backends.

For each row of ``conftest.CASES`` (every activation x every loss/output pair), in float64:

* ``dW``, ``db`` agree with fourth-order central differences of J
  (:func:`deltaprop.gradcheck.gradcheck`): relative error < 1e-7;
* ``J``, ``dW``, ``db`` agree with PyTorch autograd of the same network built from
  ``torch.nn.functional`` ops, and ``delta[l]`` with the autograd gradient of the *summed*
  per-sample loss with respect to ``z[l]`` (``retain_grad``): relative error < 1e-10;
* the same for a stack of K networks, whose network k equals the single network ``net[k]``;
* torch tensors and array_api_strict arrays give NumPy's numbers to 1e-12.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import CASES, rel_err, to_numpy

import deltaprop as dp
from deltaprop import activations as acts
from deltaprop.gradcheck import gradcheck

torch = pytest.importorskip("torch")
F = torch.nn.functional

FD_TOL = 1e-7  # central differences (order 4, h = 1e-3)
AUTOGRAD_TOL = 1e-10
BACKEND_TOL = 1e-12
K = 3

# The worst errors seen, reported by test_zz_report_worst_errors (run with -s to print).
WORST = {"central differences": 0.0, "autograd": 0.0, "backends": 0.0}


def _note(kind, err):
    WORST[kind] = max(WORST[kind], err)
    return err


# --- the reference: the same network in torch.nn.functional ---------------------------

TORCH_F = {
    "identity": lambda z: z,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": F.relu,
    "leaky_relu": lambda z: F.leaky_relu(z, acts.LEAKY_SLOPE),
    "softplus": F.softplus,
    "silu": F.silu,
    "gelu": lambda z: F.gelu(z, approximate="tanh"),
    "softmax": lambda z: F.softmax(z, dim=-1),
}


def torch_per_sample(loss, z, a, y):
    """Per-sample loss (m,) from torch's own loss functions."""
    if loss == "mse":
        return 0.5 * ((a - y) ** 2).sum(-1)
    if loss == "sigmoid-cross-entropy":
        return F.binary_cross_entropy_with_logits(z, y, reduction="none").sum(-1)
    if y.dtype == torch.int64:
        return F.cross_entropy(z, y, reduction="none")
    return -(y * F.log_softmax(z, dim=-1)).sum(-1)


def torch_reference(net, x, y, loss, l2=0.0):
    """J, delta[l], dW[l], db[l] of a single NumPy network, by PyTorch autograd.

    ``delta[l]`` is the gradient of sum_i J_i with respect to z[l] (the engine's per-sample,
    unscaled error vector); ``dW``, ``db`` the gradients of J = mean_i J_i + (l2/2m) sum W^2.
    """
    W = [None] + [torch.tensor(w, requires_grad=True) for w in net.W[1:]]
    b = [None] + [torch.tensor(v, requires_grad=True) for v in net.b[1:]]
    a = torch.tensor(x)
    yt = torch.tensor(y)
    m = a.shape[0]
    z = [None]
    for l in range(1, net.L + 1):
        z.append(F.linear(a, W[l], b[l]))
        z[l].retain_grad()
        a = TORCH_F[net.activations[l].name](z[l])
    per_sample = torch_per_sample(loss, z[-1], a, yt)
    J = per_sample.mean() + l2 / (2 * m) * sum((w**2).sum() for w in W[1:])
    per_sample.sum().backward(retain_graph=True)
    delta = [None] + [zl.grad.clone().numpy() for zl in z[1:]]
    grads = torch.autograd.grad(J, W[1:] + b[1:])
    L = net.L
    return {"J": J.detach().numpy(), "delta": delta,
            "dW": [None, *(g.numpy() for g in grads[:L])],
            "db": [None, *(g.numpy() for g in grads[L:])]}


def assert_matches_reference(g, ref, tol, k=None):
    """Engine gradients ``g`` (network k of a stack, or a single one) against ``ref``."""
    pick = (lambda t: t) if k is None else (lambda t: to_numpy(t)[k])
    errs = [rel_err(pick(g.J), ref["J"])]
    for l in range(1, len(ref["dW"])):
        errs += [rel_err(pick(g.delta[l]), ref["delta"][l]), rel_err(pick(g.dW[l]), ref["dW"][l]),
                 rel_err(pick(g.db[l]), ref["db"][l])]
    err = _note("autograd", max(errs))
    assert err < tol, f"relative error {err:.2e} against autograd"


# --- single networks --------------------------------------------------------------------


def test_central_differences(case):
    net = case.network()
    x, y = case.data()
    result = gradcheck(net, x, y, case.loss, case.l2)
    assert result.checked > 0
    assert result.checked >= 0.9 * (result.checked + result.skipped)
    assert _note("central differences", result.max_rel_error) < FD_TOL, result.as_dict()


def test_autograd(case):
    net = case.network()
    x, y = case.data()
    _, g = dp.gradients(net, x, y, case.loss, case.l2)
    assert_matches_reference(g, torch_reference(net, x, y, case.loss, case.l2), AUTOGRAD_TOL)


# --- stacks of K networks -----------------------------------------------------------------


@pytest.mark.parametrize("shared_x", [True, False], ids=["x-shared", "x-per-network"])
def test_stack_matches_single_networks_and_autograd(case, shared_x):
    stack = case.network(K=K)
    x, y = case.data() if shared_x else case.data(K=K)
    trace, g = dp.gradients(stack, x, y, case.loss, case.l2)
    assert to_numpy(g.J).shape == (K,)
    for k in range(K):
        net = stack[k]
        xk, yk = (x, y) if shared_x else (x[k], y[k])
        single_trace, single = dp.gradients(net, xk, yk, case.loss, case.l2)
        for l in range(1, net.L + 1):
            np.testing.assert_allclose(to_numpy(trace.a[l])[k], single_trace.a[l], rtol=1e-13,
                                       atol=1e-15)
        assert_matches_reference(g, torch_reference(net, xk, yk, case.loss, case.l2),
                                 AUTOGRAD_TOL, k=k)


def test_stack_central_differences(case):
    stack = case.network(K=2)
    x, y = case.data()
    result = gradcheck(stack, x, y, case.loss, case.l2)
    assert result.checked > 0
    assert _note("central differences", result.max_rel_error) < FD_TOL, result.as_dict()


# --- every backend gives NumPy's numbers ----------------------------------------------------


def _engine_outputs(net, x, y, case):
    trace, g = dp.gradients(net, x, y, case.loss, case.l2)
    new = dp.step(net, g, 0.1)
    out = {"J": g.J}
    for l in range(1, net.L + 1):
        out.update({f"z{l}": trace.z[l], f"a{l}": trace.a[l], f"delta{l}": g.delta[l],
                    f"dW{l}": g.dW[l], f"db{l}": g.db[l], f"W{l}": new.W[l], f"b{l}": new.b[l]})
    return out


@pytest.mark.parametrize("stacked", [False, True], ids=["single", "stack"])
def test_backends_give_numpy_numbers(case, xp, stacked):
    net = case.network(K=K if stacked else None)
    x, y = case.data()
    expect = _engine_outputs(net, x, y, case)
    got = _engine_outputs(net.to(xp), xp.asarray(x), xp.asarray(y), case)
    for key, value in got.items():
        assert type(value).__module__.split(".")[0] == xp.__name__.split(".")[0], key
        err = _note("backends", rel_err(value, expect[key]))
        assert err < BACKEND_TOL, f"{key}: {err:.2e}"


# --- the activations themselves -------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in acts.names() if n != "softmax"])
def test_activation_and_derivative_match_torch(name):
    z = torch.linspace(-6, 6, 241, dtype=torch.float64).reshape(1, -1)
    z = z + 1e-3  # keep off the kink of relu and leaky relu at 0
    z.requires_grad_(True)
    ref = TORCH_F[name](z)
    (dref,) = torch.autograd.grad(ref.sum(), z)
    act = acts.get(name)
    zn = z.detach().numpy()
    assert rel_err(act(zn), ref.detach().numpy()) < 1e-14
    assert rel_err(act.derivative(zn), dref.numpy()) < 1e-13


def test_softmax_vjp_matches_torch():
    rng = np.random.default_rng(3)
    z = torch.tensor(rng.normal(size=(4, 5)), requires_grad=True)
    g = torch.tensor(rng.normal(size=(4, 5)))
    a = F.softmax(z, dim=-1)
    (ref,) = torch.autograd.grad(a, z, g)
    sm = acts.get("softmax")
    an = sm(z.detach().numpy())
    assert rel_err(an, a.detach().numpy()) < 1e-15
    assert rel_err(sm.vjp(z.detach().numpy(), an, g.numpy(), np), ref.numpy()) < 1e-14


@pytest.fixture(scope="module", autouse=True)
def report_worst_errors():
    """Prints the worst relative errors of this module's run (``pytest -s``) after its last
    test; each test asserts its own tolerance, so nothing here depends on test order."""
    yield
    print("\nworst relative errors:", {k: f"{v:.2e}" for k, v in WORST.items()})


# --- the checker itself can fail -----------------------------------------------------------


def test_gradcheck_catches_a_wrong_delta():
    """A loss whose delta[L] is off by a factor 1.001 is flagged (so passing means something)."""
    mse = dp.losses.get("mse")
    wrong = dp.losses.Loss("wrong-mse", mse.per_sample,
                           lambda z, a, y, f, xp: 1.001 * mse.delta(z, a, y, f, xp), mse.formula)
    case = next(c for c in CASES if c.loss == "mse")
    x, y = case.data()
    assert gradcheck(case.network(), x, y, mse).max_rel_error < FD_TOL
    assert gradcheck(case.network(), x, y, wrong).max_rel_error > 1e-4


@pytest.mark.parametrize("order", [2, 4])
def test_gradcheck_options(order):
    case = CASES[1]
    x, y = case.data()
    result = gradcheck(case.network(K=2), x, y, case.loss, order=order, h=1e-4 if order == 2
                       else 1e-3, max_entries=3)
    n_arrays = 2 * case.network().L
    assert result.checked + result.skipped <= 2 * 3 * n_arrays  # K = 2 networks, 3 entries
    assert result.max_rel_error < (1e-6 if order == 2 else FD_TOL)
    assert set(result.as_dict()) == {"max_rel_error", "checked", "skipped", "layers"}


# --- deltaprop gradcheck: PASS or FAIL against a stated threshold --------------------------


def _cli(capsys, *argv):
    from deltaprop.app.cli import main

    code = main(["gradcheck", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_gradcheck_passes_and_states_the_threshold(capsys):
    code, out, _ = _cli(capsys)
    assert code == 0 and out.splitlines()[-1].startswith("PASS: max relative error ")
    assert out.splitlines()[-1].endswith("<= tol 1e-06")  # the float64 default
    code, out, _ = _cli(capsys, "--dtype", "float32", "--quiet")
    assert code == 0 and out.count("\n") == 1 and "<= tol 0.01" in out


def test_cli_gradcheck_fails_with_exit_1(capsys, monkeypatch):
    code, out, _ = _cli(capsys, "--tol", "1e-20")  # no float64 gradient is that exact
    assert code == 1 and "FAIL: max relative error" in out and "> tol 1e-20 (worst: " in out
    import deltaprop.gradcheck as gc

    real = gc.gradients

    def wrong(*args, **kwargs):  # backprop with dW[2] off by 1%
        tr, g = real(*args, **kwargs)
        return tr, g.__class__(g.J, g.delta, (*g.dW[:2], 1.01 * g.dW[2]), g.db)

    monkeypatch.setattr(gc, "gradients", wrong)
    code, out, _ = _cli(capsys, "--json")
    got = json.loads(out)
    assert code == 1 and got["passed"] is False and got["tol"] == 1e-6
    assert got["layers"][1]["W"] > 1e-3 and got["layers"][0]["W"] < 1e-6
    code, out, _ = _cli(capsys)
    assert code == 1 and out.splitlines()[-1].endswith("(worst: dW[2])")


def test_cli_gradcheck_config_and_bad_tol(capsys, tmp_path):
    cfg = tmp_path / "check.json"
    cfg.write_text(json.dumps({"sizes": "3,4,4,2", "samples": 5, "loss": "mse"}))
    code, out, _ = _cli(capsys, "--config", str(cfg), "--json", "--samples", "6")
    assert code == 0 and [r["layer"] for r in json.loads(out)["layers"]] == [1, 2, 3]
    code, _, err = _cli(capsys, "--tol", "0")
    assert code == 2 and err.count("\n") == 1 and "--tol must be > 0" in err
    code, _, err = _cli(capsys, "--m", "4")
    assert code == 2 and err.count("\n") == 1 and "--samples" in err


def test_cli_gradcheck_refuses_what_cannot_fit_before_allocating(capsys, monkeypatch):
    from deltaprop.app import data
    from deltaprop.gradcheck import memory_needed

    # 4-5-3, m = 8: 5 copies of 43 parameters and 6 x 8 x 12 floats of passes
    assert memory_needed([4, 5, 3], 8) == 8 * (5 * 43 + 6 * 96)
    monkeypatch.setattr(data, "available_memory", lambda: 10**9)
    code, _, err = _cli(capsys, "--sizes", "100000,100000,10")  # 400 GB: was a traceback
    assert code == 2 and err.count("\n") == 1 and "would need about 373 GiB and 0.931 GiB" in err
