"""The project's own docs are enough: every method is described in docs/methods.md, and nothing in
the repository points at a file outside it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import engines

ROOT = Path(__file__).resolve().parent.parent


def test_every_registered_method_is_described_in_docs_methods():
    text = (ROOT / "docs" / "methods.md").read_text()
    missing = [name for name in engines.methods() if f"`{name}`" not in text]
    assert not missing, f"docs/methods.md does not describe {missing}"


def test_no_tracked_file_points_outside_the_repository():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    outside = ("METHODS.md", "PAPERS.md", "STYLE.md", "../shared")
    offenders = []
    for rel in files:
        path = ROOT / rel
        if path.suffix not in {".py", ".md", ".toml", ".txt", ".ini"} or rel == "tests/test_docs.py" or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        offenders += [f"{rel}: {word}" for word in outside if word in text]
    assert not offenders, offenders
