"""Docs that cannot drift: every ```python block of README.md and docs/**/*.md runs.

The blocks of one file run in order in one namespace (a page is one session), with the
repository root as working directory.  A block whose first line is ``# skip-doctest`` is
not run.  A failure's traceback points at the line of the Markdown file.  New pages under
docs/ are picked up automatically.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = "# skip-doctest"
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)$")


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(1-based line of the block's first code line, code) for each ```python block.

    Fences of three or more backticks or tildes; the info string's first word must be
    ``python`` or ``py`` (``pycon``, ``console``, ``text``, ... are not run).  A block
    indented under a list item has that indentation removed.
    """
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent = m["fence"], len(m["indent"])
        lang = (m["info"].split() or [""])[0].lower()
        start, i = i + 1, i + 1
        while i < len(lines) and not re.match(
                rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", lines[i]):
            i += 1
        if lang in ("python", "py", "python3"):
            body = [ln[indent:] if ln[:indent].strip() == "" else ln for ln in lines[start:i]]
            blocks.append((start + 1, "\n".join(body) + "\n"))
        i += 1
    return blocks


def run_page(path: Path) -> int:
    """Run the page's python blocks in one namespace; returns how many ran."""
    namespace = {"__name__": f"docs:{path.name}"}
    ran = 0
    for line, code in python_blocks(path.read_text(encoding="utf-8")):
        if code.lstrip().startswith(SKIP):
            continue
        # pad so that tracebacks carry the Markdown file's line numbers
        exec(compile("\n" * (line - 1) + code, str(path), "exec"), namespace)  # noqa: S102
        ran += 1
    return ran


def _pages():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [p for p in pages if p.is_file()]


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_page_python_blocks_run(page, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("MPLBACKEND", "Agg")  # pages that plot must not open windows
    run_page(page)


def test_readme_and_derivation_have_blocks_that_run():
    assert python_blocks((ROOT / "README.md").read_text())
    assert python_blocks((ROOT / "docs" / "derivation.md").read_text())


# ---------------------------------------------------------------------- the runner itself
PAGE = """\
Intro.

```python
x = 1
```

```pycon
>>> this is not run
```

- a list item:

  ```python
  x += 1
  ```

````python
# skip-doctest
raise RuntimeError("skipped")
````

~~~py
assert x == 2, x
~~~

```console
$ not python
```
"""


def test_python_blocks_finds_python_only():
    blocks = python_blocks(PAGE)
    assert [code.splitlines()[0] for _, code in blocks] == \
        ["x = 1", "x += 1", "# skip-doctest", "assert x == 2, x"]
    assert blocks[0][0] == 4  # line of `x = 1`


def test_run_page_runs_in_order_and_skips(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    assert run_page(page) == 3


def test_run_page_failure_points_at_markdown_line(tmp_path):
    page = tmp_path / "bad.md"
    page.write_text("text\n\n```python\ny = 1\nassert y == 2\n```\n")
    with pytest.raises(AssertionError) as info:
        run_page(page)
    frame = info.traceback[-1]
    assert Path(str(frame.path)).name == "bad.md" and frame.lineno + 1 == 5


# ------------------------------------------------------- every block reaches a stated quality
# A docs block that only runs proves little: a training that ends at chance level, or a
# prediction 30 se off, still runs.  So every Python block asserts the quality its text
# states (an accuracy, an error, an agreement in standard errors), and every `deltaprop`
# command shown in README.md and docs/*.md is run here, in order, one page a session in
# a fresh folder, and its output checked against what the page says -- or named in
# COMMANDS with the reason it is not run (a placeholder file, a cluster, an install).

def test_every_python_block_asserts_a_quality():
    """A block that runs has an ``assert``; a skipped one says why (``# skip-doctest: ...``)."""
    import ast

    missing = []
    for page in _pages():
        for line, code in python_blocks(page.read_text(encoding="utf-8")):
            first = code.lstrip().splitlines()[0]
            if first.startswith(SKIP):
                if len(first[len(SKIP):].strip(" :-")) < 8:
                    missing.append(f"{page.relative_to(ROOT)}:{line} skipped without a reason")
                continue
            if not any(isinstance(n, ast.Assert) for n in ast.walk(ast.parse(code))):
                missing.append(f"{page.relative_to(ROOT)}:{line}")
    assert not missing, "blocks that check no stated quality: " + ", ".join(missing)


_CMD_FENCES = ("console", "bash", "sh", "shell", "")


def shell_commands(text: str) -> list[tuple[int, str]]:
    """(line, command) for each ``deltaprop ...`` command of a page: in console/bash fences
    (``$ `` prompts removed) and in indented code, continuation lines joined, comments
    dropped."""
    out, lines, i, fence, lang = [], text.splitlines(), 0, None, ""
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m and fence is None:
            fence, lang = m["fence"], (m["info"].split() or [""])[0].lower()
            i += 1
            continue
        if m and lines[i].strip().startswith(fence):
            fence = None
            i += 1
            continue
        t = lines[i].strip()
        t = t[2:] if t.startswith("$ ") else t
        shown = (fence is not None and lang in _CMD_FENCES) or \
            (fence is None and lines[i].startswith("    "))
        if shown and re.match(r"^(deltaprop\b|python3? -m venv .*deltaprop)", t):
            start = i
            while t.endswith("\\") and i + 1 < len(lines):
                i += 1
                t = t[:-1].rstrip() + " " + lines[i].strip()
            out.append((start + 1, " ".join(t.split("  #")[0].split(" # ")[0].split())))
        i += 1
    return out


def _cli(argv, capsys):
    from deltaprop.app.cli import main

    capsys.readouterr()
    rc = main(argv)
    out = capsys.readouterr()
    assert rc == 0, f"{' '.join(argv)} exited {rc}: {out.err.strip()[-300:]}"
    return out.out


def _number(text, pattern):
    m = re.search(pattern, text, re.M)
    assert m, f"{pattern!r} not in the output:\n{text[-2000:]}"
    return float(m.group(1))


def _test_accuracy(at_least):
    def check(out, folder):
        acc = _number(out, r"^test\s+\S+\s+([0-9.]+)")
        assert acc >= at_least, f"test accuracy {acc} < {at_least}"
    return check


def _stats_agree(theory="exact", max_z=4.0, layers=None, also=None):
    """Every layer's E[delta] and E[delta^2] within ``max_z`` se of ``theory``."""
    def check(out, folder):
        from deltaprop.stats import z_scores

        rows = json.loads(out)
        for r in rows:
            if layers is not None and r["layer"] not in layers:
                continue
            for (name, _k), z in z_scores(r).items():
                if name == theory and z is not None:
                    assert abs(z) <= max_z, f"layer {r['layer']} {name} z = {z:.2f}"
        if also:
            also(rows)
    return check


def _file(name, contains=None):
    def check(out, folder):
        data = (folder / name).read_bytes()
        assert data, name
        if contains is not None:
            assert contains.encode() in data, f"{contains!r} not in {name}"
    return check


def _mazur(out, folder):
    """Mazur (2015) publishes delta = 0.138498562 at output 1 and w5+ = 0.35891648."""
    assert "0.138498562" in out and "0.35891648" in out


def _gi(split):
    """--gradient-independence: the copy matches (|z| <= 4) or, for a wide output, the
    true E[delta^2] is far above the copy's (docs: 1.98x at layer 1, z = 28)."""
    def also(rows):
        from deltaprop.stats.independent import KEY

        for r in rows[:-1]:
            g = r[KEY]
            z = g["true_minus_gi"] / g["true_minus_gi_se"]
            assert (z > 4) if split else (abs(z) <= 4), (r["layer"], z)
    return also


def _independence_too_low(rows):
    """The page: the independence approximation is 25 se too low at the last hidden layer."""
    from deltaprop.stats import z_scores

    assert z_scores(rows[-2])["independence", "mean"] < -4


def _iris_predictions(path=None):
    def check(out, folder):
        import numpy as np
        from sklearn.datasets import load_iris

        text = (folder / path).read_text() if path else out
        rows = [ln.split(",") for ln in text.strip().splitlines()[1:]]
        assert len(rows) == 150
        iris = load_iris()
        names = {str(n): i for i, n in enumerate(iris.target_names)}
        pred = np.array([names.get(r[0], -1) for r in rows])
        y = iris.target
        assert (pred == y).mean() >= 0.9
        proba = np.array([[float(v) for v in r[1:]] for r in rows])
        np.testing.assert_allclose(proba.sum(1), 1, atol=1e-6)
    return check


def _jacobian_agrees(out, folder):
    rows = json.loads(out)["rows"]
    for r in rows:
        se = r["m1_se"]
        assert abs(r["m1_predicted"] - r["m1"]) <= 4 * se + 1e-9, r


def _spread(out, folder):
    for r in json.loads(out):
        s = r.get("spread", {})
        if s.get("z") is not None:
            assert abs(s["z"]) <= 4, (r["layer"], s["z"])


def _write_my_toml(folder):
    (folder / "my.toml").write_text('data = "moons"\nhidden = [32]\noptimizer = "momentum"\n'
                                    "lr = 0.2\n")


def _write_new_csv(folder):
    from sklearn.datasets import load_iris

    x = load_iris().data
    (folder / "new.csv").write_text("a,b,c,d\n" + "\n".join(",".join(map(str, r)) for r in x))


def _trained_model(folder):
    from deltaprop.app.cli import main

    assert main(["train", "--epochs", "3", "--quiet", "--out", str(folder / "run")]) == 0
    (folder / "model.safetensors").write_bytes((folder / "run" / "model.safetensors")
                                               .read_bytes())


def _layer_stats(out, folder):
    """Epoch 0's E[delta^2] per layer within a factor 1.6 of the theory (docs: 1.16-1.41)."""
    rows = re.findall(r"^\s+(\d+) \|\s+(\S+)\s+(\S+) \|", out, re.M)
    assert len(rows) == 4, out
    for _l, measured, theory in rows:
        assert 1 / 1.6 <= float(measured) / float(theory) <= 1.6, (measured, theory)


class Cmd:
    """How the docs test treats one command: ``check(stdout, folder)`` asserts the quality
    the page states (``extra`` flags appended, e.g. --json to read it); ``setup(folder)``
    makes the files the page assumes; ``why_not`` is the reason a command is not run."""

    def __init__(self, check=None, extra=(), setup=None, why_not=None):
        assert (check is None) != (why_not is None)
        self.check, self.extra, self.setup, self.why_not = check, list(extra), setup, why_not


J, Q = ["--json"], ["--quiet"]
EQ_SETTING = ("deltaprop stats --inputs gaussian --sizes 16,32,4 --activations sigmoid "
              "--weight-std 0.3 --weight-mean 0.1 --input-mean 0.5 --target-mean 1 "
              "--target-var 0.25 --K 2000 --samples 64 --out lab/")
COMMANDS = {
    # README.md
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && deltaprop train":
        Cmd(why_not="an install into a new environment; `deltaprop train` is run below"),
    'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[test]" && python -m '
    "pytest": Cmd(why_not="an install and the test suite itself"),
    "deltaprop train": Cmd(_test_accuracy(0.93)),  # "about 0.96 test accuracy"
    "deltaprop train --data iris --hidden 16,16 --optimizer nesterov --lr 0.05 --epochs 50 "
    "--out runs/iris": Cmd(_test_accuracy(0.9)),
    "deltaprop train --resume runs/iris": Cmd(_test_accuracy(0.9)),
    "deltaprop info runs/iris/model.safetensors": Cmd(lambda out, f: None if "16" in out
                                                      else pytest.fail(out)),
    "deltaprop predict runs/iris/model.safetensors iris --proba": Cmd(_iris_predictions()),
    # derivation.md, teaching.md, notebooks.md: Mazur's published numbers
    "deltaprop trace": Cmd(_mazur),
    "deltaprop explain": Cmd(_mazur),
    "deltaprop explain --notation haykin": Cmd(lambda out, f: None if "0.138498562" in out
                                               else pytest.fail(out)),
    "deltaprop explain my_spec.json --notation ng --format latex --out step.tex":
        Cmd(why_not="my_spec.json is the reader's own spec"),
    "deltaprop explain my_spec.json --notation haykin --format html --out page.html":
        Cmd(why_not="my_spec.json is the reader's own spec"),
    "deltaprop explain --format markdown --out step.md": Cmd(_file("step.md", "0.138498562")),
    "deltaprop explain --format html --out step.html": Cmd(_file("step.html", "0.138498562")),
    "deltaprop explain --format html --out mazur.html": Cmd(_file("mazur.html", "0.138498562")),
    "deltaprop explain SPEC.json --check answers.json [--notation haykin] [--rtol 1e-3]":
        Cmd(why_not="a synopsis; --check is run in tests/test_explain.py"),
    "deltaprop explain --exercise --sizes 2,3,2 --seed 7": Cmd(_file("exercise-7-answers.md")),
    "deltaprop explain --exercise --sizes 3,2,2 --seed 1 --format latex --notation ng --out "
    "hw1.tex": Cmd(_file("hw1.tex")),
    "deltaprop explain --exercise --sizes 2,2,1 --seed 3 --loss sigmoid-cross-entropy "
    "--samples 2": Cmd(_file("exercise-3.json")),
    # the laboratory: predictions within 4 se of the measurement
    "deltaprop stats --inputs gaussian --sizes 16,32,32,32,4 --activations tanh --weight-std "
    "0.3 --weight-mean 0.1 --input-mean 0.5 --target-mean 1 --target-var 0.25 --K 32 "
    "--samples 64": Cmd(_stats_agree(), J + Q),
    "deltaprop stats": Cmd(_stats_agree(), J + Q),
    "deltaprop stats --json": Cmd(_stats_agree(), Q),
    EQ_SETTING: Cmd(_stats_agree(also=_independence_too_low), J + Q),
    "deltaprop stats --model model.safetensors --inputs digits":
        Cmd(_stats_agree(), J + Q, setup=_trained_model),
    "deltaprop stats --inputs gaussian --sizes 64,256,256,256,10 --activations relu --sigma-w2 "
    "2 --input-var 0.1 --target-var 100 --K 32 --samples 32 --gradient-independence":
        Cmd(_stats_agree(also=_gi(split=False)), J + Q),
    "deltaprop stats --inputs gaussian --sizes 64,256,256,256,256 --activations relu "
    "--sigma-w2 2 --input-var 0.1 --target-var 1 --K 32 --samples 32 --gradient-independence":
        Cmd(_stats_agree(also=_gi(split=True)), J + Q),
    "deltaprop stats --K 64 --gradient-independence": Cmd(_stats_agree(), J + Q),
    "deltaprop stats --inputs gaussian --sizes 64,512,512,512,512,512,512,10 --activations "
    "tanh --sigma-w2 2.5 --sigma-b2 0.05 --K 16 --samples 32 --correlation 0.5 --forward "
    "gaussian":
        Cmd(_stats_agree(), J + Q),
    "deltaprop stats --inputs gaussian --activations relu --sigma-w2 2 --samples 1 --K 2000 "
    "--spread": Cmd(_spread, J + Q),
    "deltaprop stats --probe --inputs gaussian --activations tanh --sigma-w2 1 --samples 1 "
    "--K 2000": Cmd(_spread, J + Q),
    "deltaprop stats --rel-se 0.005": Cmd(lambda out, f: _number(
        out, r"to 0\.5% \(relative standard error\) takes about K = (\d+)"), Q),
    # signal propagation
    "deltaprop theory --activation tanh --sigma-w2 2.5 --sigma-b2 0.05": Cmd(
        lambda out, f: None if re.search(r"q_star\s+1\.06396 .*chi_1\s+1\.13352", out, re.S)
        and "chaotic" in out else pytest.fail(out)),  # the page's printed values
    "deltaprop jacobian --init orthogonal --q-star 0.25 --width 128 --depth 16 --depths 1,4,16":
        Cmd(_jacobian_agrees, J + Q),
    "deltaprop jacobian --activation relu --sigma-w2 2 --input-var 1 --json":
        Cmd(_jacobian_agrees, Q),
    "deltaprop jacobian --init normal --q-star 0.01 --density lambda.png":
        Cmd(_file("lambda.png", "PNG"), Q),
    # scaling
    "deltaprop sweep": Cmd(lambda out, f: None if len((f / "sweep.csv").read_text()
                                                       .splitlines()) == 81 else pytest.fail()),
    "deltaprop sweep --activation tanh,relu --sigma-w2 0.5:4:15 --sigma-b2 0,0.05,0.1 --seed "
    "0,1,2 --out tanh_relu.csv": Cmd(why_not="270 cells (minutes); the grid syntax is tested "
                                     "in tests/test_sweep.py"),
    "deltaprop sweep --scheduler tcp://10.0.0.5:8786 --out big.csv":
        Cmd(why_not="needs a Dask cluster at that address"),
    "deltaprop sweep --workers 8 --out big.parquet": Cmd(why_not="8 workers and pyarrow"),
    # training.md
    "deltaprop train --data iris --hidden 16,16 --activation relu --optimizer nesterov --lr "
    "0.01 --schedule cosine --batch-size 1 --epochs 50 --out runs/iris": Cmd(_test_accuracy(0.9)),
    "deltaprop train --data xor --lr 0.01": Cmd(_test_accuracy(0.9)),  # 0.55 at lr 0.001
    "deltaprop train --config my.toml --epochs 100": Cmd(_test_accuracy(0.85),
                                                         setup=_write_my_toml),
    "deltaprop evaluate runs/iris/model.safetensors iris": Cmd(
        lambda out, f: None if _number(out, r"accuracy\D+([0-9.]+)") >= 0.9 else pytest.fail()),
    "deltaprop predict runs/iris/model.safetensors new.csv --proba --out pred.csv":
        Cmd(_iris_predictions("pred.csv"), setup=_write_new_csv),
    "deltaprop train --hidden 30,30,30 --activation sigmoid --loss sigmoid-cross-entropy "
    "--init lecun_normal --bias-std 1 --optimizer gd --lr 0.1 --batch-size 10 --layer-stats":
        Cmd(_layer_stats),
}
#: pages whose commands take more than ~15 s together
SLOW_PAGES = {"laboratory.md", "signal.md", "scaling.md", "training.md", "edelta.md",
              "README.md"}


def _command_pages():
    return [p for p in _pages() if shell_commands(p.read_text(encoding="utf-8"))]


def test_every_docs_command_is_checked_or_excused():
    """A command added to or changed in the docs needs its stated quality here."""
    shown = {c for p in _pages() for _, c in shell_commands(p.read_text(encoding="utf-8"))}
    unknown = sorted(shown - set(COMMANDS))
    assert not unknown, "docs commands with no check in tests/test_docs.py COMMANDS: " + \
        "; ".join(unknown)


@pytest.mark.parametrize("page", [pytest.param(p, marks=[pytest.mark.slow] if p.name in
                                               SLOW_PAGES else []) for p in _command_pages()],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_page_commands_reach_their_stated_quality(page, tmp_path, monkeypatch, capsys):
    import shlex

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    for line, command in shell_commands(page.read_text(encoding="utf-8")):
        cmd = COMMANDS.get(command)
        if cmd is None:
            pytest.fail(f"{page.name}:{line}: no check for {command!r}")
        if cmd.why_not:
            continue
        if cmd.setup:
            cmd.setup(tmp_path)
        out = _cli(shlex.split(command)[1:] + cmd.extra, capsys)
        try:
            cmd.check(out, tmp_path)
        except AssertionError as exc:
            raise AssertionError(f"{page.name}:{line}: {command}: {exc}") from None


def test_shell_commands_reads_fences_and_indented_lines():
    page = ("text\n\n    deltaprop theory --sigma-w2 2   # a comment\n\n```console\n"
            "$ deltaprop stats --K 2 \\\n      --json\nsome output\n```\n\n```python\n"
            "deltaprop = 1\n```\n")
    assert shell_commands(page) == [(3, "deltaprop theory --sigma-w2 2"),
                                    (6, "deltaprop stats --K 2 --json")]
