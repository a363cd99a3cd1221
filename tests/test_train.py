"""The training loop: batch semantics, history, callbacks, early stopping, NaN, resumption."""

import math

import numpy as np
import pytest

from deltaprop import Network, backprop, optim
from deltaprop.app import files as dio
from deltaprop.app.train import History, batches, evaluate, fit

LOSS = "softmax-cross-entropy"


def _data(m=30, n0=4, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(m, n0))
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)
    return x, np.minimum(y, classes - 1)


def _net(seed=0, sizes=(4, 6, 3)):
    return Network.init(list(sizes), "tanh", "softmax", seed=seed, bias_std=0.1)


def _same(a, b):
    return all(np.array_equal(p, q) for p, q in zip(a.W[1:] + a.b[1:], b.W[1:] + b.b[1:],
                                                     strict=True))


def _close(a, b, rtol=1e-13):
    """Same weights to rtol relative to the largest entry of each parameter array."""
    return all(np.max(np.abs(p - q)) <= rtol * np.max(np.abs(q))
               for p, q in zip(a.W[1:] + a.b[1:], b.W[1:] + b.b[1:], strict=True))


def _copy(net):
    return net.replace(W=(None, *(w.copy() for w in net.W[1:])),
                       b=(None, *(b.copy() for b in net.b[1:])))


# --- batch semantics ---------------------------------------------------------------------

def test_full_batch_is_plain_gradient_descent():
    x, y = _data()
    net = _net()
    for bs in (None, 0, "full", 1000):
        two_line = fit(net, x, y, LOSS, batch_size=bs, epochs=3, learning_rate=0.5, fused=False)
        res = fit(net, x, y, LOSS, batch_size=bs, epochs=3, learning_rate=0.5)
        ref, fused_ref = net, net
        for _ in range(3):
            _, g = backprop.gradients(ref, x, y, LOSS)
            ref = backprop.step(ref, g, 0.5)
            fused_ref = backprop.train_step(fused_ref, x, y, LOSS, 0.5)[0]
        assert _same(two_line.net, ref), bs
        assert _same(res.net, fused_ref), bs  # the default loop is train_step's
        assert _close(res.net, ref), bs  # which rounds differently by a few ulp per step


def test_online_and_minibatch_follow_the_shuffle():
    x, y = _data(m=10)
    net = _net()
    for bs in (1, 3):
        two_line = fit(net, x, y, LOSS, batch_size=bs, epochs=2, learning_rate=0.2, seed=7,
                       fused=False)
        res = fit(net, x, y, LOSS, batch_size=bs, epochs=2, learning_rate=0.2, seed=7)
        rng, ref, fused_ref = np.random.default_rng(7), net, net
        for _ in range(2):
            order = rng.permutation(10)
            for i in range(0, 10, bs):  # last batch of 3 has one sample
                idx = order[i:i + bs]
                _, g = backprop.gradients(ref, x[idx], y[idx], LOSS)
                ref = backprop.step(ref, g, 0.2)
                fused_ref = backprop.train_step(fused_ref, x[idx], y[idx], LOSS, 0.2)[0]
        assert _same(two_line.net, ref), bs
        assert _same(res.net, fused_ref), bs
        assert _close(res.net, ref), bs


def test_fused_step_is_used_for_every_rule_without_on_step(monkeypatch):
    x, y = _data(m=20)
    calls = []
    real = backprop.train_step
    monkeypatch.setattr(backprop, "train_step",
                        lambda *a, **k: calls.append(k["donate"]) or real(*a, **k))

    class Steps:
        def on_step(self, info):
            pass

    for opt in ("gd", "momentum", "nesterov", "adam"):  # 3 batches per epoch
        calls.clear()
        fit(_net(), x, y, LOSS, batch_size=8, epochs=2, optimizer=opt)
        assert calls == [False, True, True] * 2, opt  # an epoch's start is never donated
    gd = optim.get("gd")
    no_rule = optim.Optimizer(gd.init, gd.update, "mine", gd.hyper)  # no rule
    for kw in (dict(callbacks=[Steps()]), dict(fused=False), dict(optimizer=no_rule)):
        calls.clear()
        fit(_net(), x, y, LOSS, batch_size=8, epochs=2, **kw)
        assert calls == [], kw


def _close_state(s, r, rtol):
    assert s.keys() == r.keys() and s["t"] == r["t"]
    for k in s:
        if k != "t":
            assert np.max(np.abs(s[k] - r[k])) <= rtol * np.max(np.abs(r[k])), k


@pytest.mark.parametrize("opt", ["momentum", "nesterov", "adam"])
@pytest.mark.parametrize("loss, out", [(LOSS, "softmax"), ("mse", "identity")])
def test_fused_stateful_step_equals_the_two_line_loop(opt, loss, out):
    """gradients + opt.update and train_step(optimizer=, state=) in fit: the same dW and db
    through the same rule, with L2 and a schedule; a few ulp at most (softmax's kernel)."""
    x, y = _data(m=25)
    if out == "identity":
        y = np.eye(3)[y]
    net = Network.init([4, 6, 3], "tanh", out, seed=1, bias_std=0.1)
    kw = dict(optimizer=opt, learning_rate=0.05, batch_size=7, epochs=4, seed=2, l2=0.01,
              schedule="step", schedule_options={"step_size": 1, "gamma": 0.5},
              divergence=None)
    two = fit(net, x, y, loss, fused=False, **kw)
    one = fit(net, x, y, loss, **kw)
    tol = 0.0 if out == "identity" else 1e-15  # no fused output kernel: bit for bit
    assert _close(one.net, two.net, rtol=tol)
    _close_state(one.opt_state, two.opt_state, tol)
    assert one.opt_state["t"] == 4 * 4


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("opt, lr, div, kind, where", [
    ("momentum", 1e-4, None, "not_finite", "at epoch 2, step"),  # a step's loss is inf
    ("momentum", 3e-5, None, "not_finite", "after epoch 3"),  # the epoch's evaluation
    ("adam", lambda e: 1e-3 if e < 2 else 10.0, 2.0, "diverged", "after epoch 3")])
def test_fused_rollback_restores_the_optimiser_state(tmp_path, opt, lr, div, kind, where):
    """A fused run stopped by a NaN step, a NaN epoch or a divergence returns the last good
    epoch's network and optimiser state (the checkpoint's), not the half-run epoch's."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 3)) * 100, rng.normal(size=(20, 2)) * 100
    net = Network.init([3, 8, 2], "identity", "identity", seed=0)
    ck = tmp_path / "ck.safetensors"
    res = fit(net, x, y, "mse", optimizer=opt, epochs=300, batch_size=5, divergence=div,
              checkpoint=ck, health=False,
              **({"schedule": lr} if callable(lr) else {"learning_rate": lr}))
    assert res.stop.kind == kind and where in str(res.stop), res.stop
    saved = dio.load_checkpoint(ck)
    assert saved["epoch"] == len(res.history) >= 1
    assert _same(res.net, saved["net"])
    assert res.opt_state.keys() == saved["opt_state"].keys()
    assert all(np.array_equal(res.opt_state[k], saved["opt_state"][k]) for k in res.opt_state)
    assert res.opt_state["t"] == 4 * len(res.history)


def test_fused_loop_never_overwrites_a_network_it_hands_out():
    """The caller's network, the networks given to on_epoch and the best network of early
    stopping keep their values while the loop goes on donating its own networks."""
    x, y = _data(m=30)
    net = _net()
    start = _copy(net)
    seen = []
    res = fit(net, x, y, LOSS, batch_size=4, epochs=8, learning_rate=0.5, early_stopping=2,
              x_val=x[:10], y_val=y[:10],
              callbacks=[lambda info: seen.append((info.net, _copy(info.net)))])
    assert _same(net, start)
    assert len(seen) >= 3 and all(_same(kept, copy) for kept, copy in seen)
    assert any(res.net is kept for kept, _ in seen)  # the best network is one handed out
    assert len({id(kept.W[1]) for kept, _ in seen}) == len(seen)  # no shared buffers


def test_batches_helper():
    rng = np.random.default_rng(0)
    assert [len(b) for b in batches(10, 4, rng)] == [4, 4, 2]
    assert [len(b) for b in batches(10, 1, rng)] == [1] * 10
    full = batches(10, "full", None)
    assert len(full) == 1 and np.array_equal(full[0], np.arange(10))
    for bad in (-1, 2.5, "half", True):
        with pytest.raises(ValueError, match="batch_size"):
            batches(10, bad, rng)


# --- history, callbacks, plots ---------------------------------------------------------

def test_history_and_callbacks_see_the_derivation():
    x, y = _data()
    seen_steps, seen_epochs = [], []

    class Probe:
        def on_step(self, info):
            L = info.net.L
            assert info.trace.a[0].shape == (len(info.batch), 4)
            assert info.grads.delta[L].shape == (len(info.batch), 3)
            assert info.grads.dW[1].shape == (6, 4) and info.grads.db[2].shape == (3,)
            assert info.J == pytest.approx(float(info.grads.J))
            seen_steps.append((info.epoch, info.step, info.iteration))

        def on_epoch(self, info):
            seen_epochs.append(info.epoch)

    res = fit(_net(), x, y, LOSS, optimizer="momentum", batch_size=8, epochs=3,
              learning_rate=0.1, x_val=x[:10], y_val=y[:10], callbacks=[Probe()])
    assert seen_epochs == [1, 2, 3]
    assert seen_steps[:5] == [(1, 0, 0), (1, 1, 1), (1, 2, 2), (1, 3, 3), (2, 0, 4)]
    rows = res.history.as_rows()
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert set(rows[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"}
    # the recorded loss is J of the final network on the training set
    assert rows[-1]["loss"] == pytest.approx(evaluate(res.net, x, y, LOSS)["loss"], rel=1e-12)
    assert res.stopped is None
    fig = res.history.plot()
    assert type(fig).__name__ == "Figure" and len(fig.axes) == 2


def test_callable_callback_can_stop():
    x, y = _data()
    res = fit(_net(), x, y, LOSS, epochs=10, callbacks=[lambda info: info.epoch == 2])
    assert len(res.history) == 2 and res.stopped.kind == "callback"


def test_schedule_sets_lr_per_epoch():
    x, y = _data()
    res = fit(_net(), x, y, LOSS, epochs=3, learning_rate=0.4, schedule="exponential",
              schedule_options={"gamma": 0.5})
    assert res.history.column("lr") == pytest.approx([0.4, 0.2, 0.1])


def test_regression_has_no_accuracy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 2))
    y = x @ np.array([[1.0], [-2.0]])
    net = Network.init([2, 5, 1], "tanh", "identity", seed=0)
    res = fit(net, x, y, "mse", epochs=20, learning_rate=0.1, batch_size=5)
    assert "accuracy" not in res.history.epochs[0]
    assert res.history.epochs[-1]["loss"] < res.history.epochs[0]["loss"]


def test_early_stopping_returns_best():
    x, y = _data(m=40)
    val_x, val_y = _data(m=20, seed=5)
    res = fit(_net(), x, y, LOSS, optimizer="adam", learning_rate=0.3, epochs=200,
              x_val=val_x, y_val=val_y, early_stopping=3)
    assert res.stopped is not None and res.stop.kind == "early_stop"
    assert str(res.stop).startswith("early stopping")
    rows = res.history.epochs
    best = min(rows, key=lambda r: r["val_loss"])
    assert rows[-1]["epoch"] == best["epoch"] + 3
    assert evaluate(res.net, val_x, val_y, LOSS)["loss"] == pytest.approx(best["val_loss"],
                                                                          rel=1e-12)


# --- NaN and checkpoints ------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 3)) * 10
    y = rng.normal(size=(20, 2)) * 10
    net = Network.init([3, 8, 2], "relu", "identity", seed=0)
    ck = tmp_path / "ck.safetensors"

    class Poison:
        """Overwrite the weights in place during epoch 3 so that its next step overflows."""

        def on_step(self, info):
            if info.epoch == 3 and info.step == 0:
                info.net.W[1][...] = 1e200
            assert info.epoch <= 3 and (info.epoch < 3 or info.step <= 1)

    res = fit(net, x, y, "mse", epochs=5, learning_rate=1e-4, batch_size=5, checkpoint=ck,
              callbacks=[Poison()])
    assert res.stop.kind == "not_finite" and res.stop.failed
    assert "epoch 3, step 2" in str(res.stop) and "checkpoint" in str(res.stop)
    assert len(res.history) == 2
    saved = dio.load_checkpoint(ck)
    assert saved["epoch"] == 2 and len(saved["history"]) == 2
    # the checkpoint still holds epoch 2's good weights
    assert np.all(np.isfinite(saved["net"].W[1])) and np.abs(saved["net"].W[1]).max() < 1e10


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_nan_from_divergence_stops():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 3)) * 100
    y = rng.normal(size=(20, 2)) * 100
    net = Network.init([3, 8, 2], "identity", "identity", seed=0)
    res = fit(net, x, y, "mse", epochs=500, learning_rate=1.0, batch_size=0, divergence=None)
    assert res.stopped is not None and res.stop.kind == "not_finite"
    assert all(np.all(np.isfinite(w)) for w in res.net.W[1:])
    assert len(res.history) < 500


class _KillError(Exception):
    pass


@pytest.mark.parametrize("optimizer, bs, es", [("adam", 7, None), ("nesterov", 1, None),
                                               ("momentum", 5, 50), ("gd", 0, None),
                                               ("gd", 4, 1)])
def test_resume_is_bit_for_bit(tmp_path, optimizer, bs, es):
    x, y = _data(m=25)
    kw = dict(optimizer=optimizer, learning_rate=0.05, batch_size=bs, epochs=6, seed=3,
              x_val=x[:8], y_val=y[:8], early_stopping=es, schedule="cosine")
    whole = fit(_net(), x, y, LOSS, **kw)
    ck = tmp_path / "ck.safetensors"

    def die(info):
        if info.epoch == 4:
            raise _KillError  # before epoch 4's checkpoint: the file holds epoch 3

    with pytest.raises(_KillError):
        fit(_net(), x, y, LOSS, checkpoint=ck, callbacks=[die], **kw)
    assert dio.load_checkpoint(ck)["epoch"] == 3
    resumed = fit(_net(seed=99), x, y, LOSS, checkpoint=ck, resume=True, **kw)
    assert _same(resumed.net, whole.net)
    strip = [{k: v for k, v in r.items() if k != "time"} for r in resumed.history.epochs]
    assert strip == [{k: v for k, v in r.items() if k != "time"} for r in whole.history.epochs]


def test_resume_mismatch_and_fresh_start(tmp_path):
    x, y = _data()
    ck = tmp_path / "ck.safetensors"
    fresh = fit(_net(), x, y, LOSS, epochs=2, checkpoint=ck, resume=True)  # no file yet: fresh
    assert _same(fresh.net, fit(_net(), x, y, LOSS, epochs=2).net)
    with pytest.raises(ValueError, match="optimizer"):
        fit(_net(), x, y, LOSS, optimizer="adam", epochs=3, checkpoint=ck, resume=True)
    with pytest.raises(ValueError, match="does not match"):
        fit(_net(sizes=(4, 5, 3)), x, y, LOSS, epochs=3, checkpoint=ck, resume=True)


@pytest.mark.parametrize("kw, msg", [
    ({"epochs": -1}, "epochs"), ({"l2": -0.1}, "l2"), ({"early_stopping": 0}, "patience"),
    ({"x_val": np.zeros((2, 4))}, "both"), ({"resume": True}, "checkpoint path"),
    ({"optimizer": "lbfgs"}, "unknown optimizer"), ({"schedule": "warm"}, "unknown schedule"),
    ({"batch_size": -3}, "batch_size"),
])
def test_bad_arguments(kw, msg):
    x, y = _data()
    with pytest.raises(ValueError, match=msg):
        fit(_net(), x, y, LOSS, **kw)


def test_bad_data_names_the_set():
    x, y = _data()
    with pytest.raises(ValueError, match="training data: x has shape"):
        fit(_net(), x[:, :3], y, LOSS)
    with pytest.raises(ValueError, match="validation data: .*labels must lie in 0..2"):
        fit(_net(), x, y, LOSS, x_val=x, y_val=y + 5)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit(_net(), bad, y, LOSS)


def test_torch_network_trains_like_numpy():
    torch = pytest.importorskip("torch")
    x, y = _data()
    kw = dict(optimizer="adam", learning_rate=0.01, batch_size=7, epochs=3, seed=1)
    ref = fit(_net(), x, y, LOSS, **kw)
    res = fit(_net().to("torch"), x, y, LOSS, **kw)
    assert isinstance(res.net.W[1], torch.Tensor)
    for a, b in zip(ref.net.W[1:], res.net.W[1:], strict=True):
        np.testing.assert_allclose(a, b.numpy(), rtol=0, atol=1e-12)


def test_fit_takes_torch_tensors_that_numpy_cannot_read():
    """Tensors needing .detach() (or on a GPU) are data like any other (were a RuntimeError)."""
    torch = pytest.importorskip("torch")
    x, y = _data()
    kw = dict(batch_size=7, epochs=2, seed=1)
    ref = fit(_net(), x, y, LOSS, **kw)
    xt, yt = torch.asarray(x).requires_grad_(True), torch.asarray(y)
    for net in (_net(), _net().to("torch")):
        res = fit(net, xt, yt, LOSS, x_val=xt, y_val=yt, **kw)
        np.testing.assert_allclose(res.history.column("val_loss"), ref.history.column("loss"),
                                   rtol=1e-12)
        assert evaluate(res.net, xt, yt, LOSS)["loss"] == pytest.approx(
            evaluate(ref.net, x, y, LOSS)["loss"], rel=1e-12)


def test_history_summary():
    h = History([{"epoch": 1, "loss": 2.0, "time": 0.5}, {"epoch": 2, "loss": 1.0, "time": 0.5}])
    s = h.summary()
    assert s["epochs"] == 2 and s["best_epoch"] == 2 and s["time"] == 1.0
    assert math.isclose(s["best_loss"], 1.0)


def test_float32_network_stays_float32_and_regression_plot_has_one_panel():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 2))
    y = np.sin(x[:, :1])
    net = Network.init([2, 4, 1], "tanh", "identity", seed=0, dtype="float32")
    res = fit(net, x, y, "mse", optimizer="adam", learning_rate=0.01, epochs=3)
    assert res.net.W[1].dtype == np.float32 and res.opt_state["m.W.1"].dtype == np.float32
    fig = res.history.plot()
    assert len(fig.axes) == 1 and fig.axes[0].get_xlabel() == "epoch"


def test_fit_and_evaluate_refuse_a_stack_in_one_line():
    """evaluate on a stack was a TypeError from float() of a (K,) loss."""
    x, y = _data()
    stack = Network.init([4, 6, 3], "tanh", "softmax", K=2)
    for call in (lambda: fit(stack, x, y, LOSS), lambda: evaluate(stack, x, y, LOSS)):
        with pytest.raises(ValueError, match="single network.*net\\[k\\]"):
            call()


# --- options, stop reasons, divergence ----------------------------------------------------

def test_options_object_and_keywords_train_alike():
    from deltaprop.app.train import TrainOptions

    x, y = _data()
    opts = TrainOptions(optimizer="momentum", learning_rate=0.05, batch_size=7, epochs=3,
                        seed=2)
    a = fit(_net(), x, y, LOSS, opts)
    b = fit(_net(), x, y, LOSS, optimizer="momentum", learning_rate=0.05, batch_size=7,
            epochs=3, seed=2)
    assert _same(a.net, b.net) and a.stop.kind == "completed" and a.stopped is None
    c = fit(_net(), x, y, LOSS, opts, epochs=2)  # keywords override the object
    assert len(c.history) == 2 and c.epochs_run == 2
    with pytest.raises(ValueError, match="divergence"):
        TrainOptions(divergence=0.5)
    with pytest.raises(TypeError, match="TrainOptions"):
        fit(_net(), x, y, LOSS, {"epochs": 2})


def test_learning_rate_none_is_the_optimizers_default():
    from deltaprop.app.train import TrainOptions

    x, y = _data()
    res = fit(_net(), x, y, LOSS, optimizer="adam", epochs=1)
    assert res.history.epochs[0]["lr"] == 0.001  # was 0.1: fit's own default beat Adam's
    assert fit(_net(), x, y, LOSS, epochs=1).history.epochs[0]["lr"] == 0.1
    assert TrainOptions(optimizer="adam").resolved_learning_rate == 0.001


@pytest.mark.parametrize("value, expected", [(None, 0), ("full", 0), (" FULL ", 0), (0, 0),
                                             (1, 1), ("32", 32), (np.int64(5), 5)])
def test_parse_batch_size(value, expected):
    from deltaprop.app.train import parse_batch_size

    assert parse_batch_size(value) == expected


@pytest.mark.parametrize("value", ["half", -1, 2.5, True, "1e3"])
def test_parse_batch_size_refuses(value):
    from deltaprop.app.train import parse_batch_size

    with pytest.raises(ValueError, match="batch_size"):
        parse_batch_size(value)


def test_divergence_stops_with_a_typed_reason(tmp_path):
    """Adam at learning rate 1e6 keeps the loss finite (3e6, not NaN): the divergence
    factor stops it after epoch 1 and keeps the starting network."""
    x, y = _data()
    net = _net()
    ck = tmp_path / "ck.safetensors"
    res = fit(net, x, y, LOSS, optimizer="adam", learning_rate=1e6, epochs=20, checkpoint=ck)
    assert res.stop.kind == "diverged" and res.stop.failed and res.stop.epoch == 0
    assert "smaller learning rate" in str(res.stop) and "e+" in str(res.stop)
    assert len(res.history) == 0 and _same(res.net, net) and not ck.exists()
    off = fit(net, x, y, LOSS, optimizer="adam", learning_rate=1e6, epochs=3, divergence=None)
    assert off.stop.kind == "completed" and off.history.epochs[-1]["loss"] > 1e3


def test_single_class_is_refused_for_classification():
    x, _ = _data()
    with pytest.raises(ValueError, match="single class"):
        fit(_net(), x, np.zeros(len(x), dtype=int), LOSS)
    with pytest.raises(ValueError, match="single class"):
        fit(Network.init([4, 3, 1], "tanh", "sigmoid"), x, np.ones((len(x), 1)),
            "sigmoid-cross-entropy")
    fit(Network.init([4, 3, 1], "tanh", "identity"), x, np.ones((len(x), 1)), "mse",
        epochs=1)  # a constant regression target is fine


def test_resumed_run_counts_the_epochs_it_ran(tmp_path):
    x, y = _data()
    ck = tmp_path / "ck.safetensors"
    fit(_net(), x, y, LOSS, epochs=2, checkpoint=ck)
    res = fit(_net(), x, y, LOSS, epochs=5, checkpoint=ck, resume=True)
    assert len(res.history) == 5 and res.epochs_run == 3


def test_stop_reason_kinds_and_old_checkpoints():
    from deltaprop.app.train import StopReason

    with pytest.raises(ValueError, match="unknown stop kind"):
        StopReason("tired", "x")
    old = StopReason.from_dict("early stopping: loss did not improve for 3 epochs")
    assert old.kind == "early_stop" and not old.failed
    r = StopReason("diverged", "m", 4)
    assert StopReason.from_dict(r.to_dict()) == r and str(r) == "m"


def test_fmt_loss_uses_scientific_notation_for_huge_losses():
    from deltaprop.app.train import fmt_loss

    assert fmt_loss(0.25) == "0.2500" and fmt_loss(1e300) == "1.0000e+300"
    assert fmt_loss(3e6) == "3.0000e+06" and fmt_loss(float("nan")) == "nan"
