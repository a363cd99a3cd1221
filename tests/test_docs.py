"""Docs that cannot drift: every ```python block of README.md and docs/**/*.md runs.

The blocks of one file run in order in one namespace (a page is one session), with the
repository root as working directory.  A block whose first line is ``# skip-doctest`` is
not run.  A failure's traceback points at the line of the Markdown file.  New pages under
docs/ are picked up automatically.
"""

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
