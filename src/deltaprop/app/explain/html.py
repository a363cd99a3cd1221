"""``deltaprop explain --format html``: one self-contained page to step through.

The page draws the network (inline SVG: a circle per unit, a line per weight, coloured by
value: red positive, blue negative, white near zero) and steps through the solution one
section at a time: forward layer by layer, the loss, the output and hidden errors, the
gradients, the update.  Each step colours what it computed (a node by its latest z, a,
delta; an edge by W, then dW, then the updated W) and shows its equations in MathML.
Clicking a node or an edge shows every equation of that unit or weight with its numbers.

Self-contained: no network access, no CDN, no fonts or images fetched; the math is MathML
Core, which browsers draw natively; the script and the style are inline (``page.html``, the
template beside this module).  Without a script the whole worked solution is still on the
page.  Units beyond :data:`MAX_DRAWN` per layer are summarised by a "more units" mark; a
matrix-form step (a big layer) belongs to its layer's column.

Element ids: ``n-l-j`` unit j of layer l, ``e-l-j-k`` the weight W[l]_jk from unit k of
layer l-1 to unit j of layer l, ``c-l`` layer l's column, ``J`` the loss.
"""

from __future__ import annotations

import html
import json
import re
from importlib import resources

import numpy as np

from .mathml import GREEK_LETTERS, step_lines
from .model import Solution, Sym

__all__ = ["render_html", "MAX_DRAWN"]

#: units drawn per layer; a wider layer draws its first MAX_DRAWN - 1 units and its last
MAX_DRAWN = 8

_NODE_Q = ("z", "a", "e", "dJ_da", "delta")  # colour a node
_EDGE_Q = ("W", "dW", "Delta", "theta", "dtheta")  # colour an edge (theta: [b | W])
_COLOUR_GROUP = {"z": "forward", "a": "forward", "e": "error", "dJ_da": "error",
                 "delta": "error", "W": "weight", "dW": "gradient", "Delta": "gradient",
                 "theta": "weight", "dtheta": "gradient", "b": "weight", "db": "gradient"}
_NAMES = {"z": "z", "a": "a", "e": "e", "dJ_da": "dJ/da", "delta": "δ", "W": "W",
          "dW": "dW", "Delta": "Δ", "theta": "Θ", "dtheta": "dΘ", "b": "b", "db": "db",
          "J": "J"}


def _drawn(n) -> list[int]:
    return list(range(n)) if n <= MAX_DRAWN else [*range(MAX_DRAWN - 1), n - 1]


class _Layout:
    """Where each unit sits: layers are columns, left to right, the loss box last."""

    def __init__(self, sizes, acts):
        self.sizes, self.acts, self.L = sizes, acts, len(sizes) - 1
        self.rows = max(len(_drawn(n)) for n in sizes) + (1 if max(sizes) > MAX_DRAWN else 0)
        self.width = max(560, 170 * (self.L + 1) + 120)
        self.height = 90 + 62 * self.rows
        self.gap = (self.width - 150) / (self.L + 1)

    def x(self, l):
        return 60 + l * self.gap

    def y(self, l, pos):
        n = len(_drawn(self.sizes[l])) + (self.sizes[l] > MAX_DRAWN)
        top = 50 + (self.rows - n) * 31
        return top + 62 * pos + 31

    def pos(self, l):
        """(unit index, slot) of the drawn units of layer l (slot skips the 'more' mark)."""
        units = _drawn(self.sizes[l])
        return [(j, p + (1 if self.sizes[l] > MAX_DRAWN and p == len(units) - 1 else 0))
                for p, j in enumerate(units)]


def _svg(lay: _Layout) -> str:
    """The network as inline SVG with the element ids of the module docstring."""
    scale = max(1.0, 680 / lay.width)  # a small network is drawn larger
    out = [f"<svg id='net' xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {lay.width} "
           f"{lay.height}' width='{lay.width * scale:.0f}' height='{lay.height * scale:.0f}' "
           "role='img' aria-label='the network'>"]
    for l in range(lay.L + 1):
        x = lay.x(l)
        name = "input" if l == 0 else (lay.acts[l] if l < len(lay.acts) else "")
        out.append(f"<g class='col' id='c-{l}' data-el='c-{l}'><rect x='{x - 34:.1f}' y='22' "
                   f"width='68' height='{lay.height - 30}' rx='8'/>"
                   f"<text x='{x:.1f}' y='16' class='lab'>layer {l}</text>"
                   f"<text x='{x:.1f}' y='{lay.height - 2}' class='lab'>"
                   f"{html.escape(name)} (n = {lay.sizes[l]})</text></g>")
    for l in range(1, lay.L + 1):  # edges below the nodes
        for j, pj in lay.pos(l):
            for k, pk in lay.pos(l - 1):
                out.append(f"<line class='edge' id='e-{l}-{j}-{k}' data-el='e-{l}-{j}-{k}' "
                           f"x1='{lay.x(l - 1) + 23:.1f}' y1='{lay.y(l - 1, pk):.1f}' "
                           f"x2='{lay.x(l) - 23:.1f}' y2='{lay.y(l, pj):.1f}'>"
                           f"<title>W[{l}] from unit {k + 1} of layer {l - 1} to unit "
                           f"{j + 1} of layer {l}</title></line>")
    for l in range(lay.L + 1):
        for j, p in lay.pos(l):
            x, y = lay.x(l), lay.y(l, p)
            out.append(f"<g class='node' id='n-{l}-{j}' data-el='n-{l}-{j}'>"
                       f"<title>unit {j + 1} of layer {l}</title>"
                       f"<circle cx='{x:.1f}' cy='{y:.1f}' r='23'/>"
                       f"<text x='{x:.1f}' y='{y - 27:.1f}' class='q'></text>"
                       f"<text x='{x:.1f}' y='{y + 3.5:.1f}' class='v'></text></g>")
        if lay.sizes[l] > MAX_DRAWN:
            y = lay.y(l, len(_drawn(lay.sizes[l])) - 1)
            out.append(f"<text x='{lay.x(l):.1f}' y='{y + 5:.1f}' class='more'>"
                       f"⋮ {lay.sizes[l] - MAX_DRAWN} more</text>")
    xl, yl = lay.x(lay.L) + lay.gap * 0.75, lay.height / 2
    out.append(f"<g class='node loss' id='J' data-el='J'><title>the loss</title>"
               f"<rect x='{xl - 30:.1f}' y='{yl - 20:.1f}' width='60' height='40' rx='6'/>"
               f"<text x='{xl:.1f}' y='{yl - 24:.1f}' class='q'>J</text>"
               f"<text x='{xl:.1f}' y='{yl + 3.5:.1f}' class='v'></text></g>")
    return "".join(out) + "</svg>"


class _Elements:
    """Maps a step (quantity, layer, index) to the element ids it belongs to."""

    def __init__(self, lay: _Layout):
        self.lay = lay
        self.drawn = [set(_drawn(n)) for n in lay.sizes]

    def node(self, l, j):
        return f"n-{l}-{j}" if j in self.drawn[l] else f"c-{l}"

    def edge(self, l, j, k):
        if j in self.drawn[l] and k in self.drawn[l - 1]:
            return f"e-{l}-{j}-{k}"
        return f"c-{l}"

    def of(self, step) -> str:
        q, l, idx = step.quantity, step.layer, step.index
        if q == "J":
            return "J"
        if l is None:
            l = self.lay.L
        if idx is None:
            return f"c-{l}"
        if q in _EDGE_Q and len(idx) == 2:
            return self.edge(l, *idx)
        return self.node(l, idx[-1])

    def values(self, step):
        """[(element, quantity, value)] to colour: the step's number, or every drawn entry
        of a matrix-form value (row 0, the first sample, for z, a, delta)."""
        q, l = step.quantity, step.layer if step.layer is not None else self.lay.L
        if q not in _COLOUR_GROUP and q != "J":
            return []
        v = np.asarray(step.value, dtype=float)
        if step.index is not None or q == "J":
            el = self.of(step)
            kind = el.split("-")[0]
            if (kind == "n" and q not in _NODE_Q) or (kind == "e" and q not in _EDGE_Q) \
                    or kind == "c":
                return []  # a bias (b, db, Ng's bias Delta) or an undrawn unit: no colour
            return [(el, q, float(v.reshape(-1)[0]) if v.size else 0.0)]
        out = []
        if q in _EDGE_Q and v.ndim == 2:
            skip = v.shape[1] - self.lay.sizes[l - 1]  # 1 where the bias is column 0
            for j, _ in self.lay.pos(l):
                for k, _ in self.lay.pos(l - 1):
                    out.append((self.edge(l, j, k), q, float(v[j, k + skip])))
        elif q in _NODE_Q:
            row = v.reshape(-1, v.shape[-1])[0] if v.ndim else v.reshape(1)
            out += [(self.node(l, j), q, float(row[j])) for j, _ in self.lay.pos(l)
                    if j < row.size]
        return out


def _label(el) -> str:
    parts = el.split("-")
    if el == "J":
        return "the loss J"
    if parts[0] == "c":
        return f"layer {parts[1]}: every equation" if parts[1] != "0" else \
            "layer 0: the input x"
    if parts[0] == "n":
        return f"unit {int(parts[2]) + 1} of layer {parts[1]}"
    l, j, k = map(int, parts[1:])
    return f"weight W[{l}] from unit {k + 1} of layer {l - 1} to unit {j + 1} of layer {l}"


def _layer(step, L) -> str:
    """The layer a step belongs to ("" for the loss)."""
    return "" if step.quantity == "J" else str(L if step.layer is None else step.layer)


def render_html(solution: Solution) -> str:
    """The page for ``solution`` as one HTML string (UTF-8, self-contained)."""
    run, p = solution.run, solution.precision
    W = run.W
    sizes = [int(W[1].shape[-1])] + [int(w.shape[-2]) for w in W[1:]]
    acts = ["input"] + [getattr(f, "name", str(f)) for f in run.acts[1:]]
    lay = _Layout(sizes, acts)
    els = _Elements(lay)
    init = _initial_state(run, lay, els)
    sections, stops, scale = _sections(solution, lay, els, init)
    data = {"stops": stops, "init": [list(t) for t in init],
            "scale": {g: (v or 1.0) for g, v in scale.items()}, "group": _COLOUR_GROUP,
            "names": _node_names(solution), "precision": min(p, 4),
            "labels": {el: _label(el) for el in  # sorted: the same page on every run
                       sorted({t[0] for st in stops for t in st["set"]} | {t[0] for t in init}
                              | {e for st in stops for e in st["els"]})}}
    return _fill_page(solution, lay, sections, data)


def _initial_state(run, lay, els):
    """The page's starting state: the input (first sample) and the weights before the
    update, as (element, quantity, value)."""
    x0 = np.asarray(run.a[0], dtype=float).reshape(-1, lay.sizes[0])[0]
    init = [(els.node(0, j), "a", float(x0[j])) for j, _ in lay.pos(0)]
    for l in range(1, lay.L + 1):
        w = np.asarray(run.W[l], dtype=float)
        init += [(els.edge(l, j, k), "W", float(w[j, k]))
                 for j, _ in lay.pos(l) for k, _ in lay.pos(l - 1)]
    return init


def _sections(solution, lay, els, init):
    """(the sections' HTML, one stop per section, the largest |value| per colour group)."""
    stops, sections, scale = [], [], {}
    for s, sec in enumerate(solution.sections):
        steps_html, sets, touched = [], [], []
        for step in sec.steps:
            el = els.of(step)
            touched.append(el)
            sets += els.values(step)
            meta = " · ".join(html.escape(t) for t in (step.ref, step.note) if t)
            steps_html.append(
                f"<div class='step' data-el='{el}' data-layer='{_layer(step, lay.L)}' "
                f"data-q='{html.escape(step.quantity)}'>"
                + "".join(f"<div class='eq'>{line}</div>"
                          for line in step_lines(step, solution.precision))
                + (f"<div class='ref'>{meta}</div>" if meta else "")
                + "</div>")
        for _, q, v in sets + init:
            g = _COLOUR_GROUP.get(q, q)
            scale[g] = max(scale.get(g, 0.0), abs(v))
        notes = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in sec.notes)
        sections.append(f"<section class='sec' id='s-{s}' data-stop='{s}'>"
                        f"<h3>{html.escape(sec.title)}</h3>{notes}{''.join(steps_html)}"
                        "</section>")
        stops.append({"title": sec.title, "phase": sec.phase, "layer": sec.layer,
                      "els": sorted(set(touched)), "set": [list(t) for t in sets]})
    return sections, stops, scale


def _node_names(solution):
    """The label over a node: the notation's own symbol."""
    names = dict(_NAMES)
    for step in reversed(list(solution.steps())):
        if isinstance(step.lhs, Sym):
            names[step.quantity] = GREEK_LETTERS.get(step.lhs.base, step.lhs.base)
    return names


def _fill_page(solution, lay, sections, data):
    """The page template with every placeholder filled."""
    nt = solution.notation
    header = "".join(f"<li>{html.escape(h)}</li>" for h in solution.header)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in solution.notes)
    glossary = "".join(f"<li>{html.escape(g)}</li>" for g in nt.glossary)
    template = (resources.files(__package__) / "page.html").read_text(encoding="utf-8")
    fill = {
        "TITLE": html.escape(solution.title or "Backpropagation, step by step"),
        "NOTATION": html.escape(nt.title),
        "SOURCE": html.escape(nt.source),
        "HEADER": header,
        "NOTES": notes,
        "GLOSSARY": glossary,
        "SVG": _svg(lay),
        "SECTIONS": "".join(sections),
        # </ inside a script element would end it: JSON escapes the slash
        "DATA": json.dumps(data, separators=(",", ":")).replace("</", "<\\/"),
    }
    # one pass, so that no filled-in text is ever read as a placeholder
    return re.sub(r"\{\{([A-Z]+)\}\}", lambda m: fill[m[1]], template)
