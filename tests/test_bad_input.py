"""Bad input raises ValueError/TypeError whose message names the argument and what was expected.

One table row per mistake: (id, exception, regex the message must match, the call).
"""

from __future__ import annotations

import numpy as np
import pytest

import deltaprop as dp
from deltaprop import Network
from deltaprop.gradcheck import gradcheck
from deltaprop.init import init_layer

CE, BCE, MSE = "softmax-cross-entropy", "sigmoid-cross-entropy", "mse"
rng = np.random.default_rng(0)
X = rng.normal(size=(5, 3))
LABELS = np.array([0, 1, 2, 1, 0])


def soft():  # 3 inputs -> 4 tanh -> 3 softmax
    return Network.init([3, 4, 3], "tanh", "softmax", seed=1)


def lin():  # 3 inputs -> 4 tanh -> 2 identity
    return Network.init([3, 4, 2], "tanh", "identity", seed=1)


def sig():  # 3 inputs -> 2 sigmoid
    return Network.init([3, 2], "sigmoid", "sigmoid", seed=1)


def stack():  # K = 3 networks 3 -> 4 -> 2 identity
    return Network.init([3, 4, 2], "tanh", "identity", seed=1, K=3)


def Y(*shape, value=0.5):
    return np.full(shape, value)


CASES = [
    # --- shapes ---------------------------------------------------------------------
    ("x-width", ValueError, r"x has shape \(5, 2\); expected \(m, 3\)",
     lambda: dp.gradients(soft(), X[:, :2], LABELS, CE)),
    ("x-1d", ValueError, r"x has shape \(3,\); expected \(m, 3\)",
     lambda: dp.forward(soft(), X[0])),
    ("x-3d-single", ValueError, r"x has shape \(2, 5, 3\); expected \(m, 3\)",
     lambda: dp.forward(soft(), np.stack([X, X]))),
    ("x-stack-wrong-K", ValueError, r"x has shape \(2, 5, 3\); expected \(m, 3\) or \(3, m, 3\)",
     lambda: dp.forward(stack(), np.stack([X, X]))),
    ("y-length", ValueError, r"y has shape \(4, 2\); expected \(m, n_L\) = \(5, 2\)",
     lambda: dp.gradients(lin(), X, Y(4, 2), MSE)),
    ("y-width", ValueError, r"y has shape \(5, 3\); expected \(m, n_L\) = \(5, 2\)",
     lambda: dp.gradients(lin(), X, Y(5, 3), MSE)),
    ("y-3d-single", ValueError, r"y has shape \(4, 5, 2\); expected \(m, n_L\) = \(5, 2\)$",
     lambda: dp.gradients(lin(), X, Y(4, 5, 2), MSE)),
    ("y-stack-wrong-K", ValueError, r"y has shape \(2, 5, 2\); expected .* or \(3, 5, 2\)",
     lambda: dp.gradients(stack(), X, Y(2, 5, 2), MSE)),
    ("labels-length", ValueError, r"y has shape \(4,\); expected .*\(5, 3\) or integer labels",
     lambda: dp.gradients(soft(), X, LABELS[:4], CE)),
    ("labels-2d-single", ValueError, r"y has shape \(2, 5\); expected .* integer labels \(m,\)",
     lambda: dp.gradients(soft(), X, np.stack([LABELS, LABELS]), CE)),
    ("float-labels", ValueError, r"y has shape \(5,\); expected \(m, n_L\) = \(5, 3\)",
     lambda: dp.gradients(soft(), X, LABELS.astype(float), CE)),
    ("theta-shape", ValueError, r"theta for layer 1 must have shape \(4, 4\), got \(4, 3\)",
     lambda: soft().with_theta(1, np.zeros((4, 3)))),
    ("theta-layer", ValueError, r"layer index must be in 1\.\.2, got 3",
     lambda: soft().theta(3)),
    ("W-shapes", ValueError, r"W\[2\] has 5 inputs but layer 1 has 4 units",
     lambda: Network.from_layers([np.zeros((4, 3)), np.zeros((2, 5))], [np.zeros(4), np.zeros(2)],
                                 ["tanh", "identity"])),
    ("b-shape", ValueError, r"b\[1\] has shape \(3,\), expected \(4,\)",
     lambda: Network.from_layers([np.zeros((4, 3))], [np.zeros(3)], ["tanh"])),
    ("layers-count", ValueError, r"W, b and activations need one entry per layer, got 2, 2, 1",
     lambda: Network.from_layers([np.zeros((4, 3)), np.zeros((2, 4))],
                                 [np.zeros(4), np.zeros(2)], ["tanh"])),
    # --- names and architecture ------------------------------------------------------
    ("activations-count", ValueError, r"activations needs one name per layer 1\.\.L \(2\), got 3",
     lambda: Network.init([3, 4, 2], ["tanh", "tanh", "identity"])),
    ("unknown-activation", ValueError, r"unknown activation 'tanhh'; known: identity, sigmoid",
     lambda: Network.init([3, 4, 2], ["tanhh", "identity"])),
    ("activation-type", TypeError, r"activation must be a name or an Activation, got int",
     lambda: Network.init([3, 4, 2], [3, "identity"])),
    ("unknown-loss", ValueError, r"unknown loss 'hinge'; known: mse, sigmoid-cross-entropy",
     lambda: dp.gradients(soft(), X, LABELS, "hinge")),
    ("unknown-init", ValueError, r"unknown initialiser 'gauss'; known: normal, uniform",
     lambda: Network.init([3, 2], "tanh", init="gauss")),
    ("unknown-init-layer", ValueError, r"unknown initialiser 'gauss'",
     lambda: init_layer("gauss", rng, 2, 3)),
    ("softmax-hidden", ValueError,
     r"activations: softmax may only be the output activation \(layer L = 2\), not layer 1's",
     lambda: Network.init([3, 4, 2], ["softmax", "softmax"])),
    ("sizes-zero", ValueError, r"sizes must list >= 2 positive .*got \[3, 0, 2\]",
     lambda: Network.init([3, 0, 2], "tanh")),
    ("sizes-one", ValueError, r"sizes must list >= 2 positive .*got \[3\]",
     lambda: Network.init([3], "tanh")),
    ("sizes-float", ValueError, r"sizes must list >= 2 positive integer .*got \[3, 2\.5\]",
     lambda: Network.init([3, 2.5], "tanh")),
    ("K-zero", ValueError, r"K must be a positive integer, got 0",
     lambda: Network.init([3, 2], "tanh", K=0)),
    ("dtype", ValueError, r"dtype must be float32 or float64, got 'int32'",
     lambda: Network.init([3, 2], "tanh", dtype="int32")),
    ("std-negative", ValueError, r"std must be >= 0, got -1",
     lambda: Network.init([3, 2], "tanh", std=-1)),
    ("std-per-layer", ValueError, r"std needs one value per layer \(2\), got 3",
     lambda: Network.init([3, 4, 2], "tanh", std=[1, 1, 1])),
    ("unknown-backend", ValueError, r"backend 'nosuchlib' is not installed",
     lambda: soft().to("nosuchlib")),
    # --- values ----------------------------------------------------------------------
    ("x-nan", ValueError, r"x contains NaN or inf",
     lambda: dp.forward(soft(), np.where(X > 1, np.nan, X))),
    ("x-inf", ValueError, r"x contains NaN or inf",
     lambda: dp.forward(soft(), np.where(X > 1, -np.inf, X))),
    ("y-nan", ValueError, r"y contains NaN or inf",
     lambda: dp.gradients(lin(), X, Y(5, 2, value=np.nan), MSE)),
    ("y-inf", ValueError, r"y contains NaN or inf",
     lambda: dp.gradients(lin(), X, Y(5, 2, value=np.inf), MSE)),
    ("labels-too-big", ValueError, r"y: labels must lie in 0\.\.2 \(n_L = 3 classes\), got 0\.\.3",
     lambda: dp.gradients(soft(), X, LABELS + np.array([0, 0, 1, 0, 0]), CE)),
    ("labels-negative", ValueError, r"y: labels must lie in 0\.\.2 .*got -1\.\.1",
     lambda: dp.gradients(soft(), X, LABELS - 1, CE)),
    ("empty-batch", ValueError, r"x is an empty batch \(m = 0 samples\); expected \(m, 3\)",
     lambda: dp.gradients(soft(), X[:0], LABELS[:0], CE)),
    ("bce-y-above-1", ValueError, r"y must lie in \[0, 1\] for sigmoid-cross-entropy",
     lambda: dp.gradients(sig(), X, Y(5, 2, value=1.5), BCE)),
    ("bce-y-negative", ValueError, r"y must lie in \[0, 1\] for sigmoid-cross-entropy",
     lambda: dp.gradients(sig(), X, Y(5, 2, value=-0.1), BCE)),
    ("ce-y-negative", ValueError, r"y must lie in \[0, 1\] for softmax-cross-entropy",
     lambda: dp.gradients(soft(), X, np.tile([1.5, -0.5, 0.0], (5, 1)), CE)),
    ("ce-rows-not-distributions", ValueError,
     r"y: each row must sum to 1 for softmax-cross-entropy .* or give integer labels",
     lambda: dp.gradients(soft(), X, Y(5, 3, value=0.5), CE)),
    ("x-complex", TypeError, r"x must hold real numbers, got dtype complex128",
     lambda: dp.forward(soft(), X.astype(complex))),
    ("x-strings", TypeError, r"x must hold real numbers",
     lambda: dp.forward(soft(), np.full((5, 3), "a"))),
    ("x-list", TypeError, r"x must be an array, got list",
     lambda: dp.forward(soft(), X.tolist())),
    ("y-list", TypeError, r"y must be an array, got list",
     lambda: dp.gradients(soft(), X, LABELS.tolist(), CE)),
    ("l2-negative", ValueError, r"l2 must be a finite number >= 0, got -1",
     lambda: dp.gradients(soft(), X, LABELS, CE, -1)),
    ("l2-nan", ValueError, r"l2 must be a finite number >= 0, got nan",
     lambda: dp.gradients(soft(), X, LABELS, CE, float("nan"))),
    ("l2-loss-value", ValueError, r"l2 must be a finite number >= 0",
     lambda: dp.loss_value(soft(), dp.forward(soft(), X), LABELS, CE, -1.0)),
    ("eta-zero", ValueError, r"learning rate eta must be a finite number > 0, got 0",
     lambda: dp.step(soft(), dp.gradients(soft(), X, LABELS, CE)[1], 0)),
    ("eta-nan", ValueError, r"learning rate eta must be a finite number > 0, got nan",
     lambda: dp.step(soft(), dp.gradients(soft(), X, LABELS, CE)[1], float("nan"))),
    ("gradcheck-order", ValueError, r"order must be 2 or 4, got 3",
     lambda: gradcheck(soft(), X, LABELS, CE, order=3)),
    ("gradcheck-h", ValueError, r"h must be a finite step > 0, got 0",
     lambda: gradcheck(soft(), X, LABELS, CE, h=0)),
    ("gradcheck-max-entries", ValueError, r"max_entries must be >= 1 \(or None for all\), got 0",
     lambda: gradcheck(soft(), X, LABELS, CE, max_entries=0)),
    # --- loss and output activation ----------------------------------------------------
    ("ce-needs-softmax", ValueError,
     r"loss 'softmax-cross-entropy' needs a 'softmax' output layer, got 'identity'",
     lambda: dp.gradients(lin(), X, Y(5, 2), CE)),
    ("bce-needs-sigmoid", ValueError,
     r"loss 'sigmoid-cross-entropy' needs a 'sigmoid' output layer, got 'softmax'",
     lambda: dp.gradients(soft(), X, Y(5, 3), BCE)),
    ("loss-value-pair", ValueError, r"loss 'softmax-cross-entropy' needs a 'softmax' output",
     lambda: dp.loss_value(lin(), dp.forward(lin(), X), Y(5, 2), CE)),
    ("single-not-indexable", TypeError, r"a single network cannot be indexed",
     lambda: soft()[0]),
]


@pytest.mark.parametrize(("exc", "message", "call"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_error(exc, message, call):
    with pytest.raises(exc, match=message):
        call()


# --- mixing libraries: the message names the argument and both libraries -------------------

torch = pytest.importorskip("torch")


@pytest.mark.parametrize(("which", "net_lib", "pattern"), [
    ("x", "numpy", r"x is a torch\.Tensor but the network's parameters are numpy\.ndarray"),
    ("y", "numpy", r"y is a torch\.Tensor but the network's parameters are numpy\.ndarray"),
    ("x", "torch", r"x is a numpy\.ndarray but the network's parameters are torch\.Tensor"),
    ("y", "torch", r"y is a numpy\.ndarray but the network's parameters are torch\.Tensor"),
])
def test_mixing_torch_and_numpy(which, net_lib, pattern):
    net = soft().to(net_lib)
    x, y = X, LABELS
    if net_lib == "torch":  # everything torch except `which`
        x = torch.asarray(X) if which != "x" else X
        y = torch.asarray(LABELS) if which != "y" else LABELS
    else:  # everything numpy except `which`
        x = torch.asarray(X) if which == "x" else X
        y = torch.asarray(LABELS) if which == "y" else LABELS
    with pytest.raises(TypeError, match=pattern + r": convert " + which):
        dp.gradients(net, x, y, CE)


def test_mixing_libraries_or_dtypes_between_layers():
    net = soft()
    W, b = [net.W[1], torch.asarray(net.W[2])], [net.b[1], torch.asarray(net.b[2])]
    with pytest.raises(TypeError, match=r"W and b must come from one array library, got "
                                        r"\['numpy', 'torch'\]"):
        Network.from_layers(W, b, ["tanh", "softmax"])
    with pytest.raises(TypeError, match=r"W, b must share one dtype, got \['float32', 'float64'"):
        Network.from_layers([net.W[1], net.W[2].astype(np.float32)], [net.b[1], net.b[2]],
                            ["tanh", "softmax"])


def test_good_input_that_looks_odd_is_accepted():
    """Not errors: integer or bool x (cast), one-hot float y, y (m,) for n_L = 1, soft rows."""
    net = soft()
    _, g = dp.gradients(net, X > 0, LABELS, CE)
    _, g1 = dp.gradients(net, (X > 0).astype(float), np.eye(3)[LABELS], CE)
    assert float(g.J) == float(g1.J)
    one = Network.init([3, 1], "identity")
    _, g2 = dp.gradients(one, X, np.arange(5.0), MSE)
    _, g3 = dp.gradients(one, X, np.arange(5.0)[:, None], MSE)
    assert float(g2.J) == float(g3.J)
    rows = np.full((5, 3), 1 / 3)  # rows summing to 1 up to rounding
    dp.gradients(net, X, rows, CE)


# --- the command line: one line on stderr, exit status 2, no traceback ----------------------

STATS = ["stats", "--sizes", "4,6,2", "--inputs", "gaussian", "--K", "2", "--samples", "8"]


def _stripped_model(folder):
    """A model file saved with its standardisation, whose metadata then lost it."""
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    from deltaprop.app import files as dio

    path = folder / "model.safetensors"
    dio.save_model(path, Network.init([4, 3, 3], "tanh", "softmax", seed=0),
                   {"loss": "softmax-cross-entropy", "classes": [0, 1, 2],
                    "standardization": {"mean": [0.0] * 4, "scale": [1.0] * 4}})
    with safe_open(path, "np") as f:
        header = f.metadata()
    header["meta"] = '{"loss": "softmax-cross-entropy", "classes": [0, 1, 2]}'
    save_file(load_file(path), path, metadata=header)
    return path


CLI_CASES = [
    # (id, argv with {tmp} for the test's folder, what the one line must say)
    ("weight-std-negative", [*STATS, "--weight-std", "-0.5"],  # was accepted
     "--weight-std must be a standard deviation, a finite number >= 0, got -0.5"),
    ("weight-std-one-negative", [*STATS, "--weight-std", "1,-1"], "got 1,-1"),
    ("input-var-negative", [*STATS, "--input-var", "-1"],  # was "math domain error"
     "--input-var must be a variance, a finite number >= 0, got -1"),
    ("sigma-w2-nan", [*STATS, "--sigma-w2", "nan"], "--sigma-w2 must be a variance"),
    ("target-var-negative", [*STATS, "--target-var", "-2"], "--target-var must be"),
    ("weight-mean-inf", [*STATS, "--weight-mean", "inf"], "--weight-mean must be a finite"),
    ("two-weight-scales", [*STATS, "--weight-std", "1", "--sigma-w2", "1"], "not both"),
    ("weight-std-text", [*STATS, "--weight-std", "big"],
     "expected a number or numbers separated by commas, got 'big'"),
    ("bins", [*STATS, "--bins", "6"], "--bins must be 0 (off) or a positive multiple of 4"),
    ("stats-sigma-w", [*STATS, "--sigma-w", "1.5"], "--sigma-w: renamed; use --sigma-w2"),
    ("stats-sigma-b", [*STATS, "--sigma-b", "0.1"], "renamed; use --sigma-b2"),
    ("stats-m", [*STATS, "--m", "5"], "--m: renamed; use --samples"),
    ("jacobian-sigma-w", ["jacobian", "--sigma-w", "1.5"], "renamed; use --sigma-w2"),
    ("theory-sigma-b", ["theory", "--sigma-w2", "1", "--sigma-b", "0.1"],
     "renamed; use --sigma-b2"),
    ("explain-m", ["explain", "--exercise", "--m", "2"], "renamed; use --samples"),
    ("theory-no-sigma-w2", ["theory"], "theory needs --sigma-w2"),
    ("stats-out-is-a-file", [*STATS, "--out", "{tmp}/file.txt"],  # was [Errno 17] File exists
     "--out {tmp}/file.txt is a file, not a folder; give a folder name"),
    ("stats-out-not-empty", [*STATS, "--out", "{tmp}"],  # replaced the first study
     "--out {tmp} is not empty (an earlier run's results?); use --force"),
    ("density-is-a-folder", ["jacobian", "--density", "{tmp}/d.png"], "is a folder"),
    ("explain-out-no-folder", ["explain", "--out", "{tmp}/no/x.txt"],
     "folder {tmp}/no does not exist"),
    ("config-missing", ["theory", "--config", "{tmp}/none.toml"], "does not exist"),
    ("config-a-folder", ["explain", "--config", "{tmp}"], "is a folder; give a .toml or .json"),
    ("config-unknown-key", ["theory", "--config", "{tmp}/unknown.json"],
     "unknown setting 'sigma_w'; known: activation, sigma_w2"),
    ("config-bad-value", ["stats", "--config", "{tmp}/bad.json"],
     "config file {tmp}/bad.json: K: invalid literal for int()"),
    ("config-no-force", ["stats", "--config", "{tmp}/force.json"], "unknown setting 'force'"),
    ("config-bad-choice", ["jacobian", "--config", "{tmp}/dtype.toml"],
     "dtype must be one of float32, float64, got 'float16'"),
    ("model-lost-standardisation", ["evaluate", "{tmp}/model.safetensors", "iris"],
     "model.safetensors: not a valid deltaprop file: it says its inputs are standardised "
     "but meta lacks 'standardization'"),
]


@pytest.mark.parametrize(("argv", "message"), [c[1:] for c in CLI_CASES],
                         ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input_is_one_line_exit_2(argv, message, tmp_path, capsys, monkeypatch):
    from deltaprop.app.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "file.txt").write_text("mine")
    (tmp_path / "unknown.json").write_text('{"sigma_w": 1.5}')
    (tmp_path / "bad.json").write_text('{"K": "many"}')
    (tmp_path / "force.json").write_text('{"force": true}')
    (tmp_path / "dtype.toml").write_text('dtype = "float16"\n')
    (tmp_path / "d.png").mkdir()
    _stripped_model(tmp_path)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("deltaprop: error: "), err
    assert message.replace("{tmp}", str(tmp_path)) in err, err
    assert ".tmp" not in err.replace(str(tmp_path), "") and "[Errno" not in err
    assert (tmp_path / "file.txt").read_text() == "mine"  # nothing of the user's touched


def test_cli_config_json_and_quiet_on_theory_jacobian_explain(tmp_path, capsys, monkeypatch):
    """--config gives the same result as the flags (flags win), --quiet leaves stderr empty,
    explain --json carries the step's values (Mazur's delta[2]) and the --check report."""
    import json

    from deltaprop.app.cli import main

    monkeypatch.chdir(tmp_path)
    runs = {
        "theory": (["--sigma-w2", "2.5", "--sigma-b2", "0.05", "--json"],
                   'sigma-w2 = 2.5\nsigma_b2 = 0.05\njson = true\n'),
        "jacobian": (["--width", "6", "--depth", "2", "--K", "2", "--samples", "2", "--json"],
                     'width = 6\ndepth = 2\nK = 2\nsamples = 2\njson = true\n'),
        "explain": (["--json"], "json = true\n"),
    }
    for command, (flags, toml) in runs.items():
        (tmp_path / f"{command}.toml").write_text(toml)
        assert main([command, *flags]) == 0
        by_flags = json.loads(capsys.readouterr().out)
        assert main([command, "--config", f"{command}.toml", "--quiet"]) == 0
        out = capsys.readouterr()
        assert json.loads(out.out) == by_flags and out.err == ""
        if command == "theory":
            by_theory = by_flags
    assert main(["theory", "--config", "theory.toml", "--sigma-w2", "1.0"]) == 0
    assert json.loads(capsys.readouterr().out) != by_theory  # the flag wins
    assert by_flags["delta"]["2"][0][0] == pytest.approx(0.138498562, abs=1e-9)
    (tmp_path / "answers.json").write_text('{"delta": {"2": [0.138498562, 0.03]}}')
    assert main(["explain", "--check", "answers.json", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["first_wrong"] == "delta"
    assert report["rows"][0]["where"] == "unit 2"
    assert main(["jacobian", "--width", "6", "--depth", "2", "--K", "2", "--samples", "2",
                 "--density", "d.png"]) == 0
    assert capsys.readouterr().err == "wrote d.png\n"
    assert main(["jacobian", "--width", "6", "--depth", "2", "--K", "2", "--samples", "2",
                 "--density", "d.png", "--force", "--quiet"]) == 0
    assert capsys.readouterr().err == ""
