"""scikit-learn's MLP, trained by deltaprop: :class:`MLPClassifier` and :class:`MLPRegressor`.

A drop-in for ``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor``: the same
parameter names and defaults, the same fitted attributes in the same layout, the same
training loop (shuffles, minibatches, stopping rule, learning-rate schedules, early
stopping, L-BFGS through ``scipy.optimize``), so that with one ``random_state`` both
libraries draw the same initial weights and the same shuffles and end at the same weights
(``tests/test_sklearn_parity.py`` checks this to about 1e-10).  What deltaprop computes
is the loss J and its gradient: every update takes ``dW[l]``, ``db[l]`` from deltaprop's
backward pass (:func:`deltaprop.backprop.gradients`) on the network ``net_``.

Layouts (scikit-learn's, for the drop-in; deltaprop's ``W[l]`` is the transpose):

* ``coefs_[i]``: (n_i, n_{i+1}) = ``W[i + 1].T``; ``intercepts_[i]``: (n_{i+1},) = ``b[i + 1]``;
* ``net_``: the same parameters as a deltaprop :class:`~deltaprop.network.Network`.

scikit-learn's conventions, kept (see docs/sklearn.md for the parity table):

* the cost is the (sample-weighted) mean loss plus (alpha / 2 s) sum_l ||W[l]||^2, s the
  number of samples of the batch (or the sum of their weights); biases are not penalised;
* regression: half the squared error, **averaged over the k outputs** in the reported
  loss (``loss_``, ``loss_curve_``) but not in the gradient (scikit-learn's convention;
  the two agree for one output);
* classification: softmax + cross-entropy for several classes, one logistic unit + binary
  cross-entropy for two classes, logistic units for multilabel targets;
* ``loss_curve_[e]`` is the mean of the minibatch costs of epoch e (penalty included),
  weighted by batch size;
* ``solver="sgd"``: v <- mu v - eta g, p <- p + v (Nesterov: p <- p + mu v - eta g), with
  eta from ``learning_rate`` ("constant", "invscaling", "adaptive"); ``solver="adam"``:
  scikit-learn's placement of epsilon (see :func:`adam_update`); these differ from
  :mod:`deltaprop.optim`, which follows PyTorch.
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings

import numpy as np
import scipy.optimize
from scipy.special import xlogy
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, gen_batches, shuffle
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from .. import backprop
from .. import init as _init
from ..activations import Activation
from ..activations import get as _activation
from ..losses import Loss
from ..losses import get as _loss
from ..network import Network

__all__ = ["MLPClassifier", "MLPRegressor", "sgd_update", "adam_update"]

_STOCHASTIC = ("sgd", "adam")


# ---------------------------------------------------------------------------- update rules
def sgd_update(p, g, v, eta, mu, nesterov):
    """v <- mu v - eta g,  p <- p + v  (Nesterov: p <- p + mu v - eta g)   (scikit-learn's SGD).

    With a constant eta this is :func:`deltaprop.optim.momentum_update` with v scaled by
    -eta; with a schedule the two differ.  Returns ``(p_new, v_new)``.
    """
    v = mu * v - eta * g
    step = mu * v - eta * g if nesterov else v
    return (p + step).astype(p.dtype, copy=False), v


def adam_update(p, g, m, v, t, eta, beta_1, beta_2, epsilon):
    """p <- p - eta sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)   (scikit-learn's Adam).

    m, v are updated first (:func:`deltaprop.optim.adam_moments`).  epsilon is added to
    sqrt(v), not to sqrt(v / (1 - b2^t)) as in PyTorch and :func:`deltaprop.optim.adam`.
    Returns ``(p_new, m_new, v_new)``.
    """
    m = beta_1 * m + (1 - beta_1) * g
    v = beta_2 * v + (1 - beta_2) * (g**2)
    lr = eta * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
    return (p + -lr * m / (np.sqrt(v) + epsilon)).astype(p.dtype, copy=False), m, v


class _SGD:
    """scikit-learn's SGD state: velocities and the learning rate of its schedule."""

    def __init__(self, params, est):
        self.lr0, self.learning_rate = est.learning_rate_init, float(est.learning_rate_init)
        self.schedule, self.power_t = est.learning_rate, est.power_t
        self.mu, self.nesterov = est.momentum, est.nesterovs_momentum
        self.velocities = [np.zeros_like(p) for p in params]

    def update(self, params, grads):
        out = [sgd_update(p, g, v, self.learning_rate, self.mu, self.nesterov)
               for p, g, v in zip(params, grads, self.velocities, strict=True)]
        self.velocities = [v for _, v in out]
        return [p for p, _ in out]

    def iteration_ends(self, t):
        """eta = eta_0 / (t + 1)^power_t after each epoch ("invscaling"; t: samples seen)."""
        if self.schedule == "invscaling":
            self.learning_rate = float(self.lr0) / (t + 1) ** self.power_t

    def trigger_stopping(self, msg, verbose):
        """Stop, or ("adaptive") divide eta by 5 and go on while eta > 1e-6."""
        if self.schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(f"{msg} Setting learning rate to {self.learning_rate:f}")
        return False


class _Adam(_SGD):
    """scikit-learn's Adam state: the moments m, v and the step count t."""

    def __init__(self, params, est):
        self.lr0, self.learning_rate = est.learning_rate_init, float(est.learning_rate_init)
        self.b1, self.b2, self.eps, self.t = est.beta_1, est.beta_2, est.epsilon, 0
        self.ms = [np.zeros_like(p) for p in params]
        self.vs = [np.zeros_like(p) for p in params]

    def update(self, params, grads):
        self.t += 1
        out = [adam_update(p, g, m, v, self.t, self.lr0, self.b1, self.b2, self.eps)
               for p, g, m, v in zip(params, grads, self.ms, self.vs, strict=True)]
        self.ms, self.vs = [o[1] for o in out], [o[2] for o in out]
        return [o[0] for o in out]

    def iteration_ends(self, t):
        pass

    def trigger_stopping(self, msg, verbose):
        if verbose:
            print(msg + " Stopping.")
        return True


# ---------------------------------------------------------------------------- loss rows
def _exp(z, xp):
    return xp.exp(z)


def _dexp(z, a, xp):
    return a


#: scikit-learn's output activation of the Poisson loss (deltaprop's registry has none)
EXP = Activation("exp", _exp, _dexp, "f(z) = e^z,  f' = f")


def _poisson(z, a, y, xp):
    """sum_k [y ln(y / a) - y + a]: half the Poisson deviance (scikit-learn's poisson_loss)."""
    return (xlogy(y, y / a) - y + a).sum(axis=-1)


def _a_minus_y(z, a, y, act, xp):
    """delta[L] = a - y  (the canonical link: exp output with the Poisson loss)."""
    return a - y


POISSON = Loss("poisson", _poisson, _a_minus_y, "J = 1/m sum_i sum_k [y ln(y/a) - y + a]",
               output="exp")


def _weighted_per_sample(base, z, a, y, xp):
    return y[..., -1] * base.per_sample(z, a, y[..., :-1], xp)


def _weighted_delta(base, z, a, y, act, xp):
    return y[..., -1:] * base.delta(z, a, y[..., :-1], act, xp)


@functools.cache
def _weighted(base: Loss) -> Loss:
    """``base`` with sample i's loss and delta[L] times w_i, carried as y's last column.

    With w_i = m s_i / sum(s) for sample weights s, J is the s-weighted mean loss and
    dW[l] = sum_i s_i delta_i a_i^T / sum(s): scikit-learn's weighted gradient.
    """
    return Loss(f"weighted-{base.name}", functools.partial(_weighted_per_sample, base),
                functools.partial(_weighted_delta, base), base.formula + ", sample-weighted",
                output=base.output)


_OUTPUTS = {  # out_activation_ -> (deltaprop activation, deltaprop loss)
    "softmax": ("softmax", "softmax-cross-entropy"),
    "logistic": ("sigmoid", "sigmoid-cross-entropy"),
    "identity": ("identity", "mse"),
    "exp": (EXP, POISSON),
}


def _is_int(v, low=1):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= low


def _is_real(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


# ---------------------------------------------------------------------------- estimators
class _BaseMLP(BaseEstimator):
    """scikit-learn's BaseMultilayerPerceptron, with deltaprop's backward pass."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 init=None, dtype=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.init = init
        self.dtype = dtype

    # ------------------------------------------------------------------ parameters
    def _hidden(self):
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        if not all(_is_int(n) for n in sizes):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {self.hidden_layer_sizes!r}")
        return [int(n) for n in sizes]

    def _check_params(self):
        """One clear ValueError per bad parameter (scikit-learn's constraints)."""
        def need(ok, name, what):
            if not ok:
                raise ValueError(f"{name} must be {what}, got {getattr(self, name)!r}")

        self._hidden()
        act = _activation(self.activation) if isinstance(self.activation, str) else None
        need(act is not None and not act.output_only, "activation",
             "'identity', 'logistic', 'tanh', 'relu' or another deltaprop hidden activation")
        need(self.solver in ("lbfgs", "sgd", "adam"), "solver", "'lbfgs', 'sgd' or 'adam'")
        need(_is_real(self.alpha) and self.alpha >= 0, "alpha", "a finite number >= 0")
        need(self.batch_size == "auto" or _is_int(self.batch_size), "batch_size",
             "'auto' or an integer >= 1")
        need(self.learning_rate in ("constant", "invscaling", "adaptive"), "learning_rate",
             "'constant', 'invscaling' or 'adaptive'")
        need(_is_real(self.learning_rate_init) and self.learning_rate_init > 0,
             "learning_rate_init", "a finite number > 0")
        need(_is_real(self.power_t) and self.power_t >= 0, "power_t", "a number >= 0")
        need(_is_int(self.max_iter), "max_iter", "an integer >= 1")
        need(_is_real(self.tol) and self.tol >= 0, "tol", "a finite number >= 0")
        need(_is_real(self.momentum) and 0 <= self.momentum <= 1, "momentum", "in [0, 1]")
        need(_is_real(self.validation_fraction) and 0 <= self.validation_fraction < 1,
             "validation_fraction", "in [0, 1)")
        for name in ("beta_1", "beta_2"):
            need(_is_real(getattr(self, name)) and 0 <= getattr(self, name) < 1, name,
                 "in [0, 1)")
        need(_is_real(self.epsilon) and self.epsilon > 0, "epsilon", "a number > 0")
        need(_is_int(self.n_iter_no_change) or self.n_iter_no_change == np.inf,
             "n_iter_no_change", "an integer >= 1 or numpy.inf")
        need(_is_int(self.max_fun), "max_fun", "an integer >= 1")
        need(self.dtype in (None, "float32", "float64"), "dtype",
             "None (the dtype of X), 'float32' or 'float64'")
        if self.init is not None:
            _init.canonical(self.init)  # a clear ValueError for an unknown name

    # ------------------------------------------------------------------ the network
    def _acts(self):
        return [self.activation] * (self.n_layers_ - 2) + [_OUTPUTS[self.out_activation_][0]]

    @property
    def net_(self) -> Network:
        """The fitted parameters as a deltaprop Network: W[l] = coefs_[l-1].T, b[l]."""
        check_is_fitted(self, "coefs_")
        return Network.from_layers([c.T.copy() for c in self.coefs_],
                                   [b.copy() for b in self.intercepts_], self._acts())

    def _initialize(self, y, layer_units, dtype):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._out_activation()
        self.coefs_, self.intercepts_ = [], []
        seed = None if self.init is None else self._random_state.randint(np.iinfo(np.int32).max)
        rng = None if seed is None else np.random.default_rng(seed)
        for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:], strict=True):
            if rng is None:  # scikit-learn's Glorot-uniform: bound sqrt(6 or 2 / fans)
                factor = 2.0 if _activation(self.activation).name == "sigmoid" else 6.0
                bound = np.sqrt(factor / (fan_in + fan_out))
                coef = self._random_state.uniform(-bound, bound, (fan_in, fan_out))
                intercept = self._random_state.uniform(-bound, bound, fan_out)
            else:
                W, intercept = _init.init_layer(self.init, rng, fan_out, fan_in)
                coef = W.T
            self.coefs_.append(np.ascontiguousarray(coef, dtype=dtype))
            self.intercepts_.append(np.asarray(intercept, dtype=dtype))
        self._best_coefs = [c.copy() for c in self.coefs_]
        self._best_intercepts = [b.copy() for b in self.intercepts_]
        if self.solver in _STOCHASTIC:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _loss_grad(self, coefs, intercepts, X, Y, sw):
        """The cost and (coef_grads, intercept_grads) from deltaprop's backward pass."""
        act, loss = _OUTPUTS[self.out_activation_]
        loss = _loss(loss)
        net = Network.from_layers([c.T for c in coefs], intercepts,
                                  [self.activation] * (len(coefs) - 1) + [act])
        m = X.shape[0]
        s = m if sw is None else float(sw.sum())
        if sw is not None:  # each sample's loss and delta[L] times m sw_i / sum(sw)
            Y, loss = np.column_stack([Y, sw * (m / s)]), _weighted(loss)
        l2 = self.alpha * m / s  # deltaprop's (l2 / 2m) ||W||^2 is then alpha / (2s) ||W||^2
        _, g = backprop.gradients(net, X, Y, loss, l2, check=False)
        J = float(g.J)
        if self.out_activation_ == "identity" and self.n_outputs_ > 1:  # mean over outputs
            pen = 0.5 * self.alpha * sum(float(np.dot(c.ravel(), c.ravel())) for c in coefs) / s
            J = (J - pen) / self.n_outputs_ + pen
        return J, [dW.T for dW in g.dW[1:]], list(g.db[1:])

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, multi_output=True, dtype=(np.float64, np.float32),
                             reset=reset, **self._y_checks)
        if self.dtype is not None:
            X = X.astype(self.dtype, copy=False)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, self._encode(y, incremental)

    def _fit(self, X, y, sample_weight=None, incremental=False):
        self._check_params()
        hidden = self._hidden()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        sw = None if sample_weight is None else _sample_weight(sample_weight, X)
        Y = (y.reshape(-1, 1) if y.ndim == 1 else y).astype(X.dtype)
        self.n_outputs_ = Y.shape[1]
        layer_units = [X.shape[1], *hidden, Y.shape[1]]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(Y, layer_units, X.dtype)
        else:
            have = [c.shape for c in self.coefs_]
            want = [(a, b) for a, b in zip(layer_units[:-1], layer_units[1:], strict=True)]
            if have != want:
                raise ValueError(f"coefs_ have shapes {have} but the layer sizes "
                                 f"{layer_units} need {want}; set warm_start=False to refit")
        if self.solver in _STOCHASTIC:
            self._fit_stochastic(X, Y, sw, incremental)
        else:
            self._fit_lbfgs(X, Y, sw)
        if not all(np.isfinite(p).all() for p in self.coefs_ + self.intercepts_):
            raise ValueError("Solver produced non-finite parameter weights. The input data may"
                             " contain large values and need to be preprocessed.")
        return self

    def _fit_lbfgs(self, X, Y, sw):
        shapes = [c.shape for c in self.coefs_] + [b.shape for b in self.intercepts_]
        ends = np.cumsum([math.prod(s) for s in shapes])[:-1]
        L = len(self.coefs_)

        def unpack(theta):
            parts = [p.reshape(s) for p, s in
                     zip(np.split(theta.astype(X.dtype, copy=False), ends), shapes, strict=True)]
            return parts[:L], parts[L:]

        def fun(theta):
            J, cg, ig = self._loss_grad(*unpack(theta), X, Y, sw)
            return J, _pack(cg, ig)

        nit = [0]

        def report(intermediate_result):  # scipy passes an OptimizeResult under this name
            nit[0] += 1
            print(f"Iteration {nit[0]}, loss = {intermediate_result.fun:.8f}")

        res = scipy.optimize.minimize(
            fun, _pack(self.coefs_, self.intercepts_), method="L-BFGS-B", jac=True,
            callback=report if self.verbose else None,
            options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol})
        self.n_iter_ = min(res.nit, self.max_iter)
        if res.status != 0:
            warnings.warn(f"lbfgs failed to converge after {self.n_iter_} iteration(s) "
                          f"(status={res.status}): {res.message}. Increase max_iter or "
                          "max_fun, or scale the data.", ConvergenceWarning, stacklevel=4)
        self.loss_ = float(res.fun)
        self.coefs_, self.intercepts_ = (list(p) for p in unpack(res.x))

    def _fit_stochastic(self, X, Y, sw, incremental):
        params = self.coefs_ + self.intercepts_
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = (_SGD if self.solver == "sgd" else _Adam)(params, self)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        val = (None, None, None)
        if self.early_stopping:
            X, Y, sw, val = self._validation_split(X, Y, sw)
        idx = np.arange(X.shape[0], dtype=int)
        batch_size = self._stochastic_batch_size(X.shape[0])
        self.n_iter_ = 0
        try:
            for _ in range(self.max_iter):
                if self.shuffle:
                    idx = shuffle(idx, random_state=self._random_state)
                self._run_epoch(X, Y, sw, idx, batch_size)
                # diverged: scikit-learn's error, at once
                if not math.isfinite(self.loss_) or self._should_stop(val) or incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                                  "reached and the optimization hasn't converged yet.",
                                  ConvergenceWarning, stacklevel=4)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=4)
        if self.early_stopping:  # restore the best weights
            self.coefs_, self.intercepts_ = self._best_coefs, self._best_intercepts

    def _validation_split(self, X, Y, sw):
        """(X, Y, sw) to train on and (X_val, y_val, sw_val) for early stopping."""
        stratify = Y if self._stratify() else None
        parts = train_test_split(X, Y, *([] if sw is None else [sw]),
                                 random_state=self._random_state,
                                 test_size=self.validation_fraction, stratify=stratify)
        X, X_val, Y, y_val = parts[:4]
        sw, sw_val = parts[4:] if sw is not None else (None, None)
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase "
                             "'validation_fraction' or the size of your dataset.")
        return X, Y, sw, (X_val, self._decode_targets(y_val), sw_val)

    def _stochastic_batch_size(self, n):
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                          "going to be clipped", stacklevel=5)
        return int(np.clip(self.batch_size, 1, n))

    def _run_epoch(self, X, Y, sw, idx, batch_size):
        """One pass over the (shuffled) minibatches; loss_, n_iter_, t_, loss_curve_."""
        n, L, total = X.shape[0], len(self.coefs_), 0.0
        for sl in gen_batches(n, batch_size):
            rows = idx[sl] if self.shuffle else sl
            J, cg, ig = self._loss_grad(self.coefs_, self.intercepts_, X[rows], Y[rows],
                                        None if sw is None else sw[rows])
            total += J * (sl.stop - sl.start)
            params = self._optimizer.update(self.coefs_ + self.intercepts_, cg + ig)
            self.coefs_, self.intercepts_ = params[:L], params[L:]
        self.n_iter_ += 1
        self.loss_ = total / n
        self.t_ += n
        self.loss_curve_.append(self.loss_)
        if self.verbose:
            print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")

    def _should_stop(self, val):
        """After an epoch: the no-improvement count (validation score or training loss),
        the optimizer's schedule; True when training stops."""
        self._update_no_improvement_count(*val)
        self._optimizer.iteration_ends(self.t_)
        if self._no_improvement_count > self.n_iter_no_change:
            what = "Validation score" if self.early_stopping else "Training loss"
            msg = (f"{what} did not improve more than tol={self.tol:f} for "
                   f"{self.n_iter_no_change} consecutive epochs.")
            if self._optimizer.trigger_stopping(msg, self.verbose):
                return True
            self._no_improvement_count = 0
        return False

    def _update_no_improvement_count(self, X_val, y_val, sw_val):
        if self.early_stopping:
            score = self._score(X_val, y_val, sw_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_coefs = [c.copy() for c in self.coefs_]
                self._best_intercepts = [b.copy() for b in self.intercepts_]
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            self.best_loss_ = min(self.best_loss_, self.loss_curve_[-1])

    def _score(self, X, y, sample_weight, metric):
        pred = self._predict(X, check_input=False)
        if np.issubdtype(pred.dtype, np.floating) and not np.isfinite(pred).all():
            return np.nan
        return float(metric(y, pred, sample_weight=sample_weight))

    def _forward(self, X, check_input=True):
        """a[L] of deltaprop's forward pass (m, n_outputs_)."""
        check_is_fitted(self, "coefs_")
        if check_input:
            X = validate_data(self, X, dtype=(np.float64, np.float32), reset=False)
            if self.dtype is not None:
                X = X.astype(self.dtype, copy=False)
        net = Network.from_layers([c.T for c in self.coefs_], self.intercepts_, self._acts())
        return np.asarray(backprop.predict(net, X))

    def _check_solver(self):
        if self.solver not in _STOCHASTIC:
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    def fit(self, X, y, sample_weight=None):
        """Fit the model to X (m, n_features) and y; ``sample_weight`` (m,) weights the mean loss.

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)


def _pack(coefs, intercepts):
    return np.hstack([p.ravel() for p in list(coefs) + list(intercepts)])


def _sample_weight(sample_weight, X):
    sw = np.asarray(sample_weight, dtype=X.dtype)
    if sw.ndim == 0:
        sw = np.full(X.shape[0], sw, dtype=X.dtype)
    if sw.shape != (X.shape[0],):
        raise ValueError(f"sample_weight.shape == {sw.shape}, expected {(X.shape[0],)}!")
    if not np.isfinite(sw).all():
        raise ValueError("sample_weight contains NaN or inf")
    if not np.any(sw):
        raise ValueError("Sample weights must contain at least one non-zero number.")
    return sw


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: scikit-learn's, with deltaprop's backward pass.

    Parameters
    ----------
    hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate,
    learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose, warm_start,
    momentum, nesterovs_momentum, early_stopping, validation_fraction, beta_1, beta_2,
    epsilon, n_iter_no_change, max_fun
        Those of ``sklearn.neural_network.MLPClassifier``, same defaults and meaning.
        ``activation`` may also be any hidden activation of :mod:`deltaprop.activations`.
    init : str or None, default None
        None: scikit-learn's initialisation (U(-r, r), r = sqrt(6 / (fan_in + fan_out)),
        2 instead of 6 for 'logistic', biases too), drawn from ``random_state``.  A name of
        :mod:`deltaprop.init` draws W[l] (biases zero) from a generator seeded by it.
    dtype : {None, "float32", "float64"}, default None
        None keeps X's dtype (float32 or float64), as scikit-learn does.

    Attributes
    ----------
    classes_, loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_,
    t_, coefs_, intercepts_, n_features_in_, feature_names_in_, n_iter_, n_layers_,
    n_outputs_, out_activation_
        scikit-learn's: ``coefs_[i]`` (n_i, n_{i+1}), ``intercepts_[i]`` (n_{i+1},).
    net_ : deltaprop.Network
        The same parameters in deltaprop's layout, W[l] = coefs_[l-1].T.
    """

    _y_checks: dict = {}

    def _out_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _stratify(self):
        return self.n_outputs_ == 1

    def _encode(self, y, incremental):
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same "
                                     "classes as in the previous call to fit. Previously got "
                                     f"{self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` "
                                 f"has {self.classes_}. 'y' has {classes}.")
        return self._label_binarizer.transform(y).astype(bool)

    def _decode_targets(self, Y):
        return self._label_binarizer.inverse_transform(Y)

    def _score(self, X, y, sample_weight=None):
        return super()._score(X, y, sample_weight, accuracy_score)

    def _predict(self, X, check_input=True):
        a = self._forward(X, check_input)
        return self._label_binarizer.inverse_transform(a.ravel() if self.n_outputs_ == 1 else a)

    def predict(self, X):
        """The class of each row of X (labels of ``classes_``)."""
        check_is_fitted(self)
        return self._predict(X)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y); ``classes`` (every label) is required on the first call."""
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict_proba(self, X):
        """Class probabilities (m, n_classes), in the order of ``classes_``."""
        check_is_fitted(self)
        a = self._forward(X)
        if self.n_outputs_ == 1:
            a = a.ravel()
        return np.vstack([1 - a, a]).T if a.ndim == 1 else a

    def predict_log_proba(self, X):
        """log of :meth:`predict_proba`."""
        p = self.predict_proba(X)
        return np.log(p, out=p)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: scikit-learn's, with deltaprop's backward pass.

    Parameters are those of :class:`MLPClassifier` plus ``loss`` ({"squared_error",
    "poisson"}, default "squared_error"): half the squared error with an identity output,
    or half the Poisson deviance with an exp output (y >= 0).  Attributes are those of
    :class:`MLPClassifier` without ``classes_``.
    """

    _y_checks = {"y_numeric": True}

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 init=None, dtype=None):
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate=learning_rate, learning_rate_init=learning_rate_init,
            power_t=power_t, max_iter=max_iter, shuffle=shuffle, random_state=random_state,
            tol=tol, verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun, init=init,
            dtype=dtype)
        self.loss = loss

    def _check_params(self):
        if self.loss not in ("squared_error", "poisson"):
            raise ValueError(f"loss must be 'squared_error' or 'poisson', got {self.loss!r}")
        super()._check_params()

    def _out_activation(self):
        return "exp" if self.loss == "poisson" else "identity"

    def _stratify(self):
        return False

    def _encode(self, y, incremental):
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError("loss='poisson' needs y >= 0")
        return y

    def _decode_targets(self, Y):
        return Y

    def _score(self, X, y, sample_weight=None):
        return super()._score(X, y, sample_weight, r2_score)

    def _predict(self, X, check_input=True):
        a = self._forward(X, check_input)
        return a.ravel() if a.shape[1] == 1 else a

    def predict(self, X):
        """Predictions (m,) for one output, else (m, n_outputs_)."""
        check_is_fitted(self)
        return self._predict(X)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch of minibatch updates over (X, y), continuing the optimiser's state."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)
