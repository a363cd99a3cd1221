"""Finite width: the spread of E[delta[l]^2] between networks (theory.finite_width, stats.spread).

Every prediction is checked against an independent computation written here: plain NumPy
networks (batched matrix products, no deltaprop code) or quadrature (scipy.integrate.quad).
Statistical bands are 4 computed standard errors; the standard error of a sample variance
s^2 of K values is sqrt((m4 - s^4) / K) (m4 the fourth central moment: the normal
approximation of the estimator), computed here, not by the code under test.  Seeds fixed.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import integrate

from deltaprop.theory import finite_width as fw

BAND = 4.0


# ----------------------------------------------------------------- independent references
def _var_and_se(v):
    """Sample variance (ddof 1) of v along axis 0 and its standard error sqrt((m4 - s^4)/K)."""
    v = np.asarray(v, float)
    K = v.shape[0]
    d = v - v.mean(axis=0)
    s2 = (d**2).sum(axis=0) / (K - 1)
    m4 = (d**4).mean(axis=0)
    return s2, np.sqrt((m4 - s2**2) / K)


def _networks(sizes, weight_var, K, *, act="relu", bias_var=None, top="mse", x_var=1.0, x_mean=0.0,
              y_mean=0.0, y_var=1.0, b_out=(0.0, 0.0), seed=0, chunk=2500):
    """Per-network E[delta[l]^2], l = 1..L (shape (K, L)), of K NumPy networks with one
    Gaussian input each: W[l] ~ N(0, weight_var[l]), hidden biases N(0, bias_var[l]), identity
    output with biases N(b_out), MSE delta[L] = z[L] - y or a random unit vector u."""
    rng = np.random.default_rng(seed)
    L = len(sizes) - 1
    bias_var = bias_var or [0.0] * (L + 1)
    f = {"relu": lambda z: np.maximum(z, 0.0), "tanh": np.tanh}[act]
    df = {"relu": lambda z: (z > 0) * 1.0, "tanh": lambda z: 1 - np.tanh(z) ** 2}[act]
    out = []
    for k0 in range(0, K, chunk):
        k = min(chunk, K - k0)
        W = [None] + [rng.standard_normal((k, sizes[l], sizes[l - 1])) * math.sqrt(weight_var[l])
                      for l in range(1, L + 1)]
        b = [None] + [rng.standard_normal((k, sizes[l])) * math.sqrt(bias_var[l])
                      for l in range(1, L)]
        b.append(b_out[0] + math.sqrt(b_out[1]) * rng.standard_normal((k, sizes[L])))
        a = x_mean + math.sqrt(x_var) * rng.standard_normal((k, sizes[0]))
        z = [None]
        for l in range(1, L + 1):
            z.append((W[l] @ a[:, :, None])[:, :, 0] + b[l])
            a = f(z[l]) if l < L else z[l]
        if top == "mse":
            d = z[L] - (y_mean + math.sqrt(y_var) * rng.standard_normal(z[L].shape))
        else:
            u = rng.standard_normal(z[L].shape)
            d = u / np.linalg.norm(u, axis=1, keepdims=True)
        Q = [(d**2).mean(axis=1)]
        for l in range(L - 1, 0, -1):
            d = (d[:, None, :] @ W[l + 1])[:, 0, :] * df(z[l])
            Q.append((d**2).mean(axis=1))
        out.append(np.stack(Q[::-1], axis=1))
    return np.concatenate(out)


def _he(sizes, gain=2.0):
    return [None] + [gain / sizes[l - 1] for l in range(1, len(sizes))]


# ----------------------------------------------------------------- ReLU, exact
@pytest.mark.parametrize("n", [4, 16, 64])
def test_relu_layer_log_variance_against_monte_carlo(n):
    """V(n) = Var[log chi^2_N], N ~ Binomial(n, 1/2) given N >= 1: a NumPy draw of both."""
    rng = np.random.default_rng(n)
    N = rng.binomial(n, 0.5, 1 << 21)
    N = N[N > 0]
    X = rng.chisquare(N)
    v, se = _var_and_se(np.log(X))
    assert abs(fw.relu_layer_log_variance(n) - v) < BAND * se, (n, v, se)


def test_relu_layer_constant_is_five():
    """n V(n) -> 5 (4 from the chi-square, 1 from the active count): 5 + O(1/n)."""
    for n in (100, 1000, 10000):
        assert 0 < n * fw.relu_layer_log_variance(n) - 5 < 25 / n
    assert fw.layer_constant("relu", 0.7) == 5.0 and fw.layer_constant("identity", 3.0) == 2.0


@pytest.mark.slow
def test_relu_jacobian_closed_form_and_law_match_networks():
    """Hanin's setting (delta[L] = u): sum_k V(n_k) and the exact law against 20000 NumPy
    ReLU networks of width 32, one input each."""
    sizes = [32, 32, 32, 32, 32, 32, 10]
    weight_var = _he(sizes)
    Q = _networks(sizes, weight_var, 20000, top="jacobian", seed=1)
    v, se = _var_and_se(np.log(Q[:, :-1]))
    closed = fw.relu_jacobian_log_variance(sizes)[1:-1]
    law = fw.relu_spread(sizes, weight_var, top="jacobian", x_norm2=fw.gaussian_norm2(32),
                         draws=1 << 19, seed=2)
    assert np.all(np.abs(closed - v) < BAND * se), (closed, v, se)
    lse = np.hypot(se, law["log_var_se"][1:-1])
    assert np.all(np.abs(law["log_var"][1:-1] - v) < BAND * lse), (law["log_var"], v)
    # the closed form grows like 5 beta: 5 sum 1/n_k, here 5.68 beta (5 + about 22 / n)
    beta = np.cumsum(1 / np.array(sizes[1:-1])[::-1])[::-1]
    assert np.all(np.abs(closed / beta - 5) < 25 / 32)


@pytest.mark.slow
@pytest.mark.parametrize("n, x_mean, y_mean, b_out", [
    (32, 0.0, 0.0, (0.0, 0.0)),
    (24, 0.5, 1.0, (0.2, 0.1)),  # inputs and targets of nonzero mean, random output biases
])
def test_relu_law_mse_matches_networks(n, x_mean, y_mean, b_out):
    """The exact law with the MSE loss's delta[L] = z[L] - y (where gradient independence
    is a factor 2 off per layer) against 20000 NumPy networks: log_var and rel_var."""
    sizes = [n, n, n, n, n, 10]
    weight_var = _he(sizes)
    Q = _networks(sizes, weight_var, 20000, x_mean=x_mean, y_mean=y_mean, b_out=b_out, seed=3)
    law = fw.relu_spread(sizes, weight_var, x_norm2=fw.gaussian_norm2(n, x_mean, 1.0),
                         targets=(y_mean, 1.0), bias_out=b_out, draws=1 << 19, seed=4)
    v, se = _var_and_se(np.log(Q))
    lse = np.hypot(se, law["log_var_se"][1:])
    assert np.all(np.abs(law["log_var"][1:] - v) < BAND * lse), (law["log_var"][1:], v, lse)
    # rel_var = Var[Q] / E[Q]^2: its se by a bootstrap over the networks, written here
    rng = np.random.default_rng(5)
    rel = Q.var(axis=0, ddof=1) / Q.mean(axis=0) ** 2
    boot = []
    for _ in range(200):
        s = Q[rng.integers(0, len(Q), len(Q))]
        boot.append(s.var(axis=0, ddof=1) / s.mean(axis=0) ** 2)
    rse = np.hypot(np.std(boot, axis=0), law["rel_var_se"][1:])
    assert np.all(np.abs(law["rel_var"][1:] - rel) < BAND * rse), (law["rel_var"][1:], rel)
    # gradient independence (the closed form's chi-squares) is far off with this delta[L]
    hanin = fw.relu_jacobian_log_variance(sizes)[1]
    assert v[0] - v[-2] > 1.5 * hanin


def test_relu_law_fixed_input_and_dead_layers():
    """A fixed input: no input term, and the input scale cancels in log-differences; dead
    layers (N_k = 0) are dropped, so every value is finite."""
    sizes = [4, 3, 3, 2]
    logs = fw.relu_law(sizes, _he(sizes), top="jacobian", x_norm2=4.0, draws=20000, seed=0)
    assert np.isfinite(logs[:, 1:]).all() and len(logs) < 20000  # 2^-3 per layer dead
    a = fw.relu_law(sizes, _he(sizes), top="jacobian", x_norm2=1.0, draws=20000, seed=0)
    b = fw.relu_law(sizes, _he(sizes), top="jacobian", x_norm2=9.0, draws=20000, seed=0)
    np.testing.assert_allclose(a[:, 1:], b[:, 1:])  # the probe's gain is scale-free
    with pytest.raises(ValueError, match="top"):
        fw.relu_law(sizes, _he(sizes), top="nope")


# ----------------------------------------------------------------- any activation, leading order
def _gauss(g, q):
    val = integrate.quad(lambda t: g(t) * math.exp(-t * t / (2 * q)), -40, 40, limit=400)[0]
    return val / math.sqrt(2 * math.pi * q)


@pytest.mark.parametrize("q", [0.05, 0.6, 3.0])
def test_layer_noise_tanh_against_quadrature(q):
    """kappa, the forward/backward noise and the elasticities by scipy quad (and a
    central difference of the quad integrals)."""
    f, df = np.tanh, (lambda t: 1 / math.cosh(t) ** 2)
    F, F4 = _gauss(lambda t: f(t) ** 2, q), _gauss(lambda t: f(t) ** 4, q)
    H, H4 = _gauss(lambda t: df(t) ** 2, q), _gauss(lambda t: df(t) ** 4, q)
    FH = _gauss(lambda t: (f(t) * df(t)) ** 2, q)
    h = 1e-3
    theta = (math.log(_gauss(lambda t: f(t) ** 2, q * math.exp(h)))
             - math.log(_gauss(lambda t: f(t) ** 2, q * math.exp(-h)))) / (2 * h)
    eta = (math.log(_gauss(lambda t: df(t) ** 2, q * math.exp(h)))
           - math.log(_gauss(lambda t: df(t) ** 2, q * math.exp(-h)))) / (2 * h)
    nz = fw.layer_noise("tanh", q)
    assert nz["bb"] == pytest.approx(3 * H4 / H**2 - 1, rel=1e-8)
    assert fw.layer_constant("tanh", q) == pytest.approx(nz["bb"])
    assert nz["ff"] == pytest.approx(F4 / F**2 - 1, rel=1e-8)
    assert nz["fb"] == pytest.approx(FH / (F * H) - 1, rel=1e-7, abs=1e-10)
    assert nz["theta"] == pytest.approx(theta, rel=1e-5)
    assert nz["eta"] == pytest.approx(eta, rel=1e-5, abs=1e-9)


def test_leading_order_relu_is_five_beta():
    sizes = [10, 40, 20, 80, 5]
    v = fw.log_variance(sizes, "relu", _he(sizes))
    assert v[4] == 0 and v[3] == pytest.approx(5 / 80) and v[1] == pytest.approx(5 * (
        1 / 40 + 1 / 20 + 1 / 80))


@pytest.mark.slow
@pytest.mark.parametrize("sigma_w2, sigma_b2", [(1.0, 0.0), (1.8, 0.05)])
def test_leading_order_tanh_matches_networks(sigma_w2, sigma_b2):
    """tanh, delta[L] = u, one input of 64 standard normal components: the leading order
    in 1/n (forward fluctuation included) against 4000 NumPy networks of width 128."""
    sizes = [64, 128, 128, 128, 128, 10]
    L = len(sizes) - 1
    weight_var = _he(sizes, sigma_w2)
    bias_var = [0.0] + [sigma_b2] * L
    Q = _networks(sizes, weight_var, 4000, act="tanh", bias_var=bias_var, top="jacobian", seed=6)
    v, se = _var_and_se(np.log(Q[:, :-1]))
    p = fw.log_variance(sizes, "tanh", weight_var, bias_var, input_second=1.0,
                        input_log_var=2 / sizes[0])[1:-1]
    assert np.all(np.abs(p - v) < BAND * se), (p, v, se)
    # and the forward fluctuation matters: kappa alone (no eta terms) is off
    kappa_only = np.cumsum([fw.layer_constant("tanh", q) / 128 for q in
                            _mean_field_q(sizes, sigma_w2, sigma_b2)][::-1])[::-1]
    assert np.any(np.abs(kappa_only - v) > BAND * se)


def _mean_field_q(sizes, sigma_w2, sigma_b2):
    q, out = 1.0 * sigma_w2 + sigma_b2, []
    for _ in range(1, len(sizes) - 1):
        out.append(q)
        q = sigma_w2 * _gauss(lambda t: math.tanh(t) ** 2, q) + sigma_b2
    return out


# ----------------------------------------------------------------- planning K, spreads
def test_networks_needed_gives_the_relative_se():
    """K = rel_var / rel_se^2 networks: the relative sd of K-network means, simulated."""
    rng = np.random.default_rng(7)
    s2 = 0.3  # log-normal per-network values: rel_var = exp(s2) - 1
    K = fw.networks_needed(math.expm1(s2), 0.05)
    assert K == math.ceil(math.expm1(s2) / 0.0025)
    means = np.exp(rng.normal(0, math.sqrt(s2), (4000, K))).mean(axis=1)
    rel = means.std(ddof=1) / means.mean()
    # the sd of a sample sd of R values is about sd / sqrt(2 (R - 1)) (normal approximation)
    assert abs(rel - 0.05) < BAND * 0.05 / math.sqrt(2 * 3999)
    assert fw.networks_needed(0.0, 0.01) == 1
    with pytest.raises(ValueError):
        fw.networks_needed(1.0, 0.0)


def test_spread_of_standard_errors_match_replicates():
    """spread_of's se (delta method, a large-K formula) against the spread of its estimates
    over 500 independent ensembles of 300 log-normal values; the band is 4 computed se of
    that comparison (the replicates' sd, se from their kurtosis; the mean reported se)."""
    rng = np.random.default_rng(8)
    est = [fw.spread_of(np.exp(rng.normal(0, 0.3, 300))) for _ in range(500)]
    R = len(est)
    for key in ("log_var", "rel_var"):
        vals = np.array([e[key] for e in est])
        ses = np.array([e[key + "_se"] for e in est])
        sd = vals.std(ddof=1)
        kurt = ((vals - vals.mean()) ** 4).mean() / vals.var() ** 2
        se_sd = sd * math.sqrt((kurt - 1) / (4 * R))  # delta method for a sample sd
        se_mean = ses.std(ddof=1) / math.sqrt(R)
        assert abs(ses.mean() - sd) < BAND * math.hypot(se_sd, se_mean), (key, ses.mean(), sd)
    s2 = np.array([e["log_var"] for e in est])
    assert abs(s2.mean() - 0.09) < BAND * s2.std(ddof=1) / math.sqrt(R)  # unbiased (ddof 1)


def test_measured_spread_of_a_record():
    from deltaprop.stats import Study, run_study
    from deltaprop.stats.spread import measured

    res = run_study(Study(sizes=(6, 16, 16, 3), inputs="gaussian", K=12, m=8, bins=None,
                          forward_model="gaussian"))
    meas = measured(res.record)
    for l in (1, 2, 3):
        q2 = res.record.network_means(l)[1]
        assert meas[l]["log_var"] == pytest.approx(np.var(np.log(q2), ddof=1))
        assert meas[l]["rel_var"] == pytest.approx(np.var(q2, ddof=1) / np.mean(q2) ** 2)
    assert measured(run_study(Study(sizes=(6, 8, 3), inputs="gaussian", K=1, m=8, bins=None,
                                    forward_model="gaussian")).record) is None


def test_applies_says_where_the_theory_holds():
    from deltaprop.stats.ensemble import prior
    from deltaprop.stats.spread import applies

    sizes = (8, 16, 16, 4)
    relu = ["relu", "relu", "identity"]
    he = prior(sizes, sigma_w2=2.0)
    assert applies(he, relu, "mse", samples=1)[0] == "law"
    assert applies(he, relu, "mse", samples=2)[0] is None
    assert applies(he, ["tanh", "tanh", "identity"], "mse", samples=1)[0] is None
    assert applies(he, ["tanh", "tanh", "identity"], samples=1, top="jacobian")[0] == "leading"
    assert applies(prior(sizes, sigma_w2=2.0, sigma_b2=0.1), relu, "mse", samples=1)[0] is None
    assert applies(prior(sizes, init="orthogonal", sigma_w2=2.0), relu, "mse",
                   samples=1)[0] is None
    assert applies(prior(sizes, sigma_w2=2.0, weight_mean=0.01), relu, "mse", samples=1)[0] is None
    assert applies(prior(sizes, init="he_uniform"), relu, "mse", samples=1)[0] is None
    assert applies(prior(sizes, init="he_uniform"), relu, samples=1, top="jacobian")[0] == \
        "leading"


# ----------------------------------------------------------------- the command line
def _cli(*args):
    return subprocess.run([sys.executable, "-m", "deltaprop", "stats", *args],
                          capture_output=True, text=True)


def test_cli_plans_K_from_the_measured_spread():
    out = _cli("--inputs", "gaussian", "--sizes", "6,8,8,3", "--K", "8", "--samples", "16",
               "--forward", "gaussian", "--bins", "0", "--rel-se", "0.02")
    assert out.returncode == 0, out.stderr
    line = out.stdout.splitlines()[-1]
    assert line.startswith("to resolve E[delta[1]^2] to 2% (relative standard error) takes "
                           "about K = ") and "measured over 8 networks" in line, line
    one = _cli("--inputs", "gaussian", "--sizes", "6,8,8,3", "--K", "1", "--samples", "16",
               "--forward", "gaussian", "--bins", "0")
    assert "not known with K = 1" in one.stdout.splitlines()[-1]
    bad = _cli("--sizes", "6,8,3", "--inputs", "gaussian", "--rel-se", "0")
    assert bad.returncode == 2 and "rel-se" in bad.stderr


def test_cli_spread_json_and_predicted_for_one_network():
    """--spread: row["spread"]; with K = 1 the K = 1 row's spread is the prediction alone,
    labelled (measured n/a), and the main table keeps its n/a for z."""
    args = ("--inputs", "gaussian", "--sizes", "8,16,16,4", "--activations", "relu",
            "--sigma-w2", "2", "--samples", "1", "--forward", "gaussian", "--bins", "0",
            "--spread")
    rows = json.loads(_cli(*args, "--K", "16", "--json").stdout)
    s = rows[0]["spread"]
    assert set(s) == {"measured", "predicted", "z", "rel_se", "networks", "networks_from"}
    assert set(s["measured"]) == {"log_var", "log_var_se", "rel_var", "rel_var_se"}
    assert s["predicted"]["method"] == "law" and s["networks_from"] == "measured"
    text = _cli(*args, "--K", "1").stdout
    assert "n/a: K = 1, the spread between networks is not measured" in text
    assert "finite-width theory, exact law" in text.splitlines()[-1]
    row1 = [ln for ln in text.splitlines() if ln.split()[:2] == ["1", "16"]]
    assert row1[-1].split()[2] == "n/a" and float(row1[-1].split("|")[1].split()[0]) > 0


def test_cli_probe_prints_the_leading_order():
    out = _cli("--probe", "--inputs", "gaussian", "--sizes", "8,32,32,4", "--K", "64",
               "--samples", "1", "--bins", "0")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("probe u . z[L]: K = 64 networks")
    assert "theory: leading order in 1/n" in out.stdout
    rows = json.loads(_cli("--probe", "--inputs", "gaussian", "--sizes", "8,32,32,4", "--K",
                           "16", "--samples", "4", "--json").stdout)
    assert [r["layer"] for r in rows] == [1, 2] and rows[0]["spread"]["predicted"] is None
