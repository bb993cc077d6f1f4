"""Choosing the search engine from settings: the embedded FTS5 engine unless a search
URL is configured."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from services.searchengine.port import SearchEngine

FTS_RELATIVE_PATH = Path("search") / "index.sqlite3"


def validate_search_url(url: str) -> str:
    """Return ``url`` stripped of surrounding spaces, or raise ValueError saying what is wrong."""
    candidate = url.strip()
    try:
        parts = urlsplit(candidate)
        port = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError as error:
        raise ValueError(f"search URL {url!r} is malformed: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"search URL {url!r} must start with http:// or https://")
    if not parts.hostname:
        raise ValueError(f"search URL {url!r} has no host name")
    if port == 0:
        raise ValueError(f"search URL {url!r} has port 0; use 1-65535")
    if parts.query or parts.fragment:
        raise ValueError(f"search URL {url!r} may not carry a query string or fragment")
    return candidate


def make_search_engine(
    search_url: str | None,
    data_dir: Path,
    api_key: str | None = None,
    ca_file: str | None = None,
) -> SearchEngine:
    """Elasticsearch at ``search_url`` when set, else FTS5 under ``data_dir``.

    Adapters are imported here so that a process only loads the client it uses."""
    if search_url is None or not search_url.strip():
        from services.searchengine.fts import FtsSearchEngine

        return FtsSearchEngine(Path(data_dir) / FTS_RELATIVE_PATH)
    from services.searchengine.elastic import ElasticsearchEngine

    return ElasticsearchEngine(validate_search_url(search_url), api_key=api_key, ca_file=ca_file)
