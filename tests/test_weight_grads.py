"""The weight-gradient second moment per layer: the recording, the theory beside it
(:mod:`deltaprop.theory.weight_grads`, :mod:`deltaprop.stats.weight_grads`) and Glorot &
Bengio's eq. 14, each checked against a plain NumPy computation written here.

Statistical checks use fixed seeds and bands of 4 computed standard errors (the
measurement's and the prediction's integration error in quadrature).
"""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from deltaprop import Network
from deltaprop.stats import record
from deltaprop.stats.ensemble import prior
from deltaprop.stats.study import Study, run_study
from deltaprop.stats.weight_grads import KEY, add_rows
from deltaprop.theory import weight_grads as wg
from deltaprop.theory.conditional import average, law_batches


def numpy_ensemble(sizes, weight_var, f, df, K, m, seed, *, copy=False, probe=False):
    """Per network, the mean over its m samples of mean_jk (delta[l]_j a[l-1]_k)^2, l = 1..L,
    for K networks W[l] ~ N(0, weight_var[l]) (no biases), x and y ~ N(0, 1), MSE with a linear
    output: delta[L] = z[L] - y, delta[l] = (delta[l+1] W[l+1]) f'(z[l]).  ``copy``: the
    backward pass runs through an independent draw of the weights (gradient independence);
    ``probe``: delta[L] is fresh N(0, 1) noise, independent of the forward pass.
    Returns (K, L + 1) (column 0 unused)."""
    rng = np.random.default_rng(seed)
    L = len(sizes) - 1

    def draw():
        return [None] + [rng.normal(0.0, math.sqrt(weight_var[l]), (K, sizes[l], sizes[l - 1]))
                         for l in range(1, L + 1)]

    W = draw()
    Wb = draw() if copy else W
    x = rng.standard_normal((K, m, sizes[0]))
    y = rng.standard_normal((K, m, sizes[-1]))
    a, z = [x], [None]
    for l in range(1, L + 1):
        z.append(a[-1] @ np.swapaxes(W[l], 1, 2))
        a.append(z[-1] if l == L else f(z[-1]))
    d = [None] * (L + 1)
    d[L] = rng.standard_normal(z[L].shape) if probe else z[L] - y
    for l in range(L - 1, 0, -1):
        d[l] = (d[l + 1] @ Wb[l + 1]) * df(z[l])
    out = np.zeros((K, L + 1))
    for l in range(1, L + 1):  # mean over j, k of (d_j a_k)^2 for every sample, then over samples
        g = d[l][:, :, :, None] * a[l - 1][:, :, None, :]
        out[:, l] = (g * g).mean(axis=(2, 3)).mean(axis=1)
    return out


def tanh(z):
    return np.tanh(z)


def dtanh(z):
    return 1.0 - np.tanh(z) ** 2


def identity(z):
    return z


def one(z):
    return np.ones_like(z)


# ---------------------------------------------------------------------- formulas
def test_given_forward_is_the_mean_over_the_entries():
    # two samples: E[delta^2 | F] = 0.5 and 2; a = (1, 2, 2) and (0, 0, 3)
    # mean_k a_k^2 = 9 / 3 = 3 and 9 / 3 = 3 -> 1.5 and 6
    out = wg.given_forward(np.array([0.5, 2.0]), np.array([[1.0, 2, 2], [0, 0, 3]]))
    np.testing.assert_allclose(out, [1.5, 6.0], rtol=1e-15)


def test_linear_regime_by_hand():
    # sizes 4, 8, 2, v = 1/4, 1/4; E[x^2] = 2, E[delta[L]^2] = 3
    # layer 1: up = 1 (empty product), down = n_2 v_2 = 2/4 = 0.5  -> 2 * 3 * 0.5 = 3
    # layer 2: up = n_0 v_1 = 4/4 = 1, down = 1 (empty)            -> 2 * 3 * 1   = 6
    lin = wg.linear_regime([4, 8, 2], [None, 0.25, 0.25], 2.0, 3.0)
    assert lin == [None, 3.0, 6.0]
    assert wg.linear_ratio([4, 8, 2], [None, 0.25, 0.25], 1) == 2.0
    # widths 4, 8, 8, 2 with v = 1/4, 1/16, 1/4: n_{l-1} v_l / (n_{l+1} v_{l+1})
    sizes, v = [4, 8, 8, 2], [None, 0.25, 1 / 16, 0.25]
    lin = wg.linear_regime(sizes, v)
    for l in (1, 2):
        assert lin[l + 1] / lin[l] == pytest.approx(wg.linear_ratio(sizes, v, l), rel=1e-14)
    assert wg.linear_ratio(sizes, v, 1) == pytest.approx(4 * 0.25 / (8 / 16))
    assert wg.ratios(lin) == [None, 1.0, lin[2] / lin[1], lin[3] / lin[1]]


def test_eq14_equal_widths_any_variance_is_flat():
    """Glorot & Bengio's eq. 14: equal widths, any v -> the same E[dW2] in every layer."""
    for v in (1 / 3 / 32, 1 / 32, 3 / 32):
        lin = wg.linear_regime([32] * 6, [None] + [v] * 5)
        np.testing.assert_allclose(lin[1:], lin[1], rtol=1e-12)


# ---------------------------------------------------------------------- statistics
@pytest.mark.parametrize("sizes", [[6, 10, 10, 10, 4], [5, 12, 7, 9, 3]], ids=["equal", "unequal"])
def test_linear_regime_is_the_linear_network_under_gradient_independence(sizes):
    """Glorot & Bengio's assumptions made true -- a linear network, the backward pass through
    an independent copy of the weights, delta[L] independent of the forward pass (N(0, 1))
    -- give E[dW2[l]] = linear_regime, within 4 se (K = 6000 networks)."""
    L = len(sizes) - 1
    weight_var = [None] + [2.0 / (sizes[l - 1] + sizes[l]) for l in range(1, L + 1)]  # Glorot
    vals = numpy_ensemble(sizes, weight_var, identity, one, K=6000, m=4, seed=11, copy=True,
                          probe=True)
    lin = wg.linear_regime(sizes, weight_var, 1.0, 1.0)
    for l in range(1, L + 1):
        mean, se = vals[:, l].mean(), vals[:, l].std(ddof=1) / math.sqrt(len(vals))
        assert abs(mean - lin[l]) < 4 * se, (l, mean, se, lin[l])


def _law(pr, acts, samples, seed):
    n0, nL = pr.sizes[0], pr.sizes[-1]

    def draw(rng, n):
        return rng.standard_normal((n, n0)), np.zeros(nL), np.eye(nL)

    return average(pr, acts, "mse", law_batches(pr, acts, draw, samples=samples, seed=seed))


def test_exact_weight_gradient_matches_numpy_ensemble_and_factorised_does_not():
    """E_F[E[delta^2 | F] a^2] against a NumPy ensemble of tanh networks (true backward pass),
    4 se; at this width the factorised E[delta^2] E[a^2] misses by many se (about 29 and
    -15 se over seeds 5, 7, 9): per sample, delta[L]^2 = (z[L] - y)^2 grows with
    ||a[L-1]||^2, and a large ||x||^2 saturates tanh and shrinks delta[1]^2."""
    sizes = [4, 6, 6, 3]
    pr = prior(sizes, sigma_w2=2.0)
    acts = ["tanh", "tanh", "identity"]
    delta, fwd = _law(pr, acts, 1 << 17, seed=5)
    vals = numpy_ensemble(sizes, pr.weight_var, tanh, dtanh, K=20000, m=4, seed=6)
    for l in range(1, 4):
        mean, se = vals[:, l].mean(), vals[:, l].std(ddof=1) / math.sqrt(len(vals))
        band = 4 * math.hypot(se, delta[l]["dW2_se"])
        assert abs(delta[l]["dW2"] - mean) < band, (l, delta[l]["dW2"], mean, band)
    # E[a[l]^2] of the law: E[x^2] = 1 exactly in expectation
    assert fwd[0]["a2"] == pytest.approx(1.0, abs=0.02)
    for l, sign in ((1, 1), (3, -1)):  # the dependence is real: factorised high, then low
        fact = wg.factorised(delta[l]["second_moment"], fwd[l - 1]["a2"])
        mean, se = vals[:, l].mean(), vals[:, l].std(ddof=1) / math.sqrt(len(vals))
        assert sign * (fact - mean) > 8 * se, (l, fact, mean, se)


def test_study_rows_measure_what_numpy_measures():
    """The recorded E[dW2] of a stack equals the plain per-sample mean over the entries of
    (delta_j a_k)^2 (to rounding), and the ratio and its se are the per-network delta method."""
    sizes = [5, 7, 6, 3]
    net = Network.init(sizes, "tanh", "identity", init="glorot_normal", K=6, seed=3)
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((6, 40, 5)), rng.standard_normal((6, 40, 3))
    rec = record(net, x, y, "mse")
    W = [None] + [np.asarray(w) for w in net.W[1:]]
    b = [None] + [np.asarray(v) for v in net.b[1:]]
    a, z = [x], [None]
    for l in (1, 2, 3):
        z.append(a[-1] @ np.swapaxes(W[l], 1, 2) + b[l][:, None, :])
        a.append(z[-1] if l == 3 else np.tanh(z[-1]))
    d = {3: z[3] - y}
    for l in (2, 1):
        d[l] = (d[l + 1] @ W[l + 1]) * (1 - np.tanh(z[l]) ** 2)
    per_net = {l: ((d[l] ** 2).mean(-1) * (a[l - 1] ** 2).mean(-1)).mean(-1) for l in d}
    rows = add_rows([{"layer": l, "units": sizes[l]} for l in (1, 2, 3)], rec, {})
    for r in rows:
        l, m = r["layer"], r[KEY]["measured"]
        assert m["second_moment"] == pytest.approx(per_net[l].mean(), rel=1e-12)
        A, B = per_net[l], per_net[1]
        ratio = A.mean() / B.mean()
        # delta method: var(A/B) ~ (var A - 2 r cov(A, B) + r^2 var B) / (K B^2)
        C = np.cov(A, B, ddof=1)
        se = math.sqrt(max(C[0, 0] - 2 * ratio * C[0, 1] + ratio**2 * C[1, 1], 0) / 6) / B.mean()
        assert m["ratio"] == pytest.approx(ratio, rel=1e-12)
        assert m["ratio_se"] == pytest.approx(se, rel=1e-9, abs=1e-15)


@pytest.mark.slow
def test_default_study_weight_gradients_within_4_se():
    """Digits, tanh 64-64-64-64-64-10, Glorot normal, K = 16: the exact prediction of every
    layer's E[dW2] and of its ratio to layer 1 within 4 se of the measurement."""
    from deltaprop.stats.weight_grads import z_scores

    res = run_study(Study(weight_grads=True))
    for r in res.rows:
        z = z_scores(r[KEY])
        assert abs(z[("exact", "second_moment")]) < 4, (r["layer"], z)
        if r["layer"] > 1:
            assert abs(z[("exact", "ratio")]) < 4, (r["layer"], z)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "deltaprop", "stats", *args],
                          capture_output=True, text=True)


@pytest.mark.smoke
def test_cli_weight_grads(tmp_path):
    base = ("--inputs", "gaussian", "--sizes", "6,8,8,3", "--K", "8", "--samples", "32")
    out = _cli(*base, "--weight-grads", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    for r in rows:
        e = r[KEY]
        assert {"second_moment", "second_moment_se", "ratio", "ratio_se"} <= set(e["measured"])
        assert {"exact", "factorised", "mean_field", "linear_regime"} <= set(e["predicted"])
    assert rows[0][KEY]["measured"]["ratio"] == 1.0
    text = _cli(*base, "--weight-grads", "--out", str(tmp_path)).stdout
    assert "Glorot & Bengio eq. 14" in text and "E[dW^2]" in text
    assert "Glorot & Bengio eq. 14" in (tmp_path / "weight_grads.txt").read_text()
    assert KEY not in json.loads(_cli(*base, "--json").stdout)[0]  # off by default
