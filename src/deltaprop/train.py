"""The training loop: minibatches, an optimiser, a schedule, callbacks, checkpoints.

:func:`fit` owns all the state of a run (network, optimiser state, random generator,
history) and passes it around explicitly; nothing global changes.  Each step is the
derivation's loop, visible::

    trace, grads = backprop.gradients(net, x[batch], y[batch], loss, l2)   # forward, backward
    net, state = optimizer.update(net, grads, state, lr=schedule(epoch))     # W[l] -= eta dW[l]

and a callback's ``on_step(info)`` sees ``info.trace`` (``z``, ``a``) and ``info.grads``
(``delta``, ``dW``, ``db``, ``J``) of that step, before the update.

The fused step: for plain gradient descent (``optimizer="gd"``) with no ``on_step``
callback, nobody looks at the trace or the gradients, so the two lines become one call,
``net, J = backprop.train_step(net, xb, yb, loss, eta, l2, workspace=ws, donate=...)``:
it folds -eta/m into delta before the weight-gradient product and, on NumPy, reuses one
workspace of scratch buffers for the whole run (1.1-2x faster per step).  The
rule is the same, W[l] <- W[l] - eta dW[l], but the rounding differs: the old loop rounds
dW = delta^T a / m, then eta dW; the fused step rounds (-eta/m) delta, then its product
with a (and J of softmax cross-entropy is fused too).  The weights therefore agree with the
two-line loop to a few ulp per step, not bit for bit (``tests/test_train.py`` checks 1e-13
after a few epochs); ``fused=False`` keeps the two-line loop always.  A run is still
deterministic and a resumed run still equals an uninterrupted one bit for bit (both take
the same path).  Donation (overwriting the network passed in) is used only for networks
made by the previous step of the same epoch, never for the epoch's starting network, which
the loop keeps as the last good network and which may have been handed to a callback,
kept as early stopping's best network or be the caller's own.

Shuffling and resumption: one ``numpy.random.Generator(seed)`` draws each epoch's
permutation; its ``bit_generator.state`` goes into the checkpoint with the weights and the
optimiser state after every epoch, so a run resumed from a checkpoint replays exactly the
draws, and ends with the same weights, bit for bit, as a run that was never interrupted.

Scaling: ``history`` reports the data loss J (the batch mean of the per-sample loss, L2
penalty excluded) on the whole training set after each epoch, and on the validation set.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import _backend, _checks, backprop, optim
from . import data as _data
from . import losses as _losses
from .network import Network

__all__ = ["History", "FitResult", "StepInfo", "EpochInfo", "fit", "check_options", "evaluate",
           "batches"]


@dataclass
class History:
    """One dict per finished epoch: ``epoch`` (1-based), ``loss``, ``accuracy`` (classification),
    ``val_loss``, ``val_accuracy`` (with validation data), ``lr``, ``time`` (seconds)."""

    epochs: list = field(default_factory=list)

    def as_rows(self) -> list[dict]:
        """The epochs as a list of flat dicts (copies), ready for CSV or a DataFrame."""
        return [dict(r) for r in self.epochs]

    def column(self, key) -> list:
        """One metric over the epochs (``None`` where an epoch lacks it)."""
        return [r.get(key) for r in self.epochs]

    def summary(self) -> dict:
        """Number of epochs, the last row and the best validation (or training) loss."""
        if not self.epochs:
            return {"epochs": 0}
        key = "val_loss" if self.epochs[-1].get("val_loss") is not None else "loss"
        best = min(self.epochs, key=lambda r: r[key])
        return {"epochs": len(self.epochs), "last": dict(self.epochs[-1]),
                "best_epoch": best["epoch"], f"best_{key}": best[key],
                "time": sum(r.get("time", 0.0) for r in self.epochs)}

    def plot(self):
        """Learning curves (loss; accuracy when present) as a ``matplotlib.figure.Figure``."""
        from .plot import learning_curves

        return learning_curves(self)

    def __len__(self):
        return len(self.epochs)

    def _repr_html_(self):
        from ._display import history_html

        return history_html(self)

    def to_pandas(self):
        """One row per epoch, indexed by ``epoch`` (needs pandas)."""
        from ._display import history_frame

        return history_frame(self)


@dataclass
class FitResult:
    """What :func:`fit` returns: the trained network, its history and why it stopped.

    ``stopped`` is ``None`` when all epochs ran, else a sentence: early stopping, a callback,
    or a loss that became NaN/inf (then ``net`` is the last good network).
    """

    net: Network
    history: History
    stopped: str | None = None
    opt_state: dict | None = None

    def _repr_html_(self):
        from ._display import fit_html

        return fit_html(self)


@dataclass(frozen=True)
class StepInfo:
    """Passed to ``on_step``: the derivation's quantities of one step, before the update."""

    net: Network
    trace: backprop.Trace
    grads: backprop.Gradients
    epoch: int  # 1-based
    step: int  # 0-based within the epoch
    iteration: int  # 0-based over the run
    batch: np.ndarray  # sample indices of this batch
    lr: float
    J: float


@dataclass(frozen=True)
class EpochInfo:
    """Passed to ``on_epoch`` after each epoch (a callback returning ``True`` stops the run)."""

    epoch: int
    row: dict
    net: Network
    history: History


def batches(m: int, batch_size, rng: np.random.Generator | None):
    """Index arrays of one epoch's batches.

    ``batch_size`` 1 is online learning, ``None``, ``0`` or ``"full"`` is the full batch
    (in order, no random draw); otherwise the samples are permuted by ``rng`` (``None``:
    kept in order) and cut into batches of ``batch_size`` (the last one may be smaller).
    This is :func:`deltaprop.data.batches` after fit's check of ``batch_size``.
    """
    return list(_data.batches(m, _batch_size(batch_size, m), rng))


def _batch_size(batch_size, m):
    if batch_size is None or batch_size == 0 or batch_size == "full":
        return m
    if isinstance(batch_size, str):
        try:
            batch_size = int(batch_size)
        except ValueError:
            raise ValueError(f"batch_size must be a positive integer, 0 or 'full', "
                             f"got {batch_size!r}") from None
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 0:
        raise ValueError(f"batch_size must be a positive integer, 0 or 'full', got {batch_size!r}")
    return min(int(batch_size), m) if batch_size else m


def _prepare(net, loss, x, y, name):
    """x, y checked and moved to the network's namespace (y one-hot for class labels)."""
    xp = net.xp
    x, y = _on_network(net, x), _on_network(net, y, labels=True)
    try:
        x = _checks.check_x(net, x, xp)
        m = x.shape[0]
        y = _checks.check_y(net, loss, y, m, xp)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    return x, y


def _on_network(net, v, labels=False):
    """Data ``v`` (list, NumPy or any supported library's array: a torch tensor on a GPU or
    with ``requires_grad`` included) as an array of the network's library, on its device, in
    its dtype; integer class labels stay integers.  Copied through the host once per call."""
    v = np.asarray(_backend.to_numpy(v))
    if labels and v.dtype.kind in "iu":  # class labels stay integers (one-hot later)
        return _backend.asarray(v, net.xp, device=_backend.device(net.W[1]))
    return _backend.asarray(v, net.xp, like=net.W[1])


def _is_classification(loss):
    return loss.targets in ("distribution", "probability")


def _accuracy(loss, a, Y, xp):
    if loss.targets == "distribution":  # softmax: argmax against the (one-hot) target
        return float(xp.mean(xp.astype(xp.argmax(a, axis=-1) == xp.argmax(Y, axis=-1),
                                       a.dtype)))
    return float(xp.mean(xp.astype((a > 0.5) == (Y > 0.5), a.dtype)))  # sigmoid: threshold


def evaluate(net: Network, x, y, loss) -> dict:
    """Loss J (no L2 term) and, for classification losses, accuracy on (x, y).

    Returns ``{"loss": float, "accuracy": float}`` (no ``accuracy`` for MSE).
    """
    loss = _losses.get(loss)
    _single(net, "evaluate")
    x, Y = _prepare(net, loss, x, y, "data")
    return _evaluate(net, x, Y, loss)


def _single(net, what):
    if net.K is not None:
        raise ValueError(f"{what} takes a single network; take the members of a stack of "
                         f"K = {net.K} one by one (net[k])")


def _evaluate(net, x, Y, loss):
    trace = backprop.forward(net, x, check=False)
    out = {"loss": float(backprop.loss_value(net, trace, Y, loss, check=False))}
    if _is_classification(loss):
        out["accuracy"] = _accuracy(loss, trace.a[-1], Y, net.xp)
    return out


def _callbacks(callbacks):
    steps, epochs = [], []
    for cb in callbacks or ():
        on_step, on_epoch = getattr(cb, "on_step", None), getattr(cb, "on_epoch", None)
        if on_step is None and on_epoch is None:
            if not callable(cb):
                raise TypeError(f"a callback needs on_step/on_epoch or must be callable, got "
                                f"{type(cb).__name__}")
            on_epoch = cb
        if on_step is not None:
            steps.append(on_step)
        if on_epoch is not None:
            epochs.append(on_epoch)
    return steps, epochs


def _progress_bar(progress, epochs, start):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=epochs, initial=start, unit="epoch", leave=True, dynamic_ncols=True,
                disable=None if progress == "auto" else False)


def check_options(*, optimizer="gd", learning_rate=0.1, schedule="constant", batch_size=32,
                  epochs=10, l2=0.0, early_stopping=None, optimizer_options=None,
                  schedule_options=None):
    """Check :func:`fit`'s training options (same names and defaults) without training.

    Returns ``(optimizer, schedule)``: the :class:`~deltaprop.optim.Optimizer` and the
    function epoch -> learning rate that :func:`fit` uses.  Raises ``ValueError`` naming the
    first bad option (a caller can check a run's settings before writing anything).
    """
    if isinstance(epochs, bool) or int(epochs) != epochs or epochs < 0:
        raise ValueError(f"epochs must be an integer >= 0, got {epochs!r}")
    _batch_size(batch_size, 1)  # raises on a bad batch size
    if not (isinstance(l2, int | float) and math.isfinite(l2) and l2 >= 0):
        raise ValueError(f"l2 must be a finite number >= 0, got {l2!r}")
    if early_stopping is not None and (int(early_stopping) != early_stopping or
                                       early_stopping < 1):
        raise ValueError(f"early_stopping (patience) must be an integer >= 1, got "
                         f"{early_stopping!r}")
    opt = optim.get(optimizer, learning_rate, **(optimizer_options or {}))
    sched = optim.schedule(schedule, opt.hyper.get("learning_rate", learning_rate),
                           epochs=max(int(epochs), 1), **(schedule_options or {}))
    return opt, sched


def fit(net: Network, x, y, loss, *, optimizer="gd", learning_rate=0.1, schedule="constant",
        batch_size=32, epochs=10, l2=0.0, seed=0, x_val=None, y_val=None, early_stopping=None,
        callbacks=(), progress=False, checkpoint=None, resume=False, optimizer_options=None,
        schedule_options=None, checkpoint_meta=None, fused=True) -> FitResult:
    """Train ``net`` on (x, y) by minibatch gradient descent (or momentum, Nesterov, Adam).

    Parameters
    ----------
    net : Network
        Starting network (not modified; a single network, any backend).
    x : array (m, n_0)
    y : array (m, n_L), or integer class labels (m,) for softmax cross-entropy
    loss : str or Loss
    optimizer : str or optim.Optimizer
        ``"gd"`` (alias ``"sgd"``), ``"momentum"``, ``"nesterov"``, ``"adam"``.
    learning_rate : float
        eta (the schedule's value at epoch 0).
    schedule : str or callable
        ``"constant"``, ``"step"``, ``"exponential"``, ``"cosine"``, ``"inverse-time"``, or
        a function epoch (0-based) -> learning rate.
    batch_size : int, 0, None or "full"
        1 = online learning, 0/None/"full" = full batch, else minibatches of that size
        drawn by a shuffle of ``numpy.random.default_rng(seed)`` each epoch.
    epochs : int
    l2 : float
        lambda of the penalty (lambda / 2m) sum ||W||^2 in the gradient.
    x_val, y_val : arrays, optional
        Validation data, evaluated after every epoch.
    early_stopping : int, optional
        Patience: stop when the validation loss (training loss without validation data) has
        not improved for this many epochs, and return the best network.
    callbacks : iterable
        Objects with ``on_step(StepInfo)`` and/or ``on_epoch(EpochInfo)``, or plain callables
        (called per epoch).  ``on_epoch`` returning ``True`` stops the run.
    progress : bool or "auto"
        Show a tqdm bar (``"auto"``: only on a terminal).
    checkpoint : path, optional
        Checkpoint file written atomically after every epoch.
    resume : bool
        Continue from ``checkpoint`` if it exists (else start fresh).
    optimizer_options, schedule_options : dict, optional
        Hyper-parameters (``momentum``, ``beta1``, ...; ``step_size``, ``gamma``, ...).
    checkpoint_meta : dict, optional
        Extra JSON-able metadata stored in the checkpoint (e.g. the run configuration).
    fused : bool
        For plain gradient descent without ``on_step`` callbacks, take each step with
        :func:`deltaprop.backprop.train_step` (default; same rule, faster, rounds
        differently from ``gradients`` + ``step`` by a few ulp per step).  ``False``: always
        ``gradients`` then ``optimizer.update``.

    Returns
    -------
    FitResult
        ``net``, ``history`` and ``stopped`` (``None`` or the reason).  A loss that becomes
        NaN or inf stops the run: ``net`` is the last good network and the checkpoint of the
        last good epoch is left untouched.
    """
    from . import io

    loss = _losses.get(loss)
    _losses.check_pair(loss, net.activations[-1])
    _single(net, "fit")
    opt, sched = check_options(optimizer=optimizer, learning_rate=learning_rate,
                               schedule=schedule, batch_size=batch_size, epochs=epochs, l2=l2,
                               early_stopping=early_stopping,
                               optimizer_options=optimizer_options,
                               schedule_options=schedule_options)
    epochs = int(epochs)
    if (x_val is None) != (y_val is None):
        raise ValueError("give both x_val and y_val, or neither")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path")
    X, Y = _prepare(net, loss, x, y, "training data")
    m = X.shape[0]
    val = None if x_val is None else _prepare(net, loss, x_val, y_val, "validation data")
    xp = net.xp
    steps_cb, epochs_cb = _callbacks(callbacks)
    fused = bool(fused) and not steps_cb and optim.is_plain_gd(opt)
    ws = backprop.Workspace() if fused else None

    rng = np.random.default_rng(seed)
    state = opt.init(net)
    history, start, best, best_loss, bad_epochs, stopped = History(), 0, None, math.inf, 0, None
    if resume and Path(checkpoint).exists():
        ck = io.load_checkpoint(checkpoint)
        if ck["net"].sizes != net.sizes or \
                ck["net"].activation_names() != net.activation_names():
            raise ValueError(f"{checkpoint}: checkpoint network {ck['net']} does not match {net}")
        fit_state = ck["extra"].get("fit", {})
        if fit_state.get("optimizer") != opt.name:
            raise ValueError(f"{checkpoint}: checkpoint was written by optimizer "
                             f"{fit_state.get('optimizer')!r}, not {opt.name!r}")
        dev = None if _backend.is_numpy(xp) else _backend.device(net.W[1])
        here = dict(device=dev, dtype=net.dtype)  # resume on the starting network's device
        net = ck["net"].to(xp, **here)
        state = {k: (_backend.asarray(v, xp, like=net.W[1]) if isinstance(v, np.ndarray) else v)
                 for k, v in ck["opt_state"].items()}
        rng.bit_generator.state = ck["rng_state"]
        history = History(list(ck["history"]))
        start = ck["epoch"]
        best = None if ck["best"] is None else ck["best"].to(xp, **here)
        best_loss = fit_state.get("best_loss", math.inf)
        best_loss = math.inf if best_loss is None else best_loss
        bad_epochs = fit_state.get("bad_epochs", 0)
        stopped = fit_state.get("stopped")
        if stopped is not None:
            return FitResult(best if best is not None and stopped.startswith("early") else net,
                             history, stopped, state)

    def save(epoch, stop_reason):
        if checkpoint is None:
            return
        fit_state = {"optimizer": opt.name, "hyper": opt.hyper, "best_loss": best_loss,
                     "bad_epochs": bad_epochs, "stopped": stop_reason}
        io.save_checkpoint(checkpoint, net, state, rng_state=rng.bit_generator.state,
                           epoch=epoch, history=history.epochs, best=best,
                           extra={**(checkpoint_meta or {}), "fit": fit_state})

    bar = _progress_bar(progress, epochs, start)
    iteration = start * math.ceil(m / _batch_size(batch_size, m))
    try:
        for e in range(start, epochs):
            lr = float(sched(e))
            if not (math.isfinite(lr) and lr > 0):
                raise ValueError(f"the schedule gave learning rate {lr} at epoch {e + 1}")
            t0 = time.perf_counter()
            good = net
            for s, idx in enumerate(batches(m, batch_size, rng)):
                if len(idx) == m:
                    xb, yb = X, Y
                else:
                    ix = _backend.asarray(idx, xp, like=None, device=_backend.device(X))
                    xb, yb = xp.take(X, ix, axis=0), xp.take(Y, ix, axis=0)
                if fused:  # never donate the epoch's starting network (it is `good`)
                    new, J = backprop.train_step(net, xb, yb, loss, lr, l2, check=False,
                                                 workspace=ws, donate=net is not good)
                    J = float(J)
                else:
                    trace, grads = backprop.gradients(net, xb, yb, loss, l2, check=False)
                    J = float(grads.J)
                if not math.isfinite(J):
                    stopped = (f"loss became {J} at epoch {e + 1}, step {s + 1}: training "
                               f"stopped; kept the last good network and checkpoint (epoch {e})")
                    net = good
                    break
                if fused:  # gd's update and state, as optim.gd does them
                    net, state = new, {"t": state["t"] + 1}
                else:
                    for cb in steps_cb:
                        cb(StepInfo(net, trace, grads, e + 1, s, iteration, idx, lr, J))
                    net, state = opt.update(net, grads, state, lr=lr)
                iteration += 1
            if stopped is not None:
                break
            row = {"epoch": e + 1, **_evaluate(net, X, Y, loss)}
            if val is not None:
                row.update({f"val_{k}": v for k, v in _evaluate(net, *val, loss).items()})
            if not all(math.isfinite(v) for v in row.values()):
                stopped = (f"loss became non-finite after epoch {e + 1}: training stopped; kept "
                           f"the last good network and checkpoint (epoch {e})")
                net = good
                break
            row.update(lr=lr, time=time.perf_counter() - t0)
            history.epochs.append(row)
            monitor = row.get("val_loss", row["loss"])
            if early_stopping is not None:
                if monitor < best_loss:
                    best, best_loss, bad_epochs = net, monitor, 0
                else:
                    bad_epochs += 1
                    if bad_epochs >= early_stopping:
                        key = "val_loss" if val is not None else "loss"
                        stopped = (f"early stopping: {key} did not improve for {bad_epochs} "
                                   f"epochs; returning the best network (epoch "
                                   f"{e + 1 - bad_epochs})")
            info = EpochInfo(e + 1, row, net, history)
            if any([cb(info) is True for cb in epochs_cb]) and stopped is None:
                stopped = f"stopped by a callback after epoch {e + 1}"
            save(e + 1, stopped)
            if bar is not None:
                bar.set_postfix({k: f"{v:.4g}" for k, v in row.items()
                                 if k in ("loss", "accuracy", "val_loss", "val_accuracy")},
                                refresh=False)
                bar.update(1)
            if stopped is not None:
                break
    finally:
        if bar is not None:
            bar.close()
    if stopped is not None and stopped.startswith("early") and best is not None:
        net = best
    return FitResult(net, history, stopped, state)
