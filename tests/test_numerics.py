"""Numerics: extreme logits, float32 end to end, and the initialisers' statistics.

* sigmoid, softplus (and the other activations), both cross-entropies and their
  delta[L] stay finite and correct at |z| = 1e3 and 1e4, in float32 and float64;
* a float32 network stays float32 through forward, backward and step, agrees with
  float64 to float32 rounding, and passes gradcheck with a loose tolerance;
* each initialiser's mean and std lie within stated bands for a large draw; the
  ``debug`` init is sin(1..n)/10 column-major with the bias column; ``epsilon`` stays
  inside its bounds; seeds reproduce; network k of a stack is drawn from spawned seed k.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import CASES, rel_err, to_numpy

import deltaprop as dp
from deltaprop import Network, losses
from deltaprop import activations as acts
from deltaprop.gradcheck import gradcheck
from deltaprop.init import INITIALIZERS, debug_theta, init_layer

DTYPES = ("float32", "float64")
BIG = (1e3, 1e4)


def _z(big, dtype):
    """A row of logits from -big to big, shape (1, 7)."""
    return np.array([[-big, -30.0, -1.0, 0.0, 1.0, 30.0, big]], dtype=dtype)


# --- extreme logits -----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("big", BIG)
def test_sigmoid_and_softplus_at_extreme_z(big, dtype):
    z = _z(big, dtype)
    s = acts.get("sigmoid")(z)
    assert s.dtype == z.dtype and np.all(np.isfinite(s))
    assert s[0, 0] == 0.0 and s[0, -1] == 1.0 and s[0, 3] == 0.5
    # reference in float64: 0.5 (1 + tanh(z/2)) never overflows
    ref = 0.5 * (1 + np.tanh(z.astype(np.float64) / 2))
    assert rel_err(s, ref) < (1e-7 if dtype == "float32" else 1e-15)
    np.testing.assert_allclose(s + acts.get("sigmoid")(-z), 1.0, rtol=0, atol=1e-7)
    ds = acts.get("sigmoid").derivative(z)
    assert np.all(np.isfinite(ds)) and ds[0, 0] == 0.0 and ds[0, -1] == 0.0

    sp = acts.get("softplus")(z)
    assert sp.dtype == z.dtype and np.all(np.isfinite(sp))
    assert sp[0, -1] == big and sp[0, 0] == 0.0  # log(1 + e^z) -> z and -> e^z
    assert sp[0, 3] == np.asarray(math.log(2), dtype)
    np.testing.assert_array_equal(acts.get("softplus").derivative(z), s)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", [n for n in acts.names() if n != "softmax"])
def test_every_activation_finite_at_extreme_z(name, dtype):
    z = _z(1e4, dtype)
    act = acts.get(name)
    a, da = act(z), act.derivative(z)
    assert a.dtype == z.dtype and da.dtype == z.dtype
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(da))
    sm = acts.get("softmax")(z)
    assert np.all(np.isfinite(sm)) and sm[0, -1] == 1.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("big", BIG)
def test_sigmoid_cross_entropy_at_extreme_z(big, dtype):
    # rows: z = +big and -big for each of the targets y = 0, 1, 1/2
    z = np.array([[big], [big], [big], [-big], [-big], [-big]], dtype=dtype)
    y = np.array([[0.0], [1.0], [0.5], [0.0], [1.0], [0.5]], dtype=dtype)
    loss, f = losses.get("sigmoid-cross-entropy"), acts.get("sigmoid")
    a = f(z)
    per = loss.per_sample(z, a, y, np)
    # -y ln a - (1 - y) ln(1 - a) with ln a = -log1p(e^-z): big, 0, big/2; 0, big, big/2
    expect = np.array([big, 0.0, big / 2, 0.0, big, big / 2])
    assert per.dtype == z.dtype
    np.testing.assert_allclose(per, expect, rtol=1e-7, atol=0)
    delta = loss.delta(z, a, y, f, np)
    np.testing.assert_array_equal(delta[:, 0], [1.0, 0.0, 0.5, 0.0, -1.0, -0.5])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("big", BIG)
def test_softmax_cross_entropy_at_extreme_z(big, dtype):
    z = np.tile(np.array([[big, -big, 0.0]], dtype=dtype), (3, 1))
    y = np.eye(3, dtype=dtype)  # sample i has label i
    loss, f = losses.get("softmax-cross-entropy"), acts.get("softmax")
    a = f(z)
    per = loss.per_sample(z, a, y, np)
    # -ln softmax(z)_k = logsumexp(z) - z_k = big - z_k
    np.testing.assert_allclose(per, [0.0, 2 * big, big], rtol=1e-7, atol=0)
    delta = loss.delta(z, a, y, f, np)
    np.testing.assert_array_equal(delta, [[0, 0, 0], [1, -1, 0], [1, 0, -1]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("loss", "output"), [("sigmoid-cross-entropy", "sigmoid"),
                                              ("softmax-cross-entropy", "softmax"),
                                              ("mse", "sigmoid"), ("mse", "softplus")])
def test_network_with_saturated_outputs_has_finite_gradients(loss, output, dtype):
    """Weights large enough that |z[L]| ~ 1e4: J, every delta, dW, db finite."""
    net = Network.init([3, 4, 2], "tanh", output, seed=0, dtype=dtype, std=3e3)
    x = np.random.default_rng(1).normal(size=(6, 3))
    y = np.array([0, 1, 1, 0, 1, 0]) if loss.startswith("softmax") else \
        np.random.default_rng(2).uniform(size=(6, 2))
    trace, g = dp.gradients(net, x, y, loss)
    assert np.max(np.abs(trace.z[2])) > 1e3
    for arr in (g.J, *g.delta[1:], *g.dW[1:], *g.db[1:]):
        assert np.all(np.isfinite(arr))


# --- float32 end to end ---------------------------------------------------------------------

F32_CASES = CASES[::4]


@pytest.mark.parametrize("case", F32_CASES, ids=[c.id for c in F32_CASES])
def test_float32_end_to_end(case, xp):
    net64 = case.network()
    net = net64.to(xp, dtype="float32")
    x, y = case.data()
    trace, g = dp.gradients(net, xp.asarray(x), xp.asarray(y), case.loss, case.l2)
    new = dp.step(net, g, 0.1)
    trace64, g64 = dp.gradients(net64, x, y, case.loss, case.l2)
    new64 = dp.step(net64, g64, 0.1)
    f32 = net.dtype
    pairs = [(g.J, g64.J)]
    for l in range(1, net.L + 1):
        pairs += [(trace.z[l], trace64.z[l]), (trace.a[l], trace64.a[l]),
                  (g.delta[l], g64.delta[l]), (g.dW[l], g64.dW[l]), (g.db[l], g64.db[l]),
                  (new.W[l], new64.W[l]), (new.b[l], new64.b[l])]
    for got, want in pairs:
        assert got.dtype == f32, "float32 in, float32 out: no silent upcast"
        assert rel_err(got, want) < 1e-5
    assert new.dtype == f32


@pytest.mark.parametrize("case", F32_CASES, ids=[c.id for c in F32_CASES])
def test_float32_gradcheck(case):
    """float32 backward against float64 central differences: loose tolerance 1e-4."""
    x, y = case.data()
    result = gradcheck(case.network(dtype="float32"), x, y, case.loss, case.l2)
    assert result.max_rel_error < 1e-4


# --- initialisers -----------------------------------------------------------------------------

N_OUT, N_IN = 300, 200  # 60 000 weights per draw
SQRT3 = math.sqrt(3)
# name -> (std of the zero-mean weights, half-width of the support or None for normal)
EXPECTED_STD = {
    "normal": (1.0, None),
    "uniform": (0.05 / SQRT3, 0.05),
    "glorot_uniform": (math.sqrt(2 / (N_IN + N_OUT)), math.sqrt(6 / (N_IN + N_OUT))),
    "glorot_normal": (math.sqrt(2 / (N_IN + N_OUT)), None),
    "he_uniform": (math.sqrt(2 / N_IN), math.sqrt(6 / N_IN)),
    "he_normal": (math.sqrt(2 / N_IN), None),
    "lecun_uniform": (math.sqrt(1 / N_IN), math.sqrt(3 / N_IN)),
    "lecun_normal": (math.sqrt(1 / N_IN), None),
    "standard": (math.sqrt(1 / (3 * N_IN)), 1 / math.sqrt(N_IN)),
    "orthogonal": (math.sqrt(1 / max(N_IN, N_OUT)), None),
    "epsilon": (math.sqrt(6 / (N_IN + N_OUT)) / SQRT3, math.sqrt(6 / (N_IN + N_OUT))),
}


def test_every_random_initialiser_has_expected_statistics():
    assert set(EXPECTED_STD) | {"debug"} == set(INITIALIZERS)


def _std_se(x):
    """Standard error of the sample std of i.i.d. draws: sqrt((m4 - s^4) / (4 n s^2)) (the
    delta method; std / sqrt(2n) for normal draws, 0.3% here, less for uniform)."""
    d = x - x.mean()
    s2 = np.mean(d * d)
    return math.sqrt((np.mean(d**4) - s2 * s2) / (4 * x.size * s2))


@pytest.mark.parametrize("name", list(EXPECTED_STD))
def test_initialiser_statistics(name):
    """Bands: |mean| < 5 standard errors (std / sqrt(n)); |sample std - std| < 5 se."""
    W, b = init_layer(name, np.random.default_rng(123), N_OUT, N_IN)
    assert W.shape == (N_OUT, N_IN) and b.shape == (N_OUT,) and W.dtype == np.float64
    std, half_width = EXPECTED_STD[name]
    assert abs(W.mean()) < 5 * std / math.sqrt(W.size)
    assert abs(W.std() - std) < 5 * _std_se(W)
    if half_width is not None:
        assert np.max(np.abs(W)) <= half_width
        assert np.max(np.abs(W)) > 0.99 * half_width  # fills its support
    if name == "epsilon":  # the bias column is drawn too
        assert np.max(np.abs(b)) <= half_width and np.std(b) > 0
    else:
        np.testing.assert_array_equal(b, 0.0)


@pytest.mark.parametrize("name", ["normal", "uniform", "he_normal"])
def test_initialiser_mean_std_and_bias(name):
    W, b = init_layer(name, np.random.default_rng(5), N_OUT, N_IN, mean=0.3, std=2.0,
                      bias_mean=-1.0, bias_std=0.5)
    assert abs(W.mean() - 0.3) < 5 * 2.0 / math.sqrt(W.size)
    assert abs(W.std() - 2.0) < 5 * _std_se(W)
    assert abs(b.mean() + 1.0) < 5 * 0.5 / math.sqrt(b.size)
    assert abs(b.std() - 0.5) < 5 * _std_se(b)  # only 300 biases: se 4% of the std


def test_debug_init_is_sin_column_major_with_bias_column():
    # theta = [b | W] for n_out = 2, n_in = 2: sin(1..6)/10 filled column by column
    #   [[sin 1, sin 3, sin 5],      [[ 0.0841471,  0.0141120, -0.0958924],
    #    [sin 2, sin 4, sin 6]] / 10 = [ 0.0909297, -0.0756802, -0.0279415]]
    expect = np.array([[0.0841471, 0.0141120, -0.0958924],
                       [0.0909297, -0.0756802, -0.0279415]])
    np.testing.assert_allclose(debug_theta(2, 2), expect, atol=5e-8)
    W, b = init_layer("debug", None, 2, 2)
    np.testing.assert_allclose(b, expect[:, 0], atol=5e-8)
    np.testing.assert_allclose(W, expect[:, 1:], atol=5e-8)
    net = Network.init([2, 2, 3], "sigmoid", "sigmoid", init="debug", seed=99)
    np.testing.assert_allclose(net.theta(1), expect, atol=5e-8)
    n = 3 * (2 + 1)
    np.testing.assert_array_equal(
        net.theta(2), np.sin(np.arange(1, n + 1)).reshape((3, 3), order="F") / 10)


@pytest.mark.parametrize("eps", [None, 0.12])
def test_epsilon_init_bounds(eps):
    W, b = init_layer("epsilon", np.random.default_rng(0), 25, 400, epsilon=eps)
    bound = math.sqrt(6) / math.sqrt(425) if eps is None else eps
    theta = np.column_stack([b, W])
    assert np.max(np.abs(theta)) <= bound and np.max(np.abs(theta)) > 0.99 * bound
    assert abs(theta.mean()) < 5 * bound / SQRT3 / math.sqrt(theta.size)


@pytest.mark.parametrize("name", [n for n in INITIALIZERS if n != "debug"])
def test_seeding_reproduces(name):
    a = Network.init([4, 5, 3], "tanh", init=name, seed=42, bias_std=0.1)
    b = Network.init([4, 5, 3], "tanh", init=name, seed=42, bias_std=0.1)
    c = Network.init([4, 5, 3], "tanh", init=name, seed=43, bias_std=0.1)
    gen = Network.init([4, 5, 3], "tanh", init=name, seed=np.random.default_rng(42),
                       bias_std=0.1)
    for l in (1, 2):
        np.testing.assert_array_equal(a.theta(l), b.theta(l))
        np.testing.assert_array_equal(a.theta(l), gen.theta(l))
        assert not np.array_equal(a.W[l], c.W[l])


@pytest.mark.parametrize("name", ["glorot_uniform", "he_normal", "epsilon"])
def test_stack_network_k_is_spawned_seed_k(name):
    K, seed = 4, 7
    stack = Network.init([4, 5, 3], "tanh", init=name, seed=seed, K=K, bias_std=0.1)
    children = np.random.SeedSequence(seed).spawn(K)
    for k in range(K):
        single = Network.init([4, 5, 3], "tanh", init=name, bias_std=0.1,
                              seed=np.random.default_rng(children[k]))
        for l in (1, 2):
            np.testing.assert_array_equal(stack[k].theta(l), single.theta(l))
    assert not np.array_equal(stack.W[1][0], stack.W[1][1])


def test_every_backend_starts_from_the_same_numbers(xp):
    net = Network.init([4, 5, 3], "tanh", seed=3, K=2, backend=xp.__name__, dtype="float32",
                       bias_std=0.1)
    ref = Network.init([4, 5, 3], "tanh", seed=3, K=2, bias_std=0.1)
    for l in (1, 2):
        np.testing.assert_array_equal(to_numpy(net.W[l]), ref.W[l].astype(np.float32))
        np.testing.assert_array_equal(to_numpy(net.b[l]), ref.b[l].astype(np.float32))
