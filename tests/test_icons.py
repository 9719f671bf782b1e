"""Icons are Streamlit's Material symbols, never emoji: emoji render as empty boxes where the
system has no emoji font (as on a bare Linux server's browser)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parent.parent / "dashboard"
# Pictographs, symbols drawn as emoji, and the variation selector that turns a symbol into one.
EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\u2300-\u23FF\uFE0F]")


def icon_arguments(path: Path) -> list[str]:
    """Every `icon=` and `page_icon=` string passed in a file."""
    tree = ast.parse(path.read_text())
    return [keyword.value.value for node in ast.walk(tree) if isinstance(node, ast.Call)
            for keyword in node.keywords
            if keyword.arg in ("icon", "page_icon") and isinstance(keyword.value, ast.Constant)]


def test_the_navigation_uses_material_icons_for_every_page():
    icons = icon_arguments(DASHBOARD / "app.py")
    assert len(icons) == 7  # the browser tab and six pages
    assert all(re.fullmatch(r":material/[a-z0-9_]+:", icon) for icon in icons), icons


def test_no_dashboard_file_uses_emoji():
    offenders = [f"{path.name}:{number}" for path in DASHBOARD.rglob("*.py")
                 for number, line in enumerate(path.read_text().splitlines(), 1) if EMOJI.search(line)]
    assert offenders == []
    assert all(icon.startswith(":material/") for path in DASHBOARD.rglob("*.py") for icon in icon_arguments(path))
