"""deltaprop explain: the worked solution against the engine and against Mazur's published
numbers, each notation's conventions, the renderers (LaTeX compiled when pdflatex exists),
the answer checker (a test per slip) and the exercises.

Mazur, *A Step by Step Backpropagation Example* (2015), publishes (9 decimals):
out_h1 = 0.593269992, out_o1 = 0.75136507, E_total = 0.298371109,
dE_total/dout_o1 = 0.74136507, dout_o1/dnet_o1 = 0.186815602, delta_o1 = 0.138498562,
dE_total/dw5 = 0.082167041, w5+ = 0.35891648, dE_total/dout_h1 = 0.036350306,
dout_h1/dnet_h1 = 0.241300709, dE_total/dw1 = 0.000438568, w1+ = 0.149780716.
"""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from deltaprop.app import trace
from deltaprop.app.cli import main
from deltaprop.app.explain import check, make_run, render, solve
from deltaprop.app.explain.exercise import draw
from deltaprop.app.explain.model import Matrix, Num, Step
from deltaprop.app.explain.notation import NOTATIONS
from deltaprop.app.explain.render import TextMath, format_number

NG_EX4 = "examples/ng_ex4_testcase.json"
NOTATION_KEYS = list(NOTATIONS)


@pytest.fixture(scope="module")
def mazur():
    return solve(None, "deltaprop")


def _text_lines(step: Step, precision=9):
    m = TextMath(precision)
    forms = [step.equation, step.expanded, step.substituted]
    return [m(f) for f in forms if f is not None]


# ---------------------------------------------------------------------- Mazur
@pytest.mark.smoke
def test_output_delta_of_unit_1_as_mazur_writes_it(mazur):
    step = mazur.find("delta", 2, (0, 0))
    eq, expanded, numbers = _text_lines(step)
    assert eq == "(a[2]_1 - y_1) f'(z[2]_1)"
    assert expanded == "(a[2]_1 - y_1) a[2]_1 (1 - a[2]_1)"
    assert numbers == "(0.75136507 - 0.01) * 0.75136507 (1 - 0.75136507)"
    assert format_number(step.value) == "0.138498562"
    text = render(mazur, "text")
    assert "= (0.75136507 - 0.01) * 0.75136507 (1 - 0.75136507)\n" in text
    assert "= 0.138498562\n" in text


@pytest.mark.parametrize("quantity, layer, index, published", [
    ("a", 1, (0, 0), 0.593269992), ("a", 1, (0, 1), 0.596884378),
    ("a", 2, (0, 0), 0.75136507), ("a", 2, (0, 1), 0.772928465),
    ("J", None, (), 0.298371109), ("delta", 2, (0, 0), 0.138498562),
    ("dW", 2, (0, 0), 0.082167041), ("W", 2, (0, 0), 0.35891648),
    ("W", 2, (0, 1), 0.408666186), ("W", 2, (1, 0), 0.511301270),
    ("W", 2, (1, 1), 0.561370121), ("dW", 1, (0, 0), 0.000438568),
    ("W", 1, (0, 0), 0.149780716), ("W", 1, (0, 1), 0.19956143),
    ("W", 1, (1, 0), 0.24975114), ("W", 1, (1, 1), 0.29950229),
])
def test_mazur_published_numbers_are_printed(mazur, quantity, layer, index, published):
    step = mazur.find(quantity, layer, index)
    digits = len(repr(published).split(".")[1])
    assert abs(step.value - published) <= 0.5 * 10.0 ** -digits
    assert f"= {format_number(step.value)}\n" in render(mazur, "text")


def test_every_number_is_the_engines(mazur):
    (s,) = trace.run(trace.load())
    arrays = {"z": s.trace.z, "a": s.trace.a, "delta": s.grads.delta, "dW": s.grads.dW,
              "db": s.grads.db, "W": s.net.W, "b": s.net.b}
    count = 0
    for step in mazur.steps():
        if step.quantity == "J":
            assert step.value == float(s.grads.J)
        else:
            assert step.value == arrays[step.quantity][step.layer][step.index]
        count += 1
    assert count == 4 + 4 + 1 + 2 + 2 + 12 + 12  # z, a, J, deltas, dW+db, updates


def test_sections_run_forward_loss_backward_gradients_update(mazur):
    phases = [s.phase for s in mazur.sections]
    assert phases == ["forward", "forward", "loss", "output", "hidden", "gradient",
                      "gradient", "update", "update"]
    assert [s.layer for s in mazur.sections if s.phase == "forward"] == [1, 2]


def test_step_k_explains_the_network_after_k_minus_1_steps():
    spec = trace.load(None)
    steps = trace.run(spec.__class__(**{**spec.__dict__, "steps": 3}))
    sol = solve(None, step=3)
    assert sol.find("z", 1, (0, 0)).substituted.terms[0].factors[0].value == \
        steps[1].net.W[1][0, 0]
    assert sol.find("W", 1, (0, 0)).value == steps[2].net.W[1][0, 0]
    assert "step 3 of gradient descent" in render(sol, "text")


# ---------------------------------------------------------------------- notations
@pytest.mark.smoke
def test_haykin_delta_is_minus_ours_and_delta_w_is_the_step(mazur):
    hay = solve(None, "haykin")
    run = hay.run
    assert hay.find("delta", 2, (0, 0)).value == -run.delta[2][0, 0]
    assert format_number(hay.find("delta", 2, (0, 0)).value) == "-0.138498562"
    assert hay.find("delta", 1, (0, 1)).value == -run.delta[1][0, 1]
    e = hay.find("e", 2, (0, 0))
    assert e.value == pytest.approx(0.01 - 0.75136507, abs=5e-9)
    dw = hay.find("dW", 2, (0, 0))
    assert dw.value == pytest.approx(-0.5 * 0.082167041, abs=1e-9)
    assert TextMath()(dw.equation) == "eta delta^(2)_1 y^(1)_1"
    upd = hay.find("W", 2, (0, 0))
    assert upd.value == mazur.find("W", 2, (0, 0)).value  # the same step
    assert TextMath()(upd.equation) == "w^(2)_{1,1} + Delta w^(2)_{1,1}"
    assert TextMath()(hay.find("z", 1, (0, 0)).lhs) == "v^(1)_1"


def test_bishop_delta_is_with_respect_to_the_output_mazur_intermediates():
    bis = solve(None, "bishop")
    assert format_number(bis.find("dJ_da", 2, (0, 0)).value) == "0.74136507"  # dE/dout_o1
    assert format_number(bis.find("dJ_da", 1, (0, 0)).value) == "0.036350306"  # dE/dout_h1
    assert format_number(bis.find("dW", 2, (0, 0)).value) == "0.082167041"
    lhs = TextMath()(bis.find("z", 1, (0, 0)).lhs)
    assert lhs == "a^(1)_1"  # the letters are swapped: a is the weighted sum
    hidden = TextMath()(bis.find("dJ_da", 1, (0, 0)).equation)
    assert hidden == "delta^(2)_1 h'(a^(2)_1) w^(2)_{1,1} + delta^(2)_2 h'(a^(2)_2) w^(2)_{2,1}"


def test_bishop_gradient_sums_over_samples():
    run = make_run(NG_EX4)
    bis = solve(run=run, notation="bishop")
    assert bis.find("dW", 1, (0, 0)).value == pytest.approx(3 * run.dW[1][0, 0], rel=1e-12)
    assert bis.find("J", None, ()).value == pytest.approx(3 * run.J, rel=1e-12)
    assert bis.find("W", 1, (0, 0)).value == run.Wn[1][0, 0]


def test_ng_numbers_layers_from_one_and_puts_the_bias_in_column_0():
    ng = solve(NG_EX4, "ng")
    m = TextMath()
    z = ng.find("z", 1, (0, 0))
    assert m(z.lhs) == "z^(2)_1"
    assert m(z.equation) == "Theta^(1)_{1,0} a^(1)_0 + Theta^(1)_{1,1} a^(1)_1 + " \
                            "Theta^(1)_{1,2} a^(1)_2"
    assert m(ng.find("delta", 2, (0, 0)).lhs) == "delta^(3)_1"
    # the course's published gradient (the unrolled [db | dW], column-major, layer 1 first)
    D = [ng.find("db", 1, (0,)).value, ng.find("db", 1, (1,)).value,
         ng.find("dW", 1, (0, 0)).value, ng.find("dW", 1, (1, 0)).value]
    assert np.allclose(D, [0.766138, 0.979897, -0.027540, -0.035844], atol=5e-7)
    acc = ng.find("Delta", 1, (0, 0))
    assert acc.value == pytest.approx(3 * D[2], rel=1e-12)  # Delta = m D without lambda
    assert m(ng.find("dW", 1, (0, 0)).equation) == "(1/m) Delta^(1)_{1,1}"
    assert "alpha" in m(ng.find("W", 1, (0, 0)).equation)
    assert format_number(ng.find("J", None, ()).value, 4) == "7.407"


def test_brawer_cites_his_equations_and_keeps_the_bias_node():
    br = solve(None, "brawer")
    m = TextMath()
    assert br.find("delta", 1, (0, 0)).ref == "eq. (43)"
    assert br.find("db", 2, (0,)).ref == "eq. (46)"
    assert br.find("dW", 1, (0, 0)).ref == "eqs. (44), (45)"
    z = br.find("z", 2, (0, 0))
    assert m(z.lhs) == "z^3_1"
    assert m(z.equation) == "theta^(2)_{1,0} + theta^(2)_{1,1} h^2(z^2_1) + " \
                            "theta^(2)_{1,2} h^2(z^2_2)"
    assert "Psi^3(z^3_1)" in m(br.find("delta", 2, (0, 0)).equation)


@pytest.mark.parametrize("notation", NOTATION_KEYS)
def test_every_notation_reaches_the_engines_update(notation, mazur):
    sol = solve(None, notation)
    run = sol.run
    for step in sol.steps():
        if step.quantity == "W":
            assert step.value == run.Wn[step.layer][step.index]
        if step.quantity == "b":
            assert step.value == run.bn[step.layer][step.index]
    assert any(s.quantity in ("W", "theta") for s in sol.steps())


def _evaluate(e):
    """The value of a substituted expression (None where it calls an opaque f)."""
    import math

    from deltaprop.app.explain import model as M  # noqa: N812

    if isinstance(e, M.Num):
        return e.value
    if isinstance(e, M.Sym):
        return math.e if e.base == "e" else None
    kids = {M.Neg: lambda: [e.arg], M.Paren: lambda: [e.arg], M.Add: lambda: list(e.terms),
            M.Mul: lambda: list(e.factors), M.Frac: lambda: [e.num, e.den],
            M.Pow: lambda: [e.base, e.exp], M.Call: lambda: list(e.args)}[type(e)]()
    vals = [_evaluate(k) for k in kids]
    if any(v is None for v in vals):
        return None
    if isinstance(e, M.Neg):
        return -vals[0]
    if isinstance(e, M.Paren):
        return vals[0]
    if isinstance(e, M.Add):
        return sum(vals)
    if isinstance(e, M.Mul):
        return float(np.prod(vals))
    if isinstance(e, M.Frac):
        return vals[0] / vals[1]
    if isinstance(e, M.Pow):
        return vals[0] ** vals[1]
    op = {"tanh": math.tanh, "ln": math.log, "max": max, "exp": math.exp}
    return op[e.func.base](*vals) if e.func.font == "op" else None


@pytest.mark.parametrize("notation", NOTATION_KEYS)
@pytest.mark.parametrize("spec", [None, NG_EX4, "l2"])
def test_every_substitution_evaluates_to_its_result(notation, spec):
    if spec == "l2":
        spec = json.loads(open(NG_EX4).read()) | {"l2": 4.0, "learning_rate": 0.3}
    checked = 0
    for step in solve(spec, notation).steps():
        if step.substituted is None:
            continue
        value = _evaluate(step.substituted)
        if value is None:
            continue
        assert value == pytest.approx(step.value, rel=1e-9, abs=1e-12), (
            TextMath()(step.lhs), TextMath()(step.substituted))
        checked += 1
    assert checked > 20


def test_decisions_are_stated():
    for key in ("haykin", "bishop", "ng", "brawer"):
        sol = solve(None, key)
        assert any("decid" in n or "stops" in n or "follows" in n or "writes" in n
                   or "correction" in n for n in sol.notes), key


# ---------------------------------------------------------------------- sizes and batches
def _wide_spec():
    rng = np.random.default_rng(0)
    return {"layers": [{"W": rng.normal(size=(6, 3)).round(2).tolist(), "b": [0.1] * 6,
                        "activation": "tanh"},
                       {"W": rng.normal(size=(2, 6)).round(2).tolist(), "b": [0.0, 0.1],
                        "activation": "sigmoid"}],
            "x": [[1.0, 0.5, -1.0]], "y": [[0.0, 1.0]], "loss": "sigmoid-cross-entropy",
            "learning_rate": 0.1, "l2": 0.5}


@pytest.mark.parametrize("notation", NOTATION_KEYS)
def test_matrix_form_beyond_the_hand_size(notation):
    sol = solve(_wide_spec(), notation)
    run = sol.run
    forward = [s for s in sol.sections if s.phase == "forward"]
    assert all(st.index is None for s in forward for st in s.steps)  # 6 units > 4
    z1 = next(st for st in sol.steps() if st.quantity == "z" and st.layer == 1)
    assert isinstance(z1.value, np.ndarray) and z1.substituted is None
    assert np.array_equal(z1.value, run.z[1])
    output = [st for s in sol.sections if s.phase == "output" for st in s.steps]
    assert all(st.index is not None for st in output)  # 2 output units: by hand still
    with_more = solve(_wide_spec(), notation, max_units=6)
    assert all(st.index is not None for st in with_more.steps() if st.quantity == "z")
    for fmt in ("text", "markdown", "latex"):
        render(sol, fmt)


def test_per_sample_sections_and_sums_over_samples():
    sol = solve(NG_EX4, "deltaprop")
    fwd = [s for s in sol.sections if s.phase == "forward" and s.layer == 1]
    assert [s.sample for s in fwd] == [0, 1, 2]
    dw = sol.find("dW", 2, (0, 0))
    assert TextMath()(dw.equation) == "(1/m) sum_{i=1}^{m} delta[2]_{i,1} a[1]_{i,1}"
    assert TextMath()(dw.substituted).startswith("(1/3) (")


def test_unit_index_naming_and_symbols_of_other_activations():
    spec = {"layers": [{"W": [[1.0, -1.0], [0.5, 2.0]], "b": [0.1, -0.2],
                        "activation": "relu"},
                       {"W": [[1.0, -1.0]], "b": [0.0], "activation": "identity"}],
            "x": [[1.0, 2.0]], "y": [[0.5]], "loss": "mse"}
    sol = solve(spec)
    a = sol.find("a", 1, (0, 0))
    assert TextMath()(a.expanded) == "max(z[1]_1, 0)"
    d = sol.find("delta", 1, (0, 0))  # relu: f' = 0 or 1, the engine's value
    assert TextMath()(d.substituted).endswith(" * 0")


def test_softmax_output_and_an_activation_without_closed_form():
    spec = {"layers": [{"W": [[1.0, -1.0], [0.5, 2.0]], "b": [0.1, -0.2], "activation": "gelu"},
                       {"W": [[1.0, -1.0], [2.0, 0.0]], "b": [0.0, 1.0],
                        "activation": "softmax"}],
            "x": [[1.0, 2.0]], "y": [[1.0, 0.0]], "loss": "mse"}
    run = make_run(spec)
    for key in NOTATION_KEYS:
        sol = solve(spec, key)
        for fmt in ("text", "markdown", "latex"):
            render(sol, fmt)
    sol = solve(spec)
    assert sol.find("delta", 2, (0, 1)).value == run.delta[2][0, 1]
    assert sol.find("delta", 1, (0, 0)).value == run.delta[1][0, 0]
    assert "f(z[1]_1)" in TextMath()(sol.find("a", 1, (0, 0)).substituted) or \
        "f(" in TextMath()(sol.find("a", 1, (0, 0)).equation)
    bis = solve(spec, "bishop")  # softmax above: dE/da, deltaprop's delta, stands in for h'
    hidden = bis.find("dJ_da", 1, (0, 0))
    assert "dE/da^(2)_1" in TextMath()(hidden.equation)
    assert hidden.value == pytest.approx(float(run.delta[2][0] @ run.W[2][:, 0]), rel=1e-12)


# ---------------------------------------------------------------------- formats
def test_markdown_uses_dollar_math(mazur):
    md = render(mazur, "markdown")
    line = next(ln for ln in md.splitlines() if "0.75136507 - 0.01" in ln)
    assert line.strip().startswith("$= ") and line.strip().endswith("$")
    assert "$\\delta^{[2]}_{1} = (a^{[2]}_{1} - y_{1})\\, f'(z^{[2]}_{1})$" in md


def _pdflatex():
    return shutil.which("pdflatex")


@pytest.mark.parametrize("notation", NOTATION_KEYS)
@pytest.mark.parametrize("spec", [None, NG_EX4, "wide"])
def test_latex_compiles_as_written(tmp_path, notation, spec):
    text = render(solve(_wide_spec() if spec == "wide" else spec, notation), "latex")
    assert text.startswith("\\documentclass") and text.rstrip().endswith("\\end{document}")
    if _pdflatex() is None:
        pytest.skip("pdflatex is not installed (Debian: apt-get install texlive-latex-base); "
                    "the LaTeX was generated but not compiled")
    (tmp_path / "s.tex").write_text(text, encoding="utf-8")
    out = subprocess.run([_pdflatex(), "-interaction=nonstopmode", "-halt-on-error", "s.tex"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:]
    assert (tmp_path / "s.pdf").stat().st_size > 1000


def test_numbers_print_like_trace():
    assert format_number(0.751365070) == "0.75136507"
    assert format_number(1.0) == "1" and format_number(-0.0) == "0"
    assert format_number(0.5, 4) == "0.5"
    assert format_number(3e-12) == "3.00000000e-12"


# ---------------------------------------------------------------------- check my answer
def _slip(report):
    bad = report.first_wrong
    assert bad is not None, report.text()
    return bad.slip


@pytest.mark.smoke
def test_check_all_right_and_nulls_skip():
    r = check({"a": {"1": [0.593269992, None]}, "J": 0.298371109,
               "W": {"2": [[0.35891648, 0.408666186], [0.51130127, 0.561370121]]}})
    assert r.ok and "all right" in r.text()


@pytest.mark.parametrize("notation", NOTATION_KEYS)
@pytest.mark.parametrize("spec", [None, NG_EX4])
def test_check_every_quantity_of_every_notation_right(notation, spec):
    from deltaprop.app.explain.notation import get

    run = make_run(spec)
    nt = get(notation, run.acts)
    V = nt.values(run)
    answers = {"notation": notation}
    for name, (key, offset, _) in nt.answer_keys.items():
        if key == "J":
            answers[name] = float(V["J"])
        elif key == "e":
            answers[name] = V["e"].tolist()
        else:
            answers[name] = {str(l + offset): np.asarray(V[key][l]).tolist()
                             for l in range(1, run.L + 1)}
    report = check(answers, spec)
    assert report.ok, report.text()
    assert len(report.rows) == sum(1 if k in ("J", "e") else run.L
                                   for k, *_ in nt.answer_keys.values())


def test_check_slip_sign_flipped():
    r = check({"delta": {"2": [-0.138498562, 0.038098237]}})
    assert _slip(r) == "sign flipped"
    assert "delta[2]" in r.text() and "unit 1" in r.text()
    r = check({"notation": "haykin", "delta": {"2": [0.138498562, -0.038098237]}})
    assert _slip(r) == "sign flipped"  # deltaprop's sign written in Haykin's notation
    r = check({"W": {"2": [[0.4 + 0.041083521, 0.45 + 0.041333814],
                           [0.5 - 0.01130127, 0.55 - 0.011370121]]}})
    assert _slip(r) == "sign flipped"  # stepped up the gradient


def test_check_slip_f_prime_left_out():
    assert _slip(check({"delta": {"2": [0.74136507, -0.217071535]}})) == "f' left out"
    assert _slip(check({"delta": {"1": [0.036350306, 0.041370323]}})) == "f' left out"


def test_check_slip_f_prime_at_a_instead_of_z():
    run = make_run(None)
    s = 1 / (1 + np.exp(-run.a[2]))  # sigma(a) instead of a
    wrong = (run.a[2] - run.y) * s * (1 - s)
    assert _slip(check({"delta": {"2": wrong.tolist()}})) == "f' at a instead of z"


def test_check_slip_one_over_m_missing_and_doubled():
    run = make_run(NG_EX4)
    assert _slip(check({"dW": {"1": (3 * run.dW[1]).tolist()}}, NG_EX4)) == "1/m missing"
    assert _slip(check({"db": {"2": (run.db[2] / 3).tolist()}}, NG_EX4)) == "1/m doubled"
    assert _slip(check({"delta": {"2": (run.delta[2] / 3).tolist()}}, NG_EX4)) == \
        "1/m doubled"


def test_check_slip_lambda_applied_to_the_bias():
    spec = json.loads(open(NG_EX4).read()) | {"l2": 4.0}
    run = make_run(spec)
    wrong = run.db[1] + 4.0 / 3 * run.b[1]
    r = check({"notation": "ng", "D": {"1": np.c_[wrong, run.dW[1]].tolist()}}, spec)
    assert _slip(r) == "lambda applied to the bias"
    assert "column 0 (the bias)" in r.text()


def test_check_slip_w_transposed():
    run = make_run(NG_EX4)  # W[2] is 4 x 2: a transposed dW has the wrong shape
    r = check({"dW": {"2": run.dW[2].T.tolist()}}, NG_EX4)
    assert _slip(r) == "W transposed"
    assert "shape (2, 4): the exact value has shape (4, 2)" in r.text()
    r = check({"W": {"2": [[0.35891648, 0.51130127], [0.408666186, 0.561370121]]}})
    assert _slip(r) == "W transposed"  # square: caught by its values
    mazur = make_run(None)  # z = a W instead of a W^T (square W[2])
    z = mazur.a[1] @ mazur.W[2] + mazur.b[2]
    assert _slip(check({"z": {"2": z.tolist()}})) == "W transposed"


def test_check_slip_layer_index_shifted():
    r = check({"notation": "ng", "a": {"1": [0.593269992, 0.596884378]}})
    assert _slip(r) == "layer index shifted"
    assert "layer 1 is the exact value of layer 2" in r.text()
    r = check({"z": {"2": [0.3775, 0.3925]}})
    assert _slip(r) == "layer index shifted"


def test_check_names_the_first_wrong_quantity_in_solution_order():
    r = check({"W": {"1": [[0.1, 0.2], [0.3, 0.4]]}, "delta": {"2": [0.74136507, 0.0]},
               "a": {"2": [0.75136507, 0.772928465]}})
    assert [row.right for row in r.rows] == [True, False, False]
    assert r.first_wrong.label == "delta[2]"


def test_check_unknown_slip_says_so():
    r = check({"a": {"2": [0.123, 0.456]}})
    assert _slip(r) is None and "none of the known patterns" in r.text()


@pytest.mark.parametrize("answers, message", [
    ({"q": {"1": [1]}}, "unknown quantity 'q'"),
    ({"z": {"7": [1, 2]}}, "layer 7 does not exist"),
    ({"z": {"1": [1, 2, 3]}}, "has shape (3,)"),
    ({"z": {"1": ["x", 2]}}, "finite numbers or null"),
    ({"z": [1, 2]}, "must be an object from layer number"),
    ({}, "gives no quantity"),
    ({"notation": "klingon", "z": {"1": [1, 2]}}, "unknown notation"),
])
def test_check_bad_answers_raise(answers, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check(answers)


# ---------------------------------------------------------------------- the command
def test_cli_prints_the_solution(capsys):
    assert main(["explain"]) == 0
    out = capsys.readouterr().out
    assert "= (0.75136507 - 0.01) * 0.75136507 (1 - 0.75136507)" in out


def test_docs_console_excerpt_is_the_output(capsys):
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "teaching.md").read_text()
    block = re.search(r"```console\n\$ deltaprop explain\n\.\.\.\n(.*?)```", page, re.S)
    assert main(["explain"]) == 0
    assert block.group(1) in capsys.readouterr().out


def test_cli_out_never_replaces_without_force(tmp_path, capsys):
    out = tmp_path / "sol.md"
    assert main(["explain", "--format", "markdown", "--out", str(out)]) == 0
    first = out.read_text()
    assert first.startswith("# Mazur")
    out.write_text("mine")
    assert main(["explain", "--out", str(out)]) == 2
    assert "exists; use --force" in capsys.readouterr().err
    assert out.read_text() == "mine"
    assert main(["explain", "--format", "latex", "--out", str(out), "--force"]) == 0
    assert out.read_text().startswith("\\documentclass")
    assert [p.name for p in tmp_path.iterdir()] == ["sol.md"]  # no temporary left


def test_cli_check_exit_status(tmp_path, capsys):
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps({"delta": {"2": [0.138498562, -0.038098237]}}))
    bad.write_text(json.dumps({"notation": "haykin", "delta": {"2": [0.138498562, None]}}))
    assert main(["explain", "--check", str(good)]) == 0
    assert main(["explain", "--check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "likely slip: sign flipped" in out


@pytest.mark.parametrize("args, message", [
    (["--notation", "klingon"], "unknown notation"),
    (["--format", "pdf"], "--format must be one of"),
    (["nonexistent.json"], "does not exist"),
    (["--check", "nonexistent.json"], "does not exist"),
    (["--max-units", "0"], "max_units"),
    (["--step", "0"], "step must be"),
    (["--sizes", "2,2"], "--sizes goes with --exercise"),
    (["--exercise", "--sizes", "2,x"], "comma-separated"),
    (["--exercise", "--sizes", "2,40,2"], "at most"),
])
def test_cli_bad_input_one_line_exit_2(tmp_path, args, message):
    out = subprocess.run([sys.executable, "-m", "deltaprop", "explain", *args],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert message in out.stderr


def test_cli_check_bad_json_one_line(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("{not json")
    out = subprocess.run([sys.executable, "-m", "deltaprop", "explain", "--check", str(path)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "not valid JSON" in out.stderr
    assert out.stderr.count("\n") == 1


# ---------------------------------------------------------------------- exercises
def test_exercise_draws_round_numbers_reproducibly():
    a, b = draw([2, 3, 2], 7), draw([2, 3, 2], 7)
    assert a == b and draw([2, 3, 2], 8) != a
    for layer in a["layers"]:
        for v in np.ravel(layer["W"]).tolist() + layer["b"]:
            assert v != 0 and abs(v) < 1 and abs(v * 10 - round(v * 10)) < 1e-12
    assert all(abs(v * 2 - round(v * 2)) < 1e-12 for v in np.ravel(a["x"]))
    trace.load(a)  # a valid spec


def test_cli_exercise_writes_sheet_key_and_spec(tmp_path, capsys):
    out = tmp_path / "hw.md"
    assert main(["explain", "--exercise", "--sizes", "2,3,2", "--seed", "3", "--out",
                 str(out)]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["hw-answers.md", "hw.json", "hw.md"]
    sheet = out.read_text()
    assert "## Tasks" in sheet and "--check" in sheet
    assert "1. Forward pass: $z^{[1]}$, $a^{[1]}$" in sheet
    spec = json.loads((tmp_path / "hw.json").read_text())
    assert spec == draw([2, 3, 2], 3)
    key = (tmp_path / "hw-answers.md").read_text()
    sol = solve(spec)
    assert format_number(sol.find("W", 1, (0, 0)).value) in key
    # never replaced without --force, and nothing half-written
    (tmp_path / "hw.md").write_text("mine")
    assert main(["explain", "--exercise", "--sizes", "2,3,2", "--seed", "4", "--out",
                 str(out)]) == 2
    assert (tmp_path / "hw.md").read_text() == "mine"
    assert main(["explain", "--exercise", "--sizes", "2,3,2", "--seed", "4", "--out",
                 str(out), "--force"]) == 0
    assert json.loads((tmp_path / "hw.json").read_text()) == draw([2, 3, 2], 4)


@pytest.mark.parametrize("notation", ["deltaprop", "ng"])
def test_exercise_latex_compiles(tmp_path, notation):
    assert main(["explain", "--exercise", "--sizes", "3,2,2", "--seed", "1", "--format",
                 "latex", "--notation", notation, "--out", str(tmp_path / "ex.tex")]) == 0
    if _pdflatex() is None:
        pytest.skip("pdflatex is not installed (Debian: apt-get install texlive-latex-base)")
    for name in ("ex.tex", "ex-answers.tex"):
        out = subprocess.run([_pdflatex(), "-interaction=nonstopmode", "-halt-on-error", name],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout[-2000:]


def test_exercise_default_names_and_answers_check(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["explain", "--exercise", "--sizes", "2,2,1", "--seed", "5"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "exercise-5-answers.md", "exercise-5.json", "exercise-5.md"]
    run = make_run("exercise-5.json")
    (tmp_path / "mine.json").write_text(json.dumps({"W": {"1": run.Wn[1].tolist()}}))
    assert main(["explain", "exercise-5.json", "--check", "mine.json"]) == 0


def test_solution_types_for_renderers(mazur):
    step = mazur.find("z", 1, (0, 0))
    assert isinstance(step.substituted.terms[0].factors[0], Num)
    wide = solve(_wide_spec())
    z = next(s for s in wide.steps() if s.quantity == "z")
    assert z.matrix_form and not step.matrix_form
    assert not isinstance(z.value, Matrix)  # the value is the array; renderers wrap it
