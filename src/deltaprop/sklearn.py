"""scikit-learn estimators: :class:`MLPClassifier` and :class:`MLPRegressor`.

They wrap a deltaprop :class:`~deltaprop.network.Network` trained by
:func:`deltaprop.train.fit`, so they drop into pipelines, grid search and cross-validation,
and the trained network (``net_``) can be inspected with the rest of deltaprop.

* classifier: softmax output, softmax cross-entropy (two units for a binary problem, one
  for a single class), labels of any type through ``classes_``;
* regressor: identity output, MSE ``J = 1/m sum_i 1/2 ||a[L] - y||^2``; y (m,) or (m, k).

``l2`` is scikit-learn's ``alpha``: the penalty (l2 / 2m) sum ||W||^2 (biases excluded).
``loss_curve_`` holds the data loss J (no L2 term) on the whole training set after each
epoch (scikit-learn's holds the running minibatch average including the penalty).
Stopping follows scikit-learn: without ``early_stopping``, stop when the training loss has
not improved by ``tol`` for ``n_iter_no_change`` epochs; with it, hold out
``validation_fraction`` of the data, stop when the validation score (accuracy or R^2) has
not improved by ``tol`` for ``n_iter_no_change`` epochs, and keep the best network.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import _check_partial_fit_first_call, check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _backend, backprop, optim
from . import data as _data
from . import losses as _losses
from . import train as _train
from .network import Network

__all__ = ["MLPClassifier", "MLPRegressor"]


class _BaseMLP(BaseEstimator):
    """Shared fitting machinery; subclasses set the loss, output activation and targets."""

    _loss = ""
    _output = ""
    _y_checks: dict = {}

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", init="glorot_uniform",
                 optimizer="adam", learning_rate=1e-3, batch_size=32, max_iter=200, l2=0.0,
                 tol=1e-4, early_stopping=False, validation_fraction=0.1, n_iter_no_change=10,
                 random_state=None, warm_start=False, dtype="float64", verbose=False):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.init = init
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.l2 = l2
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.random_state = random_state
        self.warm_start = warm_start
        self.dtype = dtype
        self.verbose = verbose

    # ------------------------------------------------------------------ subclass hooks
    def _targets(self, y, first, partial=False, classes=None):
        """Targets for the network: label indices (m,) or floats (m, k)."""
        raise NotImplementedError

    def _n_outputs(self, Y):
        raise NotImplementedError

    def _val_score(self, net, x, Y):
        raise NotImplementedError

    # ------------------------------------------------------------------ parameters
    def _hidden(self):
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if np.isscalar(sizes) else list(sizes)
        if not all(isinstance(n, int | np.integer) and not isinstance(n, bool) and n > 0
                   for n in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive integers, got "
                             f"{self.hidden_layer_sizes!r}")
        return [int(n) for n in sizes]

    def _check_params(self):
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if not (isinstance(self.max_iter, int | np.integer) and self.max_iter >= 1):
            raise ValueError(f"max_iter must be an integer >= 1, got {self.max_iter!r}")
        if not (isinstance(self.n_iter_no_change, int | np.integer)
                and self.n_iter_no_change >= 1):
            raise ValueError(f"n_iter_no_change must be an integer >= 1, got "
                             f"{self.n_iter_no_change!r}")
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got "
                             f"{self.validation_fraction!r}")
        if not self.tol >= 0:
            raise ValueError(f"tol must be >= 0, got {self.tol!r}")
        if not 0 <= self.l2 < np.inf:
            raise ValueError(f"l2 must be a finite number >= 0, got {self.l2!r}")
        self._batch(2)  # raises on a bad batch_size
        optim.get(self.optimizer, self.learning_rate)  # raises on a bad name or rate

    def _batch(self, m):
        return _train._batch_size(self.batch_size, m)

    def _new_net(self, n_in, n_out, seed):
        hidden = self._hidden()
        act = self.activation
        acts = [act] * len(hidden) if isinstance(act, str) else list(act)
        if len(acts) != len(hidden):
            raise ValueError(f"activation needs one name per hidden layer ({len(hidden)}), "
                             f"got {act!r}")
        return Network.init([n_in, *hidden, n_out], [*acts, self._output], init=self.init,
                            seed=seed, dtype=self.dtype)

    # ------------------------------------------------------------------ fitting
    def _start(self, X, Y, first, rs):
        """The network to train from: a fresh one, or ``net_`` (warm start, partial_fit)."""
        n_out = self._n_outputs(Y)
        if not first and hasattr(self, "net_"):
            if self.net_.sizes[1:-1] != self._hidden():
                raise ValueError(f"hidden_layer_sizes {self._hidden()} differ from the fitted "
                                 f"network's {self.net_.sizes[1:-1]}; set warm_start=False")
            if self.net_.sizes[-1] != n_out:
                raise ValueError(f"y has {n_out} outputs but the fitted network has "
                                 f"{self.net_.sizes[-1]}; set warm_start=False to refit")
            return self.net_.to(dtype=self.dtype)
        self.loss_curve_ = []
        self.n_iter_ = 0
        self.t_ = 0
        self._opt_state = None
        net = self._new_net(X.shape[1], n_out, int(rs.randint(2**31 - 1)))
        self._shuffle_seed = int(rs.randint(2**31 - 1))  # fit and partial_fit shuffle alike
        self._rng = np.random.default_rng(self._shuffle_seed)
        return net

    def _fit(self, X, y):
        self._check_params()
        warm = self.warm_start and hasattr(self, "net_")
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), reset=not warm,
                             **self._y_checks)
        Y = self._targets(y, first=not warm)
        rs = check_random_state(self.random_state)
        net = self._start(X, Y, not warm, rs)
        if not warm:
            self.best_loss_ = np.inf
        x_val = Y_val = None
        if self.early_stopping:
            X, x_val, Y, Y_val = self._split(X, Y, rs)
            self.validation_scores_ = [] if not warm else getattr(self, "validation_scores_", [])
            self.best_validation_score_ = -np.inf if not warm else \
                getattr(self, "best_validation_score_", -np.inf)
        monitor = _Monitor(self, x_val, Y_val)
        result = _train.fit(
            net, X, Y, self._loss, optimizer=self.optimizer, learning_rate=self.learning_rate,
            batch_size=self._batch(X.shape[0]), epochs=self.max_iter, l2=self.l2,
            seed=self._shuffle_seed if not warm else int(rs.randint(2**31 - 1)),
            callbacks=[monitor])
        if result.stopped is not None and not monitor.converged:  # NaN/inf, not our rule
            raise ValueError(f"training failed: {result.stopped}")
        self.net_ = monitor.best if monitor.best is not None else result.net
        self._opt_state = result.opt_state
        self._opt_key = (self.optimizer, self.learning_rate)
        self.t_ += X.shape[0] * monitor.epochs
        if not monitor.converged:
            warnings.warn(f"{type(self).__name__}: maximum iterations ({self.max_iter}) reached "
                          "and the optimization hasn't converged yet.", ConvergenceWarning,
                          stacklevel=3)
        return self

    def _split(self, X, Y, rs):
        strat = Y if self._loss.startswith("softmax") else None
        seed = int(rs.randint(2**31 - 1))
        try:
            return train_test_split(X, Y, test_size=self.validation_fraction,
                                    random_state=seed, stratify=strat)
        except ValueError:  # a class too small to stratify
            return train_test_split(X, Y, test_size=self.validation_fraction,
                                    random_state=seed)

    def _partial_fit(self, X, y, classes=None):
        """One epoch of minibatch updates, continuing the optimiser's state."""
        self._check_params()
        first = not hasattr(self, "net_")
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32), reset=first,
                             **self._y_checks)
        Y = self._targets(y, first=first, partial=True, classes=classes)
        net = self._start(X, Y, first, check_random_state(self.random_state))
        opt = optim.get(self.optimizer, self.learning_rate)
        key = (self.optimizer, self.learning_rate)
        state = self._opt_state
        if state is None or getattr(self, "_opt_key", None) != key:
            state = opt.init(net)
        m = X.shape[0]
        loss = _losses.get(self._loss)
        xs, ys = _train._prepare(net, loss, X, Y, "training data")  # checked once, as fit
        for idx in _data.batches(m, self._batch(m), self._rng):
            _, grads = backprop.gradients(net, xs[idx], ys[idx], loss, self.l2, check=False)
            net, state = opt.update(net, grads, state)
        J = _train._evaluate(net, xs, ys, loss)["loss"]
        if not np.isfinite(J):
            raise ValueError(f"training failed: the loss became {J}")
        self.net_, self._opt_state, self._opt_key = net, state, key
        self.loss_curve_.append(J)
        self.n_iter_ += 1
        self.t_ += m
        if self.verbose:
            print(f"Iteration {self.n_iter_}, loss = {J:.8f}")
        return self

    def _forward(self, X):
        check_is_fitted(self, "net_")
        X = validate_data(self, X, dtype=(np.float64, np.float32), reset=False)
        return _backend.to_numpy(backprop.predict(self.net_, X))


class _Monitor:
    """scikit-learn's stopping rule as a per-epoch callback of :func:`deltaprop.train.fit`."""

    def __init__(self, est, x_val, Y_val):
        self.est, self.x_val, self.Y_val = est, x_val, Y_val
        self.best, self.bad, self.epochs, self.converged = None, 0, 0, False

    def __call__(self, info):
        est = self.est
        loss = info.row["loss"]
        est.loss_curve_.append(loss)
        est.n_iter_ += 1
        self.epochs += 1
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {loss:.8f}")
        if self.x_val is not None:
            score = est._val_score(info.net, self.x_val, self.Y_val)
            est.validation_scores_.append(score)
            self.bad = self.bad + 1 if score < est.best_validation_score_ + est.tol else 0
            if score > est.best_validation_score_:
                est.best_validation_score_, self.best = score, info.net
        else:
            self.bad = self.bad + 1 if loss > est.best_loss_ - est.tol else 0
            est.best_loss_ = min(est.best_loss_, loss)
        if self.bad > est.n_iter_no_change:
            self.converged = True
            if est.verbose:
                print(f"Stopping: no improvement of at least tol={est.tol} in "
                      f"{est.n_iter_no_change} consecutive epochs")
            return True
        return False


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multi-layer perceptron classifier trained by deltaprop (softmax cross-entropy).

    Parameters
    ----------
    hidden_layer_sizes : sequence of int, default (100,)
        n_1 .. n_{L-1}; ``()`` gives a softmax regression.
    activation : str or sequence of str, default "relu"
        Hidden activation (any name of :mod:`deltaprop.activations`), or one per hidden layer.
    init : str, default "glorot_uniform"
        Initialiser of :mod:`deltaprop.init`.
    optimizer : {"adam", "gd", "momentum", "nesterov"}, default "adam"
    learning_rate : float, default 1e-3
    batch_size : int or "full", default 32
        1 = online learning; 0 or "full" = full batch.
    max_iter : int, default 200
        Maximum number of epochs.
    l2 : float, default 0.0
        The L2 penalty lambda (scikit-learn's ``alpha``): J + (lambda / 2m) sum ||W||^2.
    tol, early_stopping, validation_fraction, n_iter_no_change
        scikit-learn's stopping rule (see the module docstring).
    random_state : int, RandomState or None
        Seeds the initial weights, the shuffles and the validation split.
    warm_start : bool, default False
        ``fit`` continues from the previous network.
    dtype : {"float64", "float32"}
    verbose : bool

    Attributes
    ----------
    classes_ : ndarray (n_classes,)
    net_ : deltaprop.Network
        The trained network: ``net_.W[l]`` (n_l, n_{l-1}), ``net_.b[l]`` (n_l,).
    n_features_in_, feature_names_in_, n_iter_, t_, loss_curve_, best_loss_,
    validation_scores_, best_validation_score_, n_layers_, n_outputs_, out_activation_
    """

    _loss = "softmax-cross-entropy"
    _output = "softmax"

    def _targets(self, y, first, partial=False, classes=None):
        check_classification_targets(y)
        if partial:
            _check_partial_fit_first_call(self, classes)  # sets classes_ on the first call
        elif first:
            self.classes_ = np.unique(y)
        idx = np.clip(np.searchsorted(self.classes_, y), 0, len(self.classes_) - 1)
        if not np.all(self.classes_[idx] == y):
            unseen = sorted(set(np.unique(y)) - set(self.classes_))
            raise ValueError(f"y contains labels {unseen[:5]} not in classes_ "
                             f"{list(self.classes_)[:10]}")
        self.n_outputs_ = len(self.classes_)
        self.n_layers_ = len(self._hidden()) + 2
        self.out_activation_ = "softmax"
        return idx.astype(np.int64)

    def _n_outputs(self, Y):
        return len(self.classes_)

    def _val_score(self, net, x, Y):
        a = _backend.to_numpy(backprop.predict(net, x))
        return float(np.mean(np.argmax(a, axis=1) == Y))

    def fit(self, X, y):
        """Fit the network to X (m, n_0) and labels y (m,) (``max_iter`` epochs at most)."""
        return self._fit(X, y)

    def partial_fit(self, X, y, classes=None):
        """One epoch over (X, y); ``classes`` (all labels) is required on the first call."""
        if not hasattr(self, "net_") and hasattr(self, "classes_"):
            del self.classes_  # left by a fit that failed
        return self._partial_fit(X, y, classes=classes)

    def predict_proba(self, X):
        """Class probabilities a[L] = softmax(z[L]), shape (m, n_classes)."""
        return self._forward(X)

    def predict_log_proba(self, X):
        """log of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """The most probable class of each row of X, as labels from ``classes_``."""
        p = self.predict_proba(X)  # first: it checks that the estimator is fitted
        return self.classes_[np.argmax(p, axis=1)]


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multi-layer perceptron regressor trained by deltaprop (identity output, MSE).

    Parameters and attributes are those of :class:`MLPClassifier` (no ``classes_``);
    y may be (m,) or (m, k), and :meth:`predict` returns the same shape.
    """

    _loss = "mse"
    _output = "identity"
    _y_checks = {"multi_output": True, "y_numeric": True}

    def _targets(self, y, first, partial=False, classes=None):
        y = np.asarray(y, dtype=np.float64)
        if first:
            self._y_1d = y.ndim == 1
        Y = y.reshape(len(y), -1)
        self.n_outputs_ = Y.shape[1]
        self.n_layers_ = len(self._hidden()) + 2
        self.out_activation_ = "identity"
        return Y

    def _n_outputs(self, Y):
        return Y.shape[1]

    def _val_score(self, net, x, Y):
        a = _backend.to_numpy(backprop.predict(net, x)).astype(np.float64)
        ss_res = ((Y - a) ** 2).sum(0)
        ss_tot = ((Y - Y.mean(0)) ** 2).sum(0)
        r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1), 0.0)
        return float(r2.mean())

    def fit(self, X, y):
        """Fit the network to X (m, n_0) and targets y (m,) or (m, k)."""
        return self._fit(X, y)

    def partial_fit(self, X, y):
        """One epoch of minibatch updates over (X, y), continuing from the current network."""
        return self._partial_fit(X, y)

    def predict(self, X):
        """a[L] for the rows of X: (m,) if fitted on 1-D y, else (m, k)."""
        a = self._forward(X)
        return a[:, 0] if self._y_1d else a

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
