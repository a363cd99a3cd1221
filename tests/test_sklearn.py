"""The scikit-learn estimators: scikit-learn's own estimator checks, then the ecosystem.

Agreement with ``sklearn.neural_network`` number for number is in test_sklearn_parity.py.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits, load_iris
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import (
    check_sample_weight_equivalence_on_dense_data,
    parametrize_with_checks,
)

from deltaprop import Network, backprop
from deltaprop.app.sklearn import MLPClassifier, MLPRegressor, adam_update, sgd_update

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

#: checks we do not pass, with the reason (also listed in docs/sklearn.md)
EXPECTED_FAILED: dict[str, str] = {}


def _expected_failed(estimator):
    return EXPECTED_FAILED


@parametrize_with_checks([MLPClassifier(random_state=0), MLPRegressor(random_state=0)],
                         expected_failed_checks=_expected_failed)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("est", [MLPClassifier(solver="lbfgs"),
                                 MLPRegressor(solver="sgd", tol=1e-2, random_state=42)],
                         ids=["classifier-lbfgs", "regressor-sgd"])
def test_sample_weight_equivalence(est):
    """Integer weights = repeated rows, with the settings scikit-learn uses for its own MLP
    (a shuffled minibatch solver sees other batches, so the default Adam cannot pass)."""
    check_sample_weight_equivalence_on_dense_data(type(est).__name__, est)


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def iris():
    x, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(x), y


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)


# ---------------------------------------------------------------------------- behaviour
def test_digits_accuracy_and_net(digits):
    x_tr, x_te, y_tr, y_te = digits
    clf = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(64,), max_iter=60,
                                                        random_state=0))
    clf.fit(x_tr, y_tr)
    assert clf.score(x_te, y_te) >= 0.95
    mlp = clf[-1]
    assert [c.shape for c in mlp.coefs_] == [(64, 64), (64, 10)]
    assert (mlp.n_layers_, mlp.n_outputs_, mlp.out_activation_) == (3, 10, "softmax")
    net = mlp.net_
    assert isinstance(net, Network) and net.sizes == [64, 64, 10]
    assert net.activation_names() == ["relu", "softmax"]
    np.testing.assert_array_equal(net.W[1], mlp.coefs_[0].T)
    x = clf[0].transform(x_te)
    np.testing.assert_allclose(backprop.predict(net, x), mlp.predict_proba(x), rtol=1e-12)


@pytest.mark.smoke
def test_pipeline_grid_search_cross_val_on_iris(iris):
    x, y = iris
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=100, learning_rate_init=0.01,
                                                         random_state=0))
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(4,), (16,)],
                               "mlpclassifier__alpha": [1e-4, 1e-2]}, cv=3)
    grid.fit(x, y)
    assert grid.best_score_ > 0.9
    scores = cross_val_score(pipe, x, y, cv=5)
    assert scores.shape == (5,) and scores.mean() > 0.9


@pytest.mark.smoke
def test_binary_string_labels_one_logistic_unit(iris):
    x, y = iris
    keep = y < 2
    names = np.array(["setosa", "versicolor", "virginica"])[y[keep]]
    clf = MLPClassifier(hidden_layer_sizes=(5,), learning_rate_init=0.01, max_iter=50,
                        random_state=1).fit(x[keep], names)
    assert list(clf.classes_) == ["setosa", "versicolor"]
    assert (clf.n_outputs_, clf.out_activation_) == (1, "logistic")  # scikit-learn's layout
    p = clf.predict_proba(x[keep])
    assert p.shape == (keep.sum(), 2)
    np.testing.assert_allclose(p.sum(1), 1.0)
    assert clf.score(x[keep], names) > 0.95
    np.testing.assert_array_equal(clf.predict(x[:3]), clf.classes_[p[:3].argmax(1)])
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(x[:5])), p[:5])


def test_multilabel(iris):
    x, y = iris
    Y = np.column_stack([y == 0, y == 2, x[:, 0] > 0]).astype(int)
    clf = MLPClassifier(hidden_layer_sizes=(10,), solver="lbfgs", random_state=0).fit(x, Y)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 3
    assert clf.predict(x).shape == (150, 3) and clf.predict_proba(x).shape == (150, 3)
    assert clf.score(x, Y) > 0.8  # subset accuracy


def test_partial_fit_continues_and_checks_classes(iris):
    x, y = iris
    clf = MLPClassifier(hidden_layer_sizes=(10,), learning_rate_init=0.05, random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(x, y)
    losses = []
    for _ in range(20):
        losses.append(clf.partial_fit(x, y, classes=[0, 1, 2]).loss_)
    assert clf.n_iter_ == 1 and clf.t_ == 20 * 150  # as scikit-learn: n_iter_ per call
    assert losses[-1] < 0.5 * losses[0]
    assert clf.score(x, y) > 0.9
    with pytest.raises(ValueError, match="not in `self.classes_`"):
        clf.partial_fit(x[:3], [0, 1, 7])
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(x[:, :3], y)
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")
    assert not hasattr(MLPRegressor(solver="lbfgs"), "partial_fit")


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_partial_fit_k_times_equals_fit_k_epochs(iris, solver):
    """k calls of partial_fit == fit with max_iter=k (no shuffling, tol=0): the optimiser's
    state (Adam's moments, SGD's velocities) is carried from call to call."""
    x, y = iris
    kw = dict(hidden_layer_sizes=(6,), solver=solver, learning_rate_init=0.01, batch_size=16,
              shuffle=False, random_state=3)
    a = MLPClassifier(max_iter=3, tol=0, **kw).fit(x, y)
    b = MLPClassifier(**kw)
    for _ in range(3):
        b.partial_fit(x, y, classes=np.unique(y))
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(a.loss_curve_, b.loss_curve_)
    fresh = MLPClassifier(**kw).partial_fit(x, y, classes=np.unique(y))
    del fresh._optimizer  # dropping the optimiser state changes the next epochs
    fresh.partial_fit(x, y).partial_fit(x, y)
    assert not np.allclose(fresh.coefs_[0], a.coefs_[0], rtol=1e-9)


def test_warm_start_continues_from_coefs(iris):
    x, y = iris
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, tol=0, warm_start=True,
                        random_state=0).fit(x, y)
    first = [c.copy() for c in clf.coefs_]
    clf.fit(x, y)
    assert len(clf.loss_curve_) == 10 and clf.t_ == 10 * 150
    assert clf.loss_curve_[-1] < clf.loss_curve_[4]
    cold = clone(clf).set_params(warm_start=False).fit(x, y).fit(x, y)
    np.testing.assert_array_equal(cold.coefs_[0], first[0])  # refit = fresh, same seed
    clf.coefs_ = [np.zeros_like(c) for c in clf.coefs_]  # the user's weights are the start
    clf.intercepts_ = [np.zeros_like(b) for b in clf.intercepts_]
    clf.set_params(max_iter=1, solver="sgd", momentum=0.0, learning_rate_init=0.1,
                   batch_size=150, shuffle=False).fit(x, y)
    np.testing.assert_array_equal(clf.coefs_[0], 0.0)  # zero weights: no hidden gradient
    np.testing.assert_allclose(clf.intercepts_[1], 0.0, atol=1e-15)  # balanced classes
    with pytest.raises(ValueError, match="set warm_start=False"):
        clf.set_params(hidden_layer_sizes=(9,)).fit(x, y)


def test_early_stopping_keeps_best(digits):
    x_tr, _, y_tr, _ = digits
    clf = MLPClassifier(hidden_layer_sizes=(32,), early_stopping=True, n_iter_no_change=3,
                        max_iter=100, random_state=0)
    clf.fit(x_tr / 16, y_tr)
    assert clf.n_iter_ < 100 and clf.best_loss_ is None
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)


def test_sample_weight_is_a_weighted_mean(iris):
    """Zero weights = rows left out; weights 2 = rows repeated (full batch, no shuffle)."""
    x, y = iris
    w = np.where(np.arange(150) % 3 == 0, 0.0, 1.0)
    w[1::3] = 2.0
    kw = dict(hidden_layer_sizes=(5,), solver="sgd", batch_size=400, shuffle=False,
              max_iter=5, tol=0, learning_rate_init=0.1, random_state=0)
    a = MLPClassifier(**kw).fit(x, y, sample_weight=w)
    keep = w > 0
    xr, yr = np.repeat(x[keep], w[keep].astype(int), 0), np.repeat(y[keep], w[keep].astype(int))
    b = MLPClassifier(**kw).fit(xr, yr)
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-12)
    c = MLPClassifier(**kw).fit(x, y)
    assert not np.allclose(c.coefs_[0], a.coefs_[0], rtol=1e-6)
    with pytest.raises(ValueError, match="sample_weight"):
        MLPClassifier(**kw).fit(x, y, sample_weight=w[:10])


@pytest.mark.smoke
def test_regressor_1d_2d_poisson_and_pickle():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (300, 3))
    y2 = np.column_stack([x[:, 0] - 2 * x[:, 1], np.sin(2 * x[:, 2])])
    reg = MLPRegressor(hidden_layer_sizes=(32,), learning_rate_init=0.01, max_iter=200,
                       random_state=0).fit(x, y2)
    assert reg.predict(x).shape == (300, 2) and reg.score(x, y2) > 0.9
    reg1 = MLPRegressor(hidden_layer_sizes=(16,), solver="lbfgs", random_state=0).fit(x, y2[:, 0])
    assert reg1.predict(x).shape == (300,) and reg1.score(x, y2[:, 0]) > 0.99
    again = pickle.loads(pickle.dumps(reg1))
    np.testing.assert_array_equal(again.predict(x), reg1.predict(x))
    counts = rng.poisson(np.exp(x[:, 0] + 0.5 * x[:, 1]))
    pois = MLPRegressor(loss="poisson", hidden_layer_sizes=(8,), solver="lbfgs",
                        random_state=0).fit(x, counts)
    assert pois.out_activation_ == "exp" and np.all(pois.predict(x) > 0)
    assert pois.net_.activation_names()[-1] == "exp"
    with pytest.raises(ValueError, match="y >= 0"):
        pois.fit(x, -counts)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_solvers_and_schedules(iris, dtype):
    x, y = iris
    for params in (dict(solver="sgd", learning_rate_init=0.1),
                   dict(solver="sgd", learning_rate_init=0.5, learning_rate="invscaling"),
                   dict(solver="sgd", learning_rate_init=0.1, learning_rate="adaptive",
                        nesterovs_momentum=False),
                   dict(solver="adam", learning_rate_init=0.05), dict(solver="lbfgs")):
        clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=100, random_state=0,
                            **params).fit(x.astype(dtype), y)
        assert clf.coefs_[0].dtype == dtype and clf.predict_proba(x).dtype == dtype
        assert clf.score(x, y) > 0.85, params
    f64 = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, dtype="float64", random_state=0)
    assert f64.fit(x.astype(np.float32), y).coefs_[0].dtype == np.float64


def test_deltaprop_init_names(iris):
    x, y = iris
    default = MLPClassifier(hidden_layer_sizes=(6,), max_iter=1, random_state=0).fit(x, y)
    he = MLPClassifier(hidden_layer_sizes=(6,), max_iter=1, init="he_normal",
                       random_state=0).fit(x, y)
    assert not np.allclose(he.coefs_[0], default.coefs_[0])
    with pytest.raises(ValueError, match="initialiser"):
        MLPClassifier(init="nope").fit(x, y)


def test_sklearn_update_rules_by_hand():
    """sgd_update and adam_update on numbers worked by hand."""
    p, g, v = np.array([1.0]), np.array([2.0]), np.array([0.5])
    # v = 0.9 * 0.5 - 0.1 * 2 = 0.25; p = 1 + 0.25; Nesterov: p = 1 + 0.9 * 0.25 - 0.2
    assert sgd_update(p, g, v, 0.1, 0.9, False)[0][0] == pytest.approx(1.25, abs=1e-15)
    assert sgd_update(p, g, v, 0.1, 0.9, True)[0][0] == pytest.approx(1.025, abs=1e-15)
    # t = 1: m = 0.1 g = 0.2, v = 0.001 g^2 = 0.004, lr = 0.01 sqrt(0.001) / 0.1
    new, m, s = adam_update(p, g, np.zeros(1), np.zeros(1), 1, 0.01, 0.9, 0.999, 1e-8)
    lr = 0.01 * np.sqrt(0.001) / 0.1
    assert new[0] == pytest.approx(1 - lr * 0.2 / (np.sqrt(0.004) + 1e-8), abs=1e-15)
    assert (m[0], s[0]) == pytest.approx((0.2, 0.004), abs=1e-15)


def test_bad_parameters_raise_value_error(iris):
    x, y = iris
    for params in (dict(hidden_layer_sizes=(0,)), dict(dtype="float16"), dict(max_iter=0),
                   dict(batch_size=0), dict(solver="rmsprop"), dict(learning_rate_init=-1.0),
                   dict(learning_rate="cosine"), dict(activation="nope"),
                   dict(activation="softmax"), dict(alpha=-1.0), dict(tol=-1.0),
                   dict(momentum=1.5), dict(beta_1=1.0), dict(epsilon=0.0),
                   dict(n_iter_no_change=0), dict(max_fun=0), dict(power_t=-1.0),
                   dict(validation_fraction=1.5, early_stopping=True)):
        with pytest.raises(ValueError, match=next(iter(params))):
            MLPClassifier(**params).fit(x, y)
    with pytest.raises(ValueError, match="loss"):
        MLPRegressor(loss="huber").fit(x, y)


def test_unfitted_and_convergence_warning(iris):
    x, y = iris
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(x)
    assert not hasattr(MLPClassifier(), "net_")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, random_state=0).fit(x, y)
    assert any(issubclass(r.category, ConvergenceWarning) for r in w)


def test_verbose_prints_iterations(iris, capsys):
    x, y = iris
    MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, verbose=True, random_state=0).fit(x, y)
    assert "Iteration 2, loss = " in capsys.readouterr().out
    MLPClassifier(hidden_layer_sizes=(3,), solver="lbfgs", max_iter=2, verbose=True,
                  random_state=0).fit(x, y)
    assert "Iteration 1, loss = " in capsys.readouterr().out


def test_diverging_training_is_a_clear_error(iris):
    x, y = iris
    clf = MLPRegressor(hidden_layer_sizes=(8,), activation="identity", solver="sgd",
                       learning_rate_init=10.0, max_iter=200, random_state=0)
    with pytest.raises(ValueError, match="non-finite parameter weights"):
        clf.fit(x, x[:, 0] * 1e3)
    assert clf.n_iter_ < 200  # stopped at once, not after 200 epochs of NaN


@pytest.mark.parametrize("activation,Est", [("gelu", MLPClassifier), ("silu", MLPClassifier),
                                            ("tanh", MLPRegressor)])
def test_weighted_gradient_matches_central_differences(activation, Est):
    """The gradient every solver uses (deltaprop's backward pass through the sample-weighted
    loss row, plus alpha W / sum(s)) is the derivative of the cost it reports (one output,
    so scikit-learn's average over outputs does not enter)."""
    rng = np.random.default_rng(0)
    x, sw = rng.normal(size=(30, 3)), rng.uniform(0.5, 2.0, 30)
    y = rng.integers(0, 3, 30) if Est is MLPClassifier else rng.normal(size=30)
    est = Est(hidden_layer_sizes=(4,), activation=activation, alpha=0.1, max_iter=1,
              random_state=0).fit(x, y)
    Y = est._encode(y, True) if Est is MLPClassifier else y
    Y = Y.reshape(len(y), -1).astype(float)
    _, coef_grads, intercept_grads = est._loss_grad(est.coefs_, est.intercepts_, x, Y, sw)
    h = 1e-6
    for layer, grad in ((0, coef_grads[0]), (1, coef_grads[1])):
        num = np.zeros_like(grad)
        for idx in np.ndindex(grad.shape):
            J = []
            for sign in (1, -1):
                coefs = [c.copy() for c in est.coefs_]
                coefs[layer][idx] += sign * h
                J.append(est._loss_grad(coefs, est.intercepts_, x, Y, sw)[0])
            num[idx] = (J[0] - J[1]) / (2 * h)
        np.testing.assert_allclose(grad, num, atol=1e-8)
    assert np.abs(intercept_grads[0]).max() > 0
