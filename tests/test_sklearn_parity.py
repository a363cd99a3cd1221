"""deltaprop.app.sklearn against sklearn.neural_network: same parameters, same numbers.

Each case fits both libraries' estimator with the same parameters and random_state (so the
same initial weights and shuffles) and compares every fitted attribute and prediction.
The differences that remain are in docs/sklearn.md and in test_documented_differences.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

pytest.importorskip("sklearn", minversion="1.7")  # sample_weight and loss="poisson" in its MLP

from scipy import sparse  # noqa: E402
from sklearn import neural_network as sk  # noqa: E402
from sklearn.datasets import load_iris, make_regression  # noqa: E402

from deltaprop.app import sklearn as dp  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _data(kind):
    x, y = load_iris(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    if kind == "multiclass":
        return x, y
    if kind == "binary":
        return x, np.array(["no", "yes"])[(y == 1).astype(int)]
    if kind == "multilabel":
        return x, np.column_stack([y == 0, y == 2, x[:, 0] > 0]).astype(int)
    xr, yr = make_regression(120, 5, n_targets=2, noise=1.0, random_state=0)
    xr = xr / xr.std(0)
    if kind == "regression":
        return xr, yr / yr.std(0)
    if kind == "regression-1d":
        return xr, yr[:, 0] / yr[:, 0].std()
    return xr, np.random.default_rng(0).poisson(np.exp(0.5 * xr[:, 0]))  # poisson


#: id -> (estimator class name, data kind, parameters, use sample weights)
CASES = {
    "adam-multiclass": ("MLPClassifier", "multiclass", dict(batch_size=32), False),
    "adam-binary-weights": ("MLPClassifier", "binary", dict(learning_rate_init=0.01), True),
    "adam-multilabel": ("MLPClassifier", "multilabel", dict(activation="tanh"), False),
    "adam-early-stopping": ("MLPClassifier", "multiclass",
                            dict(early_stopping=True, n_iter_no_change=3), False),
    "adam-regression-weights": ("MLPRegressor", "regression", dict(batch_size=50), True),
    "sgd-nesterov": ("MLPClassifier", "multiclass", dict(solver="sgd", batch_size=20,
                                                         learning_rate_init=0.05), False),
    "sgd-momentum-logistic": ("MLPClassifier", "binary",
                              dict(solver="sgd", nesterovs_momentum=False,
                                   activation="logistic", learning_rate_init=0.1), False),
    "sgd-invscaling": ("MLPRegressor", "regression-1d",
                       dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.05,
                            power_t=0.25, batch_size=16), False),
    "sgd-adaptive": ("MLPClassifier", "multiclass",
                     dict(solver="sgd", learning_rate="adaptive", learning_rate_init=0.2,
                          n_iter_no_change=2, tol=1e-2, batch_size=50), False),
    "sgd-noshuffle-weights": ("MLPRegressor", "regression-1d",
                              dict(solver="sgd", shuffle=False, momentum=0.5,
                                   learning_rate_init=0.01), True),
    "lbfgs-multiclass": ("MLPClassifier", "multiclass", dict(solver="lbfgs"), False),
    "lbfgs-binary-weights": ("MLPClassifier", "binary", dict(solver="lbfgs"), True),
    "lbfgs-regression": ("MLPRegressor", "regression", dict(solver="lbfgs", max_fun=40), False),
    "lbfgs-poisson": ("MLPRegressor", "poisson", dict(solver="lbfgs", loss="poisson"), False),
}

ATTRS = ("n_iter_", "t_", "n_layers_", "n_outputs_", "out_activation_", "n_features_in_",
         "best_loss_", "best_validation_score_")


def _pair(name, params):
    kw = {**dict(hidden_layer_sizes=(7, 5), alpha=1e-3, max_iter=30, random_state=0), **params}
    return getattr(sk, name)(**kw), getattr(dp, name)(**kw)


def _params(est):
    return est.coefs_ + est.intercepts_


def assert_same(a, b, rtol):
    """Every fitted attribute of scikit-learn's estimator a equals deltaprop's b."""
    for p, q in zip(_params(a), _params(b), strict=True):
        assert p.shape == q.shape and p.dtype == q.dtype
        np.testing.assert_allclose(q, p, rtol=rtol, atol=rtol)
    for attr in ATTRS:
        want, got = getattr(a, attr, "absent"), getattr(b, attr, "absent")
        if isinstance(want, float):
            assert got == pytest.approx(want, rel=rtol), attr
        else:
            assert got == want and type(got) is type(want), attr
    np.testing.assert_allclose(b.loss_, a.loss_, rtol=rtol)
    for attr in ("loss_curve_", "validation_scores_"):
        if getattr(a, attr, None) is None:
            assert getattr(b, attr, None) is None, attr
        else:
            np.testing.assert_allclose(getattr(b, attr), getattr(a, attr), rtol=rtol)
    if hasattr(a, "classes_"):
        np.testing.assert_array_equal(b.classes_, a.classes_)


@pytest.mark.parametrize("case", list(CASES))
def test_fit_parity(case):
    name, kind, params, weighted = CASES[case]
    x, y = _data(kind)
    sw = np.random.default_rng(1).uniform(0.2, 3.0, len(x)) if weighted else None
    a, b = _pair(name, params)
    a.fit(x, y, sample_weight=sw)
    b.fit(x, y, sample_weight=sw)
    # L-BFGS's line search amplifies the last-bit differences of the gradient sums
    rtol = 1e-8 if case.startswith("lbfgs") else 1e-11
    assert a.n_iter_ > 1
    if case == "sgd-adaptive":  # the schedule divided eta by 5 several times
        assert b._optimizer.learning_rate < 1e-3 * params["learning_rate_init"]
    assert_same(a, b, rtol)
    if name == "MLPRegressor":
        np.testing.assert_allclose(b.predict(x), a.predict(x), rtol=rtol, atol=rtol)
    else:
        np.testing.assert_array_equal(b.predict(x), a.predict(x))
        np.testing.assert_allclose(b.predict_proba(x), a.predict_proba(x), rtol=rtol,
                                   atol=rtol)
    np.testing.assert_allclose(b.score(x, y, sw), a.score(x, y, sw), rtol=1e-9)


@pytest.mark.parametrize("case", ["adam-multiclass", "sgd-nesterov",
                                  "adam-regression-weights"])
def test_float32_parity(case):
    """float32 data stays float32 in both; the weights agree to float32 rounding."""
    name, kind, params, weighted = CASES[case]
    x, y = _data(kind)
    x = x.astype(np.float32)
    sw = np.random.default_rng(1).uniform(0.2, 3.0, len(x)) if weighted else None
    a, b = _pair(name, params)
    a.fit(x, y, sample_weight=sw)
    b.fit(x, y, sample_weight=sw)
    for p, q in zip(_params(a), _params(b), strict=True):
        assert p.dtype == q.dtype == np.float32
        np.testing.assert_allclose(q, p, rtol=0, atol=1e-5 * np.abs(p).max())
    np.testing.assert_allclose(b.loss_curve_, a.loss_curve_, rtol=1e-5)


def test_warm_start_from_given_weights():
    """Both start from the same weights we set (not drawn by either library)."""
    x, y = _data("multiclass")
    a, b = _pair("MLPClassifier", dict(solver="adam", max_iter=3, warm_start=True))
    a.fit(x, y)
    b.fit(x, y)
    rng = np.random.default_rng(7)
    start = [rng.normal(0, 0.5, p.shape) for p in _params(a)]
    for est in (a, b):
        est.coefs_ = [p.copy() for p in start[:3]]
        est.intercepts_ = [p.copy() for p in start[3:]]
        est.set_params(max_iter=10, solver="sgd", learning_rate_init=0.05)
        est.fit(x, y)
    assert a.n_iter_ == 10 and a.t_ == 13 * 150
    assert_same(a, b, 1e-11)


def test_partial_fit_parity():
    x, y = _data("multiclass")
    sw = np.random.default_rng(2).uniform(0.5, 2.0, len(x))
    for solver in ("adam", "sgd"):
        a, b = _pair("MLPClassifier", dict(solver=solver, batch_size=25,
                                           learning_rate_init=0.02))
        for k in range(8):
            rows = slice(None) if k % 2 else slice(0, 100)
            for est in (a, b):
                est.partial_fit(x[rows], y[rows], sample_weight=sw[rows], classes=np.unique(y))
        assert a.t_ == 4 * 150 + 4 * 100
        assert_same(a, b, 1e-11)
        np.testing.assert_allclose(b.predict_proba(x), a.predict_proba(x), rtol=1e-11)


@pytest.mark.parametrize("name", ["MLPClassifier", "MLPRegressor"])
def test_same_parameters_and_defaults(name):
    theirs = getattr(sk, name)().get_params()
    ours = getattr(dp, name)().get_params()
    assert {k: ours[k] for k in theirs} == theirs
    assert set(ours) - set(theirs) == {"init", "dtype"}  # deltaprop's own, default None
    assert ours["init"] is None and ours["dtype"] is None
    their_sig = inspect.signature(getattr(sk, name))
    our_sig = inspect.signature(getattr(dp, name))
    positional = [p.name for p in their_sig.parameters.values()
                  if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert [p.name for p in our_sig.parameters.values()
            if p.kind is p.POSITIONAL_OR_KEYWORD] == positional


def test_documented_differences():
    x, y = _data("binary")
    # log-loss of a saturated output: scikit-learn clips p to [eps, 1 - eps]
    a, b = _pair("MLPClassifier", dict(solver="sgd", max_iter=1, warm_start=True,
                                       learning_rate_init=1e-300, shuffle=False, alpha=0.0))
    a.fit(x, y)
    b.fit(x, y)
    for est in (a, b):
        est.intercepts_[-1] = est.intercepts_[-1] + 60.0  # every p(yes) = 1 - 1e-26 or so
        est.fit(x, y)
    n_no = np.mean(y == "no")
    assert a.loss_ == pytest.approx(n_no * -np.log(np.finfo(float).eps), rel=0.02)
    assert b.loss_ > 1.5 * a.loss_  # the true cross-entropy, from the logits
    for p, q in zip(_params(a), _params(b), strict=True):  # same weights, only J differs
        np.testing.assert_array_equal(p, q)
    # sparse X: scikit-learn accepts it, deltaprop asks for a dense array
    xs = sparse.csr_matrix(x)
    sk.MLPClassifier(hidden_layer_sizes=(3,), max_iter=2).fit(xs, y)
    with pytest.raises(TypeError, match="dense"):
        dp.MLPClassifier(hidden_layer_sizes=(3,), max_iter=2).fit(xs, y)
    # partial_fit of an L-BFGS regressor
    assert hasattr(sk.MLPRegressor(solver="lbfgs"), "partial_fit")
    assert not hasattr(dp.MLPRegressor(solver="lbfgs"), "partial_fit")
