"""Card JSON (1.0 and 2.0) to plain HTML for the inbox: readable, not pixel-faithful."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from html import escape
from typing import Any

# Renders a callback button as a form; gets (label, button style, value, name).
ButtonForm = Callable[[str, str, Any, str], str]

_LINK_RE = re.compile(r"\[([^\]]+)\]\((https?://[^)\s]+)\)")
_BOLD_RE = re.compile(r"\*\*(.+?)\*\*")
# A numeric character reference shows as its character, never as markdown (as in Feishu).
_CHAR_REF_RE = re.compile(r"&amp;(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6});")


def markdown(text: str) -> str:
    html = escape(text)
    html = _BOLD_RE.sub(r"<b>\1</b>", html)
    html = _LINK_RE.sub(r'<a href="\2" target="_blank" rel="noopener">\1</a>', html)
    html = _CHAR_REF_RE.sub(r"&\1;", html)
    return html.replace("\n", "<br>")


def _text(node: Any) -> str:
    """Text of a plain_text/lark_md object, or of a bare string."""
    if isinstance(node, str):
        return escape(node)
    if isinstance(node, dict):
        content = str(node.get("content", ""))
        return markdown(content) if node.get("tag") == "lark_md" else escape(content)
    return ""


def _button(el: dict[str, Any], form: ButtonForm) -> str:
    label = _text(el.get("text")) or "Button"
    style = str(el.get("type", "default"))
    url = el.get("url") or (el.get("multi_url") or {}).get("url")
    value = el.get("value")
    for behavior in el.get("behaviors") or []:
        if behavior.get("type") == "open_url":
            url = behavior.get("default_url") or behavior.get("url")
        elif behavior.get("type") == "callback":
            value = behavior.get("value")
    if url and str(url).startswith(("http://", "https://")):
        return (
            f'<a class="btn btn-{escape(style)}" href="{escape(str(url))}" '
            f'target="_blank" rel="noopener">{label}</a>'
        )
    return form(label, style, value if value is not None else {}, str(el.get("name", "")))


def _elements(elements: Any, form: ButtonForm) -> str:
    if not isinstance(elements, list):
        return ""
    return "".join(_element(el, form) for el in elements if isinstance(el, dict))


def _element(el: dict[str, Any], form: ButtonForm) -> str:
    tag = el.get("tag")
    if tag == "markdown":
        return f'<div class="md">{markdown(str(el.get("content", "")))}</div>'
    if tag in ("plain_text", "lark_md"):
        return f"<div>{_text(el)}</div>"
    if tag == "div":
        parts = [f"<div>{_text(el.get('text'))}</div>"] if el.get("text") else []
        parts += [f"<div>{_text(f.get('text'))}</div>" for f in el.get("fields") or []]
        if isinstance(el.get("extra"), dict):
            parts.append(_element(el["extra"], form))
        return f'<div class="div">{"".join(parts)}</div>'
    if tag == "hr":
        return "<hr>"
    if tag == "note":
        return f'<div class="note">{_elements(el.get("elements"), form)}</div>'
    if tag == "button":
        return _button(el, form)
    if tag == "action":
        buttons = "".join(_element(a, form) for a in el.get("actions") or [])
        return f'<div class="actions">{buttons}</div>'
    if tag == "column_set":
        columns = "".join(
            f'<div class="column">{_elements(c.get("elements"), form)}</div>'
            for c in el.get("columns") or []
        )
        return f'<div class="columns">{columns}</div>'
    if tag in ("form", "collapsible_panel", "interactive_container"):
        return f'<div class="group">{_elements(el.get("elements"), form)}</div>'
    if tag == "img":
        alt = _text(el.get("alt")) or escape(str(el.get("img_key")))
        return f'<div class="img">[image: {alt}]</div>'
    return f'<div class="unknown">[{escape(str(tag))}]</div>'


def render(msg_type: str, content: Any, form: ButtonForm) -> tuple[str, str, str]:
    """(title, header colour, body HTML) of a message's current content."""
    if msg_type != "interactive":
        text = content.get("text") if isinstance(content, dict) else None
        body = markdown(str(text)) if text is not None else escape(json.dumps(content))
        return msg_type, "grey", f'<div class="md">{body}</div>'
    if not isinstance(content, dict):
        return "card", "grey", escape(str(content))
    if content.get("type") == "template":
        data = content.get("data") or {}
        variables = escape(json.dumps(data.get("template_variable", {}), ensure_ascii=False))
        template_id = escape(str(data.get("template_id")))
        body = f"<div>Template card {template_id}</div><pre>{variables}</pre>"
        return "template card", "grey", body
    header = content.get("header") or {}
    title = _text(header.get("title")) or "card"
    subtitle = header.get("subtitle")
    elements = (content.get("body") or {}).get("elements") or content.get("elements")
    body = (f'<div class="subtitle">{_text(subtitle)}</div>' if subtitle else "") + _elements(
        elements, form
    )
    return title, str(header.get("template", "blue")), body
