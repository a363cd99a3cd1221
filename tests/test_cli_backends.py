"""``--backend numpy|torch|cupy`` and ``--device`` on every command (issue 5).

Each command is run in-process with ``--backend numpy`` and with another backend; every
number of its JSON (or CSV) output must agree to 1e-10 in float64.  Bad choices (unknown
library, library not installed, ``--device cuda`` without a GPU, a GPU for NumPy) end with
one line on stderr and exit status 2.  GPU cases run only where CUDA is usable.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math

import numpy as np
import pytest

from deltaprop.app import files as dio
from deltaprop.app.cli import main

torch = pytest.importorskip("torch")

TOL = 1e-10
HAS_CUDA = bool(torch.cuda.is_available())
HAS_CUPY = importlib.util.find_spec("cupy") is not None


def _cupy_gpu():
    if not HAS_CUPY:
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - a CuPy without a driver
        return False


#: (backend flags) for the non-NumPy runs: torch CPU always, the GPUs where they exist
OTHERS = [pytest.param(["--backend", "torch"], id="torch-cpu"),
          pytest.param(["--backend", "torch", "--device", "cuda"], id="torch-cuda",
                       marks=pytest.mark.skipif(not HAS_CUDA, reason="no CUDA for torch")),
          pytest.param(["--backend", "cupy"], id="cupy",
                       marks=pytest.mark.skipif(not _cupy_gpu(), reason="no CuPy with a GPU"))]


def _call(capsys, argv):
    capsys.readouterr()
    rc = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    assert rc == 0, (argv, err)
    return out


def _close(a, b, where="$"):
    """Assert that two JSON values agree: numbers to TOL (relative above 1), rest exactly."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b, strict=True)):
            _close(u, v, f"{where}[{i}]")
    elif isinstance(a, float) and not isinstance(a, bool):
        if math.isnan(a):
            assert math.isnan(b), where
        else:
            assert abs(a - b) <= TOL * max(1.0, abs(a), abs(b)), (where, a, b)
    else:
        assert a == b, (where, a, b)


def _strip(d, *keys):
    return {k: v for k, v in d.items() if k not in keys}


# --------------------------------------------------------------------- the engine

@pytest.mark.parametrize("flags", OTHERS)
@pytest.mark.parametrize("argv", [
    ["gradcheck", "--json"],
    ["gradcheck", "--json", "--K", "3", "--loss", "mse", "--activations", "relu,tanh"],
    ["trace", "--json"],
], ids=["gradcheck", "gradcheck-stack", "trace"])
def test_engine_commands_equal_numpy(capsys, argv, flags):
    ref = json.loads(_call(capsys, argv + ["--backend", "numpy"]))
    got = json.loads(_call(capsys, argv + flags))
    _close(ref, got)
    if argv[0] == "gradcheck":
        assert got["max_rel_error"] < 1e-6 and got["checked"] > 0


def test_trace_text_with_l2_on_torch(capsys, tmp_path):
    """The text trace (L2 penalty shown per step, parameters of earlier steps) on torch."""
    spec = json.loads(_call(capsys, ["trace", "--show-spec"]))
    spec.update(steps=2, l2=0.1)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    ref = _call(capsys, ["trace", path, "--precision", "6"])
    assert _call(capsys, ["trace", path, "--precision", "6", "--backend", "torch"]) == ref


# --------------------------------------------------------------------- training

TRAIN = ["train", "--data", "iris", "--hidden", "8", "--epochs", "2", "--batch-size", "16",
         "--json"]


@pytest.fixture(scope="module")
def numpy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("np") / "run"
    rc = main(TRAIN + ["--out", str(out), "--backend", "numpy"])
    assert rc == 0
    return out


def _weights(path):
    net, _ = dio.load_model(path)
    params = list(net.W[1:]) + list(net.b[1:])
    assert all(type(p) is np.ndarray for p in params)  # a model file loads as NumPy
    return params


@pytest.mark.parametrize("flags", OTHERS)
def test_train_equals_numpy(capsys, tmp_path, numpy_run, flags):
    got = json.loads(_call(capsys, TRAIN + ["--out", tmp_path / "run"] + flags))
    ref = json.loads((numpy_run / "metrics.json").read_text())
    _close(ref["final"], got["metrics"])
    for a, b in zip(_weights(numpy_run / "model.safetensors"),
                    _weights(tmp_path / "run" / "model.safetensors"), strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=TOL)
    rows = json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"]
    _close([_strip(r, "time") for r in ref["epochs"]], [_strip(r, "time") for r in rows])


@pytest.mark.parametrize("flags", OTHERS)
def test_evaluate_and_predict_equal_numpy(capsys, numpy_run, flags):
    model = numpy_run / "model.safetensors"
    ev = ["evaluate", model, "iris", "--json"]
    _close(json.loads(_call(capsys, ev)), json.loads(_call(capsys, ev + flags)))
    pr = ["predict", model, "iris", "--proba"]
    ref = list(csv.reader(io.StringIO(_call(capsys, pr))))
    got = list(csv.reader(io.StringIO(_call(capsys, pr + flags))))
    assert [r[0] for r in got] == [r[0] for r in ref]  # header and predicted classes
    np.testing.assert_allclose(np.array([r[1:] for r in got[1:]], float),
                               np.array([r[1:] for r in ref[1:]], float), rtol=0, atol=TOL)


def test_threads_reach_torch_and_are_restored(tmp_path, monkeypatch):
    """``train --threads 1`` also sets PyTorch's own thread pool for the run (on 2 cores its
    default, a thread a core, made torch training 6-45x slower than NumPy), then restores it."""
    import deltaprop.app.train

    seen, real_fit = [], deltaprop.app.train.fit

    def fit(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(deltaprop.app.train, "fit", fit)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        assert main(["train", "--data", "iris", "--hidden", "4", "--epochs", "1", "--quiet",
                     "--backend", "torch", "--threads", "1", "--out", str(tmp_path / "r")]) == 0
        assert seen == [1]
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_fit_resumes_a_torch_run(tmp_path):
    """train.fit on torch tensors: 1 epoch + resume to 2 equals 2 epochs in NumPy."""
    from deltaprop import Network
    from deltaprop.app.train import fit

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3)), rng.integers(0, 2, 40)
    net = Network.init([3, 5, 2], "tanh", "softmax", seed=1)
    kw = dict(optimizer="adam", learning_rate=0.05, batch_size=8, seed=3)
    ref = fit(net, x, y, "softmax-cross-entropy", epochs=2, **kw).net
    tnet, tx, ty = net.to("torch"), torch.asarray(x), torch.asarray(y)
    ck = tmp_path / "ck.safetensors"
    fit(tnet, tx, ty, "softmax-cross-entropy", epochs=1, checkpoint=ck, **kw)
    got = fit(tnet, tx, ty, "softmax-cross-entropy", epochs=2, checkpoint=ck, resume=True,
              **kw).net
    assert isinstance(got.W[1], torch.Tensor)
    for a, b in zip(ref.W[1:] + ref.b[1:], got.numpy().W[1:] + got.numpy().b[1:], strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=TOL)


# --------------------------------------------------------------------- the laboratory

@pytest.mark.parametrize("flags", OTHERS)
@pytest.mark.parametrize("argv", [
    ["stats", "--K", "4", "--samples", "64", "--hidden", "16,16", "--json"],
    ["stats", "--K", "3", "--inputs", "gaussian", "--hidden", "8,8", "--samples", "32",
     "--loss", "softmax-cross-entropy", "--K-chunk", "2", "--json"],
], ids=["digits", "gaussian-softmax"])
def test_stats_equals_numpy(capsys, argv, flags):
    _close(json.loads(_call(capsys, argv)), json.loads(_call(capsys, argv + flags)))


@pytest.mark.parametrize("flags", OTHERS)
def test_stats_model_equals_numpy(capsys, numpy_run, flags):
    argv = ["stats", "--model", numpy_run / "model.safetensors", "--json"]
    _close(json.loads(_call(capsys, argv)), json.loads(_call(capsys, argv + flags)))


@pytest.mark.parametrize("flags", OTHERS)
def test_sweep_serial_equals_numpy(capsys, tmp_path, flags):
    argv = ["sweep", "--serial", "--no-plot", "--sigma-w2", "0.5,2", "--sigma-b2", "0",
            "--depth", "3", "--width", "6", "--K", "2", "--samples", "5", "--force"]
    _call(capsys, argv + ["--out", tmp_path / "np.csv"])
    _call(capsys, argv + ["--out", tmp_path / "other.csv"] + flags)

    def table(name):
        with open(tmp_path / name, newline="") as f:
            return list(csv.DictReader(f))

    ref, got = table("np.csv"), table("other.csv")
    assert len(ref) == len(got) == 2
    for r, g in zip(ref, got, strict=True):
        assert r.keys() == g.keys()
        for k in r:
            try:
                a, b = json.loads(r[k]), json.loads(g[k])
            except ValueError:
                assert r[k] == g[k], k
                continue
            _close(a, b, k)


# --------------------------------------------------------------------- bad choices

COMMANDS = {
    "gradcheck": ["gradcheck"], "trace": ["trace"], "stats": ["stats", "--K", "1"],
    "sweep": ["sweep", "--serial", "--no-plot", "--depth", "3", "--width", "4",
              "--sigma-w2", "1", "--sigma-b2", "0", "--K", "1", "--samples", "2"],
    "train": ["train", "--data", "xor", "--epochs", "1"],
    "evaluate": ["evaluate", "NO-MODEL", "xor"], "predict": ["predict", "NO-MODEL", "xor"],
}
BAD = [pytest.param(["--backend", "jax"], "invalid choice", id="unknown"),
       pytest.param(["--device", "cuda"], "needs --backend torch or cupy", id="numpy-gpu"),
       pytest.param(["--backend", "cupy"], "cupy is not installed", id="cupy-missing",
                    marks=pytest.mark.skipif(HAS_CUPY, reason="CuPy is installed")),
       pytest.param(["--backend", "torch", "--device", "cuda"], "not available",
                    id="no-cuda", marks=pytest.mark.skipif(HAS_CUDA, reason="CUDA works")),
       pytest.param(["--backend", "torch", "--device", "nodevice"], "not available",
                    id="bad-device")]


@pytest.mark.parametrize("flags, message", BAD)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_bad_backend_one_line_exit_2(capsys, tmp_path, monkeypatch, command, flags, message):
    monkeypatch.chdir(tmp_path)  # nothing may be written, but keep the checkout clean anyway
    capsys.readouterr()
    rc = main(COMMANDS[command] + flags)
    out, err = capsys.readouterr()
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("deltaprop: error:"), err
    assert message in err, err
    assert not any(tmp_path.iterdir())  # checked before any run folder or table is made
