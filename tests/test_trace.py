"""``deltaprop trace`` and :mod:`deltaprop.app.trace`: the worked example from the literature.

Mazur, "A Step by Step Backpropagation Example" (2015), a 2-2-2 sigmoid network with MSE
and learning rate 0.5.  His weights map to W[l][j, k] (from unit k of layer l-1 to unit j of
layer l) as

    W[1] = [[w1, w2], [w3, w4]]   (w1: i1->h1, w2: i2->h1, w3: i1->h2, w4: i2->h2)
    W[2] = [[w5, w6], [w7, w8]]   (w5: h1->o1, w6: h2->o1, w7: h1->o2, w8: h2->o2)

Each published number is compared to the precision it is printed with (half a unit of its
last printed digit).  Mazur does not update the biases, deltaprop does: the biases after
the step are therefore checked against b - eta * delta, not against Mazur.
"""

import copy
import io
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deltaprop.app import data, trace
from deltaprop.app.cli import main

ROOT = Path(__file__).resolve().parents[1]

# (value as printed by Mazur, where to find it in our record)
PUBLISHED = {
    "out_h1": ("0.593269992", lambda s: s.trace.a[1][0, 0]),
    "out_h2": ("0.596884378", lambda s: s.trace.a[1][0, 1]),
    "out_o1": ("0.75136507", lambda s: s.trace.a[2][0, 0]),
    "out_o2": ("0.772928465", lambda s: s.trace.a[2][0, 1]),
    "E_total": ("0.298371109", lambda s: s.grads.J),
    # dE/dnet_o1 = delta[2]_1 and dE_total/dw5 = dW[2][0, 0]: intermediate published values
    "dE/dnet_o1": ("0.138498562", lambda s: s.grads.delta[2][0, 0]),
    "dE/dw5": ("0.082167041", lambda s: s.grads.dW[2][0, 0]),
    "dE/dw1": ("0.000438568", lambda s: s.grads.dW[1][0, 0]),
    "w5+": ("0.35891648", lambda s: s.net.W[2][0, 0]),
    "w6+": ("0.408666186", lambda s: s.net.W[2][0, 1]),
    "w7+": ("0.511301270", lambda s: s.net.W[2][1, 0]),
    "w8+": ("0.561370121", lambda s: s.net.W[2][1, 1]),
    "w1+": ("0.149780716", lambda s: s.net.W[1][0, 0]),
    "w2+": ("0.19956143", lambda s: s.net.W[1][0, 1]),
    "w3+": ("0.24975114", lambda s: s.net.W[1][1, 0]),
    "w4+": ("0.29950229", lambda s: s.net.W[1][1, 1]),
}


def _tol(printed: str) -> float:
    """Half a unit in the last printed digit."""
    return 0.5 * 10.0 ** -len(printed.split(".")[1])


@pytest.fixture(scope="module")
def mazur():
    spec = trace.load()
    return spec, trace.run(spec)


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_mazur_published_numbers(mazur, name):
    _, steps = mazur
    printed, get = PUBLISHED[name]
    assert abs(float(get(steps[0])) - float(printed)) <= _tol(printed), name


def test_mazur_biases_are_updated_unlike_the_blog(mazur):
    """Mazur keeps b1 = 0.35, b2 = 0.60; deltaprop's step updates them with db = delta."""
    spec, (s,) = mazur
    for l in (1, 2):
        np.testing.assert_allclose(s.grads.db[l], s.grads.delta[l][0])  # m = 1
        np.testing.assert_allclose(s.net.b[l], spec.net.b[l] - 0.5 * s.grads.delta[l][0])
    np.testing.assert_allclose(s.net.b[1], [0.345614323, 0.345022873], atol=5e-10)


def test_builtin_example_is_the_shipped_example_file():
    assert (ROOT / "examples" / "mazur_2015.json").read_bytes() == \
        (ROOT / "src" / "deltaprop" / "app" / "_examples" / "mazur_2015.json").read_bytes()
    assert json.loads(trace.example_text()) == \
        json.loads((ROOT / "examples" / "mazur_2015.json").read_text())


def test_record_layout_and_steps_chain(mazur):
    spec = trace.load(dict(json.loads(trace.example_text()), steps=3))
    steps = trace.run(spec)
    rec = trace.to_dict(steps)
    assert list(rec) == ["steps"] and len(rec["steps"]) == 3
    for k, entry in enumerate(rec["steps"]):
        assert set(entry) == {"loss", "layers"} and len(entry["layers"]) == 2
        for layer in entry["layers"]:
            assert set(layer) == {"z", "a", "delta", "dW", "db", "W", "b"}
            assert np.shape(layer["z"]) == np.shape(layer["delta"]) == (1, 2)
            assert np.shape(layer["dW"]) == np.shape(layer["W"]) == (2, 2)
        if k:  # step k starts from the parameters after step k-1
            prev = rec["steps"][k - 1]["layers"][0]
            W = np.asarray(prev["W"])
            np.testing.assert_allclose(entry["layers"][0]["W"],
                                       W - 0.5 * np.asarray(entry["layers"][0]["dW"]))
    losses = [e["loss"] for e in rec["steps"]]
    assert losses[0] == pytest.approx(0.298371109, abs=5e-10)
    assert losses[0] > losses[1] > losses[2]  # gradient descent goes downhill here


def test_second_example_by_hand():
    """A 1-1-1 network worked by hand: tanh hidden unit, identity output, MSE, m = 2, L2.

    x = [[1], [-1]], y = [[0.5], [0]], W1 = 0.5, b1 = 0, W2 = 2, b2 = 0.1, lambda = 0.2.
    Sample 1: z1 = 0.5, a1 = tanh(0.5) = t; z2 = a2 = 2 t + 0.1.  Sample 2: a1 = -t,
    a2 = 0.1 - 2t.  delta2 = a2 - y; delta1 = delta2 * 2 * (1 - t^2).
    J = mean(1/2 (a2 - y)^2) + (0.2 / 4) (0.25 + 4).
    dW2 = mean(delta2 * a1) + (0.2 / 2) * 2;  dW1 = mean(delta1 * x) + 0.1 * 0.5.
    """
    t = np.tanh(0.5)
    d2 = np.array([2 * t + 0.1 - 0.5, 0.1 - 2 * t])
    d1 = d2 * 2 * (1 - t**2)
    spec = {"layers": [{"W": [[0.5]], "b": [0.0], "activation": "tanh"},
                       {"W": [[2.0]], "b": [0.1], "activation": "identity"}],
            "x": [[1.0], [-1.0]], "y": [[0.5], [0.0]], "loss": "mse", "l2": 0.2,
            "learning_rate": 0.1}
    (s,) = trace.run(spec)
    J = np.mean(0.5 * d2**2) + 0.05 * 4.25
    assert float(s.grads.J) == pytest.approx(J, rel=1e-14)
    np.testing.assert_allclose(s.grads.delta[2][:, 0], d2, rtol=1e-14)
    np.testing.assert_allclose(s.grads.delta[1][:, 0], d1, rtol=1e-14)
    dW2 = np.mean(d2 * np.array([t, -t])) + 0.2
    dW1 = np.mean(d1 * np.array([1.0, -1.0])) + 0.05
    np.testing.assert_allclose(s.grads.dW[2], [[dW2]], rtol=1e-14)
    np.testing.assert_allclose(s.grads.dW[1], [[dW1]], rtol=1e-14)
    np.testing.assert_allclose(s.net.W[1], [[0.5 - 0.1 * dW1]], rtol=1e-14)
    np.testing.assert_allclose(s.net.b[2], [0.1 - 0.1 * d2.mean()], rtol=1e-14)


def test_softmax_spec_with_integer_labels():
    spec = {"layers": [{"W": [[1.0, -1.0], [0.5, 0.0], [0.0, 2.0]], "b": [0, 0, 0],
                        "activation": "softmax"}],
            "x": [[1, 2], [0, 1]], "y": [2, 0], "loss": "softmax-cross-entropy"}
    (s,) = trace.run(spec)
    one_hot = np.eye(3)[[2, 0]]
    np.testing.assert_allclose(s.grads.delta[1], s.trace.a[1] - one_hot)


# ---------------------------------------------------------------------- bad specs
def _mazur():
    return json.loads(trace.example_text())


def _edit(path, value):
    spec = copy.deepcopy(_mazur())
    *keys, last = path
    obj = spec
    for k in keys:
        obj = obj[k]
    if value is _DELETE:
        del obj[last]
    else:
        obj[last] = value
    return spec


_DELETE = object()

BAD = [
    (("x",), _DELETE, "missing 'x'"),
    (("layers",), _DELETE, "missing 'layers'"),
    (("learning-rate",), 0.1, "unknown spec key"),
    (("layers",), [], "non-empty list"),
    (("layers", 0, "W"), _DELETE, "layer 1) is missing 'W'"),
    (("layers", 1, "activation"), "sigmoidal", "unknown activation 'sigmoidal'"),
    (("layers", 1, "activation"), 3, "activation must be a string"),
    (("layers", 0, "W"), [[0.15, 0.2], [0.25]], "ragged"),
    (("layers", 0, "W"), [[0.15, "a"], [0.25, 0.3]], "numbers only"),
    (("layers", 0, "W"), [[0.15, float("nan")], [0.25, 0.3]], "NaN or inf"),
    (("layers", 0, "b"), [0.35], "b has 1 entries; W has 2 rows"),
    (("layers", 1, "W"), [[0.4, 0.45, 0.1], [0.5, 0.55, 0.1]], "layer 1 has 2 units"),
    (("layers", 0, "W"), [0.15, 0.2], "list of lists"),
    (("x",), [[0.05, 0.1, 0.2]], "x has shape (1, 3)"),
    (("x",), [[0.05, float("inf")]], "x contains NaN or inf"),
    (("y",), [[0.01]], "y has shape (1, 1)"),
    (("y",), [[0.01, float("nan")]], "y contains NaN or inf"),
    (("x",), [], "x must be a list of lists"),
    (("loss",), "hinge", "unknown loss 'hinge'"),
    (("loss",), "softmax-cross-entropy", "needs a 'softmax' output layer"),
    (("learning_rate",), -0.5, "learning_rate must be > 0"),
    (("learning_rate",), "fast", "learning_rate must be a finite number"),
    (("steps",), 0, "steps must be a positive integer"),
    (("steps",), 1.5, "steps must be a positive integer"),
    (("l2",), -1, "l2 must be >= 0"),
]


@pytest.mark.parametrize("path,value,message", BAD, ids=[b[2] for b in BAD])
def test_bad_spec_raises_value_error_naming_the_problem(path, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        trace.load(_edit(path, value))


def test_softmax_in_a_hidden_layer_is_refused():
    spec = _edit(("layers", 0, "activation"), "softmax")
    with pytest.raises(ValueError, match="softmax may only be the output"):
        trace.load(spec)


def test_top_level_not_an_object():
    with pytest.raises(ValueError, match="must be a JSON object"):
        trace.load([1, 2])


# ---------------------------------------------------------------------- the CLI
def test_cli_text(capsys):
    assert main(["trace"]) == 0
    out = capsys.readouterr().out
    assert "step 1: J = 0.298371109" in out
    for label in ("z[1]", "a[1]", "delta[1]", "dW[1]", "db[1]", "W[1]", "b[1]", "delta[2]"):
        assert f"    {label} " in out
    assert "0.593269992" in out and "0.35891648" in out and "0.149780716" in out


def test_cli_json_matches_python(tmp_path, capsys):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(dict(_mazur(), steps=2)))
    assert main(["trace", str(path), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec == json.loads(json.dumps(trace.to_dict(trace.run(path))))
    assert len(rec["steps"]) == 2
    assert abs(rec["steps"][0]["layers"][1]["W"][0][0] - 0.35891648) <= 5e-9


def test_cli_show_spec_round_trips(capsys):
    assert main(["trace", "--show-spec"]) == 0
    assert json.loads(capsys.readouterr().out) == _mazur()


@pytest.mark.parametrize("content,message", [
    (None, "does not exist"),
    ("{not json", "is not valid JSON"),
    (json.dumps(_edit(("loss",), "hinge")), "unknown loss 'hinge'"),
    (json.dumps(_edit(("layers", 0, "b"), [0.35])), "b has 1 entries"),
    (json.dumps(_edit(("x",), [[0.05, float("nan")]])), "x contains NaN or inf"),
])
def test_cli_bad_input_one_line_exit_2(tmp_path, content, message):
    path = tmp_path / "spec.json"
    if content is not None:
        path.write_text(content)
    for extra in ([], ["--json"]):
        out = subprocess.run([sys.executable, "-m", "deltaprop", "trace", str(path), *extra],
                             capture_output=True, text=True, cwd=tmp_path)
        assert out.returncode == 2, out.stderr
        assert out.stdout == ""
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
        assert message in out.stderr


def test_cli_default_runs_as_console_script(tmp_path):
    """The README's first command: ``deltaprop trace`` from anywhere, package data found."""
    exe = Path(sys.executable).with_name("deltaprop")
    cmd = [str(exe), "trace"] if exe.exists() else [sys.executable, "-m", "deltaprop", "trace"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "J = 0.298371109" in out.stdout


def test_docs_show_the_actual_trace_output(capsys):
    """The ``$ deltaprop trace`` block of docs/derivation.md is what the command prints."""
    text = (ROOT / "docs" / "derivation.md").read_text()
    block = re.search(r"```console\n\$ deltaprop trace\n(.*?)```", text, re.S)
    assert block, "docs/derivation.md must show the output of `deltaprop trace`"
    assert main(["trace"]) == 0
    assert block.group(1).rstrip("\n") == capsys.readouterr().out.rstrip("\n")


def test_cli_text_l2_breakdown_and_precision(tmp_path, capsys):
    spec = dict(_mazur(), l2=0.1, steps=2)
    path = tmp_path / "l2.json"
    path.write_text(json.dumps(spec))
    assert main(["trace", str(path), "--precision", "4"]) == 0
    out = capsys.readouterr().out
    steps = trace.run(path)
    # step 2's penalty uses the weights after step 1: (0.1 / 2) * sum W^2 with m = 1
    pen2 = 0.05 * sum(float(np.sum(w**2)) for w in steps[0].net.W[1:])
    J2 = float(steps[1].grads.J)
    assert f"step 2: J = {J2:.4g}  (loss {J2 - pen2:.4g} + L2 penalty {pen2:.4g})" in out
    assert "    a[1]     =  [[0.5933 0.5969]]" in out


def test_cli_json_refuses_non_finite_values(tmp_path, capsys):
    spec = {"layers": [{"W": [[1e200]], "b": [0.0], "activation": "identity"}],
            "x": [[1e200]], "y": [[0.0]], "loss": "mse"}
    path = tmp_path / "overflow.json"
    path.write_text(json.dumps(spec))
    assert main(["trace", str(path)]) == 0               # the text shows the inf
    out = capsys.readouterr()
    assert "inf" in out.out and out.err.count("\n") == 1 and "diverged" in out.err
    assert main(["trace", str(path), "--json"]) == 2
    assert "NaN or inf" in capsys.readouterr().err


# Andrew Ng's Machine Learning course, ex4 test case of nnCostFunction:
# Theta1 = reshape(nn(1:6), 2, 3), Theta2 = reshape(nn(7:18), 4, 3) with nn = (1:18)/10
# (column-major, bias column 0), X = cos([1 2; 3 4; 5 6]), y = [4; 2; 3].  Published:
# J = 7.4070 (lambda = 0), 19.4736 (lambda = 4), and for lambda = 0 the gradient unrolled
# as [Theta1_grad(:); Theta2_grad(:)]:
NG_GRAD = ("0.766138 0.979897 -0.027540 -0.035844 -0.024929 -0.053862 0.883417 0.568762 "
           "0.584668 0.598139 0.459314 0.344618 0.256313 0.311885 0.478337 0.368920 "
           "0.259771 0.322331").split()


def _ng_spec(**kw):
    return dict(json.loads((ROOT / "examples" / "ng_ex4_testcase.json").read_text()), **kw)


def test_ng_example_file_is_the_course_test_case():
    spec = trace.load(_ng_spec())
    nn = np.arange(1, 19) / 10
    theta1 = nn[:6].reshape(3, 2).T                  # Octave reshape is column-major
    theta2 = nn[6:].reshape(3, 4).T
    np.testing.assert_array_equal(spec.net.theta(1), theta1)
    np.testing.assert_array_equal(spec.net.theta(2), theta2)
    np.testing.assert_array_equal(spec.x, np.cos([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    np.testing.assert_array_equal(spec.y, np.eye(4)[[3, 1, 2]])     # labels 4, 2, 3


def test_ng_published_cost_and_gradient():
    (s,) = trace.run(_ng_spec())
    assert abs(float(s.grads.J) - 7.4070) <= 5e-5
    grad = np.concatenate([
        np.hstack([s.grads.db[l][:, None], s.grads.dW[l]]).T.ravel() for l in (1, 2)])
    for got, printed in zip(grad, NG_GRAD, strict=True):
        assert abs(got - float(printed)) <= _tol(printed), (got, printed)
    (r,) = trace.run(_ng_spec(l2=4.0))
    assert abs(float(r.grads.J) - 19.4736) <= 5e-5
    W = trace.load(_ng_spec()).net.W
    for l in (1, 2):  # D = Delta / m + (lambda / m) Theta, bias column not regularised
        np.testing.assert_allclose(r.grads.dW[l], s.grads.dW[l] + (4.0 / 3) * W[l], rtol=1e-13)
        np.testing.assert_allclose(r.grads.db[l], s.grads.db[l], rtol=1e-13)


# ---------------------------------------------------------------------- streaming
def _spec_file(tmp_path, **edits):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(dict(_mazur(), **edits)))
    return path


def test_iter_steps_is_lazy_and_run_keeps_them_all():
    spec = trace.load(dict(_mazur(), steps=10**9))
    first = list(itertools.islice(trace.iter_steps(spec), 3))  # a billion steps: only 3 run
    kept = trace.run(trace.load(dict(_mazur(), steps=3)))
    for a, b in zip(first, kept, strict=True):
        np.testing.assert_array_equal(a.net.W[1], b.net.W[1])
    assert trace.to_dict(first) == trace.to_dict(kept)


def test_run_refuses_before_computing_what_cannot_be_kept(monkeypatch):
    """10^9 steps of Mazur's 2-2-2 network: 36 floats and 22 arrays a step, ~3.1 TB."""
    spec = trace.load(dict(_mazur(), steps=10**9))
    assert trace.step_bytes(spec) == 8 * 36 + 128 * 22
    monkeypatch.setattr(data, "available_memory", lambda: 10**12)  # 1 TB free
    real = trace.iter_steps
    monkeypatch.setattr(trace, "iter_steps", lambda s: pytest.fail("computed a step"))
    with pytest.raises(MemoryError, match=r"all 1000000000 steps .* 2,890 GiB and 931 GiB "
                       r"is available: use trace.iter_steps"):
        trace.run(spec)
    monkeypatch.setattr(trace, "iter_steps", real)
    assert len(trace.run(trace.load(dict(_mazur(), steps=3)))) == 3


class _StopAfter(io.StringIO):
    """stdout that stops the command (as Ctrl-C would) once it has seen ``n`` steps."""

    def __init__(self, n, tty=False):
        super().__init__()
        self.n, self.tty = n, tty

    def isatty(self):
        return self.tty

    def write(self, text):
        super().write(text)
        if self.getvalue().count("\nstep ") >= self.n or self.getvalue().count('"loss"') >= self.n:
            raise KeyboardInterrupt
        return len(text)


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_cli_streams_a_billion_steps(tmp_path, monkeypatch, json_flag):
    """Each step is printed as soon as it is computed: a spec of 10^9 steps shows its first
    steps at once (the command used to print nothing while its memory grew)."""
    out = _StopAfter(3)
    monkeypatch.setattr(sys, "stdout", out)
    assert main(["trace", str(_spec_file(tmp_path, steps=10**9)), *json_flag]) == 130
    text = out.getvalue()
    if json_flag:
        assert text.startswith('{\n  "steps": [') and text.count('"loss"') == 3
    else:
        assert "1000000000 full-batch steps" in text and "step 3: J = " in text


def test_cli_json_is_the_python_record_byte_for_byte(tmp_path, capsys):
    path = _spec_file(tmp_path, steps=3, l2=0.1)
    assert main(["trace", str(path), "--json"]) == 0
    assert capsys.readouterr().out == json.dumps(trace.to_dict(trace.run(path)), indent=2) + "\n"


def test_cli_refuses_a_step_that_cannot_fit(capsys, monkeypatch):
    monkeypatch.setattr(data, "available_memory", lambda: 1000)
    assert main(["trace"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "would need about" in err and "GiB is available" in err


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_cli_progress_on_a_terminal_and_quiet(tmp_path, capsys, monkeypatch):
    path = _spec_file(tmp_path, steps=3)
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert main(["trace", str(path), "--json"]) == 0
    bar = sys.stderr.getvalue()
    assert "trace:" in bar and "/3 [" in bar and "step" in bar, bar
    assert len(json.loads(capsys.readouterr().out)["steps"]) == 3  # the bar is not in stdout
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert main(["trace", str(path), "--quiet"]) == 0
    assert sys.stderr.getvalue() == ""


def test_cli_config_file(tmp_path, capsys):
    cfg = tmp_path / "trace.toml"
    cfg.write_text("precision = 4\n")
    assert main(["trace", "--config", str(cfg)]) == 0
    assert "    a[1]     =  [[0.5933 0.5969]]" in capsys.readouterr().out
