"""The orthogonal and ``standard`` initialisers (and LeCun normal): laws, stacks, seeds, and
the variances the stats ensemble's prior gives them.

Statistical checks use fixed seeds and bands of at least 4 standard errors, the standard
error computed from the draws.
"""

import math

import numpy as np
import pytest

from deltaprop import Network
from deltaprop.init import init_layer, orthogonal
from deltaprop.stats import ensemble

# (n_out, n_in): wide-to-narrow, narrow-to-wide, square, a vector
SHAPES = [(3, 7), (7, 3), (5, 5), (1, 4), (4, 1)]


@pytest.mark.parametrize("gain", [1.0, 1.3])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_orthogonal_rows_or_columns(shape, gain):
    n_out, n_in = shape
    W = orthogonal(np.random.default_rng(0), n_out, n_in, gain)
    assert W.shape == shape
    if n_out <= n_in:  # wide to narrow: orthonormal rows, W W^T = gain^2 I
        np.testing.assert_allclose(W @ W.T, gain**2 * np.eye(n_out), atol=1e-12)
    if n_out >= n_in:  # the transpose case: orthonormal columns, W^T W = gain^2 I
        np.testing.assert_allclose(W.T @ W, gain**2 * np.eye(n_in), atol=1e-12)


@pytest.mark.parametrize("shape", [(3, 7), (7, 3)], ids=["3x7", "7x3"])
def test_orthogonal_std_sets_the_gain(shape):
    # std = 0.5 per entry: gain = 0.5 sqrt(7), and then sum W_jk^2 = gain^2 min(n) exactly
    W, b = init_layer("orthogonal", np.random.default_rng(1), *shape, std=0.5)
    assert math.isclose(np.sum(W * W), 0.25 * 7 * 3, rel_tol=1e-12)
    np.testing.assert_array_equal(b, 0.0)


def test_orthogonal_is_haar():
    """E[W_jk^2] = 1 / max(n_in, n_out) for each entry, and E[W_11] = 0: the QR factor with
    the sign fix is Haar (without it, W_11 = Q_11 would be >= 0 with R_11 > 0).  5000 draws
    of a 4x3 matrix; bands of 5 se, the se the sample's."""
    draws = np.stack([orthogonal(np.random.default_rng([7, i]), 4, 3) for i in range(5000)])
    sq = draws**2
    se = sq.std(axis=0, ddof=1) / math.sqrt(len(draws))
    assert np.all(np.abs(sq.mean(axis=0) - 1 / 4) < 5 * se)
    first = draws[:, 0, 0]
    assert abs(first.mean()) < 5 * first.std(ddof=1) / math.sqrt(len(first))


def test_standard_is_uniform_with_variance_one_over_3n():
    n_out, n_in = 300, 200
    W, _ = init_layer("standard", np.random.default_rng(2), n_out, n_in)
    half = 1 / math.sqrt(n_in)
    assert np.max(np.abs(W)) <= half and np.max(np.abs(W)) > 0.99 * half
    sq = (W * W).ravel()
    se = sq.std(ddof=1) / math.sqrt(sq.size)
    assert abs(sq.mean() - 1 / (3 * n_in)) < 4 * se
    # U(-r, r) has E[W^4] = r^4 / 5: the fourth moment too, within 4 se
    q = sq**2
    assert abs(q.mean() - half**4 / 5) < 4 * q.std(ddof=1) / math.sqrt(q.size)


def test_lecun_normal_exists_with_variance_one_over_n():
    W, _ = init_layer("lecun_normal", np.random.default_rng(3), 300, 200)
    sq = (W * W).ravel()
    assert abs(sq.mean() - 1 / 200) < 4 * sq.std(ddof=1) / math.sqrt(sq.size)


@pytest.mark.parametrize("name", ["orthogonal", "standard", "lecun_normal"])
def test_stacks_and_seeds(name):
    """Network k of a stack of K is the single network drawn with spawned seed k; a seed
    reproduces the draw, another seed changes it."""
    K, sizes = 3, [6, 4, 5]
    stack = Network.init(sizes, "tanh", init=name, seed=11, K=K)
    again = Network.init(sizes, "tanh", init=name, seed=11, K=K)
    children = np.random.SeedSequence(11).spawn(K)
    for k in range(K):
        one = Network.init(sizes, "tanh", init=name, seed=np.random.default_rng(children[k]))
        for l in (1, 2):
            np.testing.assert_array_equal(stack.W[l][k], one.W[l])
            np.testing.assert_array_equal(stack.W[l][k], again.W[l][k])
    assert not np.array_equal(stack.W[1][0], stack.W[1][1])
    other = Network.init(sizes, "tanh", init=name, seed=12, K=K)
    assert not np.array_equal(stack.W[1], other.W[1])
    if name == "orthogonal":
        for k in range(K):
            np.testing.assert_allclose(stack.W[1][k] @ stack.W[1][k].T, np.eye(4), atol=1e-12)
            np.testing.assert_allclose(stack.W[2][k].T @ stack.W[2][k], np.eye(4), atol=1e-12)


@pytest.mark.parametrize("name, want", [
    ("orthogonal", lambda i, o: 1 / max(i, o)),
    ("standard", lambda i, o: 1 / (3 * i)),
    ("lecun_normal", lambda i, o: 1 / i),
])
def test_prior_knows_the_variances(name, want):
    """The prior's weight_var equals the initialiser's, and a stack drawn from the prior has
    that variance (mean of W^2 over the stack's entries, 4 se)."""
    sizes = [40, 25, 60]
    pr = ensemble.prior(sizes, init=name)
    assert pr.init == name and not pr.scaled
    net = ensemble.draw(pr, ["tanh", "identity"], K=20, seed=5)
    for l in (1, 2):
        v = want(sizes[l - 1], sizes[l])
        assert math.isclose(pr.weight_var[l], v, rel_tol=1e-15)
        sq = (net.W[l] ** 2).reshape(20, -1).mean(axis=1)  # one value per network
        assert abs(sq.mean() - v) < 4 * max(sq.std(ddof=1), 1e-300) / math.sqrt(20) + 1e-15


def test_prior_scales_a_named_law():
    """--init orthogonal --sigma-w2 2: orthogonal weights with Var(W) = 2 / n_in."""
    sizes = [10, 20, 5]
    pr = ensemble.prior(sizes, init="orthogonal", sigma_w2=2.0)
    assert pr.scaled and pr.weight_var[1:] == (0.2, 0.1)
    net = ensemble.draw(pr, ["tanh", "identity"], K=2, seed=0)
    # 10 -> 20: orthonormal columns times gain^2 = 0.2 * 20; 20 -> 5: rows, 0.1 * 20
    np.testing.assert_allclose(net.W[1][0].T @ net.W[1][0], 4.0 * np.eye(10), atol=1e-12)
    np.testing.assert_allclose(net.W[2][1] @ net.W[2][1].T, 2.0 * np.eye(5), atol=1e-12)
    with pytest.raises(ValueError, match="only one of weight_std and sigma_w2"):
        ensemble.prior(sizes, weight_std=0.1, sigma_w2=1.0)
    with pytest.raises(ValueError, match="takes no weight_std"):
        ensemble.prior(sizes, init="epsilon", sigma_w2=1.0)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimator_and_cli_take_the_new_initialisers(tmp_path):
    from deltaprop.app.cli import main
    from deltaprop.app.sklearn import MLPClassifier

    x = np.random.default_rng(0).normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(int)
    for name in ("orthogonal", "standard", "lecun_normal"):
        clf = MLPClassifier(hidden_layer_sizes=(5,), init=name, max_iter=2, random_state=0)
        assert clf.fit(x, y).predict(x).shape == (40,)
    assert main(["stats", "--inputs", "gaussian", "--sizes", "4,6,2", "--K", "2",
                 "--samples", "8", "--init", "orthogonal", "--forward", "gaussian",
                 "--bins", "0"]) == 0
    assert main(["train", "--data", "iris", "--hidden", "8", "--epochs", "2", "--quiet",
                 "--init", "standard", "--out", str(tmp_path / "run")]) == 0
