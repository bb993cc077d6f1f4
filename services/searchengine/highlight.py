"""Highlighted fragments, the same on every engine: safe HTML made in Python from the
stored document.

The text is HTML-escaped first; only then are the query's terms (its phrases, jieba words
and their synonyms, ``analysis.TextPlan.marks``) wrapped in ``<mark>…</mark>``. Nothing of
the document can therefore come out as markup: the only tags in a fragment are ours.

Terms are found case- and width-insensitively (the text is compared in ``normalize``'s
form, positions mapped back to the original characters); overlapping or adjacent matches
merge into one mark. Titles and summaries are marked whole; a body becomes a window of
about BODY_FRAGMENT_CHARS characters starting a little before its first match (after the
last punctuation mark in the BODY_LEAD_CHARS before it, if any; its beginning when nothing
matches), with "…" where it was cut. Runs of white space become one space.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from services.text.segment import normalize

HIGHLIGHT_FIELDS: tuple[str, ...] = ("title", "summary", "body")
BODY_FRAGMENT_CHARS = 120
#: Characters of context kept before the first match of a body.
BODY_LEAD_CHARS = 30
ELLIPSIS = "…"
#: A body window starts after one of these when one is close before the first match.
_CLAUSE_ENDS = frozenset("，。；！？、：,;!?:")
MARK_OPEN, MARK_CLOSE = "<mark>", "</mark>"


def highlight_document(document: Mapping[str, Any], terms: Sequence[str]) -> dict[str, str]:
    """``{"title", "summary", "body"}`` → safe HTML fragments of ``document``."""
    fragments: dict[str, str] = {}
    for name in HIGHLIGHT_FIELDS:
        value = document.get(name)
        text = value if isinstance(value, str) else ""
        fragments[name] = highlight(text, terms, window=BODY_FRAGMENT_CHARS if name == "body" else None)
    return fragments


def highlight(text: str, terms: Sequence[str], window: int | None = None) -> str:
    """``text`` escaped, with every occurrence of ``terms`` marked; cut to a ``window`` of
    characters around the first match when given."""
    text = " ".join(text.split())
    if not text:
        return ""
    covered = _covered(text, terms)
    start, end = 0, len(text)
    if window is not None and len(text) > window:
        first = covered.find(1)
        start = max(0, first - BODY_LEAD_CHARS) if first >= 0 else 0
        for position in range(first - 1, start - 1, -1):
            if text[position] in _CLAUSE_ENDS:
                start = position + 1
                break
        end = min(len(text), start + window)
        start = max(0, end - window)
    parts = [ELLIPSIS] if start > 0 else []
    position = start
    while position < end:
        marked = covered[position]
        run_end = position + 1
        while run_end < end and covered[run_end] == marked:
            run_end += 1
        piece = escape(text[position:run_end], quote=True)
        parts.append(f"{MARK_OPEN}{piece}{MARK_CLOSE}" if marked else piece)
        position = run_end
    if end < len(text):
        parts.append(ELLIPSIS)
    return "".join(parts)


def _covered(text: str, terms: Sequence[str]) -> bytearray:
    """1 for every character of ``text`` inside an occurrence of a term, else 0."""
    covered = bytearray(len(text))
    wanted = [term for term in dict.fromkeys(terms) if term]
    if not wanted:
        return covered
    folded, origin = _fold(text)
    for term in wanted:
        at = folded.find(term)
        while at >= 0:
            first, last = origin[at], origin[at + len(term) - 1]
            covered[first : last + 1] = b"\x01" * (last + 1 - first)
            at = folded.find(term, at + 1)
    return covered


def _fold(text: str) -> tuple[str, Sequence[int]]:
    """``normalize(text)`` and, for each of its characters, the index of the character of
    ``text`` it came from."""
    folded = normalize(text)
    if len(folded) == len(text):
        return folded, range(len(text))
    pieces: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        piece = normalize(char)
        pieces.append(piece)
        origin.extend([index] * len(piece))
    return "".join(pieces), origin
