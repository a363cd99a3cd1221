"""The screenshot of the explain page in docs/notebooks.md, taken by headless Chromium.

    python examples/explain_page_screenshot.py [OUT.png]

Renders Mazur's worked example as the ``deltaprop explain --format html`` page, opens it
at the output layer's error step with unit 1 of layer 2 clicked (``#stop=4&el=n-2-0``) and
saves a 1280x860 PNG (default docs/img/explain_page.png).  Needs ``chromium`` (Debian's
package) or ``$DELTAPROP_BROWSER``.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from deltaprop.app.explain.build import solve
from deltaprop.app.explain.html import render_html

OUT = Path(__file__).parent.parent / "docs" / "img" / "explain_page.png"


def main(out=OUT):
    browser = shutil.which(os.environ.get("DELTAPROP_BROWSER", "chromium"))
    if browser is None:
        sys.exit("no chromium: apt-get install chromium, or set DELTAPROP_BROWSER")
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "page.html"
        page.write_text(render_html(solve()), encoding="utf-8")
        subprocess.run([browser, "--headless", "--disable-gpu", "--no-sandbox",
                        "--hide-scrollbars", f"--user-data-dir={tmp}/profile",
                        "--window-size=1280,860", "--virtual-time-budget=3000",
                        f"--screenshot={Path(out).resolve()}",
                        page.as_uri() + "#stop=4&el=n-2-0"],
                       check=True, capture_output=True, timeout=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
