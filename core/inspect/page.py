"""The report page: one self-contained HTML file (styles, script and findings JSON inline,
drawn by ``page.js``) that loads nothing from the network; images are the files beside it."""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import Any


def _asset(name: str) -> str:
    return resources.files("clf.inspect").joinpath(name).read_text(encoding="utf-8")


# "</script>", "<!--" and "<script" change how HTML parses a <script> element, and U+2028/2029
# end lines in older JavaScript; as \u escapes the JSON strings mean the same.
_SCRIPT_ESCAPES: dict[str, str | int | None] = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def script_json(value: Any) -> str:
    """``value`` as JSON that can sit inside an HTML ``<script>`` element unchanged."""
    text = json.dumps(value, default=str)
    return text.translate(str.maketrans(_SCRIPT_ESCAPES))


def render(findings: dict[str, Any]) -> str:
    data = script_json(findings)
    title = html.escape(f"clf inspect: {findings.get('run', '')}")
    page = _asset("page.html")
    for key, value in (("{{TITLE}}", title), ("{{CSS}}", _asset("page.css")), ("{{JS}}", _asset("page.js"))):
        page = page.replace(key, value)
    return page.replace("{{DATA}}", data)  # last: the data may contain the other markers
