from pathlib import Path

import pytest

from services.searchengine.elastic import ElasticsearchEngine
from services.searchengine.factory import make_search_engine, validate_search_url
from services.searchengine.fts import FtsSearchEngine
from services.searchengine.port import SearchEngine


def test_without_a_url_the_embedded_engine_lives_under_the_data_dir(tmp_path: Path) -> None:
    engine = make_search_engine(None, tmp_path)
    assert isinstance(engine, FtsSearchEngine)
    assert isinstance(engine, SearchEngine)
    assert engine.path == tmp_path / "search" / "index.sqlite3"
    assert engine.health().ok


def test_with_a_url_the_engine_is_elasticsearch(tmp_path: Path) -> None:
    engine = make_search_engine("https://es.internal:9200", tmp_path, api_key="a2V5", ca_file="/etc/ca.pem")
    assert isinstance(engine, ElasticsearchEngine)
    assert isinstance(engine, SearchEngine)
    assert engine.url == "https://es.internal:9200"


@pytest.mark.parametrize("url", ["http://127.0.0.1:9200", "https://es.example.cn", " http://es:9200/prefix "])
def test_valid_search_urls(url: str) -> None:
    assert validate_search_url(url) == url.strip()


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("es:9200", "http:// or https://"),
        ("ftp://es.example.cn", "http:// or https://"),
        ("http://", "no host"),
        ("http://es:99999", "malformed"),
        ("http://es:port", "malformed"),
        ("http://es:0", "port 0"),
        ("http://es:9200/?x=1", "query string"),
    ],
)
def test_malformed_search_urls_are_explained(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        validate_search_url(url)
