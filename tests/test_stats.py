"""Recording: exact merges, batch invariance, standard errors, backends, callback, CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest

from deltaprop import Network, backward, forward
from deltaprop.stats import Histogram, Moments, Record, record, record_pass
from deltaprop.stats.callback import RecordCallback

# (sizes, hidden activation, output, loss, K)
CASES = [
    ([5, 7, 3], "tanh", "identity", "mse", None),
    ([4, 6, 6, 2], "relu", "identity", "mse", 3),
    ([3, 5, 4], "sigmoid", "sigmoid", "sigmoid-cross-entropy", 2),
    ([6, 8, 4], "silu", "softmax", "softmax-cross-entropy", None),
]


def _data(sizes, loss, m=37, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(m, sizes[0]))
    if loss == "softmax-cross-entropy":
        return x, rng.integers(0, sizes[-1], m)
    if loss == "sigmoid-cross-entropy":
        return x, rng.uniform(size=(m, sizes[-1]))
    return x, rng.normal(size=(m, sizes[-1]))


def test_moments_of_and_merge_match_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, size=(4, 101, 5))
    parts = [Moments.of(x[:, s:s + 17], 1) for s in range(0, 101, 17)]
    left = parts[0]
    for p in parts[1:]:
        left = left.merge(p)
    right = parts[-1]
    for p in reversed(parts[:-1]):
        right = p.merge(right)
    for mom in (left, right, Moments.of(x, 1)):
        assert mom.count == 101
        np.testing.assert_allclose(mom.mean, x.mean(axis=1), rtol=1e-13)
        np.testing.assert_allclose(mom.var, x.var(axis=1, ddof=1), rtol=1e-12)
    pooled = Moments.of(x, 1).reduce((0, 1))
    np.testing.assert_allclose(pooled.mean, x.mean(), rtol=1e-13)
    np.testing.assert_allclose(pooled.m2, ((x - x.mean()) ** 2).sum(), rtol=1e-12)
    assert Moments.empty().merge(left) is left


def test_histogram_merge_is_exact_and_order_free():
    rng = np.random.default_rng(2)
    chunks = [rng.normal(0, s, 500) for s in (1e-3, 0.1, 7.0, 0.5)]
    one = Histogram.empty(32).add(np.concatenate(chunks))
    seq = Histogram.empty(32)
    for c in chunks:
        seq = seq.add(c)
    tree = (Histogram.empty(32).add(chunks[0]) + Histogram.empty(32).add(chunks[1])) + \
        (Histogram.empty(32).add(chunks[3]) + Histogram.empty(32).add(chunks[2]))
    for h in (seq, tree):
        assert h.exponent == one.exponent
        np.testing.assert_array_equal(h.counts, one.counts)
    assert one.total == 2000 and one.edges[-1] == 2.0**one.exponent > 7 * 3
    with pytest.raises(ValueError):
        Histogram.empty(30)


@pytest.mark.parametrize("sizes,act,out,loss,K", CASES)
def test_record_batches_equal_one_pass(sizes, act, out, loss, K):
    net = Network.init(sizes, act, out, init="glorot_normal", seed=3, K=K, bias_std=0.1)
    x, y = _data(sizes, loss)
    whole = record(net, x, y, loss)
    parts = record(net, x, y, loss, batch_size=5)
    assert set(whole.stats) == set(parts.stats)
    for key in whole.stats:
        for a, b in zip(whole.stats[key], parts.stats[key], strict=True):
            assert a.count == b.count
            np.testing.assert_allclose(a.mean, b.mean, rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose(a.m2, b.m2, rtol=1e-9, atol=1e-14)
    for l, h in whole.hist.items():
        np.testing.assert_array_equal(h.counts, parts.hist[l].counts)


@pytest.mark.smoke
def test_record_matches_engine_deltas():
    """The recorded moments are those of backward()'s delta[l], z[l], a[l] (hand check)."""
    sizes, K = [4, 6, 5, 2], 3
    net = Network.init(sizes, "tanh", init="normal", std=0.5, seed=4, K=K)
    x, y = _data(sizes, "mse", m=20)
    tr = forward(net, x)
    g = backward(net, tr, y, "mse")
    rec = record(net, x, y, "mse")
    for l in range(1, 4):
        d = g.delta[l]
        s = rec.layer_summary(l)
        assert s["mean"] == pytest.approx(d.mean(), rel=1e-12)
        assert s["second_moment"] == pytest.approx((d**2).mean(), rel=1e-12)
        # se over the K networks: sd of per-network averages / sqrt(K)
        per_net = (d**2).mean(axis=(1, 2))
        assert s["second_moment_se"] == pytest.approx(per_net.std(ddof=1) / np.sqrt(K))
        np.testing.assert_allclose(rec.unit_summary(l, "z")["mean"], tr.z[l].mean(axis=(0, 1)))
        # per-sample weight-gradient mean square
        a_prev = np.broadcast_to(tr.a[l - 1], d.shape[:2] + tr.a[l - 1].shape[-1:])
        per_sample = np.einsum("kmi,kmj->kmij", d, a_prev) ** 2
        assert rec.layer_summary(l, "dW2")["mean"] == pytest.approx(per_sample.mean())
    # cross moments of the last hidden layer
    df = 1 - tr.a[2] ** 2
    assert rec.layer_summary(2, "dfS")["mean"] == pytest.approx(
        (df * tr.a[2].sum(-1, keepdims=True)).mean())


def test_single_network_se_is_over_samples():
    net = Network.init([3, 4, 2], "tanh", seed=0)
    x, y = _data([3, 4, 2], "mse", m=50)
    d = backward(net, forward(net, x), y, "mse").delta[1]
    s = record(net, x, y, "mse").layer_summary(1)
    rows = d.mean(axis=1)
    assert s["mean_se"] == pytest.approx(rows.std(ddof=1) / np.sqrt(50))


def test_concat_networks_equals_one_stack():
    net = Network.init([3, 5, 2], "tanh", seed=5, K=4)
    x, y = _data([3, 5, 2], "mse")
    full = record(net, x, y, "mse")
    halves = record(net[0:2], x, y, "mse").concat(record(net[2:4], x, y, "mse"))
    assert halves.K == 4
    for key in full.stats:
        np.testing.assert_allclose(full.stats[key][0].mean, halves.stats[key][0].mean)
    assert full.layer_summary(1) == pytest.approx(halves.layer_summary(1))


def test_record_merge_rejects_other_networks():
    a = record(Network.init([3, 5, 2], "tanh"), *_data([3, 5, 2], "mse"), "mse")
    b = record(Network.init([3, 4, 2], "tanh"), *_data([3, 4, 2], "mse"), "mse")
    with pytest.raises(ValueError):
        a.merge(b)
    assert isinstance(a.merge(Record(a.sizes, a.K)), Record)


@pytest.mark.parametrize("backend", ["torch", "array_api_strict"])
def test_backends_match_numpy(backend):
    mod = pytest.importorskip(backend)
    net = Network.init([4, 6, 3], "tanh", seed=6, K=2)
    x, y = _data([4, 6, 3], "mse")
    ref = record(net, x, y, "mse", batch_size=10, bins=16)
    got = record(net.to(backend), mod.asarray(x), mod.asarray(y), "mse", batch_size=10,
                 bins=16)
    for key in ref.stats:
        for a, b in zip(ref.stats[key], got.numpy().stats[key], strict=True):
            np.testing.assert_allclose(a.mean, b.mean, rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose(a.m2, b.m2, rtol=1e-9, atol=1e-14)
    for l, h in ref.hist.items():
        np.testing.assert_array_equal(h.counts, got.hist[l].counts)


def test_callback_records_each_epoch():
    from deltaprop.app import train

    net = Network.init([4, 6, 2], "tanh", seed=0)
    x, y = _data([4, 6, 2], "mse", m=40)
    cb = RecordCallback()
    train.fit(net, x, y, "mse", epochs=3, batch_size=10, learning_rate=0.05, callbacks=[cb])
    assert [e for e, _ in cb.history] == [1, 2, 3]
    assert all(rec.count == 40 for _, rec in cb.history)
    rows = cb.summaries()
    assert len(rows) == 3 * 2 and {"epoch", "layer", "mean", "second_moment"} <= set(rows[0])


def test_record_pass_accepts_engine_gradients():
    net = Network.init([3, 4, 2], "relu", seed=1)
    x, y = _data([3, 4, 2], "mse")
    tr = forward(net, x)
    rec = record_pass(net, tr, backward(net, tr, y, "mse").delta)
    assert rec.layer_summary(2)["count"] == x.shape[0] * 2


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "deltaprop", "stats", *args],
                          capture_output=True, text=True)


@pytest.mark.smoke
def test_cli_json_rows_have_the_issue_format():
    out = _cli("--inputs", "gaussian", "--sizes", "6,8,8,3", "--K", "8", "--samples", "32",
               "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["layer"] for r in rows] == [1, 2, 3]
    moments = {"mean", "second_moment"}
    for r in rows:
        assert set(r) == {"layer", "units", "forward", "measured", "predicted"}
        assert r["forward"] == "law"
        assert set(r["measured"]) == {"mean", "mean_se", "second_moment", "second_moment_se",
                                      "se_within_network_only"}
        assert r["measured"]["se_within_network_only"] is False  # K = 8: se over networks
        assert set(r["predicted"]) <= {"exact", "independence", "mean_field", "exact_last_layer"}
        # the exact prediction at every layer, with its own integration error
        assert set(r["predicted"]["exact"]) == moments | {"mean_se", "second_moment_se"}
        for p in r["predicted"].values():
            assert moments & set(p) and set(p) <= moments | {"mean_se", "second_moment_se"}
    assert set(rows[1]["predicted"]["exact_last_layer"]) == moments
    text = _cli("--inputs", "gaussian", "--sizes", "6,8,8,3", "--K", "8", "--samples", "32",
                "--forward", "measured").stdout
    assert "forward model of the predictions: measured (the recorded forward passes)" in text
    assert rows[0]["units"] == 8


def test_cli_out_and_bad_input(tmp_path):
    out = _cli("--inputs", "gaussian", "--sizes", "4,6,2", "--K", "4", "--samples", "16",
               "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    names = {p.name for p in tmp_path.iterdir()}
    assert {"rows.json", "rows.csv", "table.txt", "comparison.png", "depth.png",
            "histograms.png"} <= names
    bad = _cli("--activations", "nope")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_cli_model_file(tmp_path):
    io = pytest.importorskip("deltaprop.app.files")
    net = Network.init([64, 16, 10], "tanh", seed=0)
    path = tmp_path / "m.safetensors"
    io.save_model(path, net, {"loss": "mse"})
    out = _cli("--model", str(path), "--inputs", "digits", "--samples", "200", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) == 2 and rows[0]["units"] == 16
    assert all(r["measured"]["se_within_network_only"] for r in rows)  # one network


def test_single_network_prints_no_z():
    """K = 1: the se covers one network's samples only (not the spread between networks),
    so no z is printed or returned, and the table, JSON and CSV say why."""
    from deltaprop.stats import Study, run_study, table, z_scores
    from deltaprop.stats.report import K1_NOTE, to_csv

    res = run_study(Study(sizes=(6, 16, 16, 3), inputs="gaussian", K=1, m=64, bins=None))
    assert all(r["measured"]["se_within_network_only"] for r in res.rows)
    assert all(z is None for r in res.rows for z in z_scores(r).values())
    text = table(res.rows)
    assert text.splitlines()[-1] == K1_NOTE
    assert all(ln.split()[-1] in ("n/a", "-") for ln in text.splitlines()[2:5]), text
    lines = to_csv(res.rows).splitlines()
    assert lines[0].endswith(",z,note")
    assert all(ln.endswith(",,se within one network") for ln in lines[1:])
    many = run_study(Study(sizes=(6, 16, 16, 3), inputs="gaussian", K=2, m=64, bins=None))
    assert K1_NOTE not in table(many.rows)
    assert all(isinstance(z, float) for z in z_scores(many.rows[0]).values())


def test_one_pass_sums_fall_back_where_they_would_cancel():
    """z[1] = 1e5 + O(1e-2): S2 - m mean^2 would lose every digit; the two-pass M2 is used."""
    net = Network.init([3, 4, 2], "identity", init="normal", std=0.01, bias_mean=1e5, seed=0)
    x, y = _data([3, 4, 2], "mse", m=64)
    z = forward(net, x).z[1]
    rec = record(net, x, y, "mse", batch_size=16)
    mom = rec.get("z", 1)[0]
    np.testing.assert_allclose(mom.m2[0], ((z - z.mean(0)) ** 2).sum(0), rtol=1e-6)


def test_records_merge_after_pickling_between_processes():
    import pickle

    net = Network.init([3, 5, 2], "tanh", seed=2, K=2)
    x, y = _data([3, 5, 2], "mse", m=30)
    a = pickle.loads(pickle.dumps(record(net, x[:12], y[:12], "mse", bins=8).numpy()))
    b = pickle.loads(pickle.dumps(record(net, x[12:], y[12:], "mse", bins=8).numpy()))
    whole = record(net, x, y, "mse", bins=8)
    assert a.merge(b).layer_summary(1) == pytest.approx(whole.layer_summary(1))
    np.testing.assert_array_equal(a.merge(b).hist[2].counts, whole.hist[2].counts)


@pytest.mark.parametrize("args, match", [
    (["--samples", "-5"], "--samples must be >= 1"),  # was x[:-5], silently
    (["--samples", "0", "--inputs", "gaussian"], "must be >= 1"),  # was 256, silently
    (["--K-chunk", "-2"], "--K-chunk must be >= 1"),  # was an AttributeError
    (["--K", "0"], "K must be >= 1"),
])
def test_cli_bad_counts_are_one_line_exit_2(capsys, args, match):
    import re

    from deltaprop.app.cli import main

    assert main(["stats", "--sizes", "64,8,10", "--K", "2", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(match, err), err


def test_record_of_no_samples_says_so():
    net = Network.init([3, 4, 2], "tanh", seed=0)
    with pytest.raises(ValueError, match="empty batch"):
        record(net, np.zeros((0, 3)), np.zeros((0, 2)), "mse")


def test_cli_question_line_prints_no_negative_zero(capsys):
    # mu_w = 0 times a negative measured covariance is -0.0 (here for hidden 16): printed "0"
    from deltaprop.app.cli import main

    assert main(["stats", "--hidden", "16", "--K", "1", "--bins", "0",
                 "--forward", "measured"]) == 0
    out = capsys.readouterr().out.splitlines()
    line = [s for s in out if s.startswith("E[delta] question")][0]
    assert line.endswith("covariance term 0"), line


def test_cli_model_explicit_loss_mse_is_used(tmp_path, capsys):
    # --loss mse used to be taken for "not given" and replaced by the model's own loss
    io = pytest.importorskip("deltaprop.app.files")
    from deltaprop.app.cli import main

    net = Network.init([64, 8, 10], "tanh", "softmax", seed=0)
    path = tmp_path / "m.safetensors"
    io.save_model(path, net, {"loss": "softmax-cross-entropy"})
    second = {}
    for loss in (None, "mse"):
        argv = ["stats", "--model", str(path), "--inputs", "digits", "--samples", "100",
                "--bins", "0", "--json"] + (["--loss", loss] if loss else [])
        assert main(argv) == 0
        second[loss] = json.loads(capsys.readouterr().out)[-1]["measured"]["second_moment"]
    assert second[None] > 10 * second["mse"], second  # p - y vs J^T (p - y): ~85x


def test_few_samples_keep_every_class():
    """--samples 1 on digits still builds ten outputs (classes from the whole data set)."""
    from deltaprop.stats.study import Study, load_inputs

    x, y, y_mean, _, n0, nL = load_inputs(Study(sizes=(None, 8, None), inputs="digits", m=1))
    assert (x.shape, n0, nL) == ((1, 64), 64, 10) and y.shape == (1, 10)
    assert y_mean == pytest.approx(0.1)


# --- command line: nothing lost, progress, --config, --quiet, figures ---------------------

TINY = ["stats", "--sizes", "4,6,2", "--inputs", "gaussian", "--K", "3", "--samples", "20",
        "--batch-size", "8"]


def test_cli_out_twice_needs_force_and_keeps_other_files(tmp_path, capsys):
    from deltaprop.app.cli import main

    out = tmp_path / "study"
    assert main([*TINY, "--out", str(out), "--quiet"]) == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {"rows.json", "table.txt", "histograms.png", "study.json"} <= set(first)
    (out / "notes.txt").write_text("mine")
    (out / ".rows.json.0123456789ab.tmp").write_text("left by a killed run")
    capsys.readouterr()
    assert main([*TINY, "--out", str(out), "--seed", "1"]) == 2  # the first study stays
    assert "not empty" in capsys.readouterr().err
    assert all((out / n).read_bytes() == b for n, b in first.items())
    assert main([*TINY, "--out", str(out), "--seed", "1", "--bins", "0", "--force",
                 "--quiet"]) == 0
    names = {p.name for p in out.iterdir()}
    assert "histograms.png" not in names  # the first study's figure is not left beside
    assert (out / "notes.txt").read_text() == "mine" and not any(n.endswith(".tmp")
                                                                 for n in names)
    assert (out / "rows.json").read_bytes() != first["rows.json"]
    killed = tmp_path / "killed"  # a kill during a write left only a temporary file
    killed.mkdir()
    (killed / ".table.txt.a1b2c3d4e5f6.tmp").write_text("half")
    assert main([*TINY, "--out", str(killed), "--bins", "0", "--quiet"]) == 0
    assert not any(p.name.endswith(".tmp") for p in killed.iterdir())


def test_cli_progress_counts_network_batches(monkeypatch, capsys):
    from deltaprop.app.cli import main
    from deltaprop.app.cli import stats as cli_stats

    seen = []

    class Bar:
        n, total = 0, None

        def update(self, k):
            self.n += k
            seen.append((self.n, self.total))

        def set_description(self, text):
            seen.append(text)

        def close(self):
            seen.append("closed")

    def bar(quiet, total, desc, unit="it"):
        return None if quiet else Bar()

    monkeypatch.setattr(cli_stats, "progress_bar", bar)
    assert main([*TINY, "--bins", "0"]) == 0
    # 20 samples in batches of 8: 3 batches of 3 networks = 9 network-batches
    assert seen == [(3, 9), (6, 9), (9, 9), "predicting (theory)", "closed"], seen
    assert capsys.readouterr().err.startswith("(")  # the timing line
    seen.clear()
    assert main([*TINY, "--bins", "0", "--quiet"]) == 0
    assert seen == [] and capsys.readouterr().err == ""


def test_cli_config_file_equals_flags_and_flags_win(tmp_path, capsys):
    from deltaprop.app.cli import main

    cfg = tmp_path / "study.toml"
    cfg.write_text('sizes = [4, 6, 2]\ninputs = "gaussian"\nK = 3\nsamples = 20\n'
                   'batch-size = 8\nweight_std = [0.9, 1.1]\nbins = 0\njson = true\n')
    assert main(["stats", "--config", str(cfg), "--quiet"]) == 0
    from_file = json.loads(capsys.readouterr().out)
    assert main([*TINY, "--weight-std", "0.9,1.1", "--bins", "0", "--json", "--quiet"]) == 0
    assert from_file == json.loads(capsys.readouterr().out)
    assert main(["stats", "--config", str(cfg), "--quiet", "--K", "4"]) == 0
    assert json.loads(capsys.readouterr().out) != from_file  # the flag wins


def test_plots_have_titles_distinct_colours_and_no_hidden_legend(tmp_path, monkeypatch):
    from matplotlib.colors import to_hex

    from deltaprop.stats import Study, plots, run_study

    for L in (1, 5, 9, 12):
        colours = [to_hex(c) for c in plots.layer_colours(L)]
        assert len(set(colours)) == L
    figs = {}

    def keep(fig, plt, path):
        figs[path.name] = fig
        return path

    monkeypatch.setattr(plots, "_save", keep)
    res = run_study(Study(sizes=(6, 8, 8, 8, 3), inputs="gaussian", K=2, m=32, bins=16,
                          forward_model="gaussian"))
    rows = [dict(r, predicted=dict(r["predicted"])) for r in res.rows]
    for r in rows:  # a second theory equal to the first at every layer
        r["predicted"]["independence"] = dict(r["predicted"]["mean_field"])
    plots.plot_comparison(rows, tmp_path / "c.png")
    plots.plot_depth(rows, tmp_path / "d.png")
    plots.plot_histograms(res.record, tmp_path / "h.png")
    for name, fig in figs.items():
        titles = [fig._suptitle.get_text() if fig._suptitle else ""] + \
            [ax.get_title() for ax in fig.axes]
        assert any(titles), name
        for ax in fig.axes:
            labels = ax.get_legend_handles_labels()[1]
            assert len(labels) == len(set(labels)), (name, labels)
            assert not any(lb in ("mean field", "independence (the E[delta] question)")
                           for lb in labels), labels  # joined into one entry, not hidden
    hist = figs["h.png"].axes[0]
    assert len({to_hex(line.get_color()) for line in hist.get_lines()}) == 4  # layers 1..4


def test_product_figures_have_titles():
    import numpy as np

    from deltaprop.app import plot
    from deltaprop.theory.signal import phase_diagram

    rows = [{"epoch": e, "loss": 1 / e, "accuracy": 0.5, "val_loss": 1.2 / e}
            for e in (1, 2, 3)]
    fig = plot.learning_curves(rows)
    assert fig._suptitle.get_text() == "learning curves: training and validation per epoch"
    assert [ax.get_title() for ax in fig.axes] == ["loss J per epoch", "accuracy per epoch"]
    data = phase_diagram("tanh", np.linspace(0.5, 3, 4), np.linspace(0.01, 0.2, 3))
    assert plot.phase_diagram(data).axes[0].get_title() == \
        "phase diagram of the mean-field network"


def test_measured_forward_model_on_data_rows_shared_by_the_stack():
    """--forward measured with data inputs: the K networks share x (m, n_0), so a[0] is not
    stacked like z[l] (this raised 'operands could not be broadcast').  At layer L the exact
    weight-gradient prediction given the forward pass is the measured value itself."""
    from deltaprop.stats.study import Study, run_study

    res = run_study(Study(sizes=(None, 8, None), K=3, inputs="iris", m=20,
                          forward_model="measured", weight_grads=True))
    w = res.rows[-1]["weight_grads"]
    assert w["predicted"]["exact"]["second_moment"] == \
        pytest.approx(w["measured"]["second_moment"], rel=1e-12)
