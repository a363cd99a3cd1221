"""Per-layer statistics during training (:mod:`deltaprop.stats.layer_stats`) and the
batch-gradient theory at initialisation (:mod:`deltaprop.theory.batch_gradient`), each
checked against a plain NumPy computation written here.

Statistical checks use fixed seeds and bands of 4 computed standard errors (the ensemble's
and the Monte Carlo integral's, in quadrature).
"""

import csv
import json
import math

import numpy as np
import pytest

from deltaprop import Network
from deltaprop.app import data
from deltaprop.app.train import fit
from deltaprop.stats.ensemble import prior
from deltaprop.stats.layer_stats import (
    LayerStatsCallback,
    flat,
    layer_stats,
    plot,
    table,
    unflat,
)
from deltaprop.theory.batch_gradient import batch_gradient_theory, batch_second_moment


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


ACTS = {"sigmoid": (sigmoid, lambda z: sigmoid(z) * (1 - sigmoid(z))),
        "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
        "relu": (lambda z: np.maximum(z, 0), lambda z: (z > 0) * 1.0)}


def numpy_pass(W, b, x, y, hidden, output, loss):
    """Plain forward and backward pass of a stack of K networks on shared data x (m, n_0):
    returns a (with a[0] = x) and delta, lists by layer, arrays (K, m, n_l)."""
    f, df = ACTS[hidden]
    L = len(W) - 1
    a, z = [np.broadcast_to(x, (W[1].shape[0], *x.shape))], [None]
    for l in range(1, L + 1):
        z.append(a[-1] @ np.swapaxes(W[l], 1, 2) + b[l][:, None, :])
        if l < L:
            a.append(f(z[-1]))
        elif output == "sigmoid":
            a.append(sigmoid(z[-1]))
        elif output == "softmax":
            e = np.exp(z[-1] - z[-1].max(-1, keepdims=True))
            a.append(e / e.sum(-1, keepdims=True))
        else:
            a.append(z[-1])
    d = [None] * (L + 1)
    d[L] = a[L] - y  # sigmoid / softmax cross-entropy, and MSE with a linear output
    for l in range(L - 1, 0, -1):
        d[l] = (d[l + 1] @ W[l + 1]) * df(z[l])
    return a, d


def numpy_stats(W, b, x, y, hidden, output, loss):
    """Per network (K,) and layer: E[delta^2], ||db||^2, ||dW||_F^2 over the whole batch."""
    a, d = numpy_pass(W, b, x, y, hidden, output, loss)
    m, out = x.shape[0], {}
    for l in range(1, len(W)):
        db = d[l].mean(axis=1)
        dW = np.swapaxes(d[l], 1, 2) @ a[l - 1] / m
        out[l] = {"delta2": (d[l] ** 2).mean(axis=(1, 2)), "db2": (db**2).sum(-1),
                  "dW2": (dW**2).sum(axis=(1, 2))}
    return out


def digits(m, seed=0):
    ds = data.load("digits")
    x = (ds.x - ds.x.mean(0)) / np.where(ds.x.std(0) > 0, ds.x.std(0), 1.0)
    i = np.random.default_rng(seed).permutation(len(x))[:m]
    return x[i], np.eye(10)[ds.y[i]]


# ---------------------------------------------------------------------- measurement
@pytest.mark.parametrize("batch_size", [None, 7])
def test_layer_stats_are_the_numpy_full_set_gradients(batch_size):
    sizes = [64, 12, 9, 10]
    net = Network.init(sizes, "tanh", "softmax", init="glorot_normal", bias_std=0.2, seed=1)
    moved = net.replace(W=[None] + [w + 0.01 * (l + 1) for l, w in enumerate(net.W[1:])])
    x, y = digits(50)
    got = layer_stats(moved, x, y, "softmax-cross-entropy", net, batch_size=batch_size)
    W = [None] + [np.asarray(w)[None] for w in moved.W[1:]]
    b = [None] + [np.asarray(v)[None] for v in moved.b[1:]]
    ref = numpy_stats(W, b, x, y, "tanh", "softmax", "softmax-cross-entropy")
    for l in (1, 2, 3):
        e = got[l]
        assert e["delta2"] == pytest.approx(ref[l]["delta2"][0], rel=1e-12)
        assert e["db_norm"] == pytest.approx(math.sqrt(ref[l]["db2"][0]), rel=1e-12)
        assert e["dW_norm"] == pytest.approx(math.sqrt(ref[l]["dW2"][0]), rel=1e-12)
        W0 = np.asarray(net.W[l])
        dist = np.linalg.norm(np.asarray(moved.W[l]) - W0) / np.linalg.norm(W0)
        assert e["W_distance"] == pytest.approx(dist, rel=1e-12)
    assert unflat(flat(got)) == got


def test_batch_second_moment_by_hand():
    # m = 4, E_i[g.g] = 2, E_{i!=i'}[g.g'] = 1: 2/4 + (3/4) 1 = 1.25
    assert batch_second_moment(2.0, 1.0, 4) == 1.25
    # the formula is the mean of (1/m^2) sum_{i,i'} g_i . g_i' over the pairs
    g = np.random.default_rng(0).normal(size=(5, 3))
    G = g @ g.T
    diag, off = np.trace(G) / 5, (G.sum() - np.trace(G)) / 20
    assert batch_second_moment(diag, off, 5) == pytest.approx((g.mean(0) ** 2).sum(), rel=1e-14)


# ---------------------------------------------------------------------- theory
CASES = {  # sizes, hidden, output, loss, prior kwargs, data
    "nielsen-sigmoid": ([64, 30, 30, 30, 10], "sigmoid", "sigmoid", "sigmoid-cross-entropy",
                        dict(init="lecun_normal", sigma_b2=1.0), "digits"),
    "tanh-softmax": ([64, 24, 24, 10], "tanh", "softmax", "softmax-cross-entropy",
                     dict(init="glorot_normal"), "digits"),
    "relu-mse": ([8, 32, 32, 3], "relu", "identity", "mse",
                 dict(init="he_normal", sigma_b2=0.1), "gaussian"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_one_sample_is_the_single_sample_exact_theory(name):
    """pair_backward with a = b (one constraint: the pseudo-inverse branch) equals
    theory.conditional's E[delta[l]^2 | F] n_l, draw by draw, to rounding."""
    from deltaprop.theory.batch_gradient import pair_backward, pair_forward
    from deltaprop.theory.conditional import backward_given_forward

    sizes, hidden, output, loss, kw, kind = CASES[name]
    x, y = _case_data(kind, sizes, m=300)
    pr, acts = prior(sizes, **kw), [hidden] * (len(sizes) - 2) + [output]
    za, aa, zb, ab = pair_forward(pr, acts, x, x, np.random.default_rng(0))
    T = pair_backward(pr, acts, loss, za, aa, y, zb, ab, y)
    second = backward_given_forward(pr, acts, loss, za, aa, y)[1]
    for l in T:
        np.testing.assert_allclose(T[l], second[l] * sizes[l], rtol=1e-12)


def _case_data(kind, sizes, m=200):
    if kind == "digits":
        return digits(m)
    rng = np.random.default_rng(3)
    return rng.standard_normal((m, sizes[0])), rng.standard_normal((m, sizes[-1]))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_batch_gradient_theory_matches_numpy_ensemble(name):
    """E[delta^2], E||db||^2 and E||dW||^2 over K = 400 networks drawn at initialisation
    (plain NumPy, Gaussian weights) against the theory at every layer, within 4 se."""
    sizes, hidden, output, loss, kw, kind = CASES[name]
    x, y = _case_data(kind, sizes)
    pr = prior(sizes, **kw)
    rng = np.random.default_rng(7)
    K, L = 400, len(sizes) - 1
    W = [None] + [rng.normal(0, math.sqrt(pr.weight_var[l]), (K, sizes[l], sizes[l - 1]))
                  for l in range(1, L + 1)]
    b = [None] + [rng.normal(pr.bias_mean[l], math.sqrt(pr.bias_var[l]), (K, sizes[l]))
                  for l in range(1, L + 1)]
    meas = numpy_stats(W, b, x, y, hidden, output, loss)
    th = batch_gradient_theory(pr, [hidden] * (L - 1) + [output], loss, x, y, seed=2)
    for l in range(1, L + 1):
        t = th[l]
        for q, sq, se_t in (("delta2", t["delta2"], t["delta2_se"]),
                            ("db2", t["db_norm"] ** 2, 2 * t["db_norm"] * t["db_norm_se"]),
                            ("dW2", t["dW_norm"] ** 2, 2 * t["dW_norm"] * t["dW_norm_se"])):
            v = meas[l][q]
            band = 4 * math.hypot(v.std(ddof=1) / math.sqrt(K), se_t)
            assert abs(v.mean() - sq) < band, (name, l, q, v.mean(), sq, band)
    if name == "nielsen-sigmoid":  # each layer learns about 5x slower than the next
        for l in range(1, L - 1):
            assert 1 / 7 < th[l]["db_norm"] / th[l + 1]["db_norm"] < 1 / 3


# ---------------------------------------------------------------------- callback
def _nielsen(seed=0):
    x, y = digits(300, seed=1)
    net = Network.init([64, 30, 30, 30, 10], "sigmoid", "sigmoid", init="lecun_normal",
                       bias_std=1.0, seed=seed)
    return net, x, y


OPTS = dict(optimizer="gd", learning_rate=0.1, batch_size=10, seed=0)


def test_callback_leaves_training_unchanged_and_fills_the_history():
    net, x, y = _nielsen()
    plain = fit(net, x, y, "sigmoid-cross-entropy", epochs=3, **OPTS)
    cb = LayerStatsCallback(x, y, "sigmoid-cross-entropy", net, pairs=2048, max_pairs=2048)
    res = fit(net, x, y, "sigmoid-cross-entropy", epochs=3, callbacks=[cb], **OPTS)
    for w, v in zip(plain.net.W[1:], res.net.W[1:], strict=True):
        np.testing.assert_array_equal(w, v)  # the fused step stays on: bit for bit
    assert [e for e, _ in cb.history] == [0, 1, 2, 3]
    assert cb.initial_stats[1]["W_distance"] == 0.0
    for row, (epoch, s) in zip(res.history.epochs, cb.history[1:], strict=True):
        assert row["epoch"] == epoch and unflat(row) == s
    # epoch 3's numbers are the final network's
    last = layer_stats(res.net, x, y, "sigmoid-cross-entropy", net)
    assert unflat(res.history.epochs[-1]) == last
    assert cb.theory is not None and set(cb.theory) == {1, 2, 3, 4}
    text = table([{"epoch": e, **flat(s)} for e, s in cb.history], cb.theory)
    assert "speed of learning" in text and "theory" in text
    assert len(cb.rows()) == 4 * 4 and "theory_db_norm" in cb.rows()[0]
    assert json.dumps(cb.summary())  # JSON-able
    assert cb.plot().axes


def test_callback_numbers_survive_a_resume(tmp_path):
    net, x, y = _nielsen()
    ck = tmp_path / "ck.safetensors"
    full = fit(net, x, y, "sigmoid-cross-entropy", epochs=4,
               callbacks=[LayerStatsCallback(x, y, "sigmoid-cross-entropy", net, theory=False)],
               **OPTS)
    fit(net, x, y, "sigmoid-cross-entropy", epochs=2, checkpoint=ck,
        callbacks=[LayerStatsCallback(x, y, "sigmoid-cross-entropy", net, theory=False)], **OPTS)
    resumed = fit(net, x, y, "sigmoid-cross-entropy", epochs=4, checkpoint=ck, resume=True,
                  callbacks=[LayerStatsCallback(x, y, "sigmoid-cross-entropy", net,
                                                theory=False)], **OPTS)
    assert [unflat(r) for r in resumed.history.epochs] == [unflat(r) for r in full.history.epochs]
    assert len(unflat(resumed.history.epochs[0])) == 4


def test_plot_skips_zero_distance_and_draws_theory():
    net, x, y = _nielsen()
    cb = LayerStatsCallback(x[:100], y[:100], "sigmoid-cross-entropy", net, pairs=1024,
                            max_pairs=1024)
    fig = plot([{"epoch": 0, **flat(cb.initial_stats)}], cb.theory)
    assert len(fig.axes) == 4 and fig.axes[0].get_yscale() == "log"


# ---------------------------------------------------------------------- CLI
@pytest.mark.smoke
def test_cli_layer_stats(tmp_path, capsys):
    from deltaprop.app.cli import main

    small = ["train", "--data", "iris", "--hidden", "8,8", "--epochs", "3"]
    assert main([*small, "--layer-stats", "--out", str(tmp_path / "run")]) == 0
    text = capsys.readouterr().out
    assert "speed of learning" in text and "theory" in text
    run = tmp_path / "run"
    assert (run / "layer_stats.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["0", "1", "2", "3"]
    assert rows[0]["loss"] == "" and float(rows[0]["W_distance[1]"]) == 0.0
    assert float(rows[3]["W_distance[3]"]) > 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 3 and "db_norm[2]" in metrics["epochs"][0]
    assert set(metrics["layer_stats"]["theory"]) == {"1", "2", "3"}
    assert json.loads((run / "config.json").read_text())["settings"]["layer_stats"] is True
    # off by default: no columns, no figure
    assert main([*small, "--quiet", "--out", str(tmp_path / "plain")]) == 0
    assert not (tmp_path / "plain" / "layer_stats.png").exists()
    assert "delta2[1]" not in (tmp_path / "plain" / "metrics.csv").read_text()
    # a folder holding a user's layer_stats.png is not a place for a run
    user = tmp_path / "user"
    user.mkdir()
    (user / "layer_stats.png").write_bytes(b"mine")
    capsys.readouterr()
    assert main([*small, "--layer-stats", "--quiet", "--out", str(user)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (user / "layer_stats.png").read_bytes() == b"mine"
