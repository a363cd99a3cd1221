"""The training loop: minibatches, an optimiser, a schedule, callbacks, checkpoints.

:func:`fit` owns all the state of a run (network, optimiser state, random generator,
history) and passes it around explicitly; nothing global changes.  Each step is the
derivation's loop, visible::

    trace, grads = backprop.gradients(net, x[batch], y[batch], loss, l2)   # forward, backward
    net, state = optimizer.update(net, grads, state, lr=schedule(epoch))     # W[l] -= eta dW[l]

and a callback's ``on_step(info)`` sees ``info.trace`` (``z``, ``a``) and ``info.grads``
(``delta``, ``dW``, ``db``, ``J``) of that step, before the update.

The fused step: with no ``on_step`` callback nobody looks at the trace or the gradients,
so for every optimiser with a per-parameter rule (``Optimizer.rule``: gd, momentum,
Nesterov, Adam) the two lines become one call, ``net, J = backprop.train_step(net, xb, yb,
loss, eta, l2, workspace=ws, donate=..., optimizer=opt, state=state)``: each layer's dW[l]
and db[l] go through the optimiser's rule as soon as they are known, the state's arrays
updated in place, and on NumPy one workspace of scratch buffers serves the whole run
(1.1-2x faster per step).  Momentum, Nesterov and Adam see the same dW and db as in the
two-line loop and agree with it bit for bit, or to a few ulp where the loss has a fused
output kernel (softmax cross-entropy; ``tests/test_train.py`` checks 1e-15).  Plain gradient descent
folds -eta/m into delta before the weight-gradient product (the old loop rounds
dW = delta^T a / m, then eta dW), so its weights agree with the two-line loop to a few ulp
per step (1e-13 after a few epochs).  ``fused=False`` keeps the two-line loop always.  A
run is still deterministic and a resumed run still equals an uninterrupted one bit for bit
(both take the same path).  Donation (overwriting in place) is used only for networks and
optimiser states made by the previous step of the same epoch: each epoch's first step
writes fresh arrays, so the epoch's starting network and optimiser state, which the loop
keeps as the last good ones (the rollback after a NaN or a divergence restores both) and
which may have been handed to a callback, kept as early stopping's best network, be the
caller's own or a checkpoint's, stay as they were (the state dict is copied shallowly at
the epoch's start; no array is copied).

Shuffling and resumption: one ``numpy.random.Generator(seed)`` draws each epoch's
permutation; its ``bit_generator.state`` goes into the checkpoint with the weights and the
optimiser state after every epoch, so a run resumed from a checkpoint replays exactly the
draws, and ends with the same weights, bit for bit, as a run that was never interrupted.

The pieces: :class:`TrainOptions` (every option, checked when made; ``deltaprop train``
builds the same object) -> ``_setup`` (data checked and moved once, the optimiser, the
starting state) -> ``_resume`` (from a checkpoint) -> ``_train_epochs``, each epoch
``_run_epoch`` (the steps), ``_epoch_row`` (metrics; NaN/inf and divergence) and
``_after_epoch`` (:class:`EarlyStopping`, then the callbacks) -> the health check
(:mod:`deltaprop.stats.health`).  Why a run ended is a :class:`StopReason` whose ``kind``
the command line turns into its exit status.

Scaling: ``history`` reports the data loss J (the batch mean of the per-sample loss, L2
penalty excluded) on the whole training set after each epoch, and on the validation set.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import _backend, _checks, backprop, optim
from .. import losses as _losses
from .._checks import parse_batch_size
from ..network import Network
from . import data as _data

__all__ = ["History", "FitResult", "StopReason", "STOP_KINDS", "TrainOptions", "StepInfo",
           "EpochInfo", "EarlyStopping", "fit", "check_options", "evaluate", "prepare", "batches",
           "parse_batch_size", "fmt_loss", "estimate_memory"]


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
        from .._display import history_html

        return history_html(self)

    def to_pandas(self):
        """One row per epoch, indexed by ``epoch`` (needs pandas)."""
        from .._display import history_frame

        return history_frame(self)


#: kinds of :class:`StopReason`; the last two are failures (the CLI exits 1)
STOP_KINDS = ("completed", "early_stop", "callback", "diverged", "not_finite")


@dataclass(frozen=True)
class StopReason:
    """Why :func:`fit` stopped: a ``kind`` from :data:`STOP_KINDS` and a sentence.

    ``completed``: every epoch ran; ``early_stop``: the monitored loss stopped improving (the
    best network is returned); ``callback``: an ``on_epoch`` callback returned ``True``;
    ``diverged``: the training loss grew past ``divergence`` times its best value;
    ``not_finite``: the loss became NaN or inf.  For the last two the last good network
    (and checkpoint) is kept.  ``str(reason)`` is the message.
    """

    kind: str
    message: str
    epoch: int | None = None  # the last epoch whose network is kept

    def __post_init__(self):
        if self.kind not in STOP_KINDS:
            raise ValueError(f"unknown stop kind {self.kind!r}; known: {', '.join(STOP_KINDS)}")

    @property
    def failed(self) -> bool:
        """True when training went wrong (diverged or not finite)."""
        return self.kind in ("diverged", "not_finite")

    def __str__(self):
        return self.message

    def to_dict(self) -> dict:
        return {"kind": self.kind, "message": self.message, "epoch": self.epoch}

    @classmethod
    def from_dict(cls, d) -> StopReason | None:
        """The reason stored in a checkpoint (a dict, or an older file's sentence)."""
        if d is None:
            return None
        if isinstance(d, str):
            return cls("early_stop" if d.startswith("early") else "callback", d)
        return cls(d["kind"], d["message"], d.get("epoch"))


@dataclass
class FitResult:
    """What :func:`fit` returns: the trained network, its history and why it stopped.

    ``stop`` is always a :class:`StopReason` (kind ``completed`` when every epoch ran);
    ``stopped`` is ``None`` when every epoch ran, else that reason.  ``epochs_run`` counts the
    epochs this call ran (fewer than ``len(history)`` after a resume).  ``health`` holds one
    line per warning of :func:`deltaprop.stats.health.check` (empty with ``health=False``).
    """

    net: Network
    history: History
    stop: StopReason
    opt_state: dict | None = None
    epochs_run: int = 0
    health: list = field(default_factory=list)

    @property
    def stopped(self) -> StopReason | None:
        return None if self.stop.kind == "completed" else self.stop

    def _repr_html_(self):
        from .._display import fit_html

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
    """Passed to ``on_epoch`` after each epoch (a callback returning ``True`` or a
    :class:`StopReason` stops the run)."""

    epoch: int
    row: dict
    net: Network
    history: History


# ------------------------------------------------------------------------------ options

def _batch_size(batch_size, m):
    """The effective batch size on m samples (the full batch for 0, None, 'full' or >= m)."""
    b = parse_batch_size(batch_size)
    return min(b, m) if b else m


def batches(m: int, batch_size, rng: np.random.Generator | None):
    """Index arrays of one epoch's batches.

    ``batch_size`` 1 is online learning, ``None``, ``0`` or ``"full"`` is the full batch
    (in order, no random draw); otherwise the samples are permuted by ``rng`` (``None``:
    kept in order) and cut into batches of ``batch_size`` (the last one may be smaller).
    This is :func:`deltaprop.app.data.batches` after :func:`parse_batch_size`.
    """
    return list(_data.batches(m, _batch_size(batch_size, m), rng))


@dataclass(frozen=True)
class TrainOptions:
    """Every option of a training run, checked when made; :func:`fit` and ``deltaprop train``
    share it (``fit(net, x, y, loss, TrainOptions(...))`` or ``fit(..., **options)``).

    ``learning_rate=None`` is the optimizer's own default (0.001 for Adam, else 0.1), as in
    :func:`deltaprop.optim.get`.  ``divergence``: stop (kind ``diverged``) when the training
    loss after an epoch exceeds this factor times the best training loss so far (the
    starting network's included); ``None`` turns the check off.  ``health``: after training,
    check the recorded backward pass (:func:`deltaprop.stats.health.check`) and warn.
    See :func:`fit` for the others.
    """

    optimizer: object = "gd"
    learning_rate: float | None = None
    schedule: object = "constant"
    batch_size: object = 32
    epochs: int = 10
    l2: float = 0.0
    seed: int = 0
    early_stopping: int | None = None
    optimizer_options: dict | None = None
    schedule_options: dict | None = None
    divergence: float | None = 1e3
    fused: bool = True
    health: bool = True

    def __post_init__(self):
        e = self.epochs
        if isinstance(e, bool) or not isinstance(e, int | np.integer | float) or int(e) != e \
                or e < 0:
            raise ValueError(f"epochs must be an integer >= 0, got {e!r}")
        parse_batch_size(self.batch_size)
        if isinstance(self.l2, bool) or not (isinstance(self.l2, int | float) and
                                             math.isfinite(self.l2) and self.l2 >= 0):
            raise ValueError(f"l2 must be a finite number >= 0, got {self.l2!r}")
        p = self.early_stopping
        if p is not None and (isinstance(p, bool) or int(p) != p or p < 1):
            raise ValueError(f"early_stopping (patience) must be an integer >= 1, got {p!r}")
        d = self.divergence
        if d is not None and not (isinstance(d, int | float) and not isinstance(d, bool)
                                  and d > 1):
            raise ValueError(f"divergence must be a factor > 1 (or None: off), got {d!r}")
        self.build()  # raises on a bad optimizer, learning rate or schedule

    def build(self):
        """``(optimizer, schedule)``: the :class:`~deltaprop.optim.Optimizer` and the function
        epoch (0-based) -> learning rate of these options."""
        opt = optim.get(self.optimizer, self.learning_rate, **(self.optimizer_options or {}))
        sched = optim.schedule(self.schedule, opt.hyper.get("learning_rate", self.learning_rate),
                               epochs=max(int(self.epochs), 1), **(self.schedule_options or {}))
        return opt, sched

    @property
    def resolved_learning_rate(self) -> float | None:
        """The learning rate actually used at epoch 0 (the optimizer's default for None)."""
        return self.build()[0].hyper.get("learning_rate", self.learning_rate)


def check_options(**options):
    """Check :func:`fit`'s training options (the fields of :class:`TrainOptions`) without
    training.

    Returns ``(optimizer, schedule)``: the :class:`~deltaprop.optim.Optimizer` and the
    function epoch -> learning rate that :func:`fit` uses.  Raises ``ValueError`` naming the
    first bad option (a caller can check a run's settings before writing anything).
    """
    return TrainOptions(**options).build()


def _options(options, kwargs):
    if options is None:
        return TrainOptions(**kwargs)
    if not isinstance(options, TrainOptions):
        raise TypeError(f"options must be a TrainOptions, got {type(options).__name__}")
    return options if not kwargs else dataclasses.replace(options, **kwargs)


# ------------------------------------------------------------------------------ data

def prepare(net, loss, x, y, name="data"):
    """x, y checked and moved to the network's library, device and dtype (integer class
    labels one-hot for a softmax loss); errors name the set (``name``).  This is
    :func:`deltaprop._checks.prepare_data` with the loss looked up by name."""
    return _checks.prepare_data(net, _losses.get(loss), x, y, name)


def _is_classification(loss):
    return loss.targets in ("distribution", "probability")


def _check_classes(loss, Y, xp):
    """A classifier needs two classes: refuse targets whose rows are all the same."""
    if _is_classification(loss) and Y.shape[0] > 0 and \
            bool(xp.all(Y == Y[0:1, ...])):
        raise ValueError(f"training data: every sample has the same target (a single class); "
                         f"a classification loss ({loss.name}) needs at least two classes")


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
    x, Y = prepare(net, loss, x, y, "data")
    return _evaluate(net, x, Y, loss)


def _single(net, what):
    if net.K is not None:
        raise ValueError(f"{what} takes a single network; take the members of a stack of "
                         f"K = {net.K} one by one (net[k])")


def _evaluate(net, x, Y, loss, workspace=None):
    """Loss and accuracy on checked data: one forward pass keeping only the output
    (:func:`~deltaprop.backprop.output_and_loss`, in ``workspace``'s buffers)."""
    a, J = backprop.output_and_loss(net, x, Y, loss, workspace=workspace)
    out = {"loss": float(J)}
    if _is_classification(loss):
        out["accuracy"] = _accuracy(loss, a, Y, net.xp)
    return out


# ------------------------------------------------------------------------------ callbacks

class EarlyStopping:
    """Early stopping as an epoch callback: stop when ``monitor`` (``val_loss`` when the row
    has it, else ``loss``) has not improved for ``patience`` epochs; ``best`` keeps the best
    network.  ``fit(early_stopping=patience)`` adds one; its state goes into checkpoints."""

    def __init__(self, patience: int):
        self.patience = int(patience)
        self.best, self.best_loss, self.bad_epochs = None, math.inf, 0

    def on_epoch(self, info: EpochInfo):
        key = "val_loss" if info.row.get("val_loss") is not None else "loss"
        if info.row[key] < self.best_loss:
            self.best, self.best_loss, self.bad_epochs = info.net, info.row[key], 0
            return None
        self.bad_epochs += 1
        if self.bad_epochs < self.patience:
            return None
        best_epoch = info.epoch - self.bad_epochs
        return StopReason("early_stop", f"early stopping: {key} did not improve for "
                          f"{self.bad_epochs} epochs; returning the best network (epoch "
                          f"{best_epoch})", best_epoch)

    def state(self) -> dict:
        return {"best_loss": self.best_loss, "bad_epochs": self.bad_epochs}

    def load_state(self, state: dict, best):
        loss = state.get("best_loss", math.inf)
        self.best_loss = math.inf if loss is None else loss
        self.bad_epochs, self.best = state.get("bad_epochs", 0), best


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


def fmt_loss(v) -> str:
    """A loss for a table: fixed point in [1e-3, 1e5), scientific notation outside."""
    v = float(v)
    return f"{v:.4f}" if v == 0 or (math.isfinite(v) and 1e-3 <= abs(v) < 1e5) else f"{v:.4e}"


# ------------------------------------------------------------------------------ the loop

@dataclass
class _Run:
    """The state of a run that changes from epoch to epoch (all of it goes into checkpoints)."""

    net: Network
    opt_state: dict
    rng: np.random.Generator
    history: History
    epoch: int  # epochs finished
    iteration: int
    best_train_loss: float  # for the divergence check (the starting network included)
    stop: StopReason | None = None


@dataclass(frozen=True)
class _Loop:
    """What stays fixed during a run: data, loss, optimiser, callbacks."""

    X: object
    Y: object
    val: tuple | None
    loss: object
    opt: object
    sched: object
    options: TrainOptions
    steps_cb: list
    epochs_cb: list
    early: EarlyStopping | None
    workspace: object  # a backprop.Workspace when the fused step is used, else None
    xp: object
    buffers: object  # the per-epoch evaluation's backprop.Workspace

    @property
    def m(self):
        return self.X.shape[0]


def _batch(loop, idx):
    if len(idx) == loop.m:
        return loop.X, loop.Y
    if _backend.is_numpy(loop.X):  # idx is a NumPy index array already
        return loop.X.take(idx, axis=0), loop.Y.take(idx, axis=0)
    xp = loop.xp
    ix = _backend.asarray(idx, xp, like=None, device=_backend.device(loop.X))
    return xp.take(loop.X, ix, axis=0), xp.take(loop.Y, ix, axis=0)


def _run_epoch(loop, run, e, lr):
    """One epoch of steps; returns a ``not_finite`` StopReason (and keeps the epoch's
    starting network and optimiser state) when a step's loss is NaN or inf, else None."""
    o, good, fused = loop.options, run.net, loop.workspace is not None
    # the fused step updates the state dict in place: a shallow copy keeps the epoch's
    # starting one (its arrays are safe: the first step, not donating, writes new ones)
    net, state = run.net, (dict(run.opt_state) if fused else run.opt_state)
    for s, idx in enumerate(batches(loop.m, o.batch_size, run.rng)):
        xb, yb = _batch(loop, idx)
        if fused:  # never donate the epoch's starting network (`good`) or its state arrays
            net, J = backprop.train_step(net, xb, yb, loop.loss, lr, o.l2, check=False,
                                         workspace=loop.workspace, donate=net is not good,
                                         optimizer=loop.opt, state=state)
            J = float(J)
        else:
            trace, grads = backprop.gradients(net, xb, yb, loop.loss, o.l2, check=False)
            J = float(grads.J)
        if not math.isfinite(J):
            run.net = good
            return StopReason("not_finite", f"loss became {J} at epoch {e + 1}, step {s + 1}: "
                              f"training stopped; kept the last good network and checkpoint "
                              f"(epoch {e})", e)
        if not fused:
            for cb in loop.steps_cb:
                cb(StepInfo(net, trace, grads, e + 1, s, run.iteration, idx, lr, J))
            net, state = loop.opt.update(net, grads, state, lr=lr)
        run.iteration += 1
    run.net, run.opt_state = net, state
    return None


def _epoch_row(loop, run, e, good):
    """The epoch's metrics row, or a StopReason (not finite, diverged) that restores
    ``good``, the epoch's starting (network, optimiser state)."""
    row = {"epoch": e + 1, **_evaluate(run.net, loop.X, loop.Y, loop.loss, loop.buffers)}
    if loop.val is not None:
        row.update({f"val_{k}": v for k, v in
                    _evaluate(run.net, *loop.val, loop.loss, loop.buffers).items()})
    keep = (f"training stopped; kept the last good network and checkpoint (epoch {e})")
    if not all(math.isfinite(v) for v in row.values()):
        run.net, run.opt_state = good
        return StopReason("not_finite", f"loss became non-finite after epoch {e + 1}: {keep}", e)
    factor = loop.options.divergence
    if factor is not None and row["loss"] > factor * max(run.best_train_loss, 1e-300):
        run.net, run.opt_state = good
        return StopReason("diverged", f"training diverged: loss {fmt_loss(row['loss'])} after "
                          f"epoch {e + 1} is more than {factor:g} times the best loss "
                          f"{fmt_loss(run.best_train_loss)}; {keep}; try a smaller learning "
                          f"rate", e)
    run.best_train_loss = min(run.best_train_loss, row["loss"])
    return row


def _after_epoch(loop, run, e, row):
    """Early stopping, then the callbacks; returns the StopReason of the first that stops."""
    info = EpochInfo(e + 1, row, run.net, run.history)
    stop = loop.early.on_epoch(info) if loop.early is not None else None
    for cb in loop.epochs_cb:
        said = cb(info)
        if stop is None and isinstance(said, StopReason):
            stop = said
        elif stop is None and said is True:
            stop = StopReason("callback", f"stopped by a callback after epoch {e + 1}", e + 1)
    return stop


def _save(checkpoint, loop, run, meta):
    if checkpoint is None:
        return
    from . import files

    fit_state = {"optimizer": loop.opt.name, "hyper": loop.opt.hyper,
                 "best_train_loss": run.best_train_loss,
                 "stopped": None if run.stop is None else run.stop.to_dict(),
                 **(loop.early.state() if loop.early is not None else {})}
    files.save_checkpoint(checkpoint, run.net, run.opt_state, rng_state=run.rng.bit_generator.state,
                          epoch=run.epoch, history=run.history.epochs,
                          best=loop.early.best if loop.early is not None else None,
                          extra={**(meta or {}), "fit": fit_state})


def _resume(checkpoint, loop, run):
    """``run`` continued from ``checkpoint`` (on the starting network's device and dtype)."""
    from . import files

    net, xp = run.net, loop.xp
    ck = files.load_checkpoint(checkpoint)
    if ck["net"].sizes != net.sizes or ck["net"].activation_names() != net.activation_names():
        raise ValueError(f"{checkpoint}: checkpoint network {ck['net']} does not match {net}")
    fit_state = ck["extra"].get("fit", {})
    if fit_state.get("optimizer") != loop.opt.name:
        raise ValueError(f"{checkpoint}: checkpoint was written by optimizer "
                         f"{fit_state.get('optimizer')!r}, not {loop.opt.name!r}")
    here = dict(device=None if _backend.is_numpy(xp) else _backend.device(net.W[1]),
                dtype=net.dtype)
    run.net = ck["net"].to(xp, **here)
    run.opt_state = {k: (_backend.asarray(v, xp, like=run.net.W[1])
                         if isinstance(v, np.ndarray) else v)
                     for k, v in ck["opt_state"].items()}
    run.rng.bit_generator.state = ck["rng_state"]
    run.history = History(list(ck["history"]))
    run.epoch = ck["epoch"]
    run.iteration = run.epoch * math.ceil(loop.m / _batch_size(loop.options.batch_size, loop.m))
    best_train = fit_state.get("best_train_loss")
    run.best_train_loss = run.best_train_loss if best_train is None else best_train
    if loop.early is not None:
        best = None if ck["best"] is None else ck["best"].to(xp, **here)
        loop.early.load_state(fit_state, best)
    run.stop = StopReason.from_dict(fit_state.get("stopped"))
    return run


def _train_epochs(loop, run, checkpoint, meta, progress):
    """Epochs ``run.epoch + 1 .. epochs``, a checkpoint after each; sets ``run.stop``."""
    o = loop.options
    bar = _progress_bar(progress, o.epochs, run.epoch)
    try:
        for e in range(run.epoch, o.epochs):
            lr = float(loop.sched(e))
            if not (math.isfinite(lr) and lr > 0):
                raise ValueError(f"the schedule gave learning rate {lr} at epoch {e + 1}")
            t0, good = time.perf_counter(), (run.net, run.opt_state)
            run.stop = _run_epoch(loop, run, e, lr)
            if run.stop is not None:
                break
            row = _epoch_row(loop, run, e, good)
            if isinstance(row, StopReason):
                run.stop = row
                break
            row.update(lr=lr, time=time.perf_counter() - t0)
            run.history.epochs.append(row)
            run.epoch = e + 1
            run.stop = _after_epoch(loop, run, e, row)
            _save(checkpoint, loop, run, meta)
            if bar is not None:
                bar.set_postfix({k: f"{v:.4g}" for k, v in row.items()
                                 if k in ("loss", "accuracy", "val_loss", "val_accuracy")},
                                refresh=False)
                bar.update(1)
            if run.stop is not None:
                break
    finally:
        if bar is not None:
            bar.close()


def fit(net: Network, x, y, loss, options: TrainOptions | None = None, *, x_val=None,
        y_val=None, callbacks=(), progress=False, checkpoint=None, resume=False,
        checkpoint_meta=None, **kwargs) -> FitResult:
    """Train ``net`` on (x, y) by minibatch gradient descent (or momentum, Nesterov, Adam).

    Parameters
    ----------
    net : Network
        Starting network (not modified; a single network, any backend).
    x : array (m, n_0)
    y : array (m, n_L), or integer class labels (m,) for softmax cross-entropy
    loss : str or Loss
    options : TrainOptions, optional
        The training options; or give them as keywords (``**kwargs``, the fields of
        :class:`TrainOptions`, which also override ``options``):

        ``optimizer`` (``"gd"``/``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adam"`` or an
        Optimizer; default gd), ``learning_rate`` (eta at epoch 0; ``None``: the
        optimizer's default, 0.001 for Adam, else 0.1), ``schedule`` (``"constant"``,
        ``"step"``, ``"exponential"``, ``"cosine"``, ``"inverse-time"`` or a function epoch
        (0-based) -> learning rate), ``batch_size`` (1 = online, 0/None/"full" = full batch,
        else minibatches drawn by a shuffle of ``numpy.random.default_rng(seed)`` each
        epoch; default 32), ``epochs`` (10), ``l2`` (lambda of (lambda / 2m) sum ||W||^2),
        ``seed``, ``early_stopping`` (patience: stop when the validation loss, or the
        training loss without validation data, has not improved for this many epochs, and
        return the best network), ``optimizer_options``, ``schedule_options`` (dicts:
        ``momentum``, ``beta1``, ...; ``step_size``, ``gamma``, ...), ``divergence`` (stop
        when the training loss exceeds this factor, default 1e3, times its best value),
        ``fused`` (without ``on_step`` callbacks, every optimiser with a ``rule`` takes each
        step with :func:`deltaprop.backprop.train_step`: same rule, a few ulp apart),
        ``health`` (default True: check the trained network's backward pass and warn).
    x_val, y_val : arrays, optional
        Validation data, evaluated after every epoch.
    callbacks : iterable
        Objects with ``on_step(StepInfo)`` and/or ``on_epoch(EpochInfo)``, or plain callables
        (called per epoch).  ``on_epoch`` returning ``True`` (or a StopReason) stops the run.
    progress : bool or "auto"
        Show a tqdm bar (``"auto"``: only on a terminal).
    checkpoint : path, optional
        Checkpoint file written atomically after every epoch.
    resume : bool
        Continue from ``checkpoint`` if it exists (else start fresh).
    checkpoint_meta : dict, optional
        Extra JSON-able metadata stored in the checkpoint (e.g. the run configuration).

    Returns
    -------
    FitResult
        ``net``, ``history``, ``stop`` (a :class:`StopReason`), ``epochs_run`` and
        ``health``.  A loss that becomes NaN or inf, or grows past ``divergence`` times its
        best, stops the run: ``net`` is the last good network and the checkpoint of the
        last good epoch is left untouched.

    Warns
    -----
    deltaprop.stats.health.HealthWarning
        One per finding of the health check (dead or saturated units, vanishing or
        exploding E[delta^2], constant outputs) unless ``health=False``.
    """
    o = _options(options, kwargs)
    loss = _losses.get(loss)
    _losses.check_pair(loss, net.activations[-1])
    _single(net, "fit")
    if (x_val is None) != (y_val is None):
        raise ValueError("give both x_val and y_val, or neither")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path")
    loop, run = _setup(net, o, loss, x, y, x_val, y_val, callbacks)
    if resume and Path(checkpoint).exists():
        run = _resume(checkpoint, loop, run)
    start = run.epoch
    if run.stop is None:
        _train_epochs(loop, run, checkpoint, checkpoint_meta, progress)
    stop = run.stop or StopReason("completed", f"completed {run.epoch} epochs", run.epoch)
    net = run.net
    if stop.kind == "early_stop" and loop.early.best is not None:
        net = loop.early.best
    found = _health(net, loop, trained=not stop.failed) if o.health else []
    return FitResult(net, run.history, stop, run.opt_state, run.epoch - start, found)


def _setup(net, o, loss, x, y, x_val, y_val, callbacks):
    """The fixed part of a run (:class:`_Loop`) and its starting state (:class:`_Run`)."""
    opt, sched = o.build()
    X, Y = prepare(net, loss, x, y, "training data")
    _check_classes(loss, Y, net.xp)
    val = None if x_val is None else prepare(net, loss, x_val, y_val, "validation data")
    steps_cb, epochs_cb = _callbacks(callbacks)
    fused = bool(o.fused) and not steps_cb and opt.rule is not None
    early = EarlyStopping(o.early_stopping) if o.early_stopping is not None else None
    loop = _Loop(X, Y, val, loss, opt, sched, o, steps_cb, epochs_cb, early,
                 backprop.Workspace() if fused else None, net.xp, backprop.Workspace())
    start = _evaluate(net, X, Y, loss, loop.buffers)["loss"] if o.divergence is not None \
        else math.inf
    run = _Run(net, opt.init(net), np.random.default_rng(o.seed), History(), 0, 0,
               start if math.isfinite(start) else math.inf)
    return loop, run


def _health(net, loop, trained):
    """The health check's lines, each also a HealthWarning; ``trained``: also whether the
    run learned anything (not asked of a run that diverged or became non-finite)."""
    import warnings

    from ..stats import health

    found = health.check(net, loop.X, loop.Y, loop.loss, seed=loop.options.seed,
                         trained=trained)
    for line in found:
        warnings.warn(str(line), health.HealthWarning, stacklevel=3)
    return found


# ------------------------------------------------------------------------------ memory

def estimate_memory(sizes, m, *, batch_size=32, optimizer="gd", itemsize=8,
                    early_stopping=False) -> int:
    """Bytes a run of :func:`fit` needs at its peak, estimated before anything is allocated.

    Parameters: the weights and biases (P numbers) are held about 4 times (the network, its
    gradients, the next network, a checkpoint's copy), plus the optimiser's state (1 x P
    for momentum/Nesterov, 2 x P for Adam) and early stopping's best network (1 x P); the
    evaluation of the whole training set after each epoch holds z[l] and a[l] for every
    layer (2 m sum n_l numbers), a step the same for its batch (3 b sum n_l with delta).
    """
    sizes = [int(n) for n in sizes]
    P = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=False))
    name = optimizer if isinstance(optimizer, str) else getattr(optimizer, "name", "gd")
    copies = 4 + {"adam": 2, "momentum": 1, "nesterov": 1}.get(str(name).lower(), 0) \
        + (1 if early_stopping else 0)
    units = sum(sizes)
    b = _batch_size(batch_size, max(int(m), 1))
    return int(itemsize * (copies * P + 2 * int(m) * units + 3 * b * units))
