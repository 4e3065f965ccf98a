"""Print the resolved versions of the pinned packages; exit 1 with "dependency drift" when one differs from
constraints.txt (the versions the test suite passed with).

A package the constraints pin but that is not installed is listed as absent and is not drift: constraints only
bound what gets installed (deepspeed, for example, is installed by .ci/run only).
Set HF_MEMMIT_ALLOW_DRIFT=1 to report without failing (your own environment, on purpose).
"""

from __future__ import annotations

import importlib.metadata as md
import os
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

CONSTRAINTS = Path(__file__).resolve().parent.parent / "constraints.txt"


def pinned(path: Path = CONSTRAINTS) -> list[Requirement]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def drift(requirements: list[Requirement]) -> tuple[list[str], list[str]]:
    """(report lines for every pinned package, the lines of those that drifted)."""
    report, drifted = [], []
    for req in requirements:
        try:
            installed = md.version(req.name)
        except md.PackageNotFoundError:
            report.append(f"  {req.name}: absent (pinned {req.specifier})")
            continue
        ok = req.specifier.contains(Version(installed), prereleases=True)
        line = f"  {req.name}: {installed}" + ("" if ok else f"  <-- constraints.txt says {req.specifier}")
        report.append(line)
        if not ok:
            drifted.append(line)
    return report, drifted


def main() -> int:
    report, drifted = drift(pinned())
    print(f"resolved versions (python {sys.version.split()[0]}), against {CONSTRAINTS.name}:")
    print("\n".join(report))
    if not drifted:
        print("no dependency drift")
        return 0
    message = (f"dependency drift: {len(drifted)} installed package(s) differ from constraints.txt:\n"
               + "\n".join(drifted)
               + "\nInstall the tested versions with `bash scripts/setup.sh` (pip install -c constraints.txt ...), "
               "or regenerate constraints.txt after testing the new versions.")
    if os.environ.get("HF_MEMMIT_ALLOW_DRIFT") == "1":
        print("HF_MEMMIT_ALLOW_DRIFT=1: reported, not failed\n" + message)
        return 0
    print(message, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
