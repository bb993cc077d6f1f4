import json
from pathlib import Path
from typing import Any

import pytest

from services.searchengine.elastic import ElasticsearchEngine, index_settings

SETTINGS_FILE = Path(__file__).resolve().parents[3] / "deploy" / "elasticsearch" / "index-settings.json"


def test_deployed_index_settings_match_the_code() -> None:
    """Regenerate with: python -m services.searchengine.elastic > deploy/elasticsearch/index-settings.json"""
    assert json.loads(SETTINGS_FILE.read_text(encoding="utf-8")) == index_settings()


class _Indices:
    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []

    def get_alias(self, **_: Any) -> Any:
        return type("Found", (), {"body": {}})()

    def create(self, index: str, **body: Any) -> None:
        self.created.append({"index": index, **body})


class _Client:
    def __init__(self) -> None:
        self.indices = _Indices()


def test_new_indices_are_created_with_exactly_the_deployed_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = ElasticsearchEngine("http://127.0.0.1:9200")
    client = _Client()
    monkeypatch.setattr(engine, "_es", lambda: client)
    name = engine.create_index("gongkai_content")
    (sent,) = client.indices.created
    assert sent.pop("index") == name
    assert sent == json.loads(SETTINGS_FILE.read_text(encoding="utf-8"))


def test_index_settings_keep_both_chinese_forms() -> None:
    settings = index_settings()
    analyzers = settings["settings"]["analysis"]["analyzer"]
    assert "cjk_bigram" in analyzers["gongkai_cjk"]["filter"]
    assert analyzers["gongkai_whitespace"]["tokenizer"] == "whitespace"
    properties = settings["mappings"]["properties"]
    assert properties["title"]["analyzer"] == properties["body"]["analyzer"] == "gongkai_cjk"
    assert properties["title_seg"]["analyzer"] == properties["body_seg"]["analyzer"] == "gongkai_whitespace"
    assert properties["published_at"]["type"] == "date"
    keywords = ("doc_type", "department", "level", "form", "category", "validity")
    assert {properties[name]["type"] for name in keywords} == {"keyword"}
    assert properties["suggest"]["type"] == "completion"
    assert properties["suggest"]["contexts"] == [{"name": "doc_type", "type": "category", "path": "doc_type"}]


def test_custom_analysis_does_not_shadow_built_in_names() -> None:
    """Elasticsearch lets a custom analyzer named like a built-in one (``cjk``) replace it,
    which confuses anyone reading the mapping; ours carry a prefix."""
    analysis = index_settings()["settings"]["analysis"]
    assert all(name.startswith("gongkai_") for name in analysis["analyzer"])
