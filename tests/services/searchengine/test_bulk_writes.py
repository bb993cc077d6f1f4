"""``index_documents`` (a rebuild's batch write) against both adapters: the same version rules
and the same stored, searchable and suggestible documents as one ``index_document`` per document."""

from __future__ import annotations

import pytest

from services.searchengine.port import SearchEngine, SearchQuery
from tests.services.searchengine.test_conformance import ALIAS, CORPUS, ids, make_doc


def test_a_batch_stores_what_single_writes_store(engine: SearchEngine) -> None:
    engine.ensure_alias(ALIAS)
    results = engine.index_documents(ALIAS, [(document["id"], document, 1) for document in CORPUS])
    engine.refresh(ALIAS)

    assert results == [True] * len(CORPUS)
    for document in CORPUS:
        assert engine.get_document(ALIAS, document["id"]) == {**document, "_version": 1}
    assert engine.count(ALIAS) == len(CORPUS)
    assert engine.count(ALIAS, doc_type="policy") == 1
    assert set(ids(engine.search(ALIAS, SearchQuery(text="住房公积金")))) == {"policy-1", "interp-1"}
    assert set(ids(engine.search(ALIAS, SearchQuery(text="停车收费")))) == {"answer-1"}
    assert [suggestion.doc_id for suggestion in engine.suggest(ALIAS, "关于小区")] == ["answer-1"]


def test_a_batch_keeps_the_version_rules_per_document(engine: SearchEngine) -> None:
    engine.ensure_alias(ALIAS)
    assert engine.index_document(ALIAS, "newer", make_doc("newer", title="第五版"), version=5)
    assert engine.delete_document(ALIAS, "deleted", version=3)

    results = engine.index_documents(ALIAS, [
        ("newer", make_doc("newer", title="第四版"), 4),  # older than what is stored
        ("deleted", make_doc("deleted", title="迟到的事件"), 3),  # a delete wins a tie
        ("fresh", make_doc("fresh", title="新文件"), 1),
        ("twice", make_doc("twice", title="第一版"), 1),
        ("twice", make_doc("twice", title="第二版"), 2),  # later in the same batch and newer
        ("twice", make_doc("twice", title="旧版"), 1),  # later in the same batch but stale
    ])
    engine.refresh(ALIAS)

    assert results == [False, False, True, True, True, False]
    newer = engine.get_document(ALIAS, "newer")
    assert newer is not None and (newer["title"], newer["_version"]) == ("第五版", 5)
    assert engine.get_document(ALIAS, "deleted") is None
    twice = engine.get_document(ALIAS, "twice")
    assert twice is not None and (twice["title"], twice["_version"]) == ("第二版", 2)
    assert engine.count(ALIAS) == 3


def test_a_batch_replaces_older_versions_text(engine: SearchEngine) -> None:
    engine.ensure_alias(ALIAS)
    engine.index_document(ALIAS, "p", make_doc("p", title="住房公积金提取"), version=1)
    assert engine.index_documents(ALIAS, [("p", make_doc("p", title="养老保险待遇"), 2)]) == [True]
    engine.refresh(ALIAS)

    assert ids(engine.search(ALIAS, SearchQuery(text="养老保险"))) == ["p"]
    assert ids(engine.search(ALIAS, SearchQuery(text="住房公积金"))) == []


def test_one_invalid_document_writes_none_of_the_batch(engine: SearchEngine) -> None:
    engine.ensure_alias(ALIAS)
    with pytest.raises(ValueError, match="doc_type"):
        engine.index_documents(ALIAS, [
            ("good", make_doc("good", title="有效的文件"), 1),
            ("bad", make_doc("bad", doc_type="memo"), 1),
        ])
    with pytest.raises(ValueError, match="version"):
        engine.index_documents(ALIAS, [("good", make_doc("good", title="有效的文件"), -1)])
    engine.refresh(ALIAS)
    assert engine.count(ALIAS) == 0
    assert engine.get_document(ALIAS, "good") is None


def test_an_empty_batch_writes_nothing(engine: SearchEngine) -> None:
    engine.ensure_alias(ALIAS)
    assert engine.index_documents(ALIAS, []) == []
    assert engine.count(ALIAS) == 0
