"""`deltaprop sweep`: cells keyed by their parameters, serial == two workers == killed worker.

Cluster tests use the session-scoped two-process ``dask_client`` of :mod:`test_dask`.
"""

from __future__ import annotations

import http.server
import io
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import deltaprop as dp
from deltaprop.app.cli import main
from deltaprop.stats import sweep as sw

pytest.importorskip("dask.distributed")
from test_dask import dask_client  # noqa: E402, F401 - the shared cluster fixture

# a small grid: 2 x 2 x 2 = 8 cells of 6 layers
SMALL = dict(sigma_w2=[0.5, 2.5], sigma_b2=[0.0, 0.1], activation=["tanh", "relu"], depth=6,
             width=16, K=4, m=8)


@pytest.fixture(scope="module")
def serial_table(tmp_path_factory):
    path = tmp_path_factory.mktemp("serial") / "serial.csv"
    rows = sw.run(sw.grid(**SMALL), str(path), serial=True)
    return path, rows


def test_cell_key_is_canonical():
    c = sw.grid(activation="ReLU", init="kaiming", loss="squared-error", sigma_w2=2)[0]
    assert c["activation"] == "relu" and c["init"] == "he_normal" and c["loss"] == "mse"
    assert sw.cell_key(c) == sw.cell_key({**c, "sigma_w2": 2.0, "activation": "relu"})
    keys = {sw.cell_key({**c, k: v}) for k, v in [
        ("sigma_w2", 2.0000001), ("sigma_b2", 0.1), ("depth", 21), ("width", 65),
        ("activation", "tanh"), ("init", "normal"), ("loss", "sigmoid-cross-entropy"),
        ("seed", 1), ("K", 17), ("m", 33)]}
    assert len(keys | {sw.cell_key(c)}) == 11  # every parameter changes the key


@pytest.mark.parametrize("bad, match", [
    (dict(depth=2), "depth must be >= 3"), (dict(sigma_w2=-1), "sigma_w2 must be"),
    (dict(width=2.5), "width must be an integer"), (dict(nope=1), "unknown sweep parameter"),
    (dict(depth=float("inf")), "depth must be an integer"),
    (dict(seed=float("nan")), "seed must be an integer"),
    (dict(activation="nope"), "unknown activation"), (dict(seed=[]), "empty"),
])
def test_bad_grids_are_value_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        sw.grid(**bad)


def test_growth_rate_recovers_an_exponential():
    L, g = 8, 0.3
    E = [math.exp(1.0 + g * (L - l)) for l in range(1, L + 1)]
    E[-1] = 123.0  # the output layer is left out of the fit
    assert sw.growth_rate(E) == pytest.approx(g, rel=1e-12)
    assert math.isnan(sw.growth_rate([0.0, 0.0, 1.0]))


def test_run_cell_is_the_mean_of_delta_squared():
    """Recompute one cell by hand from deltaprop.backward on the stack of K networks."""
    c = sw.grid(sigma_w2=1.7, sigma_b2=0.05, depth=5, width=12, K=6, m=10,
                activation="tanh", loss="softmax-cross-entropy", seed=3)[0]
    row = sw.run_cell(c)
    net = dp.Network.init([12] * 6, ["tanh"] * 4 + ["softmax"], init="normal", seed=3, K=6,
                          std=math.sqrt(1.7 / 12), bias_std=math.sqrt(0.05))
    rng = np.random.default_rng([3, 2026])
    x, y = rng.normal(size=(10, 12)), rng.integers(0, 12, 10)
    _, g = dp.gradients(net, x, y, "softmax-cross-entropy")
    want = [float(np.mean(g.delta[l] ** 2)) for l in range(1, 6)]
    np.testing.assert_allclose(row["E_delta2"], want, rtol=1e-12)
    per_net = [np.mean(g.delta[1] ** 2, axis=(1, 2))]
    assert row["E_delta2_se"][0] == pytest.approx(np.std(per_net, ddof=1) / math.sqrt(6))
    assert row["key"] == sw.cell_key(c)


def _growth_se_bound(row):
    """An upper bound on the se of the growth rate: the slope is sum_l w_l log E_l, and
    se(log E_l) = se_l / E_l; the layers share their networks, so the se add at worst."""
    E, se = np.array(row["E_delta2"][:-1]), np.array(row["E_delta2_se"][:-1])
    dist = len(E) + 1 - np.arange(1, len(E) + 1)
    w = (dist - dist.mean()) / np.sum((dist - dist.mean()) ** 2)  # least-squares weights
    return float(np.sum(np.abs(w) * se / E))


def test_growth_sign_follows_sigma_w2():
    """Ordered (small sigma_w^2) vanishes backward, chaotic (large) explodes: each growth
    rate more than 4 se from 0 (-1.24 and 0.30 against se bounds 0.014 and 0.025)."""
    lo, hi = (sw.run_cell(c) for c in sw.grid(sigma_w2=[0.3, 4.0], depth=12, width=32))
    assert lo["growth"] < -4 * _growth_se_bound(lo)
    assert hi["growth"] > 4 * _growth_se_bound(hi)


def test_torch_backend_gives_numpy_numbers():
    pytest.importorskip("torch")
    c = sw.grid(**{**SMALL, "sigma_w2": 2.5, "sigma_b2": 0.1, "activation": "tanh"})[0]
    a, b = sw.run_cell(c), sw.run_cell(c, backend="torch")
    np.testing.assert_allclose(b["E_delta2"], a["E_delta2"], rtol=1e-12)


def test_resume_skips_finished_cells_and_drops_a_torn_line(tmp_path, serial_table):
    path = tmp_path / "t.csv"
    cells = sw.grid(**SMALL)
    sw.run(cells[:3], str(path), serial=True)
    with open(path, "a") as f:
        f.write("deadbeef,0.5,0.0,6,16,ta")  # a sweep stopped mid-write
    seen = []
    rows = sw.run(cells, str(path), serial=True, on_row=lambda r: seen.append(r["key"]))
    assert seen == [sw.cell_key(c) for c in cells[3:]]  # only the missing cells ran
    _same_file(path, serial_table[0])
    assert [r["key"] for r in rows] == [sw.cell_key(c) for c in cells]


def _same_file(a, b):
    """Byte-identical tables; on failure, name the first differing line."""
    la, lb = a.read_text().splitlines(), b.read_text().splitlines()
    diff = [(i, x, y) for i, (x, y) in enumerate(zip(la, lb, strict=False)) if x != y]
    assert len(la) == len(lb) and not diff, (len(la), len(lb), diff[:1])


def test_two_workers_equal_serial(tmp_path, serial_table, dask_client):  # noqa: F811
    path = tmp_path / "par.csv"
    sw.run(sw.grid(**SMALL), str(path), client=dask_client)
    _same_file(path, serial_table[0])


def test_killed_worker_mid_sweep_gives_the_complete_identical_table(
        tmp_path, dask_client):  # noqa: F811
    heavy = {**SMALL, "depth": 12, "width": 96, "K": 24, "m": 32}  # ~0.1 s a cell
    cells = sw.grid(**heavy, seed=[0, 1])  # 16 cells
    ref = tmp_path / "ref.csv"
    sw.run(cells, str(ref), serial=True)

    path, done, errors = tmp_path / "killed.csv", [], []
    pids = dask_client.run(os.getpid)

    def sweep():
        try:
            sw.run(cells, str(path), client=dask_client, on_row=done.append)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    t = threading.Thread(target=sweep)
    t.start()
    deadline = time.monotonic() + 30
    while len(done) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(done) < len(cells), "the sweep finished before a worker could be killed"
    busy = [a for a, tasks in dask_client.processing().items() if tasks]
    os.kill(pids[busy[0] if busy else next(iter(pids))], signal.SIGKILL)
    t.join(60)
    assert not errors and not t.is_alive()
    dask_client.wait_for_workers(2, timeout=30)
    assert set(dask_client.run(os.getpid).values()) != set(pids.values())
    _same_file(path, ref)


def test_cli_sweep_resumes_and_plots(tmp_path, capsys):
    out = tmp_path / "cli.csv"
    argv = ["sweep", "--sigma-w2", "0.25,2.25", "--sigma-b2", "0:0.1:2", "--depth", "4",
            "--width", "8", "--K", "3", "--samples", "4", "--serial", "--no-edge",
            "--out", str(out)]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "4 cells (4 computed, 0 from the table)" in first
    assert (tmp_path / "cli.png").stat().st_size > 1000
    rows = sw.read_table(out)
    assert sorted({r["sigma_w2"] for r in rows}) == [0.25, 2.25]
    assert main(argv + ["--no-plot"]) == 0
    assert "4 cells (0 computed, 4 from the table)" in capsys.readouterr().out


@pytest.mark.parametrize("depth", ["4.5", "inf"])
def test_cli_bad_list_is_one_line_exit_2(capsys, depth):
    assert main(["sweep", "--depth", depth, "--serial", "--no-plot"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not an integer" in err


def test_edge_of_chaos_line_for_relu_is_sigma_w2_two(tmp_path, serial_table):
    line = sw._edge_line("relu", [0.0, 0.1])
    assert [round(w, 6) for w, _ in line] == [2.0, 2.0]
    rows = [r for r in serial_table[1] if r["activation"] == "relu"]
    assert os.path.getsize(sw.plot_phase(rows, tmp_path / "relu.png")) > 1000


def test_parquet_table(tmp_path):
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = sw.run(sw.grid(**{**SMALL, "activation": "tanh"}), str(tmp_path / "t.parquet"),
                  serial=True)
    assert pq.read_table(tmp_path / "t.parquet").num_rows == len(rows) == 4


def test_cell_numbers_equal_a_direct_computation():
    """The recorder's numbers equal the mean of delta^2 per network, then mean and s.e. over K."""
    from deltaprop import backprop
    from deltaprop.network import Network

    c = sw.grid(**{**SMALL, "sigma_w2": 2.5, "activation": "tanh"})[0]
    row = sw.run_cell(c)
    L, n, K = c["depth"], c["width"], c["K"]
    net = Network.init([n] * (L + 1), ["tanh"] * (L - 1) + ["identity"], init="normal",
                       seed=c["seed"], K=K, std=math.sqrt(2.5 / n), bias_std=0.0)
    rng = np.random.default_rng([c["seed"], 2026])
    x, y = rng.normal(size=(c["m"], n)), rng.normal(size=(c["m"], n))
    _, g = backprop.gradients(net, x, y, "mse")
    per_net = np.stack([np.mean(g.delta[l] ** 2, axis=(-2, -1)) for l in range(1, L + 1)])
    np.testing.assert_allclose(row["E_delta2"], per_net.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(row["E_delta2_se"],
                               per_net.std(axis=1, ddof=1) / math.sqrt(K), rtol=1e-9)


def test_cli_on_an_existing_scheduler(tmp_path, serial_table, dask_client):  # noqa: F811
    """--scheduler ADDRESS: the cells run on that cluster; the table is the serial one."""
    out = tmp_path / "remote.csv"
    argv = ["sweep", "--sigma-w2", "0.5,2.5", "--sigma-b2", "0,0.1", "--activation",
            "tanh,relu", "--depth", "6", "--width", "16", "--K", "4", "--samples", "8",
            "--scheduler", dask_client.scheduler.address, "--no-plot", "--out", str(out)]
    assert main(argv) == 0
    _same_file(out, serial_table[0])


# ----------------------------------------------------------------------------- nothing lost
TINY = ["--sigma-w2", "0.5,2", "--sigma-b2", "0", "--depth", "3", "--width", "4", "--K", "2",
        "--samples", "3", "--serial"]


def _one_line(capsys, *needles):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


def test_cli_another_grid_is_refused_and_kept(tmp_path, capsys):
    """The README's two sweeps with one --out: the second is refused (the file and its plot
    are untouched) unless --force, which starts a new table of its own grid only."""
    out = tmp_path / "sweep.csv"
    assert main(["sweep", *TINY, "--out", str(out)]) == 0
    before, png = out.read_bytes(), (tmp_path / "sweep.png").read_bytes()
    capsys.readouterr()
    relu = ["sweep", *TINY, "--activation", "relu", "--out", str(out)]
    assert main(relu) == 2
    _one_line(capsys, "another grid", "--force", str(out))
    assert out.read_bytes() == before and (tmp_path / "sweep.png").read_bytes() == png
    assert main(relu + ["--force"]) == 0
    assert {r["activation"] for r in sw.read_table(out)} == {"relu"}
    assert len(sw.read_table(out)) == 2


def test_a_larger_grid_resumes_a_table_of_a_part_of_it(tmp_path):
    cells = sw.grid(**SMALL)
    path = tmp_path / "t.csv"
    sw.run(cells[:2], str(path), serial=True)
    seen = []
    sw.run(cells, str(path), serial=True, on_row=seen.append)
    assert len(seen) == len(cells) - 2


@pytest.mark.parametrize("content, match", [
    ("a,b\n1,2\n", "not a sweep table"), (b"\x89PNG\x00\xff", "not a sweep table")])
def test_a_file_that_is_not_a_table_is_refused_before_computing(tmp_path, content, match):
    path = tmp_path / "mine.csv"
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    before = path.read_bytes()
    seen = []
    with pytest.raises(ValueError, match=match):
        sw.run(sw.grid(**SMALL), str(path), serial=True, on_row=seen.append)
    assert not seen and path.read_bytes() == before
    sw.run(sw.grid(**SMALL)[:1], str(path), serial=True, force=True)
    assert len(sw.read_table(path)) == 1


def test_unknown_format_and_missing_pyarrow_fail_before_computing(tmp_path, capsys,
                                                                  monkeypatch):
    import builtins

    assert main(["sweep", *TINY, "--out", str(tmp_path / "x.xlsx")]) == 2
    _one_line(capsys, "x.xlsx", ".csv and .parquet")
    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name.split(".")[0] == "pyarrow":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    monkeypatch.setattr(sw, "run_cell", lambda *a: pytest.fail("computed a cell"))
    assert main(["sweep", *TINY, "--out", str(tmp_path / "x.parquet")]) == 2
    _one_line(capsys, "pip install 'deltaprop[parquet]'")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_folder_is_named_before_computing(tmp_path, capsys):
    assert main(["sweep", *TINY, "--out", str(tmp_path / "no" / "t.csv")]) == 2
    _one_line(capsys, "folder", "does not exist")
    assert main(["sweep", *TINY, "--out", str(tmp_path / "t.csv"),
                 "--plot", str(tmp_path / "no" / "t.png")]) == 2
    _one_line(capsys, "--plot", "does not exist")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_plot_of_another_sweep_is_refused(tmp_path, capsys):
    (tmp_path / "s.png").write_bytes(b"mine")
    assert main(["sweep", *TINY, "--out", str(tmp_path / "s.csv")]) == 2
    _one_line(capsys, "s.png exists", "--no-plot")
    assert (tmp_path / "s.png").read_bytes() == b"mine" and not (tmp_path / "s.csv").exists()
    assert main(["sweep", *TINY, "--out", str(tmp_path / "s.csv"), "--plot", "p.svg2"]) == 2
    _one_line(capsys, "cannot write .svg2")


@pytest.mark.parametrize("flag, use", [("--m", "--samples"), ("--fresh", "--force"),
                                       ("--sigma-w", "--sigma-w2"), ("--sigma-b", "--sigma-b2")])
def test_retired_flags_point_to_the_new_ones(capsys, flag, use):
    assert main(["sweep", *TINY, flag, "3"]) == 2
    _one_line(capsys, flag, use)


# ----------------------------------------------------------------------------- feedback
class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_on_a_terminal_and_quiet(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert main(["sweep", *TINY, "--sigma-w2", "0.5,1,2,3", "--no-plot",
                 "--out", str(tmp_path / "a.csv")]) == 0
    bar = sys.stderr.getvalue()
    assert "sweep:" in bar and "0/4 [" in bar and "cell/s" in bar, bar  # done/total, rate, eta
    capsys.readouterr()
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert main(["sweep", *TINY, "--no-plot", "--quiet", "--out", str(tmp_path / "b.csv")]) == 0
    assert sys.stderr.getvalue() == "" and capsys.readouterr().out == ""


def test_json_summary(tmp_path, capsys):
    assert main(["sweep", *TINY, "--no-plot", "--json", "-v",
                 "--out", str(tmp_path / "a.csv")]) == 0
    out = capsys.readouterr()
    got = json.loads(out.out)
    assert out.err.count("growth") == 2  # the -v lines
    assert got["cells"] == got["computed"] == 2 and got["plot"] is None
    assert [r["key"] for r in got["rows"]] == [r["key"] for r in sw.read_table(got["out"])]


def test_config_file_sets_the_grid_and_flags_win(tmp_path, capsys):
    cfg = tmp_path / "grid.toml"
    cfg.write_text('sigma_w2 = [0.5, 2.0, 3.0]\nsigma_b2 = "0"\ndepth = 3\nwidth = 4\nK = 2\n'
                   'samples = 3\nserial = true\nno_plot = true\n')
    assert main(["sweep", "--config", str(cfg), "--json", "--out", str(tmp_path / "a.csv"),
                 "--width", "5"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["sigma_w2"] for r in rows] == [0.5, 2.0, 3.0] and {r["width"] for r in rows} == {5}


def test_local_cluster_dashboard_is_on_localhost(dask_client):  # noqa: F811
    assert dask_client.dashboard_link.startswith("http://127.0.0.1:")
    server = dask_client.cluster.scheduler.http_server
    hosts = {s.getsockname()[0] for s in server._sockets.values()}
    assert hosts == {"127.0.0.1"}


def test_cli_prints_the_dashboard(tmp_path, capsys, dask_client):  # noqa: F811
    argv = ["sweep", *TINY[:-1], "--scheduler", dask_client.scheduler.address, "--no-plot",
            "--out", str(tmp_path / "d.csv")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert f"dask dashboard: {dask_client.dashboard_link}" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- no hang
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def web_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def test_connect_to_a_closed_port_fails_at_once(capsys):
    port = _free_port()
    with pytest.raises(ConnectionError, match="nothing listens there"):
        sw.connect(f"tcp://127.0.0.1:{port}", timeout=5)
    assert main(["sweep", *TINY[:-1], "--scheduler", f"tcp://127.0.0.1:{port}",
                 "--scheduler-timeout", "5", "--no-plot", "--out", "unused.csv"]) == 2
    _one_line(capsys, f"127.0.0.1:{port}", "connection refused")
    assert not os.path.exists("unused.csv")


def test_connect_to_a_web_server_names_the_cause(web_server, monkeypatch, capsys, tmp_path):
    addr = f"127.0.0.1:{web_server}"
    with pytest.raises(ConnectionError, match="not http://"):
        sw.connect(f"http://{addr}", timeout=0.5)
    with pytest.raises(ConnectionError, match="not a Dask scheduler .* web server"):
        sw.connect(f"tcp://{addr}", timeout=0.5)
    monkeypatch.setattr(sw, "DASHBOARD_PORT", web_server)  # as if it were the dashboard, 8787
    out = tmp_path / "t.csv"
    assert main(["sweep", *TINY[:-1], "--scheduler", addr, "--scheduler-timeout", "0.5",
                 "--no-plot", "--out", str(out)]) == 2
    _one_line(capsys, addr, f"{web_server} is the dashboard port", "listens on 8786")
    assert not out.exists()


def _start(args, **kw):
    return subprocess.Popen([sys.executable, "-c", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, **kw)


@pytest.mark.slow
def test_a_scheduler_lost_mid_sweep_is_one_line_and_the_table_resumes(tmp_path, capsys):
    port = _free_port()
    sched = _start([f"from distributed import Scheduler\nimport asyncio\nasync def m():\n"
                    f"    async with Scheduler(host='127.0.0.1', port={port}, dashboard=False)"
                    " as s:\n        await s.finished()\nasyncio.run(m())"])
    worker = _start(["import sys; from distributed.cli.dask_worker import main; "
                     "sys.exit(main())", f"tcp://127.0.0.1:{port}", "--nthreads", "1",
                     "--no-dashboard"], env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                client = sw.connect(f"tcp://127.0.0.1:{port}", timeout=2)
                break
            except ConnectionError:
                time.sleep(0.2)
        client.wait_for_workers(1, timeout=60)
        client.close()
        out = tmp_path / "lost.csv"
        grid = ["--sigma-w2", "0.5:3:24", "--sigma-b2", "0", "--depth", "12", "--width", "96",
                "--K", "24", "--samples", "32", "--no-plot", "--out", str(out)]

        def kill_after_two_rows():
            while time.monotonic() < deadline:
                if out.exists() and len(out.read_text().splitlines()) >= 3:
                    sched.kill()
                    return
                time.sleep(0.01)

        killer = threading.Thread(target=kill_after_two_rows)
        killer.start()
        code = main(["sweep", *grid, "--scheduler", f"tcp://127.0.0.1:{port}",
                     "--scheduler-timeout", "2", "--quiet"])
        killer.join()
        assert code == 1
        err = _one_line(capsys, "lost the Dask scheduler", str(out), "run the same command")
        kept = len(sw.read_table(out))
        assert 2 <= kept < 24, err
        assert main(["sweep", *grid, "--serial"]) == 0
        assert f"24 cells ({24 - kept} computed, {kept} from the table)" in \
            capsys.readouterr().out
    finally:
        for p in (worker, sched):
            p.kill()
            p.wait()


def test_a_scheduler_without_workers_is_named(capsys, tmp_path):
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=False, protocol="tcp://", host="127.0.0.1",
                      dashboard_address=None) as cluster:
        with pytest.raises(ConnectionError, match="has no workers .*dask worker"):
            sw.connect(cluster.scheduler_address, timeout=0.3)
        assert main(["sweep", *TINY[:-1], "--scheduler", cluster.scheduler_address,
                     "--scheduler-timeout", "0.3", "--no-plot",
                     "--out", str(tmp_path / "t.csv")]) == 2
        _one_line(capsys, "has no workers")


def test_a_cell_that_cannot_fit_is_refused_before_computing(tmp_path, capsys, monkeypatch):
    from deltaprop.app import data

    c = sw.grid(depth=20, width=64, K=16, m=32)[0]  # the default cell: 48.8 MB
    assert sw.cell_memory(c) == 8 * 16 * (2 * 20 * 64 * 65 + 5 * 32 * 64 * 21)
    monkeypatch.setattr(data, "available_memory", lambda: 10**8)  # 100 MB free
    monkeypatch.setattr(sw, "run_cell", lambda *a: pytest.fail("computed a cell"))
    monkeypatch.setattr(sw, "local_cluster", lambda *a: pytest.fail("started a cluster"))
    assert main(["sweep", *TINY[:-1], "--width", "64", "--depth", "20", "--K", "16",
                 "--samples", "32", "--workers", "3", "--out", str(tmp_path / "t.csv")]) == 2
    _one_line(capsys, "3 cells at once of width 64, depth 20 and K = 16 networks (0.0455 GiB "
              "each) would need about 0.136 GiB and 0.0931 GiB is available", "fewer workers")
    with pytest.raises(ValueError, match="width 1000, depth 6 .* and 0.0931 GiB is available"):
        sw.run(sw.grid(**{**SMALL, "width": [16, 1000]}), str(tmp_path / "u.csv"), serial=True)
    assert list(tmp_path.iterdir()) == []
