"""Gradient independence, measured (stats.independent): the real forward pass
back-propagated through an independent copy of the weights."""

import json
import subprocess
import sys

import numpy as np
import pytest

from deltaprop import Network
from deltaprop.stats import Study, record, run_study, study_network
from deltaprop.stats.independent import KEY, permuted_copy, record_independent, table


def _data(sizes, K=None, m=24, seed=0):
    rng = np.random.default_rng(seed)
    lead = () if K is None else (K,)
    return rng.normal(size=(*lead, m, sizes[0])), rng.normal(size=(*lead, m, sizes[-1]))


@pytest.mark.parametrize("K", [None, 3])
def test_through_the_network_itself_it_is_the_true_pass(K):
    """With W~ = W the pass is the true backward pass: the same moments to rounding."""
    sizes = [4, 7, 5, 3]
    net = Network.init(sizes, ["relu", "tanh", "sigmoid"], seed=1, K=K, bias_std=0.3)
    x, y = _data(sizes, K)
    want = record(net, x, y, "mse", batch_size=10)
    got = record_independent(net, x, y, "mse", net, batch_size=7)
    for l in (1, 2, 3):
        for a, b in zip(want.get("delta", l), got.get("delta", l), strict=True):
            np.testing.assert_allclose(a.mean, b.mean, rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(a.m2, b.m2, rtol=1e-10, atol=1e-15)
    assert got.quantities(1) == ["delta"]


def test_permuted_copy_keeps_each_networks_entries():
    net = Network.init([5, 6, 4], "tanh", seed=2, K=3)
    cp = permuted_copy(net, seed=0)
    for l in (1, 2):
        W, Wc = net.W[l], cp.W[l]
        assert Wc.shape == W.shape and not np.array_equal(W, Wc)
        for k in range(3):  # each network's own entries, rearranged
            np.testing.assert_array_equal(np.sort(W[k].ravel()), np.sort(Wc[k].ravel()))
        assert cp.b[l] is net.b[l]
    np.testing.assert_array_equal(permuted_copy(net, seed=0).W[2], cp.W[2])


def test_a_copy_of_another_shape_is_refused():
    net = Network.init([4, 6, 3], "tanh", seed=0)
    x, y = _data([4, 6, 3])
    with pytest.raises(ValueError, match="sizes"):
        record_independent(net, x, y, "mse", Network.init([4, 5, 3], "tanh"))
    with pytest.raises(ValueError, match="activations"):
        record_independent(net, x, y, "mse", Network.init([4, 6, 3], "relu"))


def _rows(**kw):
    st = Study(inputs="gaussian", bins=None, batch_size=None, gradient_independence=True, **kw)
    return run_study(st).rows


@pytest.mark.slow
def test_zero_mean_output_true_and_independent_copy_agree():
    """mu_w = 0 and Var(y) = 100 >> Var(z[L]), so delta[L] ~ -y does not depend on W[L]:
    gradient independence holds to leading order in the width and E[delta^2] through the
    copy equals the true one within 4 paired standard errors at every layer.

    tanh 64-128-128-128-10, sigma_w^2 = 1.5, sigma_b^2 = 0.05, K = 32 networks x 32 inputs.
    Measured: true / gi = 0.979, 0.975, 0.977 (z = -1.2, -1.7, -2.3); over seeds 0-7 the
    mean z is -0.2 to 0.1 per layer and |z| <= 2.3.
    """
    rows = _rows(sizes=(64, 128, 128, 128, 10), activations="tanh", sigma_w2=1.5,
                 sigma_b2=0.05, target_var=100.0, K=32, m=32)
    for r in rows:
        g = r[KEY]
        assert g["true_minus_gi_se"] > 0 or r["layer"] == len(rows)
        assert abs(g["true_minus_gi"]) <= 4 * g["true_minus_gi_se"], (r["layer"], g)
    top = rows[-1]  # delta_gi[L] is the real delta[L]
    assert top[KEY]["second_moment"] == top["measured"]["second_moment"]


@pytest.mark.slow
def test_wide_linear_output_breaks_the_assumption_not_the_forward_model():
    """A linear output as wide as the last hidden layer, MSE, unit-variance targets
    (docs/laboratory.md, "Where each approximation holds and where it breaks"): delta[L] =
    W[L] a[L-1] + b - y contains W[L], so the true E[delta^2] lies far above the pass through
    an independent copy, which in turn agrees with mean field within 4 se.

    relu 64-256-256-256-256 (He, sigma_w^2 = 2, input variance 0.1), K = 32 x 32 inputs.
    Measured (seeds 0-7): true - gi 18-33 paired se at every hidden layer, true / gi 1.3-2.1;
    |gi - mean field| <= 1.9 se.  (relu: E[f'^2] = 1/2 for every q, so the Gaussian forward
    model is exact and gi / theory isolates the assumption cleanly.)
    """
    rows = _rows(sizes=(64, 256, 256, 256, 256), activations="relu", sigma_w2=2.0,
                 input_var=0.1, target_var=1.0, K=32, m=32)
    for r in rows[:-1]:
        g = r[KEY]
        assert g["true_minus_gi"] > 10 * g["true_minus_gi_se"], (r["layer"], g)
        assert r["measured"]["second_moment"] > 1.2 * g["second_moment"]
    for r in rows:
        g, mf = r[KEY], r["predicted"]["mean_field"]["second_moment"]
        assert abs(g["second_moment"] - mf) <= 4 * g["second_moment_se"], (r["layer"], g, mf)
    assert rows[0]["measured"]["second_moment"] > 1.8 * rows[0][KEY]["second_moment"]
    assert "true/gi" in table(rows)


def test_torch_backend_equals_numpy():
    torch = pytest.importorskip("torch")
    kw = dict(sizes=(16, 32, 32, 4), activations="tanh", K=4, m=16)
    ref, got = _rows(**kw), _rows(backend="torch", **kw)
    for a, b in zip(ref, got, strict=True):
        for k, v in a[KEY].items():
            assert b[KEY][k] == pytest.approx(v, rel=1e-9, abs=1e-14)
    # a single network on torch: the permuted copy is drawn on the host, applied on device
    net = Network.init([16, 32, 32, 4], "tanh", seed=0)
    x, y = _data([16, 32, 32, 4], m=64)
    want = study_network(net, x, y, "mse", gradient_independence=True, seed=3, bins=None)
    have = study_network(net.to("torch"), torch.asarray(x), torch.asarray(y), "mse",
                         gradient_independence=True, seed=3, bins=None)
    for a, b in zip(want.rows, have.rows, strict=True):
        assert b[KEY]["second_moment"] == pytest.approx(a[KEY]["second_moment"], rel=1e-9)


def test_single_network_rows_and_se():
    """One network (a trained model's case): the copy is a permutation; se over samples,
    and the se of true - gi combines the two (no networks to pair)."""
    net = Network.init([16, 32, 32, 4], "tanh", seed=0)
    x, y = _data([16, 32, 32, 4], m=200)
    res = study_network(net, x, y, "mse", gradient_independence=True, bins=None)
    gi = res.extra[KEY]
    assert gi.K == 1 and gi.count == 200
    for r in res.rows:
        g = r[KEY]
        assert g["second_moment"] == gi.layer_summary(r["layer"])["second_moment"]
        assert g["true_minus_gi_se"] == pytest.approx(np.hypot(
            r["measured"]["second_moment_se"], g["second_moment_se"]))
    assert res.rows[-1][KEY]["true_minus_gi"] == 0
    assert KEY not in study_network(net, x, y, "mse", bins=None).rows[0]
    # one network: its se is no error bar for the split, so the table prints no z
    text = table(res.rows)
    assert "K = 1" in text and "n/a" in text
    assert all(line.count("n/a") == 2 for line in text.splitlines()[3:3 + len(res.rows)])


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "deltaprop", "stats", *args],
                          capture_output=True, text=True)


def test_cli_flag_table_and_json(tmp_path):
    base = ("--inputs", "gaussian", "--sizes", "6,8,8,3", "--K", "4", "--samples", "16")
    out = _cli(*base, "--gradient-independence", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert set(rows[0][KEY]) == {"mean", "mean_se", "second_moment", "second_moment_se",
                                 "true_minus_gi", "true_minus_gi_se"}
    text = _cli(*base, "--gradient-independence", "--out", str(tmp_path))
    assert text.returncode == 0, text.stderr
    assert "E[d^2] gi" in text.stdout and "true/gi" in text.stdout
    assert "true/gi" in (tmp_path / "gradient_independence.txt").read_text()
    plain = _cli(*base, "--json")
    assert KEY not in json.loads(plain.stdout)[0]
