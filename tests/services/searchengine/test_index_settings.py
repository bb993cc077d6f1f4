import json
from pathlib import Path

from services.searchengine.elastic import index_settings

SETTINGS_FILE = Path(__file__).resolve().parents[3] / "deploy" / "elasticsearch" / "index-settings.json"


def test_deployed_index_settings_match_the_code() -> None:
    """Regenerate with: python -m services.searchengine.elastic > deploy/elasticsearch/index-settings.json"""
    assert json.loads(SETTINGS_FILE.read_text(encoding="utf-8")) == index_settings()


def test_index_settings_keep_both_chinese_forms() -> None:
    settings = index_settings()
    analyzers = settings["settings"]["analysis"]["analyzer"]
    assert "cjk_bigram" in analyzers["cjk"]["filter"]
    assert analyzers["gongkai_whitespace"]["tokenizer"] == "whitespace"
    properties = settings["mappings"]["properties"]
    assert properties["title"]["analyzer"] == properties["body"]["analyzer"] == "cjk"
    assert properties["title_seg"]["analyzer"] == properties["body_seg"]["analyzer"] == "gongkai_whitespace"
    assert properties["published_at"]["type"] == "date"
    assert properties["suggest"]["type"] == "completion"
