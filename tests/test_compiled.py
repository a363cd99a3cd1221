"""The compiled kernels (deltaprop._compiled): bit for bit the NumPy kernels they replace.

Each kernel is checked three ways on the same inputs: compiled by Numba, run as its plain
Python function (no Numba needed: the formula itself), and the NumPy path it replaces
(``DELTAPROP_NUMBA=0``).  The plain-Python checks run everywhere, the compiled ones where
Numba is installed (the ``fast`` and ``test`` extras; the lowest-versions CI at its floor).
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

import deltaprop as dp
from deltaprop import _compiled, optim
from deltaprop.app.train import fit

pytestmark = pytest.mark.smoke

needs_numba = pytest.mark.skipif(not _compiled.enabled(),
                                 reason="Numba is not installed (pip install deltaprop[fast])")


@pytest.fixture
def numba_off(monkeypatch):
    """Run the test body with the compiled kernels switched off (the NumPy path)."""

    def switch(on):
        monkeypatch.setenv("DELTAPROP_NUMBA", "1" if on else "0")
        _compiled.enabled.cache_clear()

    yield switch
    monkeypatch.delenv("DELTAPROP_NUMBA", raising=False)
    _compiled.enabled.cache_clear()


def _adam_inputs(dtype, shape, seed):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(shape).astype(dtype)
    grads = [(rng.standard_normal(shape) * 10.0 ** rng.integers(-9, 4)).astype(dtype)
             for _ in range(12)]
    return p, grads


def _coefficients(dtype, t, eta, b1=0.9, b2=0.999, eps=1e-8):
    return np.array([b1, 1 - b1, b2, 1 - b2, math.sqrt(1 - b2 ** t), eps, -(eta / (1 - b1 ** t))],
                    dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (7, 5), (64, 33)])
def test_adam_formula_equals_the_numpy_rule(dtype, shape, numba_off):
    """The kernel's plain Python loop is the NumPy in-place rule, bit for bit (12 steps,
    gradients from 1e-9 to 1e3)."""
    numba_off(False)
    opt = optim.get("adam", 0.01)
    p0, grads = _adam_inputs(dtype, shape, 0)
    p1, p2 = p0.copy(), p0.copy()
    s1 = {"m.W": np.zeros_like(p0), "v.W": np.zeros_like(p0)}
    m2, v2 = np.zeros_like(p0), np.zeros_like(p0)
    for t, g in enumerate(grads, 1):
        opt.rule(p1, g.copy(), s1, "W", t, 0.01, True)
        optim.adam_into.py(p2, g, m2, v2, _coefficients(dtype, t, 0.01))
    assert p2.dtype == dtype
    np.testing.assert_array_equal(p2, p1)
    np.testing.assert_array_equal(m2, s1["m.W"])
    np.testing.assert_array_equal(v2, s1["v.W"])
    assert not np.array_equal(p1, p0)


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (7, 5), (64, 33)])
def test_adam_compiled_equals_the_numpy_rule(dtype, shape, numba_off):
    opt = optim.get("adam", 0.003)
    p0, grads = _adam_inputs(dtype, shape, 1)
    out = {}
    for on in (True, False):
        numba_off(on)
        p, s = p0.copy(), {"m.W": np.zeros_like(p0), "v.W": np.zeros_like(p0)}
        for t, g in enumerate(grads, 1):
            assert opt.rule(p, g.copy(), s, "W", t, 0.003, True) is p
        out[on] = (p, s["m.W"], s["v.W"])
    for a, b in zip(out[True], out[False], strict=True):
        np.testing.assert_array_equal(a, b)


@needs_numba
def test_adam_kernel_is_used_only_where_it_fits(numba_off):
    """Non-contiguous or mixed-dtype arrays, and the non-donating rule, take the NumPy path
    (and still agree)."""
    numba_off(True)
    opt = optim.get("adam", 0.01)
    rng = np.random.default_rng(2)
    p = rng.standard_normal((6, 8))
    g = rng.standard_normal((8, 6)).T  # not C contiguous
    s = {"m.W": np.zeros_like(p), "v.W": np.zeros_like(p)}
    assert not optim._one_block(p, g, s["m.W"], s["v.W"])
    ref = optim.adam_update(p, *optim.adam_moments(g, s["m.W"], s["v.W"], 0.9, 0.999), 1, 0.01,
                            0.9, 0.999, 1e-8, np)
    fresh = {"m.W": np.zeros_like(p), "v.W": np.zeros_like(p)}
    new = opt.rule(p.copy(), g.copy(), fresh, "W", 1, 0.01, True)
    np.testing.assert_array_equal(new, ref)
    new = opt.rule(p, g, s, "W", 1, 0.01, False)  # a new array, p untouched
    np.testing.assert_array_equal(new, ref)
    assert not np.array_equal(new, p)


@needs_numba
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fit_with_adam_is_the_same_with_and_without_numba(dtype, numba_off):
    """A whole run of fit (fused Adam steps, rollbacks' starting states) gives the same
    parameters, state and history bit for bit either way."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((150, 6))
    y = (x[:, 0] * x[:, 1] > 0).astype(int) + (x[:, 2] > 1)
    net = dp.Network.init([6, 16, 3], "tanh", "softmax", dtype=dtype, seed=4)
    res = {}
    for on in (True, False):
        numba_off(on)
        res[on] = fit(net, x, y, "softmax-cross-entropy", optimizer="adam",
                      learning_rate=0.01, batch_size=16, epochs=4, seed=5)
    a, b = res[True], res[False]
    for l in range(1, net.L + 1):
        np.testing.assert_array_equal(a.net.W[l], b.net.W[l])
        np.testing.assert_array_equal(a.net.b[l], b.net.b[l])
    for key in b.opt_state:
        np.testing.assert_array_equal(np.asarray(a.opt_state[key]), np.asarray(b.opt_state[key]))
    assert a.history.column("loss") == b.history.column("loss")
    assert a.history.column("loss")[-1] < a.history.column("loss")[0]


def test_switch_reads_the_environment(numba_off):
    numba_off(False)
    assert _compiled.enabled() is False
    code = "import deltaprop._compiled as c, sys; print(c.enabled(), 'numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"DELTAPROP_NUMBA": "0", "PATH": ""}, check=True).stdout.split()
    assert out == ["False", "False"]


def test_importing_deltaprop_does_not_import_numba():
    code = "import deltaprop, deltaprop.optim, deltaprop.stats, sys; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


@pytest.mark.parametrize("switch", ["0", "1"])
def test_version_says_whether_the_compiled_kernels_run(switch):
    import os

    env = {**os.environ, "DELTAPROP_NUMBA": switch}
    out = subprocess.run([sys.executable, "-m", "deltaprop", "--version"], capture_output=True,
                         text=True, env=env, check=True).stdout.strip()
    if switch == "0":
        assert out.endswith("; compiled kernels off (DELTAPROP_NUMBA=0)")
    elif _compiled.enabled():
        assert "; compiled kernels on (Numba " in out
    else:
        assert 'compiled kernels off (pip install "deltaprop[fast]" for Numba)' in out
