"""The Elasticsearch adapter's dealings with servers that are down or not quite
Elasticsearch."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from services.searchengine.elastic import ElasticsearchEngine
from services.searchengine.port import SearchEngineError, SearchQuery, SearchUnavailable

UNREACHABLE = "http://127.0.0.1:1"


def test_health_of_an_unreachable_server_is_not_ok_and_quick() -> None:
    engine = ElasticsearchEngine(UNREACHABLE, timeout=2)
    started = time.monotonic()
    health = engine.health()
    assert not health.ok
    assert "127.0.0.1:1" in health.detail
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    "operation",
    [
        lambda engine: engine.ensure_alias("gongkai"),
        lambda engine: engine.current_index("gongkai"),
        lambda engine: engine.index_document("gongkai", "p", {"doc_type": "policy", "title": "政策"}, 1),
        lambda engine: engine.delete_document("gongkai", "p", 1),
        lambda engine: engine.get_document("gongkai", "p"),
        lambda engine: engine.count("gongkai"),
        lambda engine: engine.search("gongkai", SearchQuery(text="政策")),
        lambda engine: engine.search("gongkai", SearchQuery(text="政策", facets=("doc_type",), highlight=True)),
        lambda engine: engine.suggest("gongkai", "政策"),
        lambda engine: engine.related("gongkai", "p"),
        lambda engine: engine.refresh("gongkai"),
        lambda engine: engine.prune("gongkai"),
    ],
)
def test_operations_on_an_unreachable_server_raise_search_unavailable(
    operation: Callable[[ElasticsearchEngine], Any],
) -> None:
    with pytest.raises(SearchUnavailable):
        operation(ElasticsearchEngine(UNREACHABLE, timeout=2))


class FakeServer(BaseHTTPRequestHandler):
    """Answers like OpenSearch: no X-Elastic-Product header, and a 406 for
    elasticsearch-py's vendor media type, as OpenSearch does."""

    root: ClassVar[dict[str, Any]] = {}

    def do_GET(self) -> None:
        for header in ("Accept", "Content-Type"):
            if "vnd.elasticsearch" in (self.headers.get(header) or ""):
                self._reply(406, {"error": f"{header} [{self.headers[header]}] is not supported", "status": 406})
                return
        if self.path == "/":
            self._reply(200, self.root)
        elif self.path.startswith("/_cluster/health"):
            self._reply(200, {"cluster_name": "fake", "status": "green"})
        else:
            self._reply(404, {"error": "not found", "status": 404})

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(root: dict[str, Any]) -> Iterator[str]:
    handler = type("Handler", (FakeServer,), {"root": root})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def opensearch_url() -> Iterator[str]:
    yield from serve({"version": {"distribution": "opensearch", "number": "2.19.1"}, "tagline": "OpenSearch"})


@pytest.fixture
def other_server_url() -> Iterator[str]:
    yield from serve({"hello": "I am not a search engine"})


def test_plain_json_and_no_product_header_work_with_opensearch(opensearch_url: str) -> None:
    health = ElasticsearchEngine(opensearch_url).health()
    assert health.ok, health.detail


def test_a_server_that_is_not_a_search_engine_is_refused(other_server_url: str) -> None:
    engine = ElasticsearchEngine(other_server_url)
    assert not engine.health().ok
    with pytest.raises(SearchEngineError):
        engine.current_index("gongkai")
