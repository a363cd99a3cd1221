"""Signal propagation (deltaprop.theory.signal, deltaprop theory, the measured correlation map)
against computations written here: scipy quadrature (Gauss-Hermite nodes of
scipy.special.roots_hermitenorm, scipy.integrate.quad, scipy.optimize.brentq) and plain NumPy
Monte Carlo and forward passes.  Nothing here calls the code under test to make a reference.

Statistical checks: fixed seeds, bands of 4 standard errors computed from the samples.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import integrate, optimize, special

from deltaprop.app.cli import main
from deltaprop.stats import correlation as corr
from deltaprop.stats import ensemble
from deltaprop.theory import signal as sg

# --- references written here ----------------------------------------------------------------
F = {  # f and f' in plain NumPy, one per elementwise activation of deltaprop
    "identity": (lambda u: u, lambda u: np.ones_like(u)),
    "sigmoid": (special.expit, lambda u: special.expit(u) * (1 - special.expit(u))),
    "tanh": (np.tanh, lambda u: 1 - np.tanh(u) ** 2),
    "relu": (lambda u: np.maximum(u, 0), lambda u: (u > 0) * 1.0),
    "leaky_relu": (lambda u: np.where(u > 0, u, 0.01 * u), lambda u: np.where(u > 0, 1, 0.01)),
    "softplus": (lambda u: np.logaddexp(0, u), special.expit),
    "silu": (lambda u: u * special.expit(u),
             lambda u: special.expit(u) * (1 + u * (1 - special.expit(u)))),
    "gelu": (lambda u: 0.5 * u * (1 + np.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u**3))),
             None),  # f' by the test's own central difference below
}


def _df(name):
    f, df = F[name]
    if df is None:
        return lambda u: (f(u + 1e-5) - f(u - 1e-5)) / 2e-5
    return df


def gh1(g, q, n=800):
    """E[g(u)], u ~ N(0, q), by Gauss-Hermite (scipy's probabilists' nodes)."""
    x, w = special.roots_hermitenorm(n)
    return float(w @ g(math.sqrt(q) * x)) / math.sqrt(2 * math.pi)


def gh2(g, h, q, c, n=500):
    """E[g(u_a) h(u_b)], (u_a, u_b) ~ N(0, q [[1, c], [c, 1]]), tensor Gauss-Hermite."""
    x, w = special.roots_hermitenorm(n)
    w = w / math.sqrt(2 * math.pi)
    s = math.sqrt(q)
    ua = s * x[:, None]
    ub = s * (c * x[:, None] + math.sqrt(1 - c * c) * x[None, :])
    return float(np.sum(w[:, None] * w[None, :] * g(ua) * h(ub)))


def quad2(g, h, q, c):
    """The same by nested scipy.integrate.quad in u (u_b | u_a ~ N(c u_a, q (1 - c^2)))."""
    s, sc = math.sqrt(q), math.sqrt(q * (1 - c * c))

    def inner(ua):
        m = c * ua
        return integrate.quad(lambda ub: h(np.float64(ub)) * math.exp(-0.5 * ((ub - m) / sc) ** 2)
                              / (sc * math.sqrt(2 * math.pi)), m - 12 * sc, m + 12 * sc,
                              points=[0.0] if abs(m) < 12 * sc else None, limit=400,
                              epsabs=1e-14, epsrel=1e-12)[0]

    return integrate.quad(lambda ua: g(np.float64(ua)) * inner(ua) * math.exp(-0.5 * (ua / s) ** 2)
                          / (s * math.sqrt(2 * math.pi)), -12 * s, 12 * s, points=[0.0],
                          limit=400, epsabs=1e-14, epsrel=1e-12)[0]


def quad1(g, q):
    """E[g(u)], u ~ N(0, q), by scipy.integrate.quad (wide q, where Gauss-Hermite is slow)."""
    s = math.sqrt(q)
    return integrate.quad(lambda u: g(np.float64(u)) * math.exp(-0.5 * (u / s) ** 2)
                          / (s * math.sqrt(2 * math.pi)), -12 * s, 12 * s, points=[0.0],
                          limit=400, epsabs=1e-15, epsrel=1e-13)[0]


def ref_c_map(name, q, c, w2, b2, pair=gh2, one=gh1):
    """(C(c), C'(c)) = ((w2 E[f f] + b2) / F(q), w2 q E[f' f'] / F(q)), F = w2 E[f^2] + b2."""
    f, df = F[name][0], _df(name)
    Fq = w2 * one(lambda u: f(u) ** 2, q) + b2
    return (w2 * pair(f, f, q, c) + b2) / Fq, w2 * q * pair(df, df, q, c) / Fq


def ref_q_star(name, w2, b2, lo=1e-6, hi=50.0):
    f = F[name][0]
    return optimize.brentq(lambda q: w2 * gh1(lambda u: f(u) ** 2, q) + b2 - q, lo, hi,
                           xtol=1e-14, rtol=1e-14)


# --- the C-map ------------------------------------------------------------------------------
SMOOTH_CASES = [  # (activation, q, c, sigma_w^2, sigma_b^2)
    ("tanh", 1.0639583774, 0.4468, 2.5, 0.05),
    ("tanh", 4.0, 0.9, 3.0, 0.1),
    ("tanh", 2.0, -0.6, 2.0, 0.0),
    ("sigmoid", 3.0, 0.3, 4.0, 0.2),
    ("softplus", 2.5, 0.7, 1.5, 0.1),
    ("silu", 1.5, 0.2, 2.0, 0.3),
    ("gelu", 0.8, 0.95, 1.7, 0.05),
]


@pytest.mark.parametrize("name, q, c, w2, b2", SMOOTH_CASES, ids=lambda v: str(v))
def test_c_map_and_slope_against_gauss_hermite(name, q, c, w2, b2):
    want_c, want_s = ref_c_map(name, q, c, w2, b2)
    assert sg.correlation_map(c, q, w2, b2, name) == pytest.approx(want_c, rel=1e-9)
    # gelu's f' is a central difference here (error ~1e-11)
    assert sg.correlation_slope(c, q, w2, b2, name) == pytest.approx(want_s, rel=1e-8)


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
@pytest.mark.parametrize("name, q, c, w2, b2", [
    ("tanh", 25.6468023, 0.042068, 30.0, 0.3),  # wide: q* of tanh at sigma_w^2 = 30
    ("sigmoid", 53.65, 0.9839, 120.0, 0.0),     # sigmoid near its edge of chaos
])
def test_c_map_at_wide_q_against_nested_quad(name, q, c, w2, b2):
    want_c, want_s = ref_c_map(name, q, c, w2, b2, pair=quad2, one=quad1)
    assert sg.correlation_map(c, q, w2, b2, name) == pytest.approx(want_c, rel=1e-8)
    assert sg.correlation_slope(c, q, w2, b2, name) == pytest.approx(want_s, rel=1e-8)


@pytest.mark.parametrize("name", list(F))
@pytest.mark.parametrize("c", [0.6, -0.4])
def test_c_map_against_monte_carlo_every_activation(name, c):
    """E[f(u_a) f(u_b)] and E[f'(u_a) f'(u_b)] from 400 000 plain NumPy draws at q = 1.3
    (sigma_w^2 = 1, sigma_b^2 = 0, so C F(q) = E[f f] and C' F(q) / q = E[f' f']), within
    4 standard errors of the draws (F(q) by Gauss-Hermite)."""
    q, n = 1.3, 400_000
    rng = np.random.default_rng(17)
    x1, x2 = rng.standard_normal((2, n))
    ua, ub = math.sqrt(q) * x1, math.sqrt(q) * (c * x1 + math.sqrt(1 - c * c) * x2)
    f, df = F[name][0], _df(name)
    Fq = gh1(lambda u: f(u) ** 2, q)
    for sample, got in ((f(ua) * f(ub), sg.correlation_map(c, q, 1.0, 0.0, name) * Fq),
                        (df(ua) * df(ub), sg.correlation_slope(c, q, 1.0, 0.0, name) * Fq / q)):
        se = sample.std(ddof=1) / math.sqrt(n)
        assert abs(sample.mean() - got) < 4 * se + 1e-12


def test_relu_c_map_is_the_arc_cosine_kernel():
    # relu, no biases: C(c) = (sqrt(1 - c^2) + (pi - arccos c) c) / pi (Cho & Saul's kernel
    # over its value 1/2 at c = 1); C(0) = 1/pi = 0.318310, C'(c) = (pi - arccos c) / pi,
    # so C'(1) = 1: c* = 1 is marginal whatever sigma_w^2
    assert sg.correlation_map(0.0, 1.0, 1.7, 0.0, "relu") == pytest.approx(1 / math.pi,
                                                                           rel=1e-15)
    for c in (-0.7, 0.2, 0.9):
        want = (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / math.pi
        assert sg.correlation_map(c, 3.0, 1.2, 0.0, "relu") == pytest.approx(want, rel=1e-14)
        assert sg.correlation_slope(c, 3.0, 1.2, 0.0, "relu") == pytest.approx(
            (math.pi - math.acos(c)) / math.pi, rel=1e-14)
    fp = sg.correlation_fixed_points(0.0, 1.5, 0.0, "relu")  # q* = 0: the homogeneous limit
    assert [(p.c, p.stability) for p in fp] == [(1.0, "marginal")]


# --- fixed points, depth scales, phase -----------------------------------------------------
def test_tanh_chaotic_every_number_against_quadrature():
    """tanh, sigma_w^2 = 2.5, sigma_b^2 = 0.05 (chaotic): every printed number from the
    test's own quadrature and root finding."""
    w2, b2 = 2.5, 0.05
    th = sg.signal_theory("tanh", w2, b2)
    q = ref_q_star("tanh", w2, b2)
    dtanh = F["tanh"][1]
    chi1 = w2 * gh1(lambda u: dtanh(u) ** 2, q)
    # Schoenholz et al.: xi_q^-1 = -log(chi_1 + sigma_w^2 E[f''(u) f(u)]), f'' = -2 f f'
    slope_q = chi1 + w2 * gh1(lambda u: -2 * np.tanh(u) ** 2 * dtanh(u), q)
    cs = optimize.brentq(lambda c: ref_c_map("tanh", q, c, w2, b2)[0] - c, 0.0, 0.99,
                         xtol=1e-13)
    chic = ref_c_map("tanh", q, cs, w2, b2)[1]
    assert th.q_star == pytest.approx(q, rel=1e-10)
    assert th.chi_1 == pytest.approx(chi1, rel=1e-10)
    assert th.c_star == pytest.approx(cs, rel=1e-9)
    assert th.chi_c == pytest.approx(chic, rel=1e-9)
    assert th.xi_q == pytest.approx(-1 / math.log(slope_q), rel=1e-9)
    assert th.xi_c == pytest.approx(-1 / math.log(chic), rel=1e-8)
    assert th.gradient_depth_scale == pytest.approx(-1 / math.log(chi1), rel=1e-9)
    assert th.phase == "chaotic" and chi1 > 1 > chic
    assert [(p.c, p.stability) for p in th.fixed_points["c"]] == [
        (pytest.approx(cs, rel=1e-9), "stable"), (1.0, "unstable")]
    assert [p.stability for p in th.fixed_points["q"]] == ["stable"]
    # iterating the C-map (the test's quadrature) from 0.05 and from 0.95 reaches c*
    Fq, f = w2 * gh1(lambda u: np.tanh(u) ** 2, q) + b2, np.tanh
    for c in (0.05, 0.95):
        for _ in range(200):  # |c - c*| shrinks by chi_c = 0.92 a step
            c = (w2 * gh2(f, f, q, c, n=200) + b2) / Fq
        assert c == pytest.approx(cs, abs=1e-6)


def test_ordered_phase_c_star_is_one_and_xi_c_is_the_gradient_scale():
    th = sg.signal_theory("tanh", 1.5, 0.05)
    assert th.phase == "ordered" and th.c_star == 1.0
    assert th.chi_c == th.chi_1 < 1 and th.xi_c == th.gradient_depth_scale > 0
    assert th.fixed_points["c"][0].chi_c == th.chi_1
    assert [(p.c, p.stability) for p in th.fixed_points["c"]] == [(1.0, "stable")]


def test_odd_activation_without_biases_has_c_fixed_points_minus_one_zero_one():
    # tanh, sigma_b^2 = 0, chaotic: C is odd, so c* = 0 (stable) and c = -1, 1 (unstable);
    # chi_c = sigma_w^2 E[f'(u)]^2 at c = 0
    w2 = 2.0
    th = sg.signal_theory("tanh", w2, 0.0)
    q = ref_q_star("tanh", w2, 0.0, lo=1e-3)
    assert [(p.c, p.stability) for p in th.fixed_points["c"]] == [
        (-1.0, "unstable"), (0.0, "stable"), (1.0, "unstable")]
    assert th.chi_c == pytest.approx(w2 * gh1(F["tanh"][1], q) ** 2, rel=1e-9)


def test_q_star_zero_makes_the_c_map_the_identity():
    # tanh, sigma_b^2 = 0, sigma_w^2 < 1: q* = 0, the network linearises and keeps every
    # correlation: c* undefined (nan), chi_c = 1, xi_c = inf; gradients still vanish
    th = sg.signal_theory("tanh", 0.5, 0.0)
    assert th.q_star == 0 and math.isnan(th.c_star) and th.chi_c == 1 and th.xi_c == math.inf
    assert th.phase == "ordered" and th.chi_1 == pytest.approx(0.5)


def test_phase_labels():
    assert sg.phase(0.9) == "ordered" and sg.phase(1.0) == "critical"
    assert sg.phase(1.1) == "chaotic"
    edge = sg.signal_theory("tanh", 1.0, 0.05).edge_of_chaos
    at = sg.signal_theory("tanh", edge, 0.05)
    assert at.phase == "critical" and at.c_star == 1.0 and at.xi_c > 1e6


def test_edge_of_chaos_against_the_literature_and_quadrature():
    """tanh at sigma_b^2 = 0.05: sigma_w^2 = 1.76 (Schoenholz et al. 2017); there chi_1 = 1
    by the test's quadrature.  relu: 2 (He et al. 2015), tanh without biases: 1."""
    th = sg.signal_theory("tanh", 2.5, 0.05)
    assert th.edge_of_chaos == pytest.approx(1.76, abs=0.005)
    q = ref_q_star("tanh", th.edge_of_chaos, 0.05)
    chi1 = th.edge_of_chaos * gh1(lambda u: F["tanh"][1](u) ** 2, q)
    assert chi1 == pytest.approx(1.0, abs=1e-9)
    assert sg.signal_theory("relu", 1.0, 0.1).edge_of_chaos == pytest.approx(2.0, rel=1e-9)
    # (mean_field.edge_of_chaos finds this one to about 1e-7: q* -> 0 at the root)
    assert sg.signal_theory("tanh", 1.0, 0.0).edge_of_chaos == pytest.approx(1.0, abs=1e-6)


def test_correlation_iteration_of_a_linear_network_by_hand():
    # identity activation: q^l = w2 q^{l-1} + b2, c^l = (w2 q^{l-1} c^{l-1} + b2) / q^l
    w2, b2, q0, c0 = [2.0, 0.5, 1.5], [0.1, 0.2, 0.0], 1.0, 0.3
    got = sg.correlation_iteration(c0, q0, w2, b2, ["identity", "identity"])
    q, c = q0, c0
    for l in range(3):
        q, c = w2[l] * q + b2[l], (w2[l] * q * c + b2[l]) / (w2[l] * q + b2[l])
        assert got[l + 1] == (pytest.approx(q, rel=1e-14), pytest.approx(c, rel=1e-14))


def test_every_activation_answers_with_strict_json():
    """Each activation's full answer (edge of chaos included), three settings each, is
    strict JSON with the documented keys (speed is measured in bench/, never here)."""
    for name in F:
        for w2, b2 in ((0.8, 0.0), (1.7, 0.05), (3.0, 0.3)):
            d = sg.signal_theory(name, w2, b2).as_dict()
            json.dumps(d, allow_nan=False)  # strict JSON
            assert tuple(d) == sg.KEYS


# --- deltaprop theory ------------------------------------------------------------------------
def test_cli_json_has_exactly_the_documented_keys(capsys):
    assert main(["theory", "--activation", "tanh", "--sigma-w2", "2.5", "--sigma-b2", "0.05",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["q_star", "chi_1", "c_star", "chi_c", "xi_q", "xi_c",
                         "gradient_depth_scale", "phase", "fixed_points", "edge_of_chaos"]
    th = sg.signal_theory("tanh", 2.5, 0.05)
    assert out["xi_c"] == th.xi_c and out["phase"] == "chaotic"
    assert list(out["fixed_points"]) == ["q", "c"]
    assert out["fixed_points"]["c"][0] == {"c": th.c_star, "chi_c": th.chi_c,
                                           "stability": "stable"}


def test_cli_text_prints_every_quantity(capsys):
    assert main(["theory", "--activation", "relu", "--sigma-w2", "2.5"]) == 0
    out = capsys.readouterr().out
    for key in sg.KEYS:
        assert key in out
    assert "inf" in out and "chaotic" in out  # q* = inf for relu past sigma_w^2 = 2


@pytest.mark.parametrize("args, message", [
    (["--activation", "nope", "--sigma-w2", "1"], "activation"),
    (["--activation", "softmax", "--sigma-w2", "1"], "not elementwise"),
    (["--sigma-w2", "-1"], "--sigma-w2 must be"),
    (["--sigma-w2", "nan"], "--sigma-w2 must be"),
    (["--sigma-w2", "1", "--sigma-b2", "inf"], "--sigma-b2 must be"),
    (["--sigma-w2", "1", "--q0", "0"], "--q0 must be"),
    (["--sigma-w2", "abc"], "invalid float"),
    ([], "--sigma-w2"),
    (["--sigma-w2", "1", "--phase-diagram", "x.jpg2"], ".png, .pdf or .svg"),
    (["--sigma-w2", "1", "--phase-diagram", "no/such/folder/x.png"], "does not exist"),
])
def test_cli_bad_input_is_one_line_exit_2(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["theory", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("deltaprop: error:") and message in err


def test_cli_phase_diagram_never_overwrites_without_force(tmp_path, monkeypatch, capsys):
    from deltaprop.app.cli import theory as cli_theory

    monkeypatch.setattr(cli_theory, "GRID", (6, 4))  # a small grid: the test is of the file
    png = tmp_path / "pd.png"
    png.write_bytes(b"mine")
    argv = ["theory", "--sigma-w2", "2.5", "--sigma-b2", "0.05", "--phase-diagram", str(png)]
    assert main(argv) == 2
    assert "exists; use --force" in capsys.readouterr().err
    assert png.read_bytes() == b"mine"
    assert main(argv + ["--force"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pd.png"]  # no temporary left


def test_phase_diagram_data():
    d = sg.phase_diagram("tanh", [1.0, 1.5, 2.5], [0.05])
    assert d["chi_1"].shape == d["xi_c"].shape == (1, 3)
    assert d["edge"][0] == pytest.approx(1.76, abs=0.005)
    assert d["chi_1"][0, 0] < 1 < d["chi_1"][0, 2]
    assert d["xi_c"][0, 2] == pytest.approx(sg.signal_theory("tanh", 2.5, 0.05).xi_c,
                                            rel=1e-9)


# --- the correlation map, measured -------------------------------------------------------------
def _numpy_c(W, b, xa, xb, f):
    """c^l of each network by a plain NumPy forward pass: W[l] (K, n_l, n_{l-1})."""
    out = []
    za, zb = xa, xb
    for l in range(len(W)):
        if l > 0:
            za, zb = f(za), f(zb)
        za = za @ np.swapaxes(W[l], -1, -2) + b[l][:, None, :]
        zb = zb @ np.swapaxes(W[l], -1, -2) + b[l][:, None, :]
        out.append((za * zb).sum(axis=(1, 2)) / np.sqrt((za * za).sum(axis=(1, 2))
                                                        * (zb * zb).sum(axis=(1, 2))))
    return np.stack(out, axis=1)


def test_record_correlation_equals_a_plain_numpy_forward_pass():
    pr = ensemble.prior([20, 30, 30, 5], sigma_w2=2.0, sigma_b2=0.1)
    net = ensemble.draw(pr, ["tanh", "tanh", "identity"], K=3, seed=4)
    xa, xb = corr.correlated_inputs(7, 20, 0.4, 1.0, seed=5, K=3)
    rec = corr.record_correlation(net, xa, xb)
    want = _numpy_c([np.asarray(w) for w in net.W[1:]], [np.asarray(v) for v in net.b[1:]],
                    xa, xb, np.tanh)
    np.testing.assert_allclose(rec.c[:, 1:], want, rtol=1e-12)
    assert rec.c.shape == (3, 4) and rec.K == 3


def test_correlated_inputs_have_the_asked_correlation():
    xa, xb = corr.correlated_inputs(4000, 50, -0.3, 2.0, seed=1)
    r = (xa * xb).mean(axis=1) / 2.0  # per pair x_a . x_b / (n var), mean -0.3
    assert abs(r.mean() + 0.3) < 4 * r.std(ddof=1) / math.sqrt(r.size)
    assert abs((xb * xb).mean() - 2.0) < 4 * (xb * xb).std() / math.sqrt(xb.size)


def test_predicted_iteration_against_quadrature():
    """The prediction the study prints: per-layer sigma_w^2 from the prior (here He normal,
    2 / n_in), the test's own length and C-map iteration."""
    sizes = [40, 100, 80, 80, 10]
    pr = ensemble.prior(sizes, init="he_normal", sigma_b2=0.02)
    pred, note = corr.predict_correlation(pr, ["tanh"] * 3 + ["identity"], 0.6, var=1.5)
    assert note == ""
    q, c = 1.5, 0.6
    w2 = [2.0] * 4
    q, c = w2[0] * q + 0.02, (w2[0] * q * c + 0.02) / (w2[0] * q + 0.02)
    assert pred[1] == (pytest.approx(q, rel=1e-14), pytest.approx(c, rel=1e-14))
    for l in (2, 3, 4):
        c_next, _ = ref_c_map("tanh", q, c, w2[l - 1], 0.02)
        q = w2[l - 1] * gh1(lambda u: np.tanh(u) ** 2, q) + 0.02
        c = c_next
        assert pred[l] == (pytest.approx(q, rel=1e-10), pytest.approx(c, rel=1e-9))


@pytest.mark.slow
@pytest.mark.parametrize("w2, init", [(2.5, None), (1.5, None), (2.5, "orthogonal")])
def test_measured_correlation_follows_the_c_map(w2, init):
    """16 tanh networks 64-512x6, sigma_b^2 = 0.05, 48 pairs with c0 = 0.5: measured c^l
    within 4 standard errors (between networks) of the C-map iteration at every layer (the
    finite-width bias, O(1/512), is below one se here); orthogonal weights of the same
    variance follow the same map."""
    from threadpoolctl import threadpool_limits

    sizes = [64] + [512] * 6
    pr = ensemble.prior(sizes, init=init, sigma_w2=w2, sigma_b2=0.05)
    with threadpool_limits(1):  # 96 QR factorisations: threads only contend on 2 cores
        net = ensemble.draw(pr, ["tanh"] * 6, K=16, seed=8)
    xa, xb = corr.correlated_inputs(48, 64, 0.5, 1.0, seed=9, K=16)
    rec = corr.record_correlation(net, xa, xb)
    pred, _ = corr.predict_correlation(pr, ["tanh"] * 6, 0.5)
    for l in range(7):
        s = rec.summary(l)
        assert abs(s["c"] - pred[l][1]) < 4 * s["c_se"], (l, s, pred[l])
        assert abs(s["q"] - pred[l][0]) < 4 * s["q_se"] + 1e-12, (l, s, pred[l])


def test_trainability_rule():
    pr = ensemble.prior([10, 50, 50, 50, 3], sigma_w2=2.5, sigma_b2=0.05)
    rule, note = corr.trainability(pr, ["tanh", "tanh", "tanh", "identity"])
    xi = sg.signal_theory("tanh", 2.5, 0.05, edge=False).xi_c
    assert note == "" and rule["xi_c"] == xi and rule["trainable_depth"] == 6 * xi
    assert rule["L"] == 4
    rule, note = corr.trainability(ensemble.prior([10, 50, 50, 50, 3],
                                                  sigma_w2=[1, 2, 1.5, 1]),
                                   ["tanh", "tanh", "tanh", "identity"])
    assert rule is None and "differ" in note
    rule, note = corr.trainability(ensemble.prior([10, 50, 3], init="normal",
                                                  weight_mean=0.1), ["tanh", "identity"])
    assert rule is None and "zero-mean" in note


def test_stats_cli_correlation(tmp_path, capsys):
    base = ["stats", "--inputs", "gaussian", "--sizes", "16,32,32,4", "--K", "4",
            "--samples", "16", "--forward", "gaussian", "--bins", "0", "--sigma-w2", "2"]
    assert main(base + ["--correlation", "0.5", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "correlation map" in out and "6 xi_c" in out
    assert (tmp_path / "o" / "correlation.txt").read_text().startswith("correlation map")
    assert main(base + ["--correlation", "0.5", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"c", "c_se", "c_predicted", "q_predicted", "xi_c"} <= set(rows[0]["correlation"])
    assert main(base + ["--json"]) == 0  # off by default: no pass, no key
    assert "correlation" not in json.loads(capsys.readouterr().out)[0]
    assert main(base + ["--correlation", "1.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "[-1, 1]" in err


def test_inner_quadrature_is_bounded_at_large_q():
    """The inner rule for a wide conditional law (sqrt(q (1 - c^2)) > 8) has the same 117
    panels at any q (was 18 sqrt(q): 7.5 GB at sigma_w^2 = 1e6, OOM at 1e7) and agrees
    with the unit panels it replaces where both run (tanh, q = 1e4, 1e-11)."""
    from deltaprop.theory import signal as sig

    for s in (10.0, 1e3, 1e50):
        u, v = sig._bend_panels(np.array([-3.0 * s, 0.0, 5.0]), s)
        assert u.shape == v.shape == (3, 117 * 8)
        np.testing.assert_allclose(v.sum(axis=1), 1.0, rtol=1e-12)
    cm = sig._CMap(1e4, 1.0, 0.0, "tanh")
    for c in (-0.9, 0.3, 0.9):
        new = cm(c)
        old_wide, sig._WIDE = sig._WIDE, math.inf
        try:
            old = cm(c)
        finally:
            sig._WIDE = old_wide
        np.testing.assert_allclose(new, old, rtol=1e-11)


def test_bounded_activation_at_huge_variance_tends_to_the_step_kernel():
    """At q = 1e12, tanh(u) ~ sign(u): C(c) = (2/pi) arcsin c to O(q^-1/2); sigmoid ~ the
    step H(u): C(c) = 1/2 + arcsin(c) / pi, its fixed point c* = 0.7898 (Poole et al.'s
    chaotic limit).  sigma_w^2 = 1e100 runs without an overflow warning."""
    import warnings

    from deltaprop.theory.signal import correlation_map, signal_theory

    for c in (0.2, 0.5, 0.9):
        assert correlation_map(c, 1e12, 1.0, 0.0, "tanh") == pytest.approx(
            2 / math.pi * math.asin(c), abs=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        st = signal_theory("sigmoid", 1e100, 0.0)
        assert st.c_star == pytest.approx(0.5 + math.asin(st.c_star) / math.pi, abs=1e-6)
        with pytest.raises(ValueError, match="use a smaller --sigma-w2"):
            signal_theory("tanh", 1e100, 0.0)
