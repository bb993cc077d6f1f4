"""The search port's contract. Every test runs on both adapters (see conftest.py)."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest

from services.searchengine.port import (
    SearchEngine,
    SearchEngineError,
    SearchQuery,
    SearchResult,
)

ALIAS = "gongkai"


def make_doc(doc_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": doc_id,
        "doc_type": "policy",
        "title": "",
        "summary": "",
        "body": "",
        "url": f"https://gov.example.cn/docs/{doc_id}",
        "published_at": "2024-01-01T09:00:00+08:00",
        **fields,
    }


CORPUS = [
    make_doc(
        "policy-1",
        title="关于调整住房公积金提取政策的通知",
        summary="调整住房公积金提取条件",
        body="为支持职工租房和购房，现就住房公积金提取有关事项通知如下。",
        published_at="2024-03-01T10:00:00+08:00",
        department="市住房公积金管理中心",
        level="市级",
        form="通知",
        category="住房保障",
        validity="有效",
        index_no="002986088/2024-00012",
    ),
    make_doc(
        "interp-1",
        doc_type="interpretation",
        title="《住房公积金提取政策》政策解读",
        summary="一图读懂提取新政",
        body="本次调整放宽了租房提取额度，简化了办理材料。",
        published_at="2024-03-05T09:30:00+08:00",
        department="市住房公积金管理中心",
        level="市级",
        form="图解",
        category="住房保障",
        validity="有效",
    ),
    make_doc(
        "answer-1",
        doc_type="answer",
        title="关于小区停车收费的咨询答复",
        summary="停车收费标准答复",
        body="经核实，该小区停车收费标准已按规定公示，业主可向物业管理部门了解详情。",
        published_at="2024-02-10T15:00:00+08:00",
        department="市发展改革委",
        category="城乡建设",
    ),
    make_doc(
        "press-1",
        doc_type="press_response",
        title="关于网传养老保险调整的回应",
        summary="回应关切",
        body="近日网上流传养老保险待遇调整消息，经核实不属实，请以官方发布为准。",
        published_at="2024-02-20T12:00:00Z",
        department="市人社局",
        category="社会保障",
    ),
]


def index_corpus(engine: SearchEngine, documents: list[dict[str, Any]] = CORPUS) -> None:
    engine.ensure_alias(ALIAS)
    for document in documents:
        assert engine.index_document(ALIAS, document["id"], document, version=1)
    engine.refresh(ALIAS)


def ids(result: SearchResult) -> list[str]:
    return [hit.id for hit in result.hits]


# -- health, indices, aliases ------------------------------------------------------------


def test_health_is_ok(engine: SearchEngine) -> None:
    health = engine.health()
    assert health.ok, health.detail
    assert health.detail


def test_ensure_alias_is_idempotent(engine: SearchEngine) -> None:
    first = engine.ensure_alias(ALIAS)
    assert re.fullmatch(r"gongkai-v1-\d{14}", first)
    assert engine.ensure_alias(ALIAS) == first
    assert engine.current_index(ALIAS) == first
    assert engine.list_indices(ALIAS) == [first]


def test_current_index_of_a_missing_alias_is_none(engine: SearchEngine) -> None:
    assert engine.current_index(ALIAS) is None
    assert engine.list_indices(ALIAS) == []
    assert engine.prune(ALIAS) == []


def test_create_index_numbers_versions_and_leaves_the_alias_alone(engine: SearchEngine) -> None:
    first = engine.ensure_alias(ALIAS)
    second = engine.create_index(ALIAS)
    third = engine.create_index(ALIAS)
    assert re.fullmatch(r"gongkai-v2-\d{14}", second)
    assert re.fullmatch(r"gongkai-v3-\d{14}", third)
    assert engine.current_index(ALIAS) == first
    assert engine.list_indices(ALIAS) == [first, second, third]


def test_readers_see_the_old_index_until_the_swap_then_the_new(engine: SearchEngine) -> None:
    old = engine.ensure_alias(ALIAS)
    engine.index_document(ALIAS, "old-doc", make_doc("old-doc", title="旧索引中的政策"), version=1)
    engine.refresh(ALIAS)
    new = engine.create_index(ALIAS)
    engine.index_document(new, "new-doc", make_doc("new-doc", title="新索引中的政策"), version=1)
    engine.refresh(new)
    assert ids(engine.search(ALIAS, SearchQuery())) == ["old-doc"]

    seen: set[tuple[str, ...]] = set()
    stop = threading.Event()

    def read_continuously() -> None:
        while not stop.is_set():
            seen.add(tuple(ids(engine.search(ALIAS, SearchQuery()))))

    reader = threading.Thread(target=read_continuously)
    reader.start()
    try:
        assert engine.swap_alias(ALIAS, new) == old
    finally:
        stop.set()
        reader.join()

    assert seen <= {("old-doc",), ("new-doc",)}  # never empty, never a mix
    assert engine.current_index(ALIAS) == new
    assert ids(engine.search(ALIAS, SearchQuery())) == ["new-doc"]
    assert engine.list_indices(ALIAS) == [old, new]  # the old index stays until pruned
    assert engine.get_document(old, "old-doc") is not None


def test_swap_alias_rejects_an_index_of_another_alias(engine: SearchEngine) -> None:
    engine.ensure_alias(ALIAS)
    other = engine.ensure_alias("other")
    with pytest.raises(SearchEngineError):
        engine.swap_alias(ALIAS, other)


def test_prune_removes_only_versions_older_than_the_current_one(engine: SearchEngine) -> None:
    first = engine.ensure_alias(ALIAS)
    second = engine.create_index(ALIAS)
    engine.swap_alias(ALIAS, second)
    rebuilding = engine.create_index(ALIAS)  # newer than the alias: a rebuild in progress

    assert engine.prune(ALIAS) == [first]
    assert engine.list_indices(ALIAS) == [second, rebuilding]
    assert engine.current_index(ALIAS) == second
    assert engine.prune(ALIAS) == []


def test_prune_keeps_previous_versions_for_rollback(engine: SearchEngine) -> None:
    first = engine.ensure_alias(ALIAS)
    second = engine.create_index(ALIAS)
    third = engine.create_index(ALIAS)
    engine.swap_alias(ALIAS, third)

    assert engine.prune(ALIAS, keep=2) == [first]
    assert engine.list_indices(ALIAS) == [second, third]


def test_drop_index_refuses_the_index_behind_the_alias(engine: SearchEngine) -> None:
    current = engine.ensure_alias(ALIAS)
    spare = engine.create_index(ALIAS)
    with pytest.raises(SearchEngineError):
        engine.drop_index(current)
    engine.drop_index(spare)
    engine.drop_index(spare)  # already gone: nothing to do
    assert engine.list_indices(ALIAS) == [current]


def test_unknown_targets_are_errors(engine: SearchEngine) -> None:
    with pytest.raises(SearchEngineError):
        engine.index_document("missing", "x", make_doc("x", title="标题"), version=1)
    with pytest.raises(SearchEngineError):
        engine.search("missing", SearchQuery(text="标题"))
    with pytest.raises(SearchEngineError):
        engine.count("missing")


# -- documents and versions -------------------------------------------------------------


def test_index_get_count_round_trip_with_chinese_text(engine: SearchEngine) -> None:
    index_corpus(engine)
    stored = engine.get_document(ALIAS, "policy-1")
    assert stored == {**CORPUS[0], "_version": 1}
    assert stored["index_no"] == "002986088/2024-00012"  # unknown keys come back as-is
    assert engine.get_document(ALIAS, "nobody") is None
    assert engine.count(ALIAS) == len(CORPUS)


def test_writes_through_the_alias_and_the_index_meet(engine: SearchEngine) -> None:
    index = engine.ensure_alias(ALIAS)
    engine.index_document(index, "p", make_doc("p", title="政务公开"), version=1)
    assert engine.get_document(ALIAS, "p") == engine.get_document(index, "p")


def test_a_stale_version_is_ignored(engine: SearchEngine) -> None:
    engine.ensure_alias(ALIAS)
    assert engine.index_document(ALIAS, "p", make_doc("p", title="第五版"), version=5)
    assert not engine.index_document(ALIAS, "p", make_doc("p", title="第四版"), version=4)
    assert not engine.index_document(ALIAS, "p", make_doc("p", title="又一个第五版"), version=5)
    assert engine.get_document(ALIAS, "p") == {**make_doc("p", title="第五版"), "_version": 5}
    assert engine.index_document(ALIAS, "p", make_doc("p", title="第六版"), version=6)
    stored = engine.get_document(ALIAS, "p")
    assert stored is not None
    assert (stored["title"], stored["_version"]) == ("第六版", 6)


def test_a_delete_then_a_stale_reindex_is_ignored(engine: SearchEngine) -> None:
    index_corpus(engine)
    assert engine.delete_document(ALIAS, "policy-1", version=2)
    engine.refresh(ALIAS)
    assert engine.get_document(ALIAS, "policy-1") is None

    assert not engine.index_document(ALIAS, "policy-1", CORPUS[0], version=1)
    assert not engine.index_document(ALIAS, "policy-1", CORPUS[0], version=2)  # the delete wins a tie
    engine.refresh(ALIAS)
    assert engine.get_document(ALIAS, "policy-1") is None
    assert engine.count(ALIAS) == len(CORPUS) - 1
    assert engine.count(ALIAS, doc_type="policy") == 0
    assert "policy-1" not in ids(engine.search(ALIAS, SearchQuery(text="住房公积金")))

    assert engine.index_document(ALIAS, "policy-1", CORPUS[0], version=3)  # a newer write restores it
    assert engine.get_document(ALIAS, "policy-1") == {**CORPUS[0], "_version": 3}


def test_a_stale_delete_is_ignored(engine: SearchEngine) -> None:
    engine.ensure_alias(ALIAS)
    engine.index_document(ALIAS, "p", make_doc("p", title="政策"), version=5)
    assert not engine.delete_document(ALIAS, "p", version=4)
    assert engine.get_document(ALIAS, "p") is not None
    assert engine.delete_document(ALIAS, "p", version=5)
    assert engine.delete_document(ALIAS, "p", version=5)  # repeating a delete is harmless
    assert engine.get_document(ALIAS, "p") is None


def test_a_delete_that_arrives_before_the_document_wins(engine: SearchEngine) -> None:
    engine.ensure_alias(ALIAS)
    assert engine.delete_document(ALIAS, "late", version=3)
    assert not engine.index_document(ALIAS, "late", make_doc("late", title="迟到的事件"), version=2)
    engine.refresh(ALIAS)
    assert engine.get_document(ALIAS, "late") is None
    assert engine.count(ALIAS) == 0


def test_count_by_doc_type(engine: SearchEngine) -> None:
    index_corpus(engine)
    assert engine.count(ALIAS, doc_type="policy") == 1
    assert engine.count(ALIAS, doc_type="interpretation") == 1
    assert engine.count(ALIAS, doc_type="answer") == 1
    assert engine.count(ALIAS, doc_type="press_response") == 1
    with pytest.raises(ValueError, match="doc_type"):
        engine.count(ALIAS, doc_type="memo")


def test_invalid_documents_are_rejected_before_reaching_the_engine(engine: SearchEngine) -> None:
    engine.ensure_alias(ALIAS)
    with pytest.raises(ValueError, match="doc_type"):
        engine.index_document(ALIAS, "x", make_doc("x", doc_type="memo"), version=1)
    with pytest.raises(ValueError, match="reserved"):
        engine.index_document(ALIAS, "x", make_doc("x", title_seg="自己算"), version=1)
    with pytest.raises(ValueError, match="differs"):
        engine.index_document(ALIAS, "x", make_doc("y"), version=1)
    with pytest.raises(ValueError, match="ISO 8601"):
        engine.index_document(ALIAS, "x", make_doc("x", published_at="上周三"), version=1)
    with pytest.raises(ValueError, match="version"):
        engine.index_document(ALIAS, "x", make_doc("x"), version=-1)
    assert engine.count(ALIAS) == 0


# -- search -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("住房公积金", {"policy-1", "interp-1"}),  # a jieba word (user dictionary)
        ("政策解读", {"interp-1"}),
        ("如何提取住房公积金", {"policy-1", "interp-1"}),  # words, not the whole phrase
        ("养老保险 回应", {"press-1"}),
        ("公积", {"policy-1", "interp-1"}),  # 2-character substring inside a word
        ("积金提", {"policy-1", "interp-1"}),  # 3 characters across two words
        ("停车收费", {"answer-1"}),
        ("不存在的词语", set()),
    ],
)
def test_search_finds_chinese_documents(engine: SearchEngine, text: str, expected: set[str]) -> None:
    index_corpus(engine)
    result = engine.search(ALIAS, SearchQuery(text=text))
    assert set(ids(result)) == expected
    assert result.total == len(expected)


def test_search_hits_carry_the_document(engine: SearchEngine) -> None:
    index_corpus(engine)
    (hit,) = engine.search(ALIAS, SearchQuery(text="停车收费")).hits
    assert (hit.id, hit.doc_type, hit.title, hit.summary, hit.url, hit.published_at) == (
        "answer-1",
        "answer",
        CORPUS[2]["title"],
        CORPUS[2]["summary"],
        CORPUS[2]["url"],
        CORPUS[2]["published_at"],
    )
    assert hit.document == CORPUS[2]
    assert hit.score is not None
    assert hit.score > 0


def test_a_title_match_ranks_above_a_body_only_match(engine: SearchEngine) -> None:
    body_only = make_doc(
        "body-only",
        title="关于做好今年职工福利工作的通知",
        body="各单位要做好职工福利保障工作，按时足额缴存社会保险和公积金，落实带薪休假制度，关心困难职工生活。",
        published_at="2024-05-01T09:00:00+08:00",  # newer, so a tie would put it first
    )
    in_title = make_doc(
        "in-title",
        title="公积金缴存基数调整说明",
        body="今年的缴存基数按上年度职工月平均工资确定，上下限同步调整。",
        published_at="2024-01-01T09:00:00+08:00",
    )
    index_corpus(engine, [body_only, in_title])
    result = engine.search(ALIAS, SearchQuery(text="公积金"))
    assert ids(result) == ["in-title", "body-only"]
    title_score, body_score = (hit.score or 0.0 for hit in result.hits)
    assert title_score > body_score > 0


def test_filters_by_doc_type_and_keyword_fields(engine: SearchEngine) -> None:
    index_corpus(engine)
    by_type = engine.search(ALIAS, SearchQuery(text="住房公积金", doc_types=("interpretation",)))
    assert ids(by_type) == ["interp-1"]
    several_types = engine.search(ALIAS, SearchQuery(doc_types=("answer", "press_response")))
    assert set(ids(several_types)) == {"answer-1", "press-1"}
    by_department = engine.search(ALIAS, SearchQuery(filters={"department": "市住房公积金管理中心"}))
    assert set(ids(by_department)) == {"policy-1", "interp-1"}
    combined = engine.search(ALIAS, SearchQuery(text="提取", filters={"form": "图解", "validity": "有效"}))
    assert ids(combined) == ["interp-1"]
    assert engine.search(ALIAS, SearchQuery(filters={"department": "市住房"})).total == 0  # exact only
    with pytest.raises(ValueError, match="unknown filters"):
        SearchQuery(filters={"title": "政策"})


def test_date_sort_is_newest_first_and_undated_last(engine: SearchEngine) -> None:
    documents = [
        make_doc("beijing-morning", title="政务公开通知", published_at="2024-03-01T01:00:00+08:00"),
        make_doc("utc-evening", title="政务公开公告", published_at="2024-02-29T20:00:00Z"),
        make_doc("undated", title="政务公开指南", published_at=None),
        make_doc("older", title="政务公开年报", published_at="2023-12-31"),
    ]
    index_corpus(engine, documents)
    result = engine.search(ALIAS, SearchQuery(text="政务公开", sort="date"))
    # 2024-03-01T01:00+08:00 is 2024-02-29T17:00Z, three hours before the UTC evening.
    assert ids(result) == ["utc-evening", "beijing-morning", "older", "undated"]
    assert all(hit.score is None for hit in result.hits)


def test_paging(engine: SearchEngine) -> None:
    documents = [
        make_doc(f"notice-{n:02d}", title=f"第{n}号公告", published_at=f"2024-01-{n:02d}T09:00:00+08:00")
        for n in range(1, 26)
    ]
    index_corpus(engine, documents)
    pages = [engine.search(ALIAS, SearchQuery(text="公告", page=page, per_page=10)) for page in (1, 2, 3, 4)]
    assert [result.total for result in pages] == [25, 25, 25, 25]
    assert [len(result.hits) for result in pages] == [10, 10, 5, 0]
    seen = [doc_id for result in pages for doc_id in ids(result)]
    assert sorted(seen) == sorted(doc["id"] for doc in documents)


def test_empty_query_lists_everything_by_date(engine: SearchEngine) -> None:
    index_corpus(engine)
    expected = ["interp-1", "policy-1", "press-1", "answer-1"]
    for text in ("", "  ", "，。"):
        result = engine.search(ALIAS, SearchQuery(text=text, sort="relevance"))
        assert ids(result) == expected
        assert result.total == len(CORPUS)
    assert ids(engine.search(ALIAS, SearchQuery(per_page=2, page=2))) == expected[2:]


def test_equal_scores_fall_back_to_date_then_id(engine: SearchEngine) -> None:
    same = {"title": "信息公开指南", "published_at": "2024-01-01T00:00:00Z"}
    documents = [make_doc(doc_id, **same) for doc_id in ("b", "a", "c")]
    documents.append(make_doc("newer", title="信息公开指南", published_at="2024-06-01T00:00:00Z"))
    index_corpus(engine, documents)
    assert ids(engine.search(ALIAS, SearchQuery(text="信息公开指南"))) == ["newer", "a", "b", "c"]


@pytest.mark.parametrize("text", ['"公积金"', "公积金*", "(公积金)", ":公积金", "{公积金}", "公积金^2"])
def test_query_syntax_characters_are_plain_text(engine: SearchEngine, text: str) -> None:
    index_corpus(engine)
    assert set(ids(engine.search(ALIAS, SearchQuery(text=text)))) >= {"policy-1", "interp-1"}


@pytest.mark.parametrize(
    "text", ["NOT 公积金", "公积金 AND OR", "- 公积金", "公积金 NEAR(a b)", "title:公积金", "{title_seg}: 公积金"]
)
def test_query_operators_are_not_interpreted(engine: SearchEngine, text: str) -> None:
    index_corpus(engine)
    result = engine.search(ALIAS, SearchQuery(text=text))
    assert set(ids(result)) <= {doc["id"] for doc in CORPUS}
