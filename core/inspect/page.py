"""The report page: one self-contained HTML file (styles, script and data inline).

It loads nothing from the network; images are the thumbnail files beside it. The findings
are embedded as JSON and drawn by a small vanilla script (``page.js``).
"""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import Any


def _asset(name: str) -> str:
    return resources.files("clf.inspect").joinpath(name).read_text(encoding="utf-8")


def render(findings: dict[str, Any]) -> str:
    # "</" inside a <script> element would end it early; "<\/" is the same JSON string.
    data = json.dumps(findings, default=str).replace("</", "<\\/")
    title = html.escape(f"clf inspect: {findings.get('run', '')}")
    page = _asset("page.html")
    for key, value in (("{{TITLE}}", title), ("{{CSS}}", _asset("page.css")), ("{{JS}}", _asset("page.js"))):
        page = page.replace(key, value)
    return page.replace("{{DATA}}", data)  # last: the data may contain the other markers
