"""The lowest versions that pyproject.toml declares, as pip requirements, one a line.

Every direct dependency (``project.dependencies``) must state a floor, ``name>=X``; it is
printed as ``name==X`` with its environment marker kept, and so is the ``fast`` extra's
(Numba: the compiled kernels run at their floor too).  Then come the test tools of the
``test`` extra, unpinned, leaving out what the other extras bring (PyTorch, Dask, ...): the
lowest-versions environment runs the tests marked smoke, which skip those.

``--python`` prints the lowest Python instead (``requires-python``, e.g. ``3.10``);
``--installed``, run in that environment, prints the versions it holds and fails unless
each pinned dependency is exactly its floor.
"""

import importlib.metadata
import platform
import re
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

FLOOR = re.compile(r"^\s*([A-Za-z0-9._-]+(?:\[[^\]]*\])?)\s*>=\s*([^,;\s]+)\s*(;.*)?$")


def name(requirement):
    """The distribution name of a requirement string, lower case."""
    return re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0].lower()


def installed(lines):
    """``name version`` of each pinned dependency here; exit 1 where one is not its floor."""
    from packaging.requirements import Requirement

    have, wrong = [], []
    for line in lines:
        req = Requirement(line)
        if "==" not in str(req.specifier) or (req.marker and not req.marker.evaluate()):
            continue
        version = importlib.metadata.version(req.name)
        have.append(f"{req.name} {version}")
        if version not in req.specifier:
            wrong.append(f"{req.name} {version} (wanted {req.specifier})")
    print(f"lowest versions on Python {platform.python_version()}: {', '.join(have)}")
    if wrong:
        sys.exit("lowest.py: not the lowest: " + ", ".join(wrong))
    return []


def main(argv):
    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml")
                           .read_text())["project"]
    if argv == ["--python"]:
        return [re.fullmatch(r">=\s*(\d+\.\d+)", project["requires-python"].strip()).group(1)]
    lines = []
    for req in project["dependencies"]:
        m = FLOOR.match(req)
        if m is None:
            sys.exit(f"lowest.py: dependency {req!r} states no single floor (name>=X)")
        lines.append(f"{m[1]}=={m[2]}{m[3] or ''}")
    extras = project["optional-dependencies"]
    for req in extras["fast"]:  # the compiled kernels: their floor is tested too
        m = FLOOR.match(req)
        lines.append(f"{m[1]}=={m[2]}{m[3] or ''}")
    others = {name(r) for key, reqs in extras.items() if key != "test" for r in reqs}
    lines += [r for r in extras["test"] if name(r) not in others]
    return installed(lines) if argv == ["--installed"] else lines


if __name__ == "__main__":
    for line in main(sys.argv[1:]):
        print(line)
