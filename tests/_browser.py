"""A real browser for the tests: headless Chromium (Debian's ``chromium``), run from its
command line, no driver library.

:func:`find` names the browser (``$DELTAPROP_BROWSER``, else the first of
:data:`CANDIDATES` on the PATH that answers ``--version``) or ``None``; :func:`load` opens a
page, lets its scripts run (virtual time), and returns the DOM as the scripts left it and the
console lines Chromium logged; :func:`screenshot` saves a PNG.  The browser runs with a
throw-away profile and with every host name unresolvable and a dead proxy, so a page that
tried to fetch anything from a network would fail to (and the tests also ask the page which
resources it loaded).
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

_FLAGS = ("--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
          "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
          "--mute-audio", "--host-resolver-rules=MAP * ~NOTFOUND",
          "--proxy-server=127.0.0.1:9", "--enable-logging=stderr", "--v=0")


def find() -> str | None:
    """The browser's path, or None when no working one is installed."""
    names = [os.environ["DELTAPROP_BROWSER"]] if os.environ.get("DELTAPROP_BROWSER") \
        else CANDIDATES
    for name in names:
        path = shutil.which(name)
        if path is None:
            continue
        try:
            done = subprocess.run([path, "--version"], capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return path
    return None


def _run(browser, args, timeout):
    with tempfile.TemporaryDirectory(prefix="deltaprop-browser-") as profile:
        done = subprocess.run([browser, *_FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)
    return done


def load(browser, page: Path, *, script: str = "", budget_ms: int = 5000,
         timeout: float = 120) -> tuple[str, list[str]]:
    """(DOM after the scripts ran, console lines) of ``page``; ``script`` (JavaScript) is
    added at the end of the body, after the page's own scripts, in a copy of the page."""
    text = page.read_text(encoding="utf-8")
    if script:
        if "</body>" not in text:
            raise AssertionError("the page has no </body> to add the test script before")
        text = text.replace("</body>", f"<script>{script}</script></body>", 1)
    with tempfile.TemporaryDirectory(prefix="deltaprop-page-") as tmp:
        copy = Path(tmp) / "page.html"
        copy.write_text(text, encoding="utf-8")
        done = _run(browser, [f"--virtual-time-budget={budget_ms}", "--dump-dom",
                              copy.as_uri()], timeout)
    if done.returncode != 0 or "<html" not in done.stdout:
        raise AssertionError(f"{browser} failed (exit {done.returncode}): {done.stderr[-2000:]}")
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console


def element_text(dom: str, element_id: str) -> str | None:
    """The text inside the element with this id (tags stripped, entities decoded)."""
    m = re.search(rf"<(\w+)[^>]*\bid=\"{re.escape(element_id)}\"[^>]*>(.*?)</\1>", dom, re.S)
    return None if m is None else html.unescape(re.sub(r"<[^>]+>", "", m.group(2)))


def screenshot(browser, url: str, out: Path, *, size=(1280, 860), budget_ms: int = 3000,
               timeout: float = 120) -> Path:
    """A PNG of ``url`` (e.g. a file URI with ``#stop=5``) at ``size`` pixels."""
    done = _run(browser, [f"--window-size={size[0]},{size[1]}",
                          f"--virtual-time-budget={budget_ms}", f"--screenshot={out}", url],
                timeout)
    if done.returncode != 0 or not Path(out).is_file():
        raise AssertionError(f"{browser} took no screenshot: {done.stderr[-2000:]}")
    return Path(out)
