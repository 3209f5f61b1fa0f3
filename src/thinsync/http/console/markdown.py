"""Just enough Markdown for the help pages: headings, paragraphs, lists, **bold**, `code`, links."""

from __future__ import annotations

import re

from markupsafe import Markup, escape

_INLINE = [
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
    (re.compile(r"\*\*([^*]+)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"(?<![\w*])\*([^*]+)\*(?![\w*])"), r"<em>\1</em>"),
    (re.compile(r"\[([^\]]+)\]\((/console/[^)\s]*|https?://[^)\s]+)\)"), r'<a href="\2">\1</a>'),
]


def inline(text: str) -> str:
    html = str(escape(text))
    for pattern, replacement in _INLINE:
        html = pattern.sub(replacement, html)
    return html


def render(text: str) -> Markup:
    """HTML for a help page (the text is escaped first: help files are plain Markdown, no HTML)."""
    out: list[str] = []
    paragraph: list[str] = []
    items: list[str] = []
    ordered = False

    def flush() -> None:
        nonlocal items
        if paragraph:
            out.append(f"<p>{inline(' '.join(paragraph))}</p>")
            paragraph.clear()
        if items:
            tag = "ol" if ordered else "ul"
            out.append(f"<{tag}>" + "".join(f"<li>{inline(i)}</li>" for i in items) + f"</{tag}>")
            items = []

    for line in text.splitlines():
        stripped = line.strip()
        heading = re.match(r"(#{1,4})\s+(.*)", stripped)
        bullet = re.match(r"[-*]\s+(.*)", stripped)
        number = re.match(r"\d+\.\s+(.*)", stripped)
        if not stripped:
            flush()
        elif heading:
            flush()
            level = min(len(heading.group(1)) + 1, 5)
            out.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
        elif bullet or number:
            if paragraph or (items and ordered != bool(number)):
                flush()
            ordered = bool(number)
            items.append((bullet or number).group(1))  # type: ignore[union-attr]
        elif items and line.startswith(("  ", "\t")):
            items[-1] += " " + stripped
        else:
            if items:
                flush()
            paragraph.append(stripped)
    flush()
    return Markup("\n".join(out))
