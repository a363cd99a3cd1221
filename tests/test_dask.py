"""Dask arrays chunked by rows give the in-memory numbers; a killed worker changes nothing.

The cluster tests share one session-scoped two-process ``LocalCluster`` on loopback
(``dask_client``; :mod:`test_sweep` imports it too).  The client is not made Dask's default,
so other tests' ``.compute()`` calls stay local; these tests pass ``scheduler=client``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import deltaprop as dp

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("dask.distributed")
dd = pytest.importorskip("deltaprop.app.dask")

# (sizes, hidden, output, loss, K, chunk rows): ragged last chunks on purpose
CASES = [
    ([5, 8, 3], "tanh", "softmax", "softmax-cross-entropy", None, 97),
    ([4, 6, 6, 2], "relu", "sigmoid", "sigmoid-cross-entropy", 3, 128),
    ([3, 7, 1], "gelu", "identity", "mse", 2, 1000),
]
IDS = [f"{c[1]}-{c[3]}-K{c[4]}-rows{c[5]}" for c in CASES]


def _data(case, m=1000, seed=0):
    sizes, hidden, out, loss, K, rows = case
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(m, sizes[0]))
    if loss == "softmax-cross-entropy":
        y = rng.integers(0, sizes[-1], m)
    elif loss == "sigmoid-cross-entropy":
        y = rng.uniform(size=(m, sizes[-1]))
    else:
        y = rng.normal(size=(m, sizes[-1]))
    net = dp.Network.init(sizes, hidden, out, seed=seed + 1, K=K, bias_std=0.2)
    return net, x, y, loss, rows


def _rel(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-300))


@pytest.fixture(scope="session")
def dask_client():
    """Two single-threaded worker processes on 127.0.0.1, shared by the cluster tests."""
    from deltaprop.stats.sweep import local_cluster

    cluster = local_cluster(2, memory_limit="1GiB")
    client = distributed.Client(cluster, set_as_default=False)
    for env in client.run(lambda: dict(os.environ)).values():  # one BLAS thread, no trim
        assert env.get("OMP_NUM_THREADS") == "1" and "MALLOC_TRIM_THRESHOLD_" not in env
    yield client
    client.close()
    cluster.close()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradients_equal_in_memory(case):
    net, x, y, loss, rows = _data(case)
    _, g = dp.gradients(net, x, y, loss, l2=0.3)
    X = da.from_array(x, chunks=(rows, -1))
    Y = da.from_array(y, chunks=(250,) + (-1,) * (y.ndim - 1))  # other chunks: rechunked
    got = dd.gradients(net, X, Y, loss, l2=0.3, split_every=3, scheduler="synchronous")
    assert _rel(got.J, g.J) < 1e-12
    for l in range(1, net.L + 1):
        assert _rel(got.dW[l], g.dW[l]) < 1e-12
        assert _rel(got.db[l], g.db[l]) < 1e-12
        assert got.delta[l] is None
    # a step with data-set gradients is the in-memory step
    new, ref = dp.step(net, got, 0.1), dp.step(net, g, 0.1)
    assert _rel(new.W[1], ref.W[1]) < 1e-13


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_delta_moments_equal_in_memory(case):
    net, x, y, loss, rows = _data(case)
    _, g = dp.gradients(net, x, y, loss)
    mo = dd.delta_moments(dd.sums(net, da.from_array(x, chunks=(rows, -1)), y, loss,
                                  scheduler="threads"))
    assert mo["m"] == x.shape[0]
    for l in range(1, net.L + 1):
        d = g.delta[l]
        assert _rel(mo["mean"][l], np.mean(d, axis=-2)) < 1e-12
        assert _rel(mo["var"][l], np.var(d, axis=-2)) < 1e-12
        assert _rel(mo["sq"][l], np.mean(d**2, axis=-2)) < 1e-12
        assert _rel(mo["sq_layer"][l], np.mean(d**2, axis=(-2, -1))) < 1e-12


def test_record_of_chunks_equals_record_in_memory():
    """The laboratory's Record, merged over row chunks, is the in-memory Record."""
    record = pytest.importorskip("deltaprop.stats.record").record
    net, x, y, loss, rows = _data(CASES[1])
    got = dd.record(net, da.from_array(x, chunks=(rows, -1)), y, loss, bins=16,
                    scheduler="synchronous")
    want = record(net, x, y, loss, bins=16)
    assert set(got.stats) == set(want.stats) and got.count == want.count == x.shape[0]
    for key, moms in want.stats.items():
        for a, b in zip(got.stats[key], moms, strict=True):
            assert _rel(a.mean, b.mean) < 1e-12 and _rel(a.m2, b.m2) < 1e-10, key
    for l in range(1, net.L + 1):
        s = got.layer_summary(l)
        assert s["second_moment"] == pytest.approx(want.layer_summary(l)["second_moment"],
                                                   rel=1e-12)
        np.testing.assert_array_equal(got.hist[l].counts, want.hist[l].counts)


@pytest.mark.parametrize("bad, match", [
    (dict(x=np.zeros((10, 4))), "expected \\(m, 5\\)"),
    (dict(y=np.zeros(9, dtype=int)), "10 rows but y has 9"),
    (dict(loss="sigmoid-cross-entropy"), "needs a 'sigmoid' output"),
    (dict(split_every=1), "split_every"),
])
def test_bad_input_fails_before_any_task(bad, match):
    net = dp.Network.init([5, 3], "tanh", "softmax", seed=0)
    args = dict(x=np.zeros((10, 5)), y=np.zeros(10, dtype=int), loss="softmax-cross-entropy")
    kw = {k: v for k, v in bad.items() if k not in args}
    args.update({k: v for k, v in bad.items() if k in args})
    with pytest.raises(ValueError, match=match):
        dd.sums(net, args["x"], args["y"], args["loss"], compute=False, **kw)


def test_merge_is_the_sum_of_halves():
    """Hand check of Chan's merge on two chunks of a 1-unit layer."""
    net = dp.Network.init([1, 1], "identity", seed=0, init="debug")  # z = W x + b
    x = np.array([[0.0], [1.0], [2.0], [5.0]])
    y = np.zeros((4, 1))
    a, b = dd.chunk_sums(net, x[:1], y[:1], "mse"), dd.chunk_sums(net, x[1:], y[1:], "mse")
    both = dd.merge(a, b)
    delta = dp.gradients(net, x, y, "mse")[1].delta[1][:, 0]  # mse + identity: delta = z
    assert both.m == 4
    np.testing.assert_allclose(both.delta[1].mean, [delta.mean()], rtol=1e-15)
    np.testing.assert_allclose(both.delta[1].m2, [np.sum((delta - delta.mean()) ** 2)],
                               rtol=1e-14)
    np.testing.assert_allclose(both.db[1], [delta.sum()], rtol=1e-15)


def test_torch_network_gets_torch_gradients():
    torch = pytest.importorskip("torch")
    net, x, y, loss, rows = _data(CASES[0])
    got = dd.gradients(net.to("torch"), x, y, loss, chunk_rows=rows, scheduler="synchronous")
    assert isinstance(got.dW[1], torch.Tensor) and got.dW[1].dtype == torch.float64
    assert _rel(got.dW[1].numpy(), dp.gradients(net, x, y, loss)[1].dW[1]) < 1e-12


def test_from_npy_and_iter_batches(tmp_path):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(1003, 4)), rng.integers(0, 3, 1003)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    X, Y = dd.from_npy(tmp_path / "x.npy", 100), dd.from_npy(tmp_path / "y.npy", 300)
    assert X.chunks[0][:2] == (100, 100) and X.chunks[1] == (4,)
    np.testing.assert_array_equal(X.compute(scheduler="synchronous"), x)
    # in order: the batches are the rows, in order, every batch full but the last
    got = list(dd.iter_batches(X, Y, 64, scheduler="synchronous"))
    assert [len(b[0]) for b in got] == [64] * 15 + [43]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in got]), x)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in got]), y)
    # shuffled: every row exactly once, pairs kept together
    got = list(dd.iter_batches(X, Y, 64, seed=1, scheduler="synchronous"))
    xs, ys = np.concatenate([b[0] for b in got]), np.concatenate([b[1] for b in got])
    order = np.lexsort(xs.T[::-1])
    ref = np.lexsort(x.T[::-1])
    np.testing.assert_array_equal(xs[order], x[ref])
    np.testing.assert_array_equal(ys[order], y[ref])
    assert not np.array_equal(xs, x)
    # plain lists are arrays too (x.ndim of a list was an AttributeError)
    got = list(dd.iter_batches(x[:5].tolist(), y[:5].tolist(), 2, scheduler="synchronous"))
    assert [len(b[0]) for b in got] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in got]), x[:5])


def test_zarr_store_gives_the_in_memory_gradients(tmp_path):
    pytest.importorskip("zarr")
    net, x, y, loss, rows = _data(CASES[0])
    da.from_array(x, chunks=(rows, -1)).to_zarr(str(tmp_path / "x.zarr"))
    X = da.from_zarr(str(tmp_path / "x.zarr"))
    got = dd.gradients(net, X, y, loss, scheduler="synchronous")
    assert _rel(got.dW[1], dp.gradients(net, x, y, loss)[1].dW[1]) < 1e-12


def test_cluster_equals_in_memory(dask_client):
    net, x, y, loss, rows = _data(CASES[1])
    got = dd.gradients(net, da.from_array(x, chunks=(rows, -1)), y, loss, l2=0.1,
                       scheduler=dask_client)
    _, g = dp.gradients(net, x, y, loss, l2=0.1)
    for l in range(1, net.L + 1):
        assert _rel(got.dW[l], g.dW[l]) < 1e-12


def _slow_rows(block):
    """A slow data source (network storage, say): 50 ms a chunk."""
    time.sleep(0.05)
    return block


@pytest.mark.slow  # about 30 s: a worker is killed and its tasks rerun elsewhere
def test_killed_worker_gives_the_identical_result(dask_client):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers lack tests/
    net, x, y, loss, _ = _data(CASES[0], m=4800)
    X = da.from_array(x, chunks=(200, -1)).map_blocks(_slow_rows, dtype=x.dtype)
    undisturbed = dd.sums(net, X, y, loss, scheduler=dask_client)

    before = dask_client.run(os.getpid)
    future = dask_client.compute(dd.sums(net, X, y, loss, compute=False))
    deadline = time.monotonic() + 20
    while not any(dask_client.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # several chunks done, several running or waiting
    assert not future.done()
    victim = next(a for a, tasks in dask_client.processing().items() if tasks)
    os.kill(before[victim], signal.SIGKILL)
    disturbed = future.result(timeout=60)
    dask_client.wait_for_workers(2, timeout=30)
    assert set(dask_client.run(os.getpid).values()) != set(before.values())  # it did die

    assert disturbed.m == undisturbed.m == x.shape[0]
    for field in ("dW", "db"):
        for a, b in zip(getattr(disturbed, field)[1:], getattr(undisturbed, field)[1:],
                        strict=True):
            np.testing.assert_array_equal(a, b)  # bit for bit
    for a, b in zip(disturbed.delta[1:], undisturbed.delta[1:], strict=True):
        np.testing.assert_array_equal(a.mean, b.mean)
        np.testing.assert_array_equal(a.m2, b.m2)
    np.testing.assert_array_equal(disturbed.J, undisturbed.J)


_RSS_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import deltaprop as dp
    from deltaprop.app import dask as dd

    def status(key):  # kB; VmHWM is this process's own peak (ru_maxrss inherits the parent's)
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith(key + ":"))

    path, limit = sys.argv[1], int(sys.argv[2])
    net = dp.Network.init([64, 32, 32, 4], "tanh", seed=0)
    X = dd.from_npy(path, chunk_bytes=limit // 16)  # a task needs ~6x its chunk
    y = dd.from_npy(path.replace("x.npy", "y.npy"), X.chunks[0][0])
    dd.sums(net, X[:10], y[:10], "mse", scheduler="synchronous")  # warm up imports
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak-RSS counter VmHWM to the current RSS
    base = status("VmRSS")
    s = dd.sums(net, X, y, "mse", scheduler="synchronous")
    print(json.dumps({"m": s.m, "base_kb": base, "peak_kb": status("VmHWM")}))
""")


def _write_npy(path, rows, cols, seed):
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(rows, cols))
    rng = np.random.default_rng(seed)
    for s in range(0, rows, 65536):
        out[s:s + 65536] = rng.normal(size=(min(65536, rows - s), cols))
    out.flush()
    del out


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_peak_memory_does_not_grow_with_the_data(tmp_path):
    """Statistics over .npy sources of 64 MB and 256 MB under a 32 MB limit: same peak RSS."""
    limit = 32 * 2**20
    peaks = {}
    for mb in (64, 256):
        d = tmp_path / str(mb)
        d.mkdir()
        rows = mb * 2**20 // (64 * 8)
        _write_npy(str(d / "x.npy"), rows, 64, mb)
        _write_npy(str(d / "y.npy"), rows, 4, mb + 1)
        env = dict(os.environ, OMP_NUM_THREADS="1")
        out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(d / "x.npy"), str(limit)],
                             capture_output=True, text=True, check=True, env=env)
        res = json.loads(out.stdout)
        assert res["m"] == rows
        peaks[mb] = (res["peak_kb"] - res["base_kb"]) * 1024
        print(f"{mb} MB source: peak RSS growth {peaks[mb] / 2**20:.1f} MB")
        (d / "x.npy").unlink()
        (d / "y.npy").unlink()
    assert peaks[64] < limit and peaks[256] < limit, peaks  # the growth while computing
    assert peaks[256] < peaks[64] + 8 * 2**20, peaks  # 4x the data, no more memory


def test_negative_l2_fails_before_the_pass_over_the_data(monkeypatch):
    net = dp.Network.init([3, 4, 2], "tanh", seed=0)
    monkeypatch.setattr(dd, "sums", lambda *a, **k: pytest.fail("the data were read first"))
    with pytest.raises(ValueError, match="l2 must be >= 0"):
        dd.gradients(net, np.zeros((8, 3)), np.zeros((8, 2)), "mse", l2=-0.1)
