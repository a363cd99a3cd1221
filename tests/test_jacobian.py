"""Jacobian spectra (deltaprop.stats.jacobian) and their free-probability theory
(deltaprop.theory.jacobian), each against a computation written here: central differences
of a plain NumPy forward pass, NumPy's eigvalsh, scipy quadrature, the Fuss-Catalan and
Marchenko-Pastur closed forms, and a plain NumPy Monte Carlo of R independent networks.

The free-probability moments are the infinite-width limit; a real Gaussian layer's E[m_2]
is 2 + 1 / N, so at width N every moment is off by O(L / N), which 4 standard errors of
a large Monte Carlo resolve.  The statistical tests therefore extrapolate: with the same
number of networks at widths 32 and 64, 2 M(64) - M(32) removes the 1 / N term (Richardson),
and its standard error is sqrt(4 se(64)^2 + se(32)^2).  Fixed seeds; every band is 4
computed standard errors, and one test shows that the band is narrow enough to fail (the
raw width-64 moments and the other ensemble's prediction fall outside it).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from deltaprop import Network
from deltaprop.app.cli import main
from deltaprop.stats import jacobian as sj
from deltaprop.theory import jacobian as tj
from deltaprop.theory.mean_field import chi_at_fixed_point, fixed_point

# plain NumPy f and f' (not deltaprop's registry)
F = {
    "tanh": (np.tanh, lambda z: 1 / np.cosh(z) ** 2),
    "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda z: np.exp(-z) / (1 + np.exp(-z)) ** 2),
    "softplus": (lambda z: np.logaddexp(0, z), lambda z: 1 / (1 + np.exp(-z))),
    "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0) * 1.0),
}


def _plain_forward(W, b, acts, x, depth):
    """a[depth] of one network for one input x, plain NumPy (W[l] (n_l, n_{l-1}))."""
    a = x
    for l in range(1, depth + 1):
        a = F[acts[l - 1]][0](W[l] @ a + b[l])
    return a


def test_jacobians_equal_central_differences_of_a_plain_forward_pass():
    acts = ["tanh", "softplus", "sigmoid"]
    net = Network.init([4, 5, 3, 6], acts, init="glorot_normal", seed=1, K=2, bias_std=0.3)
    x = np.random.default_rng(2).normal(size=(2, 3, 4))
    h = 1e-6
    seen = []
    for l, J in sj.jacobians(net, x):
        seen.append(l)
        assert J.shape == (2, 3, net.sizes[l], 4)
        for k in range(2):
            W, b = [None, *(w[k] for w in net.W[1:])], [None, *(v[k] for v in net.b[1:])]
            for i in range(3):
                cols = [(_plain_forward(W, b, acts, x[k, i] + h * e, l)
                         - _plain_forward(W, b, acts, x[k, i] - h * e, l)) / (2 * h)
                        for e in np.eye(4)]
                np.testing.assert_allclose(J[k, i], np.stack(cols, axis=1), rtol=1e-7,
                                           atol=1e-9)
    assert seen == [1, 2, 3]
    assert [l for l, _ in sj.jacobians(net, x, depths=[3, 1])] == [1, 3]


@pytest.mark.parametrize("shape", [(3, 5, 4), (3, 4, 6), (2, 7, 7)])
def test_squared_singular_values_are_the_eigenvalues_of_J_JT(shape):
    J = np.random.default_rng(3).normal(size=shape)
    lam = sj.squared_singular_values(J)
    assert lam.shape == shape[:-1]
    ref = np.sort(np.linalg.eigvalsh(J @ np.swapaxes(J, -1, -2)), axis=-1)[..., ::-1]
    ref[ref < 0] = 0  # the zeros of a rank-deficient J J^T come out as +-1e-16
    np.testing.assert_allclose(lam, ref, atol=1e-12)


def test_record_summary_equals_a_plain_numpy_computation():
    """The record's moments and standard errors, recomputed here from J = diag(1 - a^2) W J
    and eigvalsh: per Jacobian, then the mean over inputs per network, then over networks."""
    K, m, n, L = 3, 4, 6, 3
    net = Network.init([n] * (L + 1), ["tanh"] * L, init="normal", std=0.5, seed=4, K=K,
                       bias_std=0.2)
    x = np.random.default_rng(5).normal(size=(K, m, n))
    rec = sj.record_jacobian(net, x)
    for l in range(1, L + 1):
        per = np.empty((3, K, m))
        for k in range(K):
            for i in range(m):
                a, J = x[k, i], np.eye(n)
                for j in range(1, l + 1):
                    a = np.tanh(net.W[j][k] @ a + net.b[j][k])
                    J = (1 - a ** 2)[:, None] * (net.W[j][k] @ J)
                lam = np.linalg.eigvalsh(J @ J.T)
                per[:, k, i] = lam.mean(), (lam ** 2).mean(), (lam ** 2).mean() - lam.mean() ** 2
        s = rec.summary(l)
        for key, v in zip(("m1", "m2", "variance"), per, strict=True):
            v = v.mean(axis=1)
            assert s[key] == pytest.approx(v.mean(), rel=1e-10)
            assert s[key + "_se"] == pytest.approx(v.std(ddof=1) / math.sqrt(K), rel=1e-8)
        assert not s["se_within_network_only"]
    one = sj.record_jacobian(net[0], x[0]).summary(L)  # one network: se over its inputs
    assert one["se_within_network_only"] and one["m1_se"] > 0


def test_record_on_every_backend_equals_numpy(xp):
    net = Network.init([5, 5, 5], ["tanh", "tanh"], init="orthogonal", seed=6, K=2)
    x = np.random.default_rng(7).normal(size=(2, 3, 5))
    ref = sj.record_jacobian(net, x)
    got = sj.record_jacobian(net.to(xp), x)
    for l in (1, 2):
        np.testing.assert_allclose(got.lam[l], ref.lam[l], rtol=1e-10, atol=1e-13)


# --- theory against independent computations --------------------------------------------------


def _quad_moment(name, q, k):
    from scipy.integrate import quad

    df = F[name][1]
    s = math.sqrt(q)
    v, _ = quad(lambda u: df(s * u) ** (2 * k) * math.exp(-u * u / 2) / math.sqrt(2 * math.pi),
                -40, 40, points=[0.0], limit=400, epsabs=1e-14, epsrel=1e-12)
    return v


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # exp overflow far in the tails
@pytest.mark.parametrize("name", ["tanh", "sigmoid", "softplus", "relu"])
@pytest.mark.parametrize("q", [0.01, 0.5, 3.0])
def test_derivative_moments_against_quadrature(name, q):
    got = tj.derivative_moments(name, q, 3)
    # 1e-8: theory.gaussian's panels (q > 1) resolve tanh's sech^12 at q = 3 to 3e-9
    np.testing.assert_allclose(got, [_quad_moment(name, q, k) for k in (1, 2, 3)], rtol=1e-8)


def test_derivative_moments_at_q_zero_is_f_prime_of_zero():
    np.testing.assert_allclose(tj.derivative_moments("tanh", 0.0, 3), [1, 1, 1])
    np.testing.assert_allclose(tj.derivative_moments("sigmoid", 0.0, 2), [1 / 16, 1 / 256])


@pytest.mark.parametrize("q", [0.01, 0.25, 1.0])
def test_critical_point_has_chi_one_at_that_fixed_point(q):
    w2, b2 = tj.critical_point("tanh", q)
    assert fixed_point(w2, b2, "tanh", q0=q) == pytest.approx(q, rel=1e-9)
    assert chi_at_fixed_point(w2, b2, "tanh", q0=q) == pytest.approx(1.0, abs=1e-9)
    assert w2 == pytest.approx(1 / _quad_moment("tanh", q, 1), rel=1e-9)


def test_critical_points_of_relu_and_sigmoid():
    assert tj.critical_point("relu", 0.3) == pytest.approx((2.0, 0.0))
    with pytest.raises(ValueError, match="sigma_b\\^2 = .* < 0"):
        tj.critical_point("sigmoid", 0.01)
    with pytest.raises(ValueError, match="> 0"):
        tj.critical_point("tanh", 0.0)


def test_layer_variances_iterate_the_length_map_by_quadrature():
    from scipy.integrate import quad

    w2, b2, q_in = [1.3, 0.8, 2.0], [0.1, 0.0, 0.05], 0.7
    got = tj.layer_variances(q_in, w2, b2, ["tanh"] * 3)
    q = [w2[0] * q_in + b2[0]]
    for l in (1, 2):
        s = math.sqrt(q[-1])
        e, _ = quad(lambda u, s=s: np.tanh(s * u) ** 2 * math.exp(-u * u / 2), -40, 40)
        q.append(w2[l] * e / math.sqrt(2 * math.pi) + b2[l])
    np.testing.assert_allclose(got, q, rtol=1e-10)


@pytest.mark.parametrize("L", [1, 2, 3, 6])
def test_linear_gaussian_moments_are_the_fuss_catalan_numbers(L):
    """m_k = binom((L+1) k, k) / (L k + 1) (L = 1: Catalan 1, 2, 5, 14, 42)."""
    want = [math.comb((L + 1) * k, k) / (L * k + 1) for k in range(1, 6)]
    got = tj.free_moments([1.0] * L, np.ones((L, 5)), "gaussian")
    np.testing.assert_allclose(got[-1], want, rtol=1e-12)
    assert [tj.fuss_catalan(L, k) for k in range(1, 6)] == pytest.approx(want)
    if L == 1:
        assert want == [1, 2, 5, 14, 42]


def test_orthogonal_linear_network_is_an_isometry():
    np.testing.assert_allclose(tj.free_moments([1.0] * 5, np.ones((5, 4)), "orthogonal"),
                               np.ones((5, 4)), rtol=1e-12)


def test_closed_form_second_moment_equals_the_series():
    rng = np.random.default_rng(8)
    L = 5
    w2 = rng.uniform(0.5, 2.0, L)
    mu1 = rng.uniform(0.3, 0.9, L)
    mu = np.stack([mu1, mu1 ** 2 * rng.uniform(1.0, 1.5, L), mu1 ** 3 * 2], axis=1)
    weights = ["gaussian", "orthogonal", "orthogonal", "gaussian", "orthogonal"]
    series = tj.free_moments(w2, mu, weights)
    np.testing.assert_allclose(series[:, 0], np.cumprod(w2 * mu1), rtol=1e-12)
    np.testing.assert_allclose(series[:, 1], tj.second_moment(w2, mu1, mu[:, 1], weights),
                               rtol=1e-12)


@pytest.mark.parametrize("L", [1, 4, 10])
def test_relu_second_moment_is_penningtons(L):
    """D^2 in {0, 1} with P(1) = p, Gaussian W: m_1 = (sigma_w^2 p)^L, m_2 = m_1^2 (L + p) / p
    (Pennington et al. 2017, sec. 2.5); orthogonal W: m_2 = m_1^2 (1 + L (1 - p) / p)."""
    for w2, p in ((2.0, 0.5), (1.5, 0.6)):
        mu = np.full((L, 3), p)
        m1 = (w2 * p) ** L
        g = tj.free_moments([w2] * L, mu, "gaussian")[-1]
        o = tj.free_moments([w2] * L, mu, "orthogonal")[-1]
        assert g[0] == pytest.approx(m1) and o[0] == pytest.approx(m1)
        assert g[1] == pytest.approx(m1 ** 2 * (L + p) / p)
        assert o[1] == pytest.approx(m1 ** 2 * (1 + L * (1 - p) / p))


@pytest.mark.parametrize("L", [1, 2, 5])
def test_fuss_catalan_density_has_the_fuss_catalan_moments(L):
    lam, rho = tj.fuss_catalan_density(L, 200000)
    assert np.all(np.diff(lam) > 0) and lam[-1] == pytest.approx((L + 1) ** (L + 1) / L ** L,
                                                                   rel=1e-6)
    for k, want in ((0, 1.0), (1, 1.0), (2, L + 1.0), (3, math.comb(3 * L + 3, 3) / (3 * L + 1))):
        assert np.trapezoid(rho * lam ** k, lam) == pytest.approx(want, rel=2e-3)
    if L == 1:  # Marchenko-Pastur of ratio 1
        # 1e-6: the reference loses digits to 4 - lambda near the edge
        np.testing.assert_allclose(rho, np.sqrt((4 - lam) / lam) / (2 * math.pi), rtol=1e-6)


def test_jacobian_theory_near_q_zero_is_the_linear_network():
    w2, b2 = tj.critical_point("tanh", 1e-4)
    th = tj.jacobian_theory(["tanh"] * 6, w2, b2, (1e-4 - b2) / w2, "orthogonal")
    np.testing.assert_allclose(th.m1, 1.0, rtol=1e-9)
    assert np.all(th.variance < 6 * 8 * 1e-8 * 1.01)  # L (mu2 / mu1^2 - 1) ~ 8 L q*^2
    g = tj.jacobian_theory(["tanh"] * 6, w2, b2, (1e-4 - b2) / w2, "gaussian")
    np.testing.assert_allclose(g.variance, np.arange(1, 7), rtol=1e-3)


# --- statistics: theory against a plain NumPy Monte Carlo ------------------------------------


def _monte_carlo(act, law, N, L, w2, b2, q_in, R, seed):
    """(mean, se) of m_1, m_2 and the variance of lambda over R independent networks of
    width N, one input each: plain NumPy, Haar orthogonal by QR with R's signs."""
    f, df = F[act]
    rng = np.random.default_rng(seed)
    a, J = rng.normal(0, math.sqrt(q_in), (R, N)), None
    for _ in range(L):
        if law == "orthogonal":
            Q, Rm = np.linalg.qr(rng.standard_normal((R, N, N)))
            W = math.sqrt(w2) * Q * np.sign(np.diagonal(Rm, axis1=-2, axis2=-1))[:, None, :]
        else:
            W = rng.normal(0, math.sqrt(w2 / N), (R, N, N))
        z = np.einsum("rij,rj->ri", W, a) + rng.normal(0, math.sqrt(b2), (R, N))
        a, d = f(z), df(z)
        J = d[:, :, None] * (W if J is None else W @ J)
    lam = np.linalg.svd(J, compute_uv=False) ** 2
    m1, m2 = lam.mean(-1), (lam ** 2).mean(-1)
    per = np.stack([m1, m2, m2 - m1 ** 2])
    return per.mean(1), per.std(1, ddof=1) / math.sqrt(R)


def _extrapolated(act, law, L, w2, b2, q_in, R=1000, seed=0):
    with threadpool_limits(1, user_api="blas"):
        (a, sa) = _monte_carlo(act, law, 32, L, w2, b2, q_in, 2 * R, seed)
        (b, sb) = _monte_carlo(act, law, 64, L, w2, b2, q_in, R, seed + 1)
    return 2 * b - a, np.sqrt(4 * sb ** 2 + sa ** 2), (b, sb)


def _critical(act, q):
    w2, b2 = tj.critical_point(act, q)
    return w2, b2, (q - b2) / w2


MC_CASES = {  # id: (activation, weights, L, sigma_w^2, sigma_b^2, q_in)
    "tanh-gaussian-critical": ("tanh", "gaussian", 4, *_critical("tanh", 0.25)),
    "tanh-orthogonal-critical": ("tanh", "orthogonal", 4, *_critical("tanh", 0.25)),
    "relu-gaussian-critical": ("relu", "gaussian", 3, 2.0, 0.0, 1.0),
    "relu-orthogonal-critical": ("relu", "orthogonal", 3, 2.0, 0.0, 1.0),
    "tanh-gaussian-ordered-inputs-off-q*": ("tanh", "gaussian", 3, 1.5, 0.05, 1.0),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(MC_CASES), ids=list(MC_CASES))
def test_free_moments_against_monte_carlo(case):
    """m_1, m_2 and the variance of lambda predicted within 4 se of the width-extrapolated
    Monte Carlo (3000 networks); ReLU's and tanh's variance at criticality, Gaussian and
    orthogonal; one case off the fixed point (m_1 = prod chi_l, q^l still moving)."""
    act, law, L, w2, b2, q_in = MC_CASES[case]
    th = tj.jacobian_theory([act] * L, w2, b2, q_in, law)
    pred = np.array([th.m1[-1], th.m2[-1], th.variance[-1]])
    est, se, _ = _extrapolated(act, law, L, w2, b2, q_in, seed=len(case))
    z = (est - pred) / se
    assert np.all(np.abs(z) < 4), (case, pred, est, se, z)


@pytest.mark.slow
def test_the_band_is_narrow_enough_to_fail():
    """The same 4-se band rejects the raw width-64 moments (the 1 / N bias) and the
    orthogonal prediction for Gaussian weights."""
    act, law, L, w2, b2, q_in = MC_CASES["tanh-gaussian-critical"]
    th = tj.jacobian_theory([act] * L, w2, b2, q_in, law)
    orth = tj.jacobian_theory([act] * L, w2, b2, q_in, "orthogonal")
    est, se, (raw, raw_se) = _extrapolated(act, law, L, w2, b2, q_in, seed=3)
    assert abs(raw[1] - th.m2[-1]) > 4 * raw_se[1]  # finite width: E[m_2] too large
    assert abs(est[2] - orth.variance[-1]) > 4 * se[2]


@pytest.mark.slow
def test_measured_spectra_agree_with_a_plain_monte_carlo():
    """The deltaprop study (engine forward pass, batched SVD, between-network se) and the
    plain Monte Carlo above at the same width and setting agree within 4 combined se."""
    w2, b2, q_in = _critical("tanh", 0.25)
    with threadpool_limits(1, user_api="blas"):
        res = sj.run_jacobian(sj.JacobianStudy(width=32, depth=4, init="orthogonal",
                                               q_star=0.25, K=128, m=4, seed=9))
        mc, mc_se = _monte_carlo("tanh", "orthogonal", 32, 4, w2, b2, q_in, 2000, 10)
    assert res.setting["input_var"] == pytest.approx(q_in)
    s = res.record.summary(4)
    for i, key in enumerate(("m1", "m2", "variance")):
        z = (s[key] - mc[i]) / math.hypot(s[key + "_se"], mc_se[i])
        assert abs(z) < 4, (key, s[key], mc[i], z)


# --- the study and the command line ----------------------------------------------------------


def test_study_predictions_and_rows():
    res = sj.run_jacobian(sj.JacobianStudy(width=16, depth=3, init="orthogonal", q_star=0.1,
                                           K=4, m=2))
    s = res.setting
    assert s["weights"] == "orthogonal" and s["chi_1"] == pytest.approx(1.0)
    assert s["q_star"] == pytest.approx(0.1) and res.theory.q[0] == pytest.approx(0.1)
    rows = sj.rows(res)
    assert [r["depth"] for r in rows] == [1, 2, 3]
    assert {"m1", "m1_se", "m2", "variance", "variance_se", "lambda_max", "m1_predicted",
            "m2_predicted", "m3_predicted", "variance_predicted", "chi_1_power",
            "q"} <= set(rows[0])
    assert rows[2]["variance_predicted"] == pytest.approx(float(res.theory.variance[2]))
    text = sj.table(res)
    assert "var free" in text and "chi_1^l" in text
    wide = sj.run_jacobian(sj.JacobianStudy(sizes=(8, 16, 8), init="orthogonal", q_star=0.1,
                                            K=2, m=2))
    assert wide.theory.variance is None and "only m_1" in wide.note
    assert "variance_predicted" not in sj.rows(wide)[0]


def test_cli_text_and_json(capsys):
    import json

    assert main(["jacobian", "--width", "8", "--depth", "3", "--K", "3", "--samples", "2",
                 "--depths", "1,3"]) == 0
    out = capsys.readouterr().out
    assert "m1 measured" in out and "var free" in out
    assert main(["jacobian", "--width", "8", "--depth", "3", "--K", "3", "--init",
                 "orthogonal", "--sigma-w2", "1.2", "--sigma-b2", "0.01", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"setting", "rows", "note"}
    assert data["setting"]["sigma_w2"] == 1.2 and data["setting"]["weights"] == "orthogonal"
    assert data["rows"][0]["chi_1_power"] == pytest.approx(
        chi_at_fixed_point(1.2, 0.01, "tanh"))


@pytest.mark.parametrize("args, message", [
    (["--depth", "0"], "depth must be a positive integer"),
    (["--K", "0"], "K must be a positive integer"),
    (["--width", "4", "--depth", "2", "--depths", "1,3"], "depths must lie in 1..L"),
    (["--q-star", "-1"], "--q-star must be"),
    (["--q-star", "0.1", "--sigma-w2", "1"], "not both"),
    (["--sigma-b2", "0.1"], "--sigma-b2 needs --sigma-w2"),
    (["--activation", "softmax"], "not elementwise"),
    (["--activation", "sigmoid"], "no critical point"),
    (["--activation", "nope"], "activation"),
    (["--sizes", "4,4", "--width", "4"], "not both"),
    (["--density", "out.txt"], ".png, .pdf or .svg"),
    (["--threads", "0"], "--threads"),
    (["--depths", "a,b"], "depths"),
])
def test_cli_bad_input_is_one_line_exit_2(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["jacobian", "--width", "4", "--depth", "2", "--K", "2", *args]
                if "--width" not in args and "--sizes" not in args else ["jacobian", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_cli_density_never_overwrites_without_force(tmp_path, capsys):
    out = tmp_path / "density.png"
    args = ["jacobian", "--width", "6", "--depth", "2", "--K", "2", "--samples", "2",
            "--density", str(out)]
    assert main(args) == 0 and out.stat().st_size > 0
    out.write_bytes(b"mine")
    capsys.readouterr()
    assert main(args) == 2 and out.read_bytes() == b"mine"
    assert "--force" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0 and out.read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["density.png"]  # no temporary left
