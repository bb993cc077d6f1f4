"""Rich text as staff write it (interpretations, press responses): what is allowed, and the plain text."""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser

import nh3

ALLOWED_TAGS = {
    "p", "br", "strong", "b", "em", "i", "u", "ul", "ol", "li", "h2", "h3", "h4", "table", "thead", "tbody",
    "tr", "th", "td", "blockquote", "a", "span", "div", "sub", "sup",
}

ALLOWED_ATTRIBUTES: dict[str, frozenset[str]] = {
    "a": frozenset({"href", "title"}), "td": frozenset({"colspan", "rowspan"}), "th": frozenset({"colspan", "rowspan"}),
}


def sanitise_html(html: str) -> str:
    """Rich text as staff may write it, with anything that could run script removed."""
    return nh3.clean(html, tags=ALLOWED_TAGS, attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
                     link_rel="noopener")


SAFE_URL_SCHEMES = frozenset({"http", "https", "mailto", "tel"})
_URL_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")


class _MarkupBeyondAllowed(HTMLParser):
    """Finds a tag, attribute, link scheme or comment that ``sanitise_html`` would remove.

    (Comparing the sanitised text with the original also flags what sanitising merely
    re-serialises: ``&`` → ``&amp;``, ``<br/>``, an implied ``<tbody>``, the added ``rel``.)
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        allowed = ALLOWED_ATTRIBUTES.get(tag, frozenset())
        if tag not in ALLOWED_TAGS or any(name not in allowed for name, _value in attrs):
            self.found = True
        for name, value in attrs:
            scheme = _URL_SCHEME.match(re.sub(r"[\x00-\x20]", "", value or ""))
            if name == "href" and scheme and scheme.group(1).lower() not in SAFE_URL_SCHEMES:
                self.found = True

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag: str) -> None:
        if tag not in ALLOWED_TAGS:
            self.found = True

    def handle_comment(self, data: str) -> None:
        self.found = True

    def handle_decl(self, decl: str) -> None:
        self.found = True

    def handle_pi(self, data: str) -> None:
        self.found = True

    def unknown_decl(self, data: str) -> None:
        self.found = True


def plain_text(html: str) -> str:
    """What a rich-text body says, without markup (what search matches)."""
    return str(unescape(nh3.clean(html, tags=set()))).strip()


def has_markup_beyond_allowed(html: str) -> bool:
    """Whether sanitising would remove something (a script, an event handler, a ``javascript:`` link...)."""
    finder = _MarkupBeyondAllowed()
    finder.feed(html)
    finder.close()
    return finder.found
