"""Notebook display: ``_repr_html_`` and ``to_pandas()``, and examples/notebook.ipynb run.

The notebook is executed by a small runner (no Jupyter needed): its code cells run in order
in one namespace, and where a cell ends in an expression, that value is displayed as Jupyter
would, through ``_repr_html_`` when it has one.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from deltaprop import Network
from deltaprop.app import trace, train
from deltaprop.stats import Study, run_study

NOTEBOOK = Path(__file__).parent.parent / "examples" / "notebook.ipynb"


@pytest.fixture(scope="module")
def mazur():
    """Mazur's 2-2-2 example after one step (trace.run's TraceStep)."""
    return trace.run()[0]


@pytest.fixture(scope="module")
def study():
    return run_study(Study(sizes=(6, 12, 3), inputs="gaussian", K=4, m=128,
                           theory_samples=2048))


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = np.tanh(x[:, :2])
    return train.fit(Network.init([3, 5, 2], "tanh"), x, y, "mse", epochs=6,
                     x_val=x[:20], y_val=y[:20])


# ---------------------------------------------------------------------- HTML
@pytest.mark.smoke
def test_repr_html_shows_the_numbers(mazur):
    """Mazur's numbers, to six digits, are in the tables of the network, trace, gradients."""
    net_html = trace.load().net._repr_html_()
    assert "0.15" in net_html and "0.55" in net_html and "W[2]" in net_html
    tr = mazur.trace._repr_html_()
    assert "0.751365" in tr and "0.772928" in tr and "z[2]" in tr  # a[2]
    gr = mazur.grads._repr_html_()
    assert "J = 0.298371" in gr and "0.138499" in gr and "delta[2]" in gr and "dW[1]" in gr
    assert "0.35891" in mazur._repr_html_()  # W[2][0, 0] after the update (Mazur: 0.35891648)


def test_repr_html_summarises_big_arrays_and_stacks():
    big = Network.init([30, 40, 2], "tanh")
    html = big._repr_html_()
    assert "shape" in html and "std" in html and html.count("<tr>") < 40
    stack = Network.init([3, 4, 2], "tanh", K=5)
    html = stack._repr_html_()
    assert "K = 5" in html and "W[1]" not in html  # per-layer statistics only


def test_history_and_fit_repr_draw_curves(fitted):
    html = fitted.history._repr_html_()
    assert html.count("<svg") == 1 and "<polyline" in html and "validation" in html
    assert "6 epochs" in html
    assert "all epochs ran" in fitted._repr_html_()
    assert "no epoch" in train.History()._repr_html_()


def test_study_repr_is_the_stats_table(study):
    html = study._repr_html_()
    for word in ("E[delta^2]", "exact", "mean_field", "z = (prediction - measurement)"):
        assert word in html
    assert html.count("<tr>") == 1 + len(study.rows)


# ---------------------------------------------------------------------- pandas
def test_to_pandas_round_trips_every_array(mazur):
    pd = pytest.importorskip("pandas")
    df = mazur.net.to_pandas()
    assert list(df.columns) == ["layer", "quantity", "row", "col", "value"]
    for l in (1, 2):
        W = df.query(f"quantity == 'W' and layer == {l}").pivot(
            index="row", columns="col", values="value").to_numpy()
        np.testing.assert_array_equal(W, mazur.net.W[l])
        b = df.query(f"quantity == 'b' and layer == {l}").sort_values("row")
        assert b["col"].isna().all()
        np.testing.assert_array_equal(b["value"], mazur.net.b[l])
    tr = mazur.trace.to_pandas()
    assert set(zip(tr.layer, tr.quantity, strict=True)) == {(0, "a"), (1, "z"), (1, "a"),
                                                            (2, "z"), (2, "a")}
    gr = mazur.grads.to_pandas()
    assert gr.attrs["J"] == pytest.approx(0.298371109, abs=1e-9)
    d2 = gr.query("quantity == 'delta' and layer == 2").sort_values("col")["value"]
    np.testing.assert_allclose(d2, [0.138498562, -0.038098236], atol=1e-9)  # Mazur
    assert isinstance(df, pd.DataFrame)


def test_to_pandas_of_a_stack_has_a_network_column():
    pytest.importorskip("pandas")
    net = Network.init([3, 4, 2], "tanh", K=3)
    df = net.to_pandas()
    assert df.columns[0] == "network" and sorted(df.network.unique()) == [0, 1, 2]
    assert len(df) == 3 * net.n_params


def test_history_and_study_to_pandas(fitted, study):
    pytest.importorskip("pandas")
    h = fitted.history.to_pandas()
    assert h.index.name == "epoch" and list(h.index) == list(range(1, 7))
    assert {"loss", "val_loss"} <= set(h.columns)
    s = study.to_pandas()
    from deltaprop.stats import report

    assert list(s.columns) == list(report.FLAT_COLUMNS)
    assert len(s) == report.to_csv(study.rows).count("\n") - 1  # the CSV's rows, no header


@pytest.mark.smoke
def test_to_pandas_without_pandas_names_the_extra(mazur, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    for obj in (mazur.net, mazur.trace, mazur.grads, train.History()):
        with pytest.raises(ImportError, match=r"deltaprop\[notebook\]"):
            obj.to_pandas()


# ---------------------------------------------------------------------- the notebook
def run_notebook(path):
    """Run the code cells of ``path`` in one namespace; return what each cell displays (the
    ``_repr_html_`` of its last expression when it has one, else its repr)."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4 and nb["cells"]
    namespace, shown = {"__name__": "__main__"}, []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        tree = ast.parse(source, filename=f"{path.name} cell {i}")
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, f"{path.name} cell {i}", "exec"), namespace)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), f"{path.name} cell {i}", "eval"),
                         namespace)
            show = getattr(value, "_repr_html_", None)
            shown.append(show() if show is not None else repr(value))
    return shown


def test_example_notebook_runs():
    pytest.importorskip("pandas")
    shown = run_notebook(NOTEBOOK)
    assert len(shown) >= 8
    text = "\n".join(shown)
    assert "0.138499" in text and "<svg" in text and "E[delta^2]" in text


@pytest.mark.smoke
def test_example_notebook_is_stored_without_outputs():
    """Outputs are made by running it, never stored: they could not drift from the code."""
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
