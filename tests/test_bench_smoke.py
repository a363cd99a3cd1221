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
