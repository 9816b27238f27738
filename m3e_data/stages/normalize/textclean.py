"""Text repairs applied to every text of every source in normalize: markup and invisible debris out,
nothing else changed (no NFKC, no case folding: stored text stays as the source wrote it).

Repairs, in order, each named for the manifest's per-repair row counts:
- html_tags: known HTML tags removed; block tags (<br>, <p>, </div>, <li>, ...) become a line break and
  table cells a space. Only names of real HTML elements count, so `<公共管理学报>`, `P<0.05` and `a < b`
  are text; `<s>` (a tokenizer's start marker in chat data) is not taken for strike-through.
- html_entities: `&lt;`, `&amp;`, `&#12290;`, `&#x3002;` ... decoded (html.unescape), only when written with
  their `;`, so `AT&T` and `R&D` stay.
- invisible_chars: BOM and zero-width characters (U+200B-U+200F, U+2060, U+FEFF) removed.
- control_chars: C0/C1 control characters removed, except tab, line feed and carriage return.
- whitespace: a run of two or more whitespace characters of any kind (spaces, tabs, U+3000, U+00A0, ...)
  becomes one space; a run holding line breaks becomes those breaks, at most two (a paragraph break, which
  list-shaped answers use, survives; the indentation around it does not). CR LF and a lone CR are line
  breaks. A single space, tab, newline or ideographic space is left alone (it is a run of one).

Most texts need none of this: str.isprintable and three substring tests clear them (~1 us for 300
characters); only the rest pay for a compiled search.
"""

from __future__ import annotations

import html
import re

REPAIRS = ("html_tags", "html_entities", "invisible_chars", "control_chars", "whitespace")

# Elements whose boundaries are line breaks in rendered text.
_BLOCK = frozenset({
    "address", "article", "aside", "blockquote", "br", "caption", "dd", "div", "dl", "dt", "fieldset",
    "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li",
    "main", "nav", "ol", "p", "pre", "section", "table", "tbody", "tfoot", "thead", "tr", "ul"
})
_CELL = frozenset({"td", "th"})
# Inline elements: removed, their text kept. No s/u/q: too likely to be something else in plain text.
_INLINE = frozenset({
    "a", "abbr", "b", "big", "cite", "code", "del", "em", "font", "i", "img", "ins", "kbd", "label",
    "mark", "small", "span", "strong", "sub", "sup", "time", "var", "wbr", "html", "body", "head",
    "title", "meta", "link"
})
_TAG = re.compile(r"<!--.*?-->|<(/?)([A-Za-z][A-Za-z0-9]*)(?:\s[^<>]*)?/?>", re.DOTALL)
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
_INVISIBLE = re.compile("[\u200b-\u200f\u2060\ufeff]+")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]+")
_WHITESPACE = re.compile(r"\s{2,}|\r")
# Anything any repair could act on. Two whitespace characters in a row are suspicious, one is not.
_SUSPECT = re.compile("[<&\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2060\ufeff]|\\s\\s")


def _tag(match: re.Match[str]) -> str:
    name = (match.group(2) or "").lower()
    if match.group(0).startswith("<!--"):
        return ""
    if name in _BLOCK:
        return "\n"
    if name in _CELL:
        return " "
    if name in _INLINE:
        return ""
    return match.group(0)  # not HTML: `<Python>`, `<init>` ... are text


def _entity(match: re.Match[str]) -> str:
    return html.unescape(match.group(0))


def _space(match: re.Match[str]) -> str:
    run = match.group(0)
    breaks = run.replace("\r\n", "\n").count("\n") + run.replace("\r\n", "").count("\r")
    return "\n" * min(breaks, 2) if breaks else " "


def clean_text(text: str) -> tuple[str, tuple[str, ...]]:
    """The repaired text and the names of the repairs that changed it (empty when none did)."""
    # isprintable (C, fast) is false for every character a repair removes or rewrites except `<`, `&` and
    # the ASCII space, so most texts are cleared without running a regex.
    # (A one-character search is a memchr; "  " is looked for only in text that has a space.)
    if "<" not in text and "&" not in text and (" " not in text or "  " not in text) and text.isprintable():
        return text, ()
    if _SUSPECT.search(text) is None:
        return text, ()
    done: list[str] = []
    if "<" in text and ">" in text:
        new = _TAG.sub(_tag, text)
        if new != text:
            text = new
            done.append("html_tags")
    if "&" in text:
        new = _ENTITY.sub(_entity, text)
        if new != text:
            text = new
            done.append("html_entities")
    for name, pattern, repl in (
        ("invisible_chars", _INVISIBLE, ""),
        ("control_chars", _CONTROL, ""),
        ("whitespace", _WHITESPACE, _space),
    ):
        new = pattern.sub(repl, text)
        if new != text:
            text = new
            done.append(name)
    return text, tuple(done)
