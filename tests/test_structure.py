"""The shape of the source tree: no private name crosses a module boundary.

A name that starts with one underscore is private to the module that defines it. Another
module may import a private *module* (``from .. import _backend``) and use its public
names, but not ``from .gaussian import _SLOPES`` nor ``gaussian._SLOPES``: a helper that two
modules share gets a public name in its own module.  The checker reads the source with
:mod:`ast`; it does not import anything.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "deltaprop"

# Offences that remain in files whose owners have not yet fixed them, each named as
# "module: name" and removed when fixed.  Keep this list empty when you can.
# e.g. "deltaprop.app.sklearn: deltaprop.app.train._prepare", with a comment on who fixes it.
ALLOWED: set[str] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(dotted: str) -> bool:
    """Whether ``dotted`` (such as ``deltaprop.stats.record``) is a module or package of src."""
    base = SRC.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module of a ``from ... import`` statement."""
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    keep = len(parts) - node.level + (1 if is_package else 0)
    base = ".".join(parts[:keep])
    return f"{base}.{node.module}" if node.module else base


def offences_in(path: Path) -> list[str]:
    """Each private name of another deltaprop module that ``path`` imports or uses."""
    module = _module_name(path)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []
    bound: dict[str, str] = {}  # local name -> the deltaprop module it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] != PACKAGE:
                    continue
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    bound[PACKAGE] = PACKAGE
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, is_package, node)
            if source.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                target = f"{source}.{alias.name}"
                if _is_module(target):
                    bound[alias.asname or alias.name] = target
                elif _private(alias.name) and source != module:
                    found.append(f"{module}: from {source} import {alias.name}")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        chain = []
        inner = node
        while isinstance(inner, ast.Attribute):
            chain.append(inner.attr)
            inner = inner.value
        if not (isinstance(inner, ast.Name) and inner.id in bound):
            continue
        target = bound[inner.id]
        for attr in reversed(chain):
            if _is_module(f"{target}.{attr}"):
                target = f"{target}.{attr}"
                continue
            if _private(attr) and target != module:
                found.append(f"{module}: {target}.{attr}")
            break
    return sorted(set(found))


def all_offences() -> list[str]:
    found = []
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        found += offences_in(path)
    return found


def test_no_private_name_crosses_a_module():
    remaining = [o for o in all_offences() if o not in ALLOWED]
    assert remaining == [], "private names used across modules:\n" + "\n".join(remaining)


def test_allow_list_is_not_stale():
    """Every allowed offence still exists: fixed ones leave the list."""
    stale = ALLOWED - set(all_offences())
    assert not stale, "fixed: remove from ALLOWED in tests/test_structure.py: " + str(stale)


def test_checker_finds_each_kind_of_offence(tmp_path, monkeypatch):
    """The checker is not blind: both forms are found, private modules and aliases pass."""
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "_priv.py").write_text("def helper():\n    pass\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("_X = 1\nY = 2\n")
    (pkg / "sub" / "b.py").write_text(
        "from .a import _X\n"
        "from . import a\n"
        "from .. import _priv\n"
        "from .. import sub as _sub\n"
        "from deltaprop.sub import a as alias\n"
        "print(a._X, a.Y, alias._X, _priv.helper(), _sub.a.Y)\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path)
    assert offences_in(pkg / "sub" / "b.py") == [
        "deltaprop.sub.b: deltaprop.sub.a._X",
        "deltaprop.sub.b: from deltaprop.sub.a import _X",
    ]
    assert offences_in(pkg / "sub" / "a.py") == []


# ---------------------------------------------------------------------- function length

#: The longest body a function of src/ may have, in lines from its first statement after
#: the docstring to its last (comments and blank lines inside count).
MAX_BODY_LINES = 60

# Functions still over the limit, as "module.qualname", each removed when its owner splits
# it (the stale check below fails until then).  Only functions in files whose owners have
# not yet split them may stand here:
LONG_ALLOWED: set[str] = {
    "deltaprop.app.cli.sweep._sweep",  # 62 lines; cli/sweep.py belongs to the sweep work
}


def _body_lines(node) -> int:
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]  # the docstring
    return body[-1].end_lineno - body[0].lineno + 1 if body else 0


def long_functions_in(path: Path, limit: int = MAX_BODY_LINES) -> dict[str, int]:
    """``{"module.qualname": body lines}`` of each function of ``path`` over ``limit``."""
    module = _module_name(path)
    found = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}.{child.name}"
                if not isinstance(child, ast.ClassDef) and _body_lines(child) > limit:
                    found[name] = _body_lines(child)
                visit(child, name)
            else:
                visit(child, prefix)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), module)
    return found


def all_long_functions() -> dict[str, int]:
    found = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        found |= long_functions_in(path)
    return found


def test_no_function_longer_than_the_limit():
    long = {k: v for k, v in all_long_functions().items() if k not in LONG_ALLOWED}
    assert not long, (f"functions over {MAX_BODY_LINES} lines (split them by concept):\n"
                      + "\n".join(f"{k}: {v}" for k, v in sorted(long.items())))


def test_long_allow_list_is_not_stale():
    stale = LONG_ALLOWED - set(all_long_functions())
    assert not stale, "now short: remove from LONG_ALLOWED in tests/test_structure.py: " + \
        str(stale)


def test_length_checker_counts_body_lines_without_the_docstring(tmp_path, monkeypatch):
    pkg = tmp_path / PACKAGE
    pkg.mkdir()
    body = "".join(f"    x{i} = {i}\n" for i in range(4))
    (pkg / "m.py").write_text(
        f'def short():\n    """Doc\n    string."""\n{body}'
        f'class C:\n    def long(self):\n        y = 0\n{body.replace("    ", "        ")}'
        f'        def inner():\n            pass\n')
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path)
    assert long_functions_in(pkg / "m.py", limit=4) == {"deltaprop.m.C.long": 7}
    assert long_functions_in(pkg / "m.py", limit=3) == {"deltaprop.m.short": 4,
                                                        "deltaprop.m.C.long": 7}
