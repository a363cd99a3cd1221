"""The scikit-learn estimators: scikit-learn's own estimator checks, then the ecosystem."""

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
from sklearn.utils.estimator_checks import parametrize_with_checks

from deltaprop import Network
from deltaprop.sklearn import MLPClassifier, MLPRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

#: checks we do not pass, with the reason (also listed in docs/sklearn.md)
EXPECTED_FAILED: dict[str, str] = {}


def _expected_failed(estimator):
    return EXPECTED_FAILED


@parametrize_with_checks([MLPClassifier(random_state=0), MLPRegressor(random_state=0)],
                         expected_failed_checks=_expected_failed)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)


# ---------------------------------------------------------------------------- behaviour
def test_digits_accuracy(digits):
    x_tr, x_te, y_tr, y_te = digits
    clf = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(64,), max_iter=60,
                                                        random_state=0))
    clf.fit(x_tr, y_tr)
    assert clf.score(x_te, y_te) >= 0.95
    net = clf[-1].net_
    assert isinstance(net, Network) and net.sizes == [64, 64, 10]
    assert net.activation_names() == ["relu", "softmax"]


@pytest.mark.smoke
def test_pipeline_grid_search_cross_val_on_iris(iris):
    x, y = iris
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=100, random_state=0))
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(4,), (16,)],
                               "mlpclassifier__l2": [0.0, 1e-2]}, cv=3)
    grid.fit(x, y)
    assert grid.best_score_ > 0.9
    assert set(grid.best_params_) == {"mlpclassifier__hidden_layer_sizes", "mlpclassifier__l2"}
    scores = cross_val_score(pipe, x, y, cv=5)
    assert scores.shape == (5,) and scores.mean() > 0.9


@pytest.mark.smoke
def test_string_labels_binary_and_proba(iris):
    x, y = iris
    keep = y < 2
    names = np.array(["setosa", "versicolor", "virginica"])[y[keep]]
    x = StandardScaler().fit_transform(x)
    clf = MLPClassifier(hidden_layer_sizes=(5,), learning_rate=0.01, max_iter=50,
                        random_state=1).fit(x[keep], names)
    assert list(clf.classes_) == ["setosa", "versicolor"]
    p = clf.predict_proba(x[keep])
    assert p.shape == (keep.sum(), 2)
    np.testing.assert_allclose(p.sum(1), 1.0)
    assert clf.score(x[keep], names) > 0.95
    np.testing.assert_array_equal(clf.predict(x[:3]), clf.classes_[p[:3].argmax(1)])
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(x[:5])), p[:5])


def test_partial_fit_continues_and_checks_classes(iris):
    x, y = iris
    x = StandardScaler().fit_transform(x)
    clf = MLPClassifier(hidden_layer_sizes=(10,), learning_rate=0.01, random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(x, y)
    for _ in range(20):
        clf.partial_fit(x, y, classes=[0, 1, 2])
    assert clf.n_iter_ == 20 and len(clf.loss_curve_) == 20
    assert clf.loss_curve_[-1] < 0.5 * clf.loss_curve_[0]
    assert clf.score(x, y) > 0.9
    with pytest.raises(ValueError, match="not in classes_"):
        clf.partial_fit(x[:3], [0, 1, 7])
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(x[:, :3], y)


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_partial_fit_k_times_equals_fit_k_epochs(iris, optimizer):
    """k calls of partial_fit == fit with max_iter=k: same initial network, same shuffles,
    and the optimiser's state (Adam's moments, momentum's velocity) carried between calls."""
    x, y = iris
    kw = dict(hidden_layer_sizes=(6,), optimizer=optimizer, learning_rate=0.01,
              batch_size=16, random_state=3)
    a = MLPClassifier(max_iter=3, tol=0, **kw).fit(x, y)
    b = MLPClassifier(**kw)
    for _ in range(3):
        b.partial_fit(x, y, classes=np.unique(y))
    assert a.n_iter_ == b.n_iter_ == 3
    for l in (1, 2):
        np.testing.assert_allclose(b.net_.W[l], a.net_.W[l], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(b.net_.b[l], a.net_.b[l], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(b.loss_curve_, a.loss_curve_, rtol=1e-12)
    fresh = MLPClassifier(**kw)
    fresh.partial_fit(x, y, classes=np.unique(y))
    fresh._opt_state = None  # dropping the optimiser state changes the next epoch
    fresh.partial_fit(x, y)
    fresh.partial_fit(x, y)
    assert not np.allclose(fresh.net_.W[1], a.net_.W[1], rtol=1e-9)


def test_warm_start_continues(iris):
    x, y = iris
    x = StandardScaler().fit_transform(x)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, tol=0, warm_start=True,
                        random_state=0)
    clf.fit(x, y)
    first = clf.net_
    clf.fit(x, y)
    assert clf.n_iter_ == 10 and len(clf.loss_curve_) == 10
    assert clf.loss_curve_[-1] < clf.loss_curve_[4]
    cold = clone(clf).set_params(warm_start=False).fit(x, y).fit(x, y)
    assert cold.n_iter_ == 5
    np.testing.assert_array_equal(cold.net_.W[1], first.W[1])  # refit = fresh, same seed
    with pytest.raises(ValueError, match="differ from the fitted network"):
        clf.set_params(hidden_layer_sizes=(9,)).fit(x, y)


def test_early_stopping_keeps_best(digits):
    x_tr, _, y_tr, _ = digits
    clf = MLPClassifier(hidden_layer_sizes=(32,), early_stopping=True, n_iter_no_change=3,
                        max_iter=100, random_state=0)
    clf.fit(x_tr / 16, y_tr)
    assert clf.n_iter_ < 100
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)


@pytest.mark.smoke
def test_regressor_1d_2d_and_pickle():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (300, 3))
    y2 = np.column_stack([x[:, 0] - 2 * x[:, 1], np.sin(2 * x[:, 2])])
    reg = MLPRegressor(hidden_layer_sizes=(32,), learning_rate=0.01, max_iter=200,
                       random_state=0).fit(x, y2)
    assert reg.predict(x).shape == (300, 2) and reg.score(x, y2) > 0.9
    reg1 = MLPRegressor(hidden_layer_sizes=(16,), learning_rate=0.01, max_iter=100,
                        random_state=0).fit(x, y2[:, 0])
    assert reg1.predict(x).shape == (300,) and reg1.score(x, y2[:, 0]) > 0.9
    again = pickle.loads(pickle.dumps(reg1))
    np.testing.assert_array_equal(again.predict(x), reg1.predict(x))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_and_full_batch_and_optimizers(iris, dtype):
    x, y = iris
    x = StandardScaler().fit_transform(x)
    for opt, lr in (("gd", 0.5), ("momentum", 0.1), ("nesterov", 0.1), ("adam", 0.05)):
        clf = MLPClassifier(hidden_layer_sizes=(8,), optimizer=opt, learning_rate=lr,
                            batch_size="full", max_iter=100, dtype=dtype, random_state=0)
        clf.fit(x, y)
        assert str(clf.net_.dtype) == dtype
        assert clf.score(x, y) > 0.85, opt


def test_bad_parameters_raise_value_error(iris):
    x, y = iris
    for params in (dict(hidden_layer_sizes=(0,)), dict(dtype="float16"), dict(max_iter=0),
                   dict(batch_size=-1), dict(optimizer="rmsprop"), dict(learning_rate=-1.0),
                   dict(activation="nope"), dict(activation=["relu", "tanh"]),
                   dict(init="nope"), dict(tol=-1.0), dict(l2=-0.1), dict(n_iter_no_change=0),
                   dict(validation_fraction=1.5, early_stopping=True)):
        with pytest.raises(ValueError):
            MLPClassifier(**params).fit(x, y)


def test_unfitted_and_convergence_warning(iris):
    x, y = iris
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(x)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, random_state=0).fit(x, y)
    assert any(issubclass(r.category, ConvergenceWarning) for r in w)


def test_verbose_prints_iterations(iris, capsys):
    x, y = iris
    MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, verbose=True, random_state=0).fit(x, y)
    assert "Iteration 2, loss = " in capsys.readouterr().out


def test_diverging_training_is_a_clear_error(iris):
    x, y = iris
    clf = MLPRegressor(hidden_layer_sizes=(8,), activation="identity", optimizer="gd",
                       learning_rate=1.0, batch_size="full", max_iter=200, random_state=0)
    with pytest.raises(ValueError, match="training failed: .*loss became"):
        clf.fit(x, x[:, 0])
    with pytest.raises(ValueError, match="training failed: the loss became"):
        for _ in range(200):
            clf.partial_fit(x, x[:, 0])
    assert np.all(np.isfinite(clf.net_.W[1]))  # the last good network is kept
