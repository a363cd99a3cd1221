"""Exercises: a fresh network with round numbers, its problem sheet and its answer key.

:func:`draw` makes a ``deltaprop trace`` spec from the layer sizes and a seed: weights and
biases in steps of 0.1 between -0.9 and 0.9 (never 0), inputs in steps of 0.5 between -1
and 1, targets in steps of 0.1 in [0.1, 0.9] (MSE on a sigmoid output; 0 or 1 for sigmoid
cross-entropy; one-hot for softmax), learning rate 0.5, one sample (``samples`` for more).
:func:`sheet` writes the problem in a notation; the answer key is the worked solution
(:func:`deltaprop.app.explain.solve`).  :func:`write` puts the three files (sheet, key, spec)
on disk atomically and never replaces an existing one without ``force``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..._checks import one_hot
from .. import files as dio
from .build import solve
from .model import Matrix, Num
from .notation import get as get_notation
from .render import TexMath, TextMath, render, tex_text

__all__ = ["draw", "sheet", "answer_key", "write", "paths"]

_SUFFIX = {"markdown": ".md", "latex": ".tex", "text": ".txt"}


def _round(values, step):
    return [round(float(v) * (1 / step)) / (1 / step) for v in values]


def draw(sizes, seed: int = 0, *, activation: str = "sigmoid", output: str | None = None,
         loss: str = "mse", samples: int = 1, learning_rate: float = 0.5) -> dict:
    """A spec (a dict ``deltaprop trace`` reads) with round numbers drawn from ``seed``.

    Parameters
    ----------
    sizes : sequence of int
        n_0, ..., n_L (at least two layers' worth: input and output).
    seed : int
        Seeds ``numpy.random.default_rng``: the same seed gives the same exercise.
    activation, output : str
        Hidden and output activations (output default: the loss's, else sigmoid).
    loss : str
        ``mse``, ``sigmoid-cross-entropy`` or ``softmax-cross-entropy``.
    samples : int
        m, the number of samples in the batch.
    """
    from ... import losses

    sizes = [int(n) for n in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"sizes must list at least two positive layer sizes, got {sizes}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    lossf = losses.get(loss)
    output = output or lossf.output or "sigmoid"
    rng = np.random.default_rng(seed)
    steps = np.array([v for v in np.arange(-9, 10) if v != 0]) / 10

    def pick(shape):
        return rng.choice(steps, size=shape).round(1).tolist()
    layers = []
    for l in range(1, len(sizes)):
        layers.append({"W": pick((sizes[l], sizes[l - 1])), "b": pick((sizes[l],)),
                       "activation": output if l == len(sizes) - 1 else activation})
    x = (rng.choice(np.arange(-2, 3), size=(samples, sizes[0])) / 2).tolist()
    nL = sizes[-1]
    if lossf.name == "softmax-cross-entropy":
        y = one_hot(rng.integers(0, nL, size=samples), nL).tolist()
    elif lossf.name == "sigmoid-cross-entropy":
        y = rng.integers(0, 2, size=(samples, nL)).astype(float).tolist()
    else:
        y = (rng.integers(1, 10, size=(samples, nL)) / 10).tolist()
    return {"description": f"Exercise {seed}: one step of backpropagation on a "
                           f"{'-'.join(map(str, sizes))} network",
            "source": f"deltaprop explain --exercise --sizes {','.join(map(str, sizes))} "
                      f"--seed {seed}",
            "layers": layers, "x": x, "y": y, "loss": lossf.name,
            "learning_rate": learning_rate, "steps": 1}


def sheet(spec: dict, notation: str = "deltaprop", fmt: str = "markdown",
          spec_file: str = "exercise.json") -> str:
    """The problem sheet: the network, its numbers, the tasks, in a notation and format."""
    from .. import trace

    parsed = trace.load(spec)
    sol = solve(parsed, notation)  # the notation's symbols and its value conventions
    run, nt = sol.run, get_notation(notation, sol.run.acts)
    m = TexMath(sol.precision) if fmt != "text" else TextMath(sol.precision)
    check = (f"deltaprop explain {spec_file} --notation {nt.key} --check my-answers.json "
             f"(keys: {', '.join(nt.answer_keys)})")
    intro = (f"A {'-'.join(map(str, run.sizes))} network "
             f"({', '.join(a.name for a in run.acts[1:])}), loss {run.loss}, m = {run.m}. "
             f"Notation: {nt.title}.")
    write = {"markdown": _sheet_markdown, "latex": _sheet_latex}.get(fmt, _sheet_text)
    return write(m, parsed.description, intro, _given(run, nt),
                 nt.const("eta"), run.eta, _tasks(run, nt, m, fmt != "text"), check)


def _given(run, nt):
    """(symbol, value, what) of every number the sheet gives: W, b (or theta), x, y."""
    L, given = run.L, []
    for l in range(1, L + 1):
        if nt.bias_column:
            theta = np.concatenate([run.b[l][:, None], run.W[l]], axis=1)
            given.append((nt.W(l), theta, f"{nt.layer_title(l, L)}, {run.acts[l].name}; "
                          "column 0 holds the biases"))
        else:
            given.append((nt.W(l), run.W[l], f"{nt.layer_title(l, L)}, {run.acts[l].name}"))
            given.append((nt.b(l), run.b[l][None, :], ""))
    given.append((nt.a(0, None), run.x, "input, one row per sample"))
    given.append((nt.y(None), run.y, "target, one row per sample"))
    return given


def _tasks(run, nt, m, tex):
    """The five tasks, their math inline ($...$ in Markdown and LaTeX)."""
    def mm(e):
        return f"${m(e)}$" if tex else m(e)
    L = run.L
    return [
        f"Forward pass: {mm(nt.z(1, None))}, {mm(nt.a(1, None))}, ... for every layer, unit "
        "by unit.",
        f"The cost {mm(nt.J())} ({run.loss}).",
        f"The errors {mm(nt.delta(L, None))} of the output layer, then of every hidden layer.",
        "The gradients of every weight and bias.",
        f"One step of gradient descent with {mm(nt.const('eta'))} = {format(run.eta, 'g')}: "
        "the updated weights and biases.",
    ]


def _sheet_markdown(m, title, intro, given, lr, eta, tasks, check):
    out = [f"# {title}", "", intro, "", "## Given", ""]
    out += [f"- ${m(s)} = {m(Matrix(np.atleast_2d(v)))}$" + (f" ({what})" if what else "")
            for s, v, what in given]
    out += [f"- ${m(lr)} = {m(Num(eta))}$", "", "## Tasks", ""]
    out += [f"{i}. {t}" for i, t in enumerate(tasks, 1)]
    out += ["", f"Check your answers: `{check}`", ""]
    return "\n".join(out)


def _sheet_latex(m, title, intro, given, lr, eta, tasks, check):
    from .render import PREAMBLE

    out = [PREAMBLE + r"\begin{document}", r"\raggedright",
           f"\\section*{{{tex_text(title)}}}", tex_text(intro), r"\subsection*{Given}",
           r"\begin{itemize}"]
    out += [f"\\item $\\displaystyle {m(s)} = {m(Matrix(np.atleast_2d(v)))}$"
            + (f" ({tex_text(what)})" if what else "") for s, v, what in given]
    out += [f"\\item ${m(lr)} = {m(Num(eta))}$", r"\end{itemize}",
            r"\subsection*{Tasks}", r"\begin{enumerate}"]
    out += [f"\\item {_tex_task(t)}" for t in tasks]
    out += [r"\end{enumerate}", f"Check your answers: \\texttt{{{tex_text(check)}}}",
            r"\end{document}"]
    return "\n".join(out) + "\n"


def _sheet_text(m, title, intro, given, lr, eta, tasks, check):
    out = [title, intro, "", "Given:"]
    for s, v, what in given:
        label = f"  {m(s)} = "
        out.append(label + m(Matrix(np.atleast_2d(v))).replace("\n", "\n" + " " * len(label))
                   + (f"   ({what})" if what else ""))
    out += [f"  {m(lr)} = {m(Num(eta))}", "", "Tasks:"]
    out += [f"  {i}. {t}" for i, t in enumerate(tasks, 1)]
    out += ["", f"Check your answers: {check}", ""]
    return "\n".join(out)


def _tex_task(text):
    """A task line whose math is already TeX in $...$: escape only the text between."""
    parts = text.split("$")
    return "$".join(p if i % 2 else tex_text(p) for i, p in enumerate(parts))


def answer_key(spec: dict, notation: str = "deltaprop", fmt: str = "markdown") -> str:
    """The worked solution of the exercise (the answer key)."""
    return render(solve(spec, notation), fmt)


def paths(out, seed: int, fmt: str) -> tuple[Path, Path, Path]:
    """(sheet, key, spec) file names: ``out`` (default ``exercise-<seed><suffix>``), the
    same with ``-answers`` before the suffix, and with ``.json``."""
    suffix = _SUFFIX[fmt]
    sheet_path = Path(out) if out else Path(f"exercise-{seed}{suffix}")
    stem = sheet_path.with_suffix("") if sheet_path.suffix else sheet_path
    if not sheet_path.suffix:
        sheet_path = sheet_path.with_name(sheet_path.name + suffix)
    return (sheet_path, stem.with_name(stem.name + "-answers" + sheet_path.suffix),
            stem.with_name(stem.name + ".json"))


def write(spec: dict, out=None, *, seed: int = 0, notation: str = "deltaprop",
          fmt: str = "markdown", force: bool = False) -> tuple[Path, Path, Path]:
    """Write the sheet, the answer key and the spec; returns their paths.

    Raises
    ------
    FileExistsError
        One of the three exists and ``force`` is False (nothing is written then).
    ValueError
        An unknown format, or a folder that does not exist.
    """
    if fmt not in _SUFFIX:
        raise ValueError(f"exercises are written as markdown, latex or text, not {fmt!r}")
    files = paths(out, seed, fmt)
    for p in files:
        if p.is_dir():
            raise ValueError(f"{p} is a folder; give a file name")
        folder = p.parent if str(p.parent) else Path(".")
        if not folder.is_dir():
            raise ValueError(f"folder {folder} does not exist")
        if p.exists() and not force:
            raise FileExistsError(f"{p} exists; use --force to replace it")
    texts = (sheet(spec, notation, fmt, spec_file=files[2].name),
             answer_key(spec, notation, fmt), json.dumps(spec, indent=2) + "\n")
    for p, text in zip(files, texts, strict=True):
        dio.atomic_write_text(p, text)
    return files
