"""The search port and its adapters (Elasticsearch 8, embedded SQLite FTS5).

Import the port from here; pick an adapter with ``make_search_engine``."""

from services.searchengine.factory import make_search_engine, validate_search_url
from services.searchengine.port import (
    DOC_TYPES,
    KEYWORD_FIELDS,
    EngineHealth,
    SearchEngine,
    SearchEngineError,
    SearchHit,
    SearchQuery,
    SearchResult,
    SearchUnavailable,
)

__all__ = [
    "DOC_TYPES",
    "KEYWORD_FIELDS",
    "EngineHealth",
    "SearchEngine",
    "SearchEngineError",
    "SearchHit",
    "SearchQuery",
    "SearchResult",
    "SearchUnavailable",
    "make_search_engine",
    "validate_search_url",
]
