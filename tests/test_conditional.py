"""The backward pass averaged over the weights given the forward pass (theory.conditional)
against an independent plain-NumPy Monte Carlo over networks and inputs.

Bands are 4 combined standard errors (Monte Carlo and the theory's own integration error),
seeds fixed; each test also checks that a known-wrong predictor lies outside its band, so
the band can fail.
"""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from deltaprop.stats.ensemble import prior
from deltaprop.theory.conditional import (
    average,
    backward_given_forward,
    exact_moments,
    law_batches,
    sample_forward,
    target_law,
)
from deltaprop.theory.exact_last_layer import (
    ForwardSecond,
    exact_second_moment,
    forward_second,
)


def _load_reference():
    """The plain-NumPy Monte Carlo of examples/edelta_every_layer.py (no deltaprop in it)."""
    path = Path(__file__).resolve().parents[1] / "examples" / "edelta_every_layer.py"
    spec = importlib.util.spec_from_file_location("edelta_every_layer", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_REF = _load_reference()
monte_carlo, F = _REF.monte_carlo, _REF.F


def _law(sizes, act, mu, s, loss, samples=100_000, y=(1.0, 1.25)):
    pr = prior(sizes, weight_std=s, weight_mean=mu)
    output = {"mse": "identity", "softmax-cross-entropy": "softmax",
              "sigmoid-cross-entropy": "sigmoid"}[loss]
    acts = [act] * (len(sizes) - 2) + [output]
    ybar, cov = target_law(loss, sizes[-1], *y)

    def draw(rng, n):
        return 0.5 + rng.standard_normal((n, sizes[0])), ybar, cov

    return pr, acts, exact_moments(pr, acts, loss, draw, samples=samples, seed=3)


def _check(pred, mc, layers):
    zs = []
    for l in layers:
        mean, se, second, se2 = mc[l]
        for key, meas, s in (("mean", mean, se), ("second_moment", second, se2)):
            z = (pred[l][key] - meas) / math.hypot(s, pred[l][key + "_se"])
            zs.append(z)
            assert abs(z) < 4, (l, key, pred[l][key], meas, z)
    return zs


@pytest.mark.slow
@pytest.mark.parametrize("sizes,act,mu", [((16, 32, 32, 4), "sigmoid", 0.1),
                                          ((16, 32, 32, 32, 4), "tanh", -0.2),
                                          ((16, 32, 32, 4), "tanh", 0.05)])
def test_every_layer_matches_monte_carlo_mse(sizes, act, mu):
    mc = monte_carlo(sizes, act, mu, 0.3, K=3000, m=32, seed=11)
    pr, acts, pred = _law(sizes, act, mu, 0.3, "mse")
    _check(pred, mc, range(1, len(sizes)))


def test_independence_misses_what_conditioning_keeps():
    """The question's setting two layers below the output: the independence approximation
    is many standard errors off (so the band above can fail), the conditional one is not."""
    sizes = (16, 32, 32, 4)
    mc = monte_carlo(sizes, "sigmoid", 0.1, 0.3, K=2000, m=32, seed=5)
    pr, acts, pred = _law(sizes, "sigmoid", 0.1, 0.3, "mse", samples=50_000)
    _check(pred, mc, (1, 2))
    # independence one step down from the measured delta[2]: E[f'] n_2 mu E[delta[2]]
    rng = np.random.default_rng(0)
    z, a = sample_forward(pr, acts, 0.5 + rng.standard_normal((50_000, 16)), rng)
    E_df = float(F["sigmoid"][1](z[1]).mean())
    indep = E_df * 32 * 0.1 * mc[2][0]
    assert abs(indep - mc[1][0]) > 8 * mc[1][1]


@pytest.mark.slow
@pytest.mark.parametrize("loss,out", [("softmax-cross-entropy", "softmax"),
                                      ("sigmoid-cross-entropy", "sigmoid")])
def test_cross_entropy_outputs(loss, out):
    sizes = (16, 32, 32, 4)
    mc = monte_carlo(sizes, "sigmoid", 0.1, 0.3, K=3000, m=32, out=out, seed=7)
    y = (0.25, 0.25) if out == "softmax" else (0.5, 1 / 3)
    pr, acts, pred = _law(sizes, "sigmoid", 0.1, 0.3, loss, y=y)
    _check(pred, mc, (1, 2, 3))


def test_closed_form_second_moment_equals_recursion():
    """Isserlis' closed form for E[delta[L-1]^2] and the recursion (C2) are two exact
    routes: on independent forward draws they agree within 4 combined standard errors (the
    closed form's own from its per-sample values; z = 0.9), and the closed form agrees with
    the Monte Carlo over networks (z = 1.1).  Treating W[L] as independent of
    e = z[L] - y (dropping their covariance v a_j) is outside the first band."""
    sizes = (16, 32, 32, 4)
    pr, acts, pred = _law(sizes, "sigmoid", 0.1, 0.3, "mse", samples=60_000)
    rng = np.random.default_rng(9)
    z, a = sample_forward(pr, acts, 0.5 + rng.standard_normal((60_000, 16)), rng)
    d2, a2 = F["sigmoid"][1](z[2]) ** 2, a[2]
    S, Q = a2.sum(-1, keepdims=True), (a2 * a2).sum(-1, keepdims=True)
    # the closed form is linear in the forward moments: one value per forward draw
    fw = ForwardSecond(*((d2 * t).mean(-1) for t in (1.0, a2, a2 * a2, S, S * S, Q, a2 * S)))
    per_draw = exact_second_moment(4, 0.09, 0.1, fw, 1.0, 0.25)
    closed, closed_se = per_draw.mean(), per_draw.std(ddof=1) / math.sqrt(len(per_draw))
    assert closed == pytest.approx(exact_second_moment(
        4, 0.09, 0.1, forward_second(F["sigmoid"][1](z[2]), a2), 1.0, 0.25), rel=1e-12)
    p = pred[2]
    se = math.hypot(closed_se, p["second_moment_se"])
    assert abs(closed - p["second_moment"]) < 4 * se
    # the covariance terms of one row (2 v^2 a^2 + 4 mu v a cbar) and of pairs of rows
    d2ac = 0.1 * fw.d2aS + (0.0 - 1.0) * fw.d2a  # E[d^2 a cbar], cbar = mu S - E[y]
    dependent = (4 * (2 * 0.09**2 * fw.d2a2 + 4 * 0.1 * 0.09 * d2ac)
                 + 4 * 3 * (0.09**2 * fw.d2a2 + 2 * 0.09 * 0.1 * d2ac)).mean()
    assert abs(closed - dependent - p["second_moment"]) > 4 * se
    mc = monte_carlo(sizes, "sigmoid", 0.1, 0.3, K=2000, m=32, seed=13)
    assert abs(closed - mc[2][2]) < 4 * math.hypot(mc[2][3], closed_se)


def test_given_forward_the_top_layer_average_is_the_question_formula():
    """Average (C1) at the last hidden layer over z[L] | a[L-1] for one fixed a[L-1]:
    the result is f'(z_j) M (v a_j + mu (mu S - E[y])), the question's formula before the
    forward average (exact: a band of 4 Monte Carlo standard errors)."""
    sizes = (5, 6, 3)
    pr = prior(sizes, weight_std=0.4, weight_mean=0.2)
    acts = ["tanh", "identity"]
    rng = np.random.default_rng(1)
    x = np.repeat(rng.normal(size=(1, 5)), 200_000, axis=0)
    z, a = sample_forward(pr, acts, x, rng)
    z[1] = np.repeat(z[1][:1], len(x), 0)  # one fixed layer below ...
    a[1] = np.tanh(z[1])
    S = a[1][0].sum()                      # ... and z[2] | a[1] redrawn
    z[2] = 0.2 * S + math.sqrt(0.16 * (a[1][0] ** 2).sum()) * rng.standard_normal((len(x), 3))
    a[2] = z[2]
    mean, _ = backward_given_forward(pr, acts, "mse", z, a, np.full(3, 1.0), 0.25)
    d = 1 - a[1][0] ** 2
    want = np.mean(d * 3 * (0.16 * a[1][0] + 0.2 * (0.2 * S - 1.0)))
    se = mean[1].std(ddof=1) / math.sqrt(len(mean[1]))  # over the 200000 draws of z[2]
    assert abs(mean[1].mean() - want) < 4 * se  # z = -0.6; 4 se is 0.5% of want
    # without the dependence (the v a_j term), the question's independence value, is not
    assert abs(np.mean(d * 3 * 0.2 * (0.2 * S - 1.0)) - want) > 4 * se


def test_average_groups_and_law_batches():
    """Standard errors come from independent groups: one per draw for the law."""
    pr = prior((4, 8, 2), weight_std=0.5, weight_mean=0.1)
    acts = ["tanh", "identity"]

    def draw(rng, n):
        return rng.normal(size=(n, 4)), np.zeros(2), 1.0

    batches = list(law_batches(pr, acts, draw, samples=1000, chunk=300, seed=0))
    assert [b[-1] for b in batches] == [300, 300, 300, 100]
    delta, fwd = average(pr, acts, "mse", batches)
    assert set(delta) == {1, 2} and delta[1]["mean_se"] > 0
    assert {"df", "df2", "fdf", "dfS", "f", "d2a", "d2S2"} <= set(fwd[1])
    # grouping ten samples together changes the estimate of the mean not at all
    regrouped = [(z, a, y, c, g // 10) for z, a, y, c, g in batches]
    d2, _ = average(pr, acts, "mse", regrouped)
    assert d2[1]["mean"] == pytest.approx(delta[1]["mean"], rel=1e-12)


def test_rejects_non_elementwise_hidden_layers():
    pr = prior((3, 4, 2), weight_std=0.5)
    z = [None, np.zeros((2, 4)), np.zeros((2, 2))]
    a = [np.zeros((2, 3)), np.zeros((2, 4)), np.zeros((2, 2))]
    with pytest.raises(ValueError, match="elementwise"):
        backward_given_forward(pr, ["softmax", "identity"], "mse", z, a, np.zeros(2))
