"""A study: draw an ensemble, record its backward passes, put the theory beside it.

:class:`Study` is the whole configuration (the options of ``deltaprop stats``);
:func:`run_study` returns a :class:`StudyResult` with the record, the predictions, the
comparison rows and the wall time.  :func:`study_network` does the same for a given network
(e.g. a trained model file), with the theory evaluated at the empirical per-layer weight
mean and variance of that network.  With ``gradient_independence`` both also back-propagate
the forward pass through an independent copy of the weights (:mod:`.independent`): the rows
gain ``row["gradient_independence"]`` and ``extra["gradient_independence"]`` holds its record.
With ``correlation = c0`` they also propagate pairs of inputs with correlation c0
(:mod:`.correlation`): the rows gain ``row["correlation"]`` (c^l measured and the C-map's) and
``extra["correlation"]`` holds the record, the prediction and the trainability rule.
With ``weight_grads`` the rows gain ``row["weight_grads"]``: the recorded weight-gradient
second moment beside its predictions (:mod:`.weight_grads`, ``extra["weight_grads"]``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .. import _backend, _checks
from .. import activations as _act
from .. import losses as _losses
from ..backprop import forward as _forward
from ..theory import conditional as _cond
from ..theory.forward import data_input_stats, gaussian_input_stats
from . import correlation as _corr
from . import ensemble as _ens
from . import independent as _gi
from . import weight_grads as _wgr
from .record import record as _record
from .report import compare, predict_moments, question_conditions

__all__ = ["Study", "StudyResult", "run_study", "study_network", "load_inputs", "layer_activations"]


@dataclass(frozen=True)
class Study:
    """Configuration of a study (defaults: the ``deltaprop stats`` default study).

    ``sizes[0]`` is replaced by the data's feature count and ``sizes[-1]`` by its class
    count when ``inputs`` names a data set and they are ``None``.

    ``forward_model`` is the forward model of the predictions (``report.FORWARDS``).  For
    ``"law"`` the exact prediction is a Monte Carlo integral over at least
    ``theory_samples`` draws of the forward law, continued (up to ``theory_max_samples``)
    until every layer's E[delta^2] has a relative integration error of at most
    ``theory_rtol``; the error reached is reported as the prediction's standard error.
    ``None`` sizes both by the network's units U = n_1 + ... + n_L (the work per draw):
    at least min(65536, 2^24 / U) and at most min(2^20, 2^26 / U) draws (not fewer than
    2048), so that small networks get a tight integral and deep wide ones a bounded cost.

    A negative or non-finite std or variance (``weight_std``, ``sigma_w2``, ``sigma_b2``,
    ``input_var``, ``target_var``) or a non-finite mean raises a ValueError naming it.
    """

    sizes: tuple = (None, 64, 64, 64, 64, None)
    activations: str | tuple = "tanh"
    output: str | None = None
    loss: str = "mse"
    init: str | None = None
    weight_mean: float | tuple = 0.0
    weight_std: float | tuple | None = None
    sigma_w2: float | tuple | None = None
    sigma_b2: float | tuple = 0.0
    bias_mean: float | tuple = 0.0
    inputs: str = "digits"
    input_mean: float = 0.0
    input_var: float = 1.0
    target_mean: float = 0.0
    target_var: float = 1.0
    m: int | None = None
    K: int = 16
    K_chunk: int | None = None
    batch_size: int | None = 1024
    seed: int = 0
    forward_model: str = "law"
    theory_samples: int | None = None
    theory_rtol: float = 0.005
    theory_max_samples: int | None = None
    bins: int | None = 64
    dtype: str = "float64"
    backend: str | None = None
    device: str | None = None
    gradient_independence: bool = False
    correlation: float | None = None
    correlation_pairs: int = 256
    weight_grads: bool = False

    def __post_init__(self):
        for name in ("weight_std", "sigma_w2", "sigma_b2", "input_var", "target_var"):
            _checks.check_nonnegative(name, getattr(self, name))
        for name in ("weight_mean", "bias_mean", "input_mean", "target_mean"):
            _checks.check_finite(name, getattr(self, name))


@dataclass(frozen=True, eq=False)
class StudyResult:
    study: Study
    record: object
    predictions: dict
    rows: list
    seconds: float
    net: object = None
    extra: dict = field(default_factory=dict)

    def _repr_html_(self):
        from .._display import study_html

        return study_html(self)

    def to_pandas(self):
        """One row per (layer, theory, moment), the columns of ``deltaprop stats --csv``
        (needs pandas)."""
        from .._display import study_frame

        return study_frame(self)


def load_inputs(study: Study, n_out=None, standardization=None):
    """(x, y, y_mean, y_second, n_0, n_out) for the study's inputs.

    Gaussian inputs: x ~ N(input_mean, input_var) i.i.d., fresh for each of the K networks
    (shape (K, m, n_0): the average is over weights and inputs), targets y ~ N(target_mean,
    target_var) independent of x (so the E[delta] question's E[y] is target_mean).  A data set: the
    standardised features (with ``standardization``, a model file's ``{"mean", "scale"}``,
    if given), one-hot targets (classification) or the targets (regression); E[y] and
    E[y^2] measured.
    """
    loss = _losses.get(study.loss)
    if study.m is not None and study.m < 1:
        raise ValueError(f"m (samples per network) must be >= 1, got {study.m}")
    if study.inputs == "gaussian":
        n0, nL = study.sizes[0], study.sizes[-1] if n_out is None else n_out
        if n0 is None or nL is None:
            raise ValueError("Gaussian inputs need explicit input and output sizes")
        m, K = study.m or 256, study.K
        x = _ens.gaussian_inputs(m, n0, study.input_mean, study.input_var, study.seed + 1, K)
        shape = (m,) if K is None else (K, m)
        rng = np.random.default_rng(study.seed + 2)
        if loss.targets == "distribution":
            return x, rng.integers(0, nL, shape), 1 / nL, 1 / nL, n0, nL
        if loss.targets == "probability":
            return x, rng.uniform(size=(*shape, nL)), 0.5, 1 / 3, n0, nL
        y = _ens.gaussian_targets(m, nL, study.target_mean, study.target_var, study.seed + 2, K)
        return x, y, study.target_mean, study.target_var + study.target_mean**2, n0, nL
    from ..app import data as _data

    ds = _data.load(study.inputs)
    x = ds.x
    if standardization:  # a model file's own standardisation
        x = _data.Standardizer.from_dict(standardization).transform(x)
    else:
        scale = x.std(axis=0)
        x = (x - x.mean(axis=0)) / np.where(scale > 0, scale, 1.0)
    if study.m is not None:
        x = x[: study.m]
    rows = np.arange(x.shape[0])
    if ds.task == "classification":
        labels = np.asarray(ds.y)[rows]
        nL = int(np.asarray(ds.y).max()) + 1  # the data set's classes, not the first m rows
        onehot = _checks.one_hot(labels, nL)
        y = labels if loss.targets == "distribution" else onehot
        y_mean = float(np.mean(onehot))
        return x, y, y_mean, y_mean, x.shape[1], nL
    y = np.asarray(ds.y, float)[rows]
    return x, y, float(y.mean()), float((y * y).mean()), x.shape[1], y.shape[1]


def run_study(study: Study = Study(), progress=None) -> StudyResult:
    """Draw K networks from the study's prior, record, predict and compare.

    ``progress(stage, done, total)``, if given, is called with ``"record"`` after every
    batch (``done`` of ``total`` network-batches) and with ``"theory"`` before the
    predictions (the command line's progress bar)."""
    t0 = time.perf_counter()
    if study.K < 1 or (study.K_chunk or 0) < 0:
        raise ValueError(f"K must be >= 1 and K_chunk >= 0, got K = {study.K}, "
                         f"K_chunk = {study.K_chunk}")
    x, y, y_mean, y_second, n0, nL = load_inputs(study)
    sizes = _sizes(study, n0, nL)
    loss = _losses.get(study.loss)
    output = study.output or loss.output or "identity"
    acts = layer_activations(study.activations, output, len(sizes) - 1)
    pr = _ens.prior(sizes, init=study.init, weight_mean=study.weight_mean,
                    weight_std=study.weight_std, sigma_w2=study.sigma_w2,
                    sigma_b2=study.sigma_b2, bias_mean=study.bias_mean)
    net, rec, gi, corr, parts = _record_chunks(study, pr, acts, loss, x, y, n0, progress)
    if progress is not None:
        progress("theory", 0, 1)
    inp = gaussian_input_stats(n0, study.input_mean, study.input_var) \
        if study.inputs == "gaussian" else data_input_stats(x.reshape(-1, n0))
    law = _law(study, pr, acts, loss, x, y, n0, nL, y_mean, y_second, parts)
    preds = predict_moments(pr, acts, loss, inp, y_mean, y_second, record=rec,
                            forward_model=study.forward_model, law=law)
    rows = compare(rec, preds, forward_model=study.forward_model) if gi is None else \
        _gi.add_rows(compare(rec, preds, forward_model=study.forward_model), rec, gi)
    cond = question_conditions(pr, acts, inp, record=rec, forward_model=study.forward_model,
                               law=law) \
        if _losses.get(loss).name == "mse" else None
    extra = {"prior": pr, "sizes": sizes, "activations": [a.name for a in acts],
             "question_conditions": cond, _gi.KEY: gi}
    if study.weight_grads:
        extra[_wgr.KEY] = _wgr.predict_weight_grads(pr, acts, inp, preds, law)
        rows = _wgr.add_rows(rows, rec, extra[_wgr.KEY])
    if corr is not None:
        rows, extra[_corr.KEY] = _correlation(rows, corr, pr, acts, study.correlation,
                                              study.input_var)
    return StudyResult(study, rec, preds, rows, time.perf_counter() - t0, net, extra)


def _sizes(study, n0, nL):
    """The study's sizes n_0..n_L, the data's n_0 and n_L where it leaves them None."""
    sizes = list(study.sizes)
    sizes[0] = sizes[0] or n0
    sizes[-1] = sizes[-1] or nL
    if sizes[0] != n0:
        raise ValueError(f"the inputs have {n0} features but sizes[0] is {sizes[0]}")
    if any(s is None or s < 1 for s in sizes):
        raise ValueError(f"bad sizes {sizes}")
    return sizes


def _record_chunks(study, pr, acts, loss, x, y, n0, progress):
    """Draw and record the K networks, K_chunk at a time: (the last chunk's network stack,
    the record, the gradient-independence record, the correlation record, the (network,
    inputs) pairs of the measured forward model)."""
    chunk = min(study.K_chunk or study.K, study.K)
    parts = []  # (network stack, inputs) for the exact prediction on measured forward passes
    rec = gi = corr = None
    for i, k0 in enumerate(range(0, study.K, chunk)):
        k = min(chunk, study.K - k0)
        seed = study.seed if chunk == study.K else np.random.default_rng([study.seed, i])
        net = _ens.draw(pr, acts, K=k, seed=seed, dtype=study.dtype, backend=study.backend,
                       device=study.device)
        xx, yy = (x, y) if x.ndim == 2 else (x[k0:k0 + k], y[k0:k0 + k])
        if study.backend not in (None, "numpy"):
            xx = _backend.asarray(xx, net.xp, like=net.W[1])
            yy = _backend.asarray(yy, net.xp, like=net.W[1]) if y.dtype.kind == "f" else \
                _backend.asarray(yy, net.xp, device=_backend.device(net.W[1]))
        part = _record(net, xx, yy, loss, batch_size=study.batch_size, bins=study.bins) \
            if progress is None else _record(net, _ticks(xx, yy, study, progress, k0, k), None,
                                             loss, bins=study.bins)
        rec = part if rec is None else rec.concat(part)
        if study.forward_model == "measured":
            parts.append((net, xx))
        if study.gradient_independence:  # W~: a second draw from the prior, its own seed
            copy = _ens.draw(pr, acts, K=k, seed=np.random.default_rng([study.seed, i, 1]),
                             dtype=study.dtype, backend=study.backend, device=study.device)
            part = _gi.record_independent(net, xx, yy, loss, copy,
                                          batch_size=study.batch_size)
            gi = part if gi is None else gi.concat(part)
        if study.correlation is not None:  # fresh Gaussian pairs, their own seed
            xa, xb = _corr.correlated_inputs(study.correlation_pairs, n0, study.correlation,
                                             study.input_var, [study.seed, i, 2], k)
            part = _corr.record_correlation(net, xa, xb)
            corr = part if corr is None else corr.concat(part)
    return net, rec, gi, corr, parts


def _ticks(x, y, study, progress, k0, k):
    """record's batches of k networks, reporting k0 + k of K networks per batch done."""
    from .record import iter_batches

    m = x.shape[-2]
    per = -(-m // study.batch_size) if study.batch_size else 1
    for i, batch in enumerate(iter_batches(x, y, study.batch_size)):
        yield batch
        progress("record", k0 * per + k * (i + 1), study.K * per)


def _correlation(rows, corr, prior, acts, c0, var):
    """The rows with the correlation map, and extra["correlation"]: the record, the
    prediction (or None and ``note``), the trainability ``rule`` (or a string: why not)."""
    pred, note = _corr.predict_correlation(prior, acts, c0, var)
    rule, why = _corr.trainability(prior, acts)
    extra = {"record": corr, "predicted": pred, "note": note, "c0": c0,
             "rule": rule if rule is not None else why}
    return _corr.add_rows(rows, corr, pred, rule), extra


def study_network(net, x, y, loss, *, y_mean=None, y_second=None, batch_size=1024, bins=64,
                  forward_model="law", gradient_independence=False, seed=0,
                  theory_samples=None, correlation=None, correlation_pairs=256,
                  input_var=1.0, weight_grads=False) -> StudyResult:
    """Record a given network (e.g. a trained model) and compare with the theory evaluated
    at its empirical per-layer weight statistics (:func:`ensemble.empirical_prior`).

    ``gradient_independence``: also back-propagate through :func:`independent.permuted_copy`
    (each W[l]'s entries permuted with ``seed``: the same empirical distribution, the
    dependence on the data and the forward pass broken).  ``correlation``: also pairs of
    N(0, ``input_var``) inputs with that correlation (:mod:`.correlation`).  ``weight_grads``:
    the weight-gradient predictions beside ``dW2`` (:mod:`.weight_grads`)."""
    t0 = time.perf_counter()
    rec = _record(net, x, y, loss, batch_size=batch_size, bins=bins)
    gi = _gi.record_independent(net, x, y, loss, _gi.permuted_copy(net, seed),
                                batch_size=batch_size) if gradient_independence else None
    pr = _ens.empirical_prior(net)
    y_np = np.asarray(_backend.to_numpy(y), float)
    if _losses.get(loss).targets == "distribution" and y_np.ndim == 1:
        y_np = _checks.one_hot(y_np.astype(int), net.sizes[-1])
    y_mean = float(y_np.mean()) if y_mean is None else y_mean
    y_second = float((y_np**2).mean()) if y_second is None else y_second
    acts = net.activation_names()
    x_np = _backend.to_numpy(x)
    law = _law(Study(sizes=tuple(net.sizes), inputs="data", forward_model=forward_model, seed=seed,
                     theory_samples=theory_samples), pr, acts, loss, x_np, y,
               net.sizes[0], net.sizes[-1], y_mean, y_second, [(net, x)])
    preds = predict_moments(pr, acts, loss, data_input_stats(x_np), y_mean, y_second,
                            record=rec, forward_model=forward_model, law=law)
    rows = compare(rec, preds, forward_model=forward_model) if gi is None else \
        _gi.add_rows(compare(rec, preds, forward_model=forward_model), rec, gi)
    extra = {"prior": pr, "sizes": net.sizes, "activations": acts, _gi.KEY: gi}
    if weight_grads:
        extra[_wgr.KEY] = _wgr.predict_weight_grads(pr, acts, data_input_stats(x_np), preds, law)
        rows = _wgr.add_rows(rows, rec, extra[_wgr.KEY])
    if correlation is not None:
        xa, xb = _corr.correlated_inputs(correlation_pairs, net.sizes[0], correlation,
                                         input_var, [seed, 2], net.K)
        rows, extra[_corr.KEY] = _correlation(rows, _corr.record_correlation(net, xa, xb), pr,
                                              acts, correlation, input_var)
    return StudyResult(None, rec, preds, rows, time.perf_counter() - t0, net, extra)


def _law(study, prior, acts, loss, x, y, n0, nL, y_mean, y_second, parts):
    """theory.conditional.average over the study's forward model (None for "gaussian").

    ``law``: draws from the exact per-sample law -- Gaussian inputs with targets integrated
    analytically (their mean and covariance), or rows of the data set with their own
    targets.  ``measured``: the recorded networks' own forward passes (``parts``), one
    group per network for the standard error.
    """
    acts = [_act.get(f) for f in acts]
    if study.forward_model == "gaussian" or not all(f.elementwise for f in acts[:-1]):
        return None
    if study.inputs == "gaussian":
        ybar, cov = _cond.target_law(loss, nL, y_mean, y_second)
        X = Y = None
    else:
        X, Y, cov = x.reshape(-1, n0), _targets(y, loss, nL).reshape(-1, nL), 0.0
    if study.forward_model == "law":
        def draw(rng, n):
            if X is None:
                return (study.input_mean + np.sqrt(study.input_var)
                        * rng.standard_normal((n, n0)), ybar, cov)
            i = rng.integers(0, len(X), n)
            return X[i], Y[i], 0.0
        lo, hi, chunk = law_budget(prior.sizes, study.theory_samples, study.theory_max_samples)
        batches = _cond.law_batches(prior, acts, draw, seed=study.seed + 3, samples=hi,
                                    chunk=chunk)
        return _cond.average(prior, acts, loss, batches, rtol=study.theory_rtol,
                             min_groups=lo)
    batches = _measured_batches(parts, None if X is None else Y, ybar if X is None else None,
                                cov)
    return _cond.average(prior, acts, loss, batches)


def law_budget(sizes, samples=None, max_samples=None):
    """(least, most, chunk) draws of the forward law for a network of these sizes.

    With U = n_1 + ... + n_L units: least = min(65536, 2^24 / U), most = min(2^20, 2^26 / U)
    (both at least 2048), chunk = min(8192, 2^22 / U) draws per batch (memory); explicit
    ``samples`` / ``max_samples`` replace least / most.
    """
    units = max(sum(sizes[1:]), 1)
    lo = samples if samples is not None else max(min(65536, (1 << 24) // units), 2048)
    hi = max_samples if max_samples is not None else max(min(1 << 20, (1 << 26) // units), lo)
    if lo < 1 or hi < lo:
        raise ValueError(f"theory samples: need 1 <= least <= most, got {lo} and {hi}")
    return lo, hi, max(min(8192, (1 << 22) // units), 64)


def _measured_batches(parts, Y, ybar, cov):
    """(z, a, y, y_cov, groups) of each recorded stack's forward pass, on the host."""
    for net, xx in parts:
        tr = _forward(net, xx)
        z = [None] + [_backend.to_numpy(v) for v in tr.z[1:]]
        a = [_backend.to_numpy(v) for v in tr.a]
        k = z[1].shape[0] if z[1].ndim == 3 else 1
        if z[1].ndim == 3 and a[0].ndim == 2:  # data rows shared by the stack: a[0] per net
            a[0] = np.broadcast_to(a[0], (k, *a[0].shape))
        if Y is None:
            y = ybar
        else:  # the data's own targets, the same rows for every network of the stack
            y = np.broadcast_to(Y, (k, *Y.shape)) if z[1].ndim == 3 else Y
        yield z, a, y, cov, k if k > 1 else z[1].shape[0]


def _targets(y, loss, nL):
    """Targets as rows of n_L values (class labels one-hot encoded), on the host."""
    y = np.asarray(_backend.to_numpy(y), float)
    if _losses.get(loss).targets == "distribution" and y.shape[-1:] != (nL,):
        y = _checks.one_hot(y.astype(int), nL)
    return y


def layer_activations(activations, output, L) -> list:
    """The L activation rows of a study: ``activations`` (names, a comma-separated string or
    a sequence) gives one name for every hidden layer, one per hidden layer (L - 1) or one
    per layer (L); ``output`` is the output layer's name unless all L are given."""
    if isinstance(activations, str):
        names = [a.strip() for a in activations.split(",")]
    else:
        names = list(activations)
    if len(names) == 1:
        return [_act.get(names[0])] * (L - 1) + [_act.get(output)]
    if len(names) == L - 1:
        return [_act.get(a) for a in names] + [_act.get(output)]
    if len(names) == L:
        return [_act.get(a) for a in names]
    raise ValueError(f"activations: give 1, L-1 = {L - 1} or L = {L} names, got {len(names)}")
