"""One ``engine`` fixture over both adapters, so every conformance test runs twice:
on the embedded FTS5 engine and on the Elasticsearch adapter against osmem-server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from osmem_server import OsmemServer

from services.searchengine.elastic import ElasticsearchEngine
from services.searchengine.fts import FtsSearchEngine
from services.searchengine.port import SearchEngine


@pytest.fixture(scope="session")
def osmem_search_server() -> Iterator[OsmemServer]:
    """One in-memory OpenSearch-compatible server for the session; tests use clones."""
    server = OsmemServer.start(japanese=False)
    yield server
    server.close()
    if server.process.stdout is not None:  # OsmemServer.close leaves its pipe open
        server.process.stdout.close()


@pytest.fixture(params=["fts", "elasticsearch"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SearchEngine]:
    search_engine: SearchEngine
    if request.param == "fts":
        search_engine = FtsSearchEngine(tmp_path / "search" / "index.sqlite3")
        yield search_engine
        search_engine.close()
        return
    server: OsmemServer = request.getfixturevalue("osmem_search_server")
    clone = server.clone()
    search_engine = ElasticsearchEngine(clone.url)
    try:
        yield search_engine
    finally:
        search_engine.close()
        clone.close()
