"""``deltaprop explain --format html``: the page to step through, tested in a real browser.

The browser tests run headless Chromium (tests/_browser.py): the page loads, a test script
added after the page's own steps through every stop with the page's buttons, clicks every
unit, weight and layer column, and writes what it saw into the DOM; the test then reads
the DOM Chromium dumps.  They pass only if the page's scripts ran to the end (its
``data-ready`` marker), nothing was caught in its ``#errors`` box, Chromium logged no
uncaught error, the page loaded no resource at all, and the numbers are on the page.  They
are skipped only when no browser can be had, and say so.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import _browser
import numpy as np
import pytest

from deltaprop.app.cli import main
from deltaprop.app.explain.build import solve
from deltaprop.app.explain.html import MAX_DRAWN, render_html
from deltaprop.app.explain.mathml import step_lines
from deltaprop.app.explain.model import PHASES
from deltaprop.app.explain.notation import names
from deltaprop.app.explain.render import format_number

# Mazur (2015), 2-2-2 sigmoid: a[2], J, the output deltas, W[2] after the update
MAZUR_NUMBERS = ("0.75136507", "0.772928465", "0.298371109", "0.138498562", "0.35891648")

#: the test script: step through with the buttons, click everything, report in #test-result
PROBE = r"""
(function () {
  var out = {stops: [], clicks: {}, resources: null, error: null};
  try {
    var $ = function (id) { return document.getElementById(id); };
    out.ready = document.documentElement.dataset.ready || "";
    $("first").click();
    var fill = function (id) {
      var c = document.querySelector("#" + id + " circle");
      return c ? getComputedStyle(c).fill : null;
    };
    out.fill0 = fill("n-1-0");
    var guard = 0;
    while (!$("next").disabled && guard++ < 1000) {
      $("next").click();
      out.stops.push({where: $("where").textContent, panel: $("panel").textContent,
                      maths: $("panel").querySelectorAll("math").length,
                      current: document.querySelectorAll("#net .cur").length});
    }
    out.fill1 = fill("n-1-0");
    document.querySelectorAll("#net [data-el]").forEach(function (el) {
      el.dispatchEvent(new MouseEvent("click", {bubbles: true}));
      var box = $("details");
      out.clicks[el.dataset.el] = {shown: !box.hidden, maths: box.querySelectorAll("math").length,
                                   text: box.textContent.slice(0, 4000)};
    });
    out.resources = performance.getEntriesByType("resource").map(function (e) {
      return e.name;
    });
  } catch (e) {
    out.error = String(e && e.stack || e);
  }
  var pre = document.createElement("pre");
  pre.id = "test-result";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
"""


@pytest.fixture(scope="module")
def browser():
    path = _browser.find()
    if path is None:
        pytest.skip("no headless browser: install Debian's chromium (apt-get install "
                    "chromium; .ci/run does) or set DELTAPROP_BROWSER to a Chromium or Chrome;"
                    " the browser tests of the explain page are skipped")
    return path


@pytest.fixture(scope="module")
def big_spec(tmp_path_factory):
    """3-10-6-2, five samples: layers beyond the hand size (matrix form) and beyond the
    drawn units (MAX_DRAWN)."""
    rng = np.random.default_rng(1)
    sizes, acts = [3, 10, 6, 2], ["tanh", "relu", "identity"]
    spec = {"layers": [{"W": np.round(rng.normal(size=(sizes[l + 1], sizes[l])), 2).tolist(),
                        "b": np.round(rng.normal(size=sizes[l + 1]), 2).tolist(),
                        "activation": acts[l]} for l in range(3)],
            "x": np.round(rng.normal(size=(5, 3)), 2).tolist(),
            "y": np.round(rng.normal(size=(5, 2)), 2).tolist(),
            "loss": "mse", "learning_rate": 0.1}
    path = tmp_path_factory.mktemp("spec") / "big.json"
    path.write_text(json.dumps(spec))
    return path


@pytest.fixture(scope="module")
def m2_spec(tmp_path_factory):
    """2-3-2 tanh/softmax, two samples, class labels: written sample by sample."""
    spec = {"layers": [{"W": [[0.1, -0.2], [0.3, 0.4], [-0.5, 0.6]], "b": [0.1, 0.0, -0.1],
                        "activation": "tanh"},
                       {"W": [[0.2, -0.3, 0.1], [-0.1, 0.4, 0.2]], "b": [0.0, 0.1],
                        "activation": "softmax"}],
            "x": [[1.0, 2.0], [-1.0, 0.5]], "y": [0, 1], "loss": "softmax-cross-entropy",
            "learning_rate": 0.5}
    path = tmp_path_factory.mktemp("spec") / "m2.json"
    path.write_text(json.dumps(spec))
    return path


def _page(tmp_path, solution):
    path = tmp_path / "page.html"
    path.write_text(render_html(solution), encoding="utf-8")
    return path


def _data(page_text) -> dict:
    m = re.search(r'<script type="application/json" id="data">(.*?)</script>', page_text, re.S)
    return json.loads(m.group(1))


def _probe(browser, page):
    """Run PROBE on the page; check that nothing went wrong; return what it saw."""
    dom, console = _browser.load(browser, page, script=PROBE)
    assert 'data-ready="1"' in dom, "the page's script did not finish"
    errors = _browser.element_text(dom, "errors")
    assert errors == "", f"the page caught errors: {errors}"
    bad = [line for line in console if "Uncaught" in line or "console.error" in line]
    assert not bad, f"console errors: {bad}"
    result = json.loads(_browser.element_text(dom, "test-result"))
    assert result["error"] is None, result["error"]
    assert result["resources"] == [], f"the page loaded resources: {result['resources']}"
    return dom, result


# ---------------------------------------------------------------------- without a browser
@pytest.mark.smoke
def test_page_is_one_self_contained_file():
    page = render_html(solve())
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    # nothing to fetch: no src or href attribute, no stylesheet link, no CSS url() or @import
    assert not re.search(r"\b(?:src|href)\s*=", page)
    assert "<link" not in page and "url(" not in page and "@import" not in page
    assert "<math" in page and "<svg" in page and "{{" not in page
    for number in MAZUR_NUMBERS:  # in the MathML, for a reader without scripts too
        assert number in page


def test_page_steps_forward_then_backward_then_update():
    sol = solve()
    stops = _data(render_html(sol))["stops"]
    assert len(stops) == len(sol.sections)
    phases = [s["phase"] for s in stops]
    assert phases == sorted(phases, key=PHASES.index)  # forward, loss, ..., update
    forward = [s["layer"] for s in stops if s["phase"] == "forward"]
    hidden = [s["layer"] for s in stops if s["phase"] == "hidden"]
    assert forward == [1, 2] and hidden == [1]
    # the forward stop of layer 2 colours both of its units by z, then a
    second = stops[1]["set"]
    assert ["n-2-0", "a", pytest.approx(0.75136507)] in second


def test_page_text_is_escaped():
    sol = solve({"layers": [{"W": [[1.0]], "b": [0.0], "activation": "identity"}],
                 "x": [[1.0]], "y": [[0.0]], "loss": "mse",
                 "description": "</script><b>x</b> {{SVG}}"})
    page = render_html(sol)
    assert "</script><b>x</b>" not in page and "&lt;/script&gt;&lt;b&gt;" in page
    assert page.count("<svg") == 1  # a placeholder in the text is not filled in


@pytest.mark.parametrize("notation", names())
def test_mathml_is_well_formed_in_every_notation(notation, big_spec, m2_spec):
    for spec in (None, m2_spec, big_spec):
        sol = solve(spec, notation=notation)
        for step in sol.steps():
            for line in step_lines(step, sol.precision):
                ET.fromstring(line)  # raises on a tag left open
        render_html(sol)


def test_cli_writes_the_page_never_over_a_file(tmp_path, capsys):
    out = tmp_path / "page.html"
    assert main(["explain", "--format", "html", "--out", str(out)]) == 0
    capsys.readouterr()
    first = out.read_text(encoding="utf-8")
    assert first.startswith("<!DOCTYPE html>") and "0.138498562" in first
    assert main(["explain", "--format", "html", "--notation", "ng", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--force" in err
    assert out.read_text(encoding="utf-8") == first  # untouched
    assert main(["explain", "--format", "html", "--notation", "ng", "--out", str(out),
                 "--force"]) == 0
    assert "Theta" in out.read_text(encoding="utf-8") or "Θ" in out.read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]  # no temporary file left


@pytest.mark.parametrize("argv", [["--format", "htm"], ["no-such-spec.json", "--format", "html"],
                                  ["--format", "html", "--out", "no/such/folder/p.html"]])
def test_cli_bad_input_is_one_line_and_exit_2(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["explain", *argv]) == 2
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1 and captured.out == ""
    assert list(tmp_path.iterdir()) == []


def test_wide_layers_draw_at_most_max_drawn_units(big_spec):
    page = render_html(solve(big_spec))
    assert len(re.findall(r"id='n-1-\d+'", page)) == MAX_DRAWN
    assert "n-1-9" in page and "n-1-8" not in page and f"{10 - MAX_DRAWN} more" in page


# ---------------------------------------------------------------------- in a browser
@pytest.mark.parametrize("notation", ["deltaprop", "haykin"])
def test_page_runs_in_a_browser(browser, tmp_path, notation):
    """The page ``deltaprop explain --format html`` writes, stepped through and clicked."""
    sol = solve(notation=notation)
    page = tmp_path / "page.html"
    assert main(["explain", "--format", "html", "--notation", notation, "--out",
                 str(page)]) == 0
    dom, seen = _probe(browser, page)
    # every section is one stop, and each shows its equations
    assert len(seen["stops"]) == len(sol.sections)
    assert all(s["maths"] >= 1 and s["current"] >= 1 for s in seen["stops"])
    assert seen["stops"][0]["where"].startswith("step 1 of")
    assert seen["fill0"] != seen["fill1"]  # unit 1 of layer 1 coloured once computed
    text = "".join(s["panel"] for s in seen["stops"])
    output_delta = "-0.138498562" if notation == "haykin" else "0.138498562"  # Haykin: -
    for number in (*MAZUR_NUMBERS[:3], output_delta.replace("-", "−")):
        assert number in text
    # every unit, weight and the loss shows its equations with numbers when clicked
    clicks = seen["clicks"]
    for el in ("n-1-0", "n-1-1", "n-2-0", "n-2-1", "J", "e-1-0-0", "e-2-1-0", "c-2"):
        assert clicks[el]["shown"] and clicks[el]["maths"] >= 1, el
    assert output_delta.replace("-", "−") in clicks["n-2-0"]["text"]
    assert "0.35891648" in clicks["e-2-0-0"]["text"]  # Mazur's w5 after the update
    assert "given" in clicks["n-0-0"]["text"] and "0.05" in clicks["n-0-0"]["text"]


def test_matrix_form_page_runs_in_a_browser(browser, tmp_path, big_spec):
    sol = solve(big_spec, notation="ng")
    _, seen = _probe(browser, _page(tmp_path, sol))
    assert len(seen["stops"]) == len(sol.sections)
    assert all(s["maths"] >= 1 for s in seen["stops"])
    # a column holds its layer's matrix-form steps (z, a, delta, Delta, D, Theta)
    assert seen["clicks"]["c-1"]["maths"] >= 6
    assert seen["clicks"]["e-1-9-2"]["shown"]  # the last unit's weights are drawn
    loss = [s for s, sec in zip(seen["stops"], sol.sections, strict=True)
            if sec.phase == "loss"]
    assert format_number(sol.run.J, sol.precision) in loss[0]["panel"]


def test_sample_by_sample_page_runs_in_a_browser(browser, tmp_path, m2_spec):
    sol = solve(m2_spec, notation="bishop")
    _, seen = _probe(browser, _page(tmp_path, sol))
    assert [s["where"].split(": ", 1)[1] for s in seen["stops"]] == \
        [sec.title for sec in sol.sections]
    assert "sample 2" in seen["stops"][1]["where"]
    # Bishop's delta is dE/da (the activation's), the engine's dJ_da at the output
    dJ_da = format_number(sol.run.dJ_da[2][0, 0], sol.precision).replace("-", "−")
    assert dJ_da in seen["clicks"]["n-2-0"]["text"]


def test_screenshot_shows_a_coloured_network(browser, tmp_path):
    from PIL import Image

    page = _page(tmp_path, solve())
    png = _browser.screenshot(browser, page.as_uri() + "#stop=9&el=n-2-0", tmp_path / "p.png",
                              size=(1100, 700))
    pixels = np.asarray(Image.open(png).convert("RGB"), dtype=int)
    assert pixels.shape == (700, 1100, 3)
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 150) & (pixels[..., 2] < 150)
    blue = (pixels[..., 2] > 150) & (pixels[..., 0] < 150)
    assert red.sum() > 200 and blue.sum() > 200  # coloured units and weights were drawn


def test_page_is_the_same_on_every_run():
    """The page's bytes do not depend on Python's string hashing (a set's order): two
    interpreters with different PYTHONHASHSEED write the same page."""
    code = ("import hashlib; from deltaprop.app.explain import solve, render; "
            "print(hashlib.sha256(render(solve(None), 'html').encode()).hexdigest())")
    pages = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONHASHSEED": seed}, check=True).stdout
             for seed in ("1", "2", "3")}
    assert len(pages) == 1, pages
    assert hashlib.sha256(render_html(solve(None)).encode()).hexdigest() + "\n" in pages
