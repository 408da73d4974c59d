"""The wiring rules of docs/architecture.md, read from the source itself (``ast``, not grep):
code cites the project's own docs, not a document outside the repository."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "scitoken_issuer"
TESTS = ROOT / "tests"
#: The upper-case name of the outside product document this repository once cited.
OUTSIDE_DOCUMENT = re.compile(r"\bS" r"PEC\b")


def _sources(root: Path) -> list[Path]:
    return [path for path in sorted(root.rglob("*"))
            if path.is_file() and "node_modules" not in path.parts and "__pycache__" not in path.parts
            and path.suffix in {".py", ".md", ".ldif", ".yaml", ".yml", ".html", ".txt", ".json", ".js", ".cfg"}]


def test_no_spec_citations():
    """docs/architecture.md: code and tests cite docs/*.md or an RFC section, never an outside document."""
    offenders = [f"{path.relative_to(ROOT)}:{number}"
                 for path in _sources(PACKAGE) + _sources(TESTS)
                 for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
                 if OUTSIDE_DOCUMENT.search(line)]
    assert offenders == []
