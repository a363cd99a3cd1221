"""Every public engine function on every importable array library gives NumPy's numbers.

Backends: torch on the CPU (always, in CI), torch on CUDA and CuPy (skipped cleanly where
absent), and ``array_api_strict`` (catches NumPy-only habits).  Each case is drawn once on
the host with NumPy; the same numbers are moved to the backend, run through ``forward``,
``backward``, ``gradients``, ``loss_value``, ``predict``, ``step`` and ``gradcheck``, and
compared with the NumPy run in float64 to 1e-12 (relative to the largest entry).  Every
result must stay in the input's library, on the input's device, in the input's dtype.
"""

from __future__ import annotations

import numpy as np
import pytest

import deltaprop as dp
from deltaprop import _backend
from deltaprop.gradcheck import gradcheck

# (sizes, hidden activation, output activation, loss, K)
CASES = [
    ([4, 5, 3], "tanh", "softmax", "softmax-cross-entropy", None),
    ([3, 6, 4, 2], "relu", "sigmoid", "sigmoid-cross-entropy", None),
    ([2, 5, 5, 1], "gelu", "identity", "mse", None),
    ([4, 5, 3], "sigmoid", "softmax", "softmax-cross-entropy", 3),
    ([3, 4, 2], "leaky_relu", "identity", "mse", 2),
]
IDS = [f"{c[1]}-{c[3]}-K{c[4]}" for c in CASES]
M = 7


def _torch_cpu():
    torch = pytest.importorskip("torch")
    return "torch", "cpu", torch.asarray


def _torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return "torch", "cuda", lambda a: torch.asarray(a, device="cuda")


def _cupy():
    cupy = pytest.importorskip("cupy")
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception:  # noqa: BLE001 - any CUDA runtime failure means "no GPU here"
        pytest.skip("CuPy without a usable CUDA device")
    return "cupy", "cuda:0", cupy.asarray


def _strict():
    strict = pytest.importorskip("array_api_strict")
    return "array_api_strict", None, strict.asarray


@pytest.fixture(params=[_torch_cpu, _torch_cuda, _cupy, _strict],
                ids=["torch-cpu", "torch-cuda", "cupy", "array_api_strict"])
def backend(request):
    """(name, device, host -> backend array)."""
    return request.param()


def _data(case, seed=1):
    sizes, hidden, out, loss, K = case
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(M, sizes[0]))
    if loss == "softmax-cross-entropy":
        y = rng.integers(0, sizes[-1], M)
    elif loss == "sigmoid-cross-entropy":
        y = rng.uniform(size=(M, sizes[-1]))
    else:
        y = rng.normal(size=(M, sizes[-1]))
    net = dp.Network.init(sizes, hidden, out, init="glorot_normal", seed=seed, K=K,
                          bias_std=0.2)
    return net, x, y, loss


def _close(got, want, tol=1e-12):
    got, want = _backend.to_numpy(got), np.asarray(want)
    assert got.shape == want.shape
    scale = max(float(np.max(np.abs(want), initial=0.0)), 1e-300)
    assert float(np.max(np.abs(got - want), initial=0.0)) <= tol * scale


def _same_kind(arr, like):
    """Same library and device as ``like``, and float64."""
    assert type(arr) is type(like)
    assert str(_backend.device(arr)) == str(_backend.device(like))
    assert _backend.dtype_name(arr.dtype) == "float64"


@pytest.mark.smoke
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_engine_matches_numpy(backend, case):
    name, device, move = backend
    net, x, y, loss = _data(case)
    tnet = net.to(name, device=device)
    tx, ty = move(x), move(y)
    x_before = _backend.to_numpy(tx).copy()

    trace, g = dp.gradients(net, x, y, loss, l2=0.1)
    ttrace, tg = dp.gradients(tnet, tx, ty, loss, l2=0.1)
    for l in range(1, net.L + 1):
        for got, want in ((ttrace.z[l], trace.z[l]), (ttrace.a[l], trace.a[l]),
                          (tg.delta[l], g.delta[l]), (tg.dW[l], g.dW[l]), (tg.db[l], g.db[l])):
            _same_kind(got, tx)
            _close(got, want)
    _same_kind(tg.J, tx)
    _close(tg.J, g.J)
    np.testing.assert_array_equal(_backend.to_numpy(tx), x_before)  # input not mutated

    _close(dp.loss_value(tnet, ttrace, ty, loss, 0.1), dp.loss_value(net, trace, y, loss, 0.1))
    _close(dp.predict(tnet, tx), dp.predict(net, x))
    new, tnew = dp.step(net, g, 0.5), dp.step(tnet, tg, 0.5)
    for l in range(1, net.L + 1):
        _same_kind(tnew.W[l], tx)
        _close(tnew.W[l], new.W[l])
        _close(tnew.b[l], new.b[l])


def test_backward_from_a_numpy_trace_on_backend(backend):
    """forward then backward called separately (as the laboratory does) stay on the backend."""
    name, device, move = backend
    net, x, y, loss = _data(CASES[0])
    tnet = net.to(name, device=device)
    tx, ty = move(x), move(y)
    g = dp.backward(net, dp.forward(net, x), y, loss)
    tg = dp.backward(tnet, dp.forward(tnet, tx), ty, loss)
    _same_kind(tg.delta[1], tx)
    _close(tg.delta[1], g.delta[1])


@pytest.mark.smoke
@pytest.mark.parametrize("case", [CASES[0], CASES[3]], ids=[IDS[0], IDS[3]])
def test_gradcheck_on_backend(backend, case):
    name, device, move = backend
    net, x, y, loss = _data(case)
    res = gradcheck(net.to(name, device=device), move(x), move(y), loss, max_entries=6)
    ref = gradcheck(net, x, y, loss, max_entries=6)
    assert res.max_rel_error < 1e-7
    assert res.checked == ref.checked
    assert res.max_rel_error == pytest.approx(ref.max_rel_error, rel=1e-3, abs=1e-12)


@pytest.mark.parametrize("K", [None, 3])
def test_network_init_on_backend(backend, K):
    """Network.init(backend=, device=) draws on the host: identical numbers, backend arrays."""
    name, device, move = backend
    host = dp.Network.init([3, 4, 2], "tanh", seed=5, K=K, bias_std=0.3)
    here = dp.Network.init([3, 4, 2], "tanh", seed=5, K=K, bias_std=0.3, backend=name,
                           device=device)
    like = move(np.zeros(1))
    for l in (1, 2):
        _same_kind(here.W[l], like)
        _same_kind(here.b[l], like)
        np.testing.assert_array_equal(_backend.to_numpy(here.W[l]), host.W[l])
        np.testing.assert_array_equal(_backend.to_numpy(here.b[l]), host.b[l])
    back = here.numpy()
    assert isinstance(back.W[1], np.ndarray)


def test_float32_stays_float32(backend):
    name, device, move = backend
    net, x, y, loss = _data(CASES[1])
    tnet = net.to(name, device=device, dtype="float32")
    tx = move(np.asarray(x, dtype=np.float32))
    _, tg = dp.gradients(tnet, tx, move(y), loss)
    assert _backend.dtype_name(tg.dW[1].dtype) == "float32"
    assert _backend.dtype_name(tg.J.dtype) == "float32"
    _, g = dp.gradients(net.to(dtype="float32"), x.astype(np.float32), y, loss)
    _close(tg.dW[1], g.dW[1], tol=1e-5)


def test_mixing_libraries_is_a_clear_type_error():
    torch = pytest.importorskip("torch")
    net, x, y, loss = _data(CASES[0])
    with pytest.raises(TypeError, match="Network.to"):
        dp.forward(net, torch.asarray(x))


def test_unknown_backend_is_a_value_error():
    with pytest.raises(ValueError, match="not installed"):
        dp.Network.init([2, 2], backend="no_such_array_library")


def test_is_numpy_is_the_one_test_for_arrays_and_namespaces():
    import numpy as np

    from deltaprop import _backend

    assert _backend.is_numpy(np.zeros(2)) and _backend.is_numpy(np)
    assert _backend.is_numpy(_backend.namespace(np.zeros(2)))
    assert not _backend.is_numpy(np.ma.zeros(2))  # a subclass takes the generic path
    assert not _backend.is_numpy([1.0]) and not _backend.is_numpy(None)
    torch = pytest.importorskip("torch")
    assert not _backend.is_numpy(torch.zeros(2))
    assert not _backend.is_numpy(_backend.namespace(torch.zeros(2)))


@pytest.mark.parametrize("name", ["gd", "momentum", "adam"])
def test_train_step_with_an_optimizer_on_torch_equals_numpy(name):
    # the optimisers' in-place rules are array-API code: torch tensors take the same steps
    import numpy as np

    import deltaprop as dp
    from deltaprop import backprop, optim

    torch = pytest.importorskip("torch")
    net = dp.Network.init([5, 7, 3], "tanh", "identity", seed=1)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 5)), rng.normal(size=(6, 3))
    opt = optim.get(name, 0.05)
    a, b = net, net.to("torch")
    sa, sb = opt.init(a), opt.init(b)
    for _ in range(3):
        a, _ = backprop.train_step(a, x, y, "mse", 0.05, optimizer=opt, state=sa)
        b, _ = backprop.train_step(b, torch.from_numpy(x), torch.from_numpy(y), "mse", 0.05,
                                   optimizer=opt, state=sb, donate=True)
    for p, q in zip([*a.W[1:], *a.b[1:]], [*b.W[1:], *b.b[1:]], strict=True):
        np.testing.assert_allclose(q.numpy(), p, rtol=1e-12, atol=1e-14)
