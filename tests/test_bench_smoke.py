"""``bench/run.py --quick --json`` runs every configuration and prints well-formed rows.

A smoke test only: benchmarks are measurements, never timed assertions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(ROOT, "bench", "run.py")

ROW_KEYS = {"config", "title", "deltaprop_ms", "torch_ms", "floor_ms", "vs_torch", "vs_floor"}


@pytest.mark.slow
def test_quick_json_has_every_config_and_the_header():
    pytest.importorskip("torch")
    pytest.importorskip("threadpoolctl")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, RUN, "--quick", "--json", "--threads", "1"],
                         capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    head, rows = doc["header"], doc["rows"]
    for key in ("date", "cpu", "threads", "blas", "numpy", "torch", "clock"):
        assert key in head, key
    assert head["threads"] == 1 and head["quick"] is True
    assert [r["config"] for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    for r in rows:
        assert ROW_KEYS <= set(r), (r["config"], ROW_KEYS - set(r))
        if r.get("todo"):
            continue
        assert r["deltaprop_ms"] > 0
        assert r["floor_ms"] is None or r["floor_ms"] > 0
        if r["torch_ms"] is not None:
            assert abs(r["vs_torch"] - r["deltaprop_ms"] / r["torch_ms"]) < 1e-9
        if r["floor_ms"] is not None:
            assert abs(r["vs_floor"] - r["deltaprop_ms"] / r["floor_ms"]) < 1e-9
    by = {r["config"]: r for r in rows}
    for cid in (1, 2, 3, 4, 5):
        assert by[cid]["torch_ms"] > 0 and by[cid]["floor_ms"] > 0
    assert by[3]["sklearn_epoch_ms"] > 0
    assert by[6].get("todo") or by[6]["vs_loop"] > 0
    assert by[7].get("todo") or by[7]["overhead"] > 0


def _bench_run():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_run", RUN)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("sizes,hidden,output,loss", [
    ([6, 5, 4, 3], "sigmoid", "softmax", "softmax-cross-entropy"),
    ([6, 5, 4, 3], "tanh", "identity", "mse"),
    ([6, 5, 3], "relu", "softmax", "softmax-cross-entropy"),
])
def test_textbook_contender_is_the_same_step_as_train_step(sizes, hidden, output, loss):
    """The textbook NumPy step times the same arithmetic as train_step: same J, same update."""
    import numpy as np

    import deltaprop as dp
    from deltaprop import backprop as bp

    run = _bench_run()
    net = dp.Network.init(sizes, hidden, output, seed=1)
    x, y = run._data(sizes, 7, "float64", loss, seed=2)
    step = run.textbook_fn(net, x, y, loss, 0.3)
    J_text = step()
    new, J = bp.train_step(net, x, y, loss, 0.3)
    np.testing.assert_allclose(J_text, J, rtol=1e-12)
    # a second textbook step from the updated parameters equals a second train_step
    J2_text = step()
    _, J2 = bp.train_step(new, x, y, loss, 0.3)
    np.testing.assert_allclose(J2_text, J2, rtol=1e-10)


def _run(*args, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, RUN, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


@pytest.mark.slow
def test_backend_torch_runs_the_table_on_the_cpu():
    pytest.importorskip("torch")
    pytest.importorskip("threadpoolctl")
    out = _run("--quick", "--json", "--threads", "1", "--backend", "torch", "--configs", "1",
               "3", "7")
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert doc["header"]["backend"] == "torch"
    by = {r["config"]: r for r in doc["rows"]}
    for cid in (1, 3):
        r = by[cid]
        assert r["deltaprop_ms"] > 0 and r["torch_ms"] > 0 and r["floor_ms"] > 0
        assert r["textbook_ms"] is None  # the textbook step is NumPy's
    assert "NumPy only" in by[7]["todo"]


@pytest.mark.parametrize("args,lib", [(("--backend", "torch", "--device", "cuda"), "torch"),
                                      (("--backend", "cupy"), None),
                                      (("--device", "cuda"), None)])
def test_a_missing_library_or_device_is_one_line(args, lib):
    if lib == "torch":
        torch = pytest.importorskip("torch")
        if torch.cuda.is_available():
            pytest.skip("a CUDA device is present")
    if args[:2] == ("--backend", "cupy"):
        try:
            import cupy  # noqa: F401

            pytest.skip("CuPy is installed")
        except ImportError:
            pass
    out = _run(*args, "--threads", "1", timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("run.py: "), out.stderr
    assert "Traceback" not in out.stderr


def test_scaling_growth_quick_json_and_plot(tmp_path):
    pytest.importorskip("threadpoolctl")
    pytest.importorskip("matplotlib")
    scaling = os.path.join(ROOT, "bench", "scaling.py")
    png = tmp_path / "growth.png"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, scaling, "--growth", "--quick", "--json",
                          "--plot", str(png)], capture_output=True, text=True, timeout=300,
                         env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert {r["line"] for r in doc["rows"]} == {"width", "depth", "batch"}
    assert all(r["deltaprop_s"] > 0 and r["floor_s"] > 0 for r in doc["rows"])
    assert png.stat().st_size > 0 and doc["record_memory"][0]["peak_bytes"] > 0
    again = subprocess.run([sys.executable, scaling, "--growth", "--quick", "--plot", str(png)],
                           capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert again.returncode == 2 and "exists" in again.stderr  # never overwrite a user's file
