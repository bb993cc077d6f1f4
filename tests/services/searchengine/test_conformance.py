"""The search port's contract. Every test runs on both adapters (see conftest.py)."""

from __future__ import annotations

import re
import threading
from datetime import UTC, date, datetime, timedelta
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


# -- date ranges and facets ---------------------------------------------------------------


def test_a_date_range_keeps_whole_days_in_china_time(engine: SearchEngine) -> None:
    documents = [
        make_doc("before", title="政务公开通知", published_at="2024-02-29T23:30:00+08:00"),
        make_doc("first-minute", title="政务公开公告", published_at="2024-02-29T16:00:00Z"),  # 03-01 00:00 in China
        make_doc("last-minute", title="政务公开指南", published_at="2024-03-31T23:59:59+08:00"),
        make_doc("after", title="政务公开年报", published_at="2024-03-31T16:00:00Z"),  # 04-01 00:00 in China
        make_doc("undated", title="政务公开目录", published_at=None),
    ]
    index_corpus(engine, documents)
    march = SearchQuery(date_from=date(2024, 3, 1), date_to=date(2024, 3, 31))
    assert ids(engine.search(ALIAS, march)) == ["last-minute", "first-minute"]
    with_text = SearchQuery(text="政务公开", date_from=date(2024, 3, 1), date_to=date(2024, 3, 31))
    assert set(ids(engine.search(ALIAS, with_text))) == {"first-minute", "last-minute"}
    one_day = SearchQuery(date_from=date(2024, 3, 1), date_to=date(2024, 3, 1))
    assert ids(engine.search(ALIAS, one_day)) == ["first-minute"]
    since = engine.search(ALIAS, SearchQuery(date_from=date(2024, 3, 1)))
    assert ids(since) == ["after", "last-minute", "first-minute"]
    until = engine.search(ALIAS, SearchQuery(date_to=date(2024, 2, 29)))
    assert ids(until) == ["before"]
    with pytest.raises(ValueError, match="date_from"):
        SearchQuery(date_from=date(2024, 3, 2), date_to=date(2024, 3, 1))


FACET_CORPUS = [
    *CORPUS,
    make_doc(
        "policy-2",
        title="关于住房公积金缴存基数的通知",
        body="住房公积金缴存基数按上年度职工月平均工资确定。",
        published_at="2019-07-01T09:00:00+08:00",
        department="市住房公积金管理中心",
        level="市级",
        form="通知",
        category="住房保障",
        validity="废止",
    ),
    make_doc(
        "policy-3",
        title="住房公积金贷款管理办法",
        body="住房公积金贷款额度、期限和利率的规定。",
        published_at="2024-06-01T09:00:00+08:00",
        department="市财政局",
        level="市级",
        form="办法",
        category="住房保障",
        validity="有效",
    ),
]


def test_facets_count_every_match_not_just_the_page(engine: SearchEngine) -> None:
    index_corpus(engine, FACET_CORPUS)
    result = engine.search(
        ALIAS, SearchQuery(text="住房公积金", per_page=1, facets=("doc_type", "department", "validity", "form"))
    )
    assert result.total == 4
    assert len(result.hits) == 1
    assert result.facets == {
        "doc_type": {"policy": 3, "interpretation": 1},
        "department": {"市住房公积金管理中心": 3, "市财政局": 1},
        "validity": {"有效": 3, "废止": 1},
        "form": {"通知": 2, "办法": 1, "图解": 1},
    }
    assert list(result.facets["form"]) == ["通知", "办法", "图解"]  # most frequent first, then by value


def test_facets_skip_documents_without_the_field(engine: SearchEngine) -> None:
    index_corpus(engine, FACET_CORPUS)
    result = engine.search(ALIAS, SearchQuery(facets=("doc_type", "level", "validity")))
    assert result.total == len(FACET_CORPUS)
    assert result.facets["doc_type"] == {"policy": 3, "answer": 1, "interpretation": 1, "press_response": 1}
    assert result.facets["level"] == {"市级": 4}  # the answer and the press response have no level
    assert result.facets["validity"] == {"有效": 3, "废止": 1}
    assert engine.search(ALIAS, SearchQuery(text="不存在的词语", facets=("doc_type",))).facets == {"doc_type": {}}


def test_filters_and_facets_combine(engine: SearchEngine) -> None:
    index_corpus(engine, FACET_CORPUS)
    query = SearchQuery(
        text="公积金",
        doc_types=("policy",),
        filters={"validity": "有效"},
        date_from=date(2024, 1, 1),
        facets=("department", "doc_type"),
    )
    result = engine.search(ALIAS, query)
    assert set(ids(result)) == {"policy-1", "policy-3"}
    assert result.facets == {"department": {"市住房公积金管理中心": 1, "市财政局": 1}, "doc_type": {"policy": 2}}
    with pytest.raises(ValueError, match="unknown facets"):
        SearchQuery(facets=("title",))


# -- highlights -----------------------------------------------------------------------------

HOSTILE = make_doc(
    "hostile",
    title='关于<script>alert("x")</script>住房公积金 & 提取的通知',
    summary="<b>摘要</b>：住房公积金 & 租房",
    body="为进一步做好政务公开工作，" * 20
    + "职工可凭<i onclick=x>租房合同提取住房公积金 & 余额。"
    + "其他事项另行通知。" * 10,
    published_at="2024-03-01T10:00:00+08:00",
)


def _without_marks(fragment: str) -> str:
    return fragment.replace("<mark>", "").replace("</mark>", "")


def test_highlights_escape_the_text_then_mark_the_terms(engine: SearchEngine) -> None:
    index_corpus(engine, [HOSTILE])
    (hit,) = engine.search(ALIAS, SearchQuery(text="住房公积金", highlight=True)).hits
    assert set(hit.highlights) == {"title", "summary", "body"}
    assert hit.highlights["title"] == (
        "关于&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;<mark>住房公积金</mark> &amp; 提取的通知"
    )
    assert hit.highlights["summary"] == "&lt;b&gt;摘要&lt;/b&gt;：<mark>住房公积金</mark> &amp; 租房"
    for fragment in hit.highlights.values():
        assert "<" not in _without_marks(fragment) and ">" not in _without_marks(fragment)
    body = hit.highlights["body"]
    assert "<mark>住房公积金</mark>" in body
    assert body.startswith("…职工可凭&lt;i onclick=x&gt;租房合同提取<mark>住房公积金</mark> &amp; 余额。")
    assert body.endswith("…")  # a window, not the whole body
    assert len(_without_marks(body).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")) <= 122
    assert hit.title == HOSTILE["title"]  # the document itself is untouched


def test_highlights_mark_jieba_words_and_bigram_phrases(engine: SearchEngine) -> None:
    index_corpus(engine)
    by_words = engine.search(ALIAS, SearchQuery(text="如何提取住房公积金", highlight=True))
    policy = next(hit for hit in by_words.hits if hit.id == "policy-1")
    assert policy.highlights["title"] == "关于调整<mark>住房公积金</mark><mark>提取</mark>政策的通知".replace(
        "</mark><mark>", ""
    )
    by_substring = engine.search(ALIAS, SearchQuery(text="积金提", highlight=True))
    assert {hit.highlights["title"] for hit in by_substring.hits} == {
        "关于调整住房公<mark>积金提</mark>取政策的通知",
        "《住房公<mark>积金提</mark>取政策》政策解读",
    }
    plain = engine.search(ALIAS, SearchQuery(text="停车收费"))
    assert plain.hits[0].highlights == {}  # only when asked


def test_highlights_without_text_or_match_show_the_beginning(engine: SearchEngine) -> None:
    index_corpus(engine, [HOSTILE])
    (hit,) = engine.search(ALIAS, SearchQuery(highlight=True)).hits
    assert "<mark>" not in "".join(hit.highlights.values())
    assert hit.highlights["body"].startswith("为进一步做好政务公开工作")
    assert hit.highlights["body"].endswith("…")


def test_highlights_are_the_same_on_every_engine(engine: SearchEngine) -> None:
    index_corpus(engine, [*CORPUS, HOSTILE])
    result = engine.search(ALIAS, SearchQuery(text="公积金 提取", highlight=True, synonyms=(("公积金", "住房公积金"),)))
    fragments = {hit.id: hit.highlights for hit in result.hits}
    assert fragments["policy-1"] == {
        "title": "关于调整<mark>住房公积金提取</mark>政策的通知",
        "summary": "调整<mark>住房公积金提取</mark>条件",
        "body": "为支持职工租房和购房，现就<mark>住房公积金提取</mark>有关事项通知如下。",
    }
    assert fragments["hostile"]["body"] == (
        "…职工可凭&lt;i onclick=x&gt;租房合同<mark>提取住房公积金</mark> &amp; 余额。"
        + "其他事项另行通知。" * 9
        + "其他事项另…"
    )


# -- ranking ----------------------------------------------------------------------------------


def test_ranking_is_explained_the_same_way_on_every_engine(engine: SearchEngine) -> None:
    index_corpus(engine)
    result = engine.search(ALIAS, SearchQuery(text="住房公积金", explain=True))
    for hit in result.hits:
        explanation = hit.explanation
        assert explanation is not None
        assert set(explanation) == {"text_score", "recency", "validity", "final"}
        assert explanation["final"] == hit.score
        assert 0.5 <= explanation["recency"] <= 1
        assert explanation["validity"] == 1.0
        product = explanation["text_score"] * explanation["recency"] * explanation["validity"]
        assert product == pytest.approx(explanation["final"], rel=1e-5)
    assert engine.search(ALIAS, SearchQuery(text="住房公积金")).hits[0].explanation is None
    by_date = engine.search(ALIAS, SearchQuery(text="住房公积金", sort="date", explain=True))
    assert all(hit.explanation and hit.explanation["final"] is None for hit in by_date.hits)


def test_recent_documents_rank_above_old_ones_with_the_same_text(engine: SearchEngine) -> None:
    text = {"title": "城乡居民医疗保险缴费标准", "body": "城乡居民医疗保险个人缴费标准按年度公布。"}
    documents = [
        make_doc("old", published_at="2015-01-01T09:00:00+08:00", **text),
        make_doc("new", published_at=datetime.now(UTC).isoformat(), **text),
        make_doc("undated", published_at=None, **text),
    ]
    index_corpus(engine, documents)
    result = engine.search(ALIAS, SearchQuery(text="医疗保险", explain=True))
    assert ids(result) == ["new", "old", "undated"]
    new, old, undated = result.hits
    assert new.score and old.score and undated.score
    assert new.score > old.score > undated.score  # the scores differ, not only the tie-break
    assert new.explanation and old.explanation and undated.explanation
    assert new.explanation["text_score"] == pytest.approx(old.explanation["text_score"], rel=1e-5)
    assert new.explanation["recency"] == pytest.approx(1.0, abs=1e-3)
    assert 0.5 < old.explanation["recency"] < 0.75  # gentle: an old policy is not buried
    assert undated.explanation["recency"] == 0.5


def test_valid_policies_rank_above_expired_ones(engine: SearchEngine) -> None:
    text = {"title": "关于规范行政事业性收费的通知", "body": "行政事业性收费项目目录向社会公开。"}
    documents = [
        make_doc("a-repealed", validity="废止", **text),  # would win the tie-break on id
        make_doc("b-expired", validity="失效", **text),
        make_doc("c-valid", validity="有效", **text),
        make_doc("d-amended", validity="已修订", **text),
    ]
    index_corpus(engine, documents)
    result = engine.search(ALIAS, SearchQuery(text="行政事业性收费", explain=True))
    assert ids(result) == ["c-valid", "d-amended", "a-repealed", "b-expired"]
    scores = [hit.score or 0.0 for hit in result.hits]
    assert scores[0] == pytest.approx(scores[1]) and scores[2] == pytest.approx(scores[3])
    assert scores[2] == pytest.approx(scores[0] / 2, rel=1e-5)
    assert [hit.explanation and hit.explanation["validity"] for hit in result.hits] == [1.0, 1.0, 0.5, 0.5]


def test_recency_is_gentle_a_two_year_old_title_match_beats_a_new_body_mention(engine: SearchEngine) -> None:
    now = datetime.now(UTC)
    documents = [
        make_doc(
            "old-title",
            title="公积金缴存基数调整说明",
            body="今年的缴存基数按上年度职工月平均工资确定。",
            published_at=(now - timedelta(days=730)).isoformat(),
        ),
        make_doc(
            "new-body",
            title="关于做好今年职工福利工作的通知",
            body="各单位要做好职工福利保障工作，按时足额缴存社会保险和公积金，落实带薪休假制度，关心困难职工生活。",
            published_at=now.isoformat(),
        ),
    ]
    index_corpus(engine, documents)
    result = engine.search(ALIAS, SearchQuery(text="公积金", explain=True))
    assert ids(result) == ["old-title", "new-body"]
    old = result.hits[0].explanation
    assert old is not None
    assert old["recency"] == pytest.approx(0.75, abs=1e-3)


# -- synonyms -----------------------------------------------------------------------------------

SYNONYM_CORPUS = [
    make_doc("short-name", title="公积金缴存基数调整说明", body="缴存基数按上年度职工月平均工资确定。"),
    make_doc("long-name", title="住房公积金提取指南", body="职工提取住房公积金的条件和材料。"),
    make_doc("medical", title="医疗保险报销流程", body="参保人员医疗保险报销需要携带社保卡。"),
    make_doc("unrelated", title="停车收费标准", body="停车收费标准已公示。"),
]
GROUPS = (("公积金", "住房公积金"), ("医保", "医疗保险"))


def test_synonyms_let_a_query_term_match_any_member_of_its_group(engine: SearchEngine) -> None:
    index_corpus(engine, SYNONYM_CORPUS)
    assert ids(engine.search(ALIAS, SearchQuery(text="住房公积金"))) == ["long-name"]
    expanded = engine.search(ALIAS, SearchQuery(text="住房公积金", synonyms=GROUPS))
    assert set(ids(expanded)) == {"short-name", "long-name"}
    assert ids(engine.search(ALIAS, SearchQuery(text="医保报销"))) == []
    with_synonyms = engine.search(ALIAS, SearchQuery(text="医保报销", synonyms=GROUPS, highlight=True))
    assert ids(with_synonyms) == ["medical"]
    assert with_synonyms.hits[0].highlights["title"] == "<mark>医疗保险报销</mark>流程"
    assert ids(engine.search(ALIAS, SearchQuery(text="医保", synonyms=GROUPS))) == ["medical"]


def test_synonyms_change_nothing_for_other_queries(engine: SearchEngine) -> None:
    index_corpus(engine, SYNONYM_CORPUS)
    assert ids(engine.search(ALIAS, SearchQuery(text="停车", synonyms=GROUPS))) == ["unrelated"]
    assert ids(engine.search(ALIAS, SearchQuery(text="医保", synonyms=(("医保",),)))) == []  # a group of one
    mixed = engine.search(ALIAS, SearchQuery(text="住房公积金 提取", synonyms=GROUPS))
    assert ids(mixed) == ["long-name"]  # every part of the query must still match


# -- suggestions --------------------------------------------------------------------------------

SUGGEST_CORPUS = [
    make_doc("guide", title="住房公积金提取指南", published_at="2024-03-01T09:00:00+08:00"),
    make_doc("loan", doc_type="answer", title="住房公积金贷款咨询答复", published_at="2023-05-01T09:00:00+08:00"),
    make_doc("inner", title="关于调整住房公积金提取政策的通知", published_at="2024-05-01T09:00:00+08:00"),
    make_doc("subsidy", doc_type="answer", title="住房补贴发放答复", published_at=None),
    make_doc("parking", title="停车收费标准", published_at="2024-06-01T09:00:00+08:00"),
    make_doc("latin", title="ＧＯＶ网站年度报表", published_at="2024-01-01T09:00:00+08:00"),
]


def test_suggest_completes_titles_starts_first_then_newest(engine: SearchEngine) -> None:
    index_corpus(engine, SUGGEST_CORPUS)
    suggestions = engine.suggest(ALIAS, "住房")
    assert [s.doc_id for s in suggestions] == ["guide", "loan", "subsidy", "inner"]
    first = suggestions[0]
    assert (first.text, first.doc_type, first.url) == ("住房公积金提取指南", "policy", SUGGEST_CORPUS[0]["url"])
    assert [s.doc_id for s in engine.suggest(ALIAS, "住房公积金提")] == ["guide", "inner"]
    assert [s.doc_id for s in engine.suggest(ALIAS, "提取")] == ["inner", "guide"]  # word starts inside titles
    assert [s.doc_id for s in engine.suggest(ALIAS, "住房", limit=2)] == ["guide", "loan"]


def test_suggest_filters_types_normalises_and_ignores_empty_prefixes(engine: SearchEngine) -> None:
    index_corpus(engine, SUGGEST_CORPUS)
    assert [s.doc_id for s in engine.suggest(ALIAS, "住房", doc_types=("answer",))] == ["loan", "subsidy"]
    assert [s.doc_id for s in engine.suggest(ALIAS, " gov网")] == ["latin"]  # width and case folded
    assert engine.suggest(ALIAS, "   ") == []
    assert engine.suggest(ALIAS, "公积金贷款") == []  # inside a word: not a word start
    with pytest.raises(ValueError, match="limit"):
        engine.suggest(ALIAS, "住房", limit=0)
    with pytest.raises(ValueError, match="doc_types"):
        engine.suggest(ALIAS, "住房", doc_types=("memo",))


def test_deleted_documents_are_never_suggested(engine: SearchEngine) -> None:
    index_corpus(engine, SUGGEST_CORPUS)
    assert engine.delete_document(ALIAS, "guide", version=2)
    assert engine.index_document(ALIAS, "loan", {**SUGGEST_CORPUS[1], "title": "公积金贷款咨询答复"}, version=2)
    engine.refresh(ALIAS)
    assert [s.doc_id for s in engine.suggest(ALIAS, "住房")] == ["subsidy", "inner"]
    assert [s.doc_id for s in engine.suggest(ALIAS, "公积金贷款")] == ["loan"]
    with pytest.raises(SearchEngineError):
        engine.suggest("missing", "住房")


# -- related documents ----------------------------------------------------------------------------

RELATED_CORPUS = [
    *CORPUS,
    make_doc(
        "policy-2",
        title="住房公积金贷款政策调整通知",
        body="职工申请住房公积金贷款购买首套住房的，贷款额度提高，提取政策同步调整。",
        published_at="2024-01-10T09:00:00+08:00",
    ),
    make_doc(
        "answer-2",
        doc_type="answer",
        title="小区停车位收费咨询答复",
        body="小区停车收费标准由物业管理部门公示，业主可咨询物业。",
        published_at="2024-02-11T09:00:00+08:00",
    ),
]


def test_related_finds_documents_sharing_words_never_itself(engine: SearchEngine) -> None:
    index_corpus(engine, RELATED_CORPUS)
    related = engine.related(ALIAS, "policy-1")
    related_ids = ids(SearchResult(len(related), related))
    assert related_ids[:2] == ["interp-1", "policy-2"] or related_ids[:2] == ["policy-2", "interp-1"]
    assert "policy-1" not in related_ids
    assert not {"answer-1", "answer-2", "press-1"} & set(related_ids)
    assert all(hit.score and hit.score > 0 for hit in related)
    parking = engine.related(ALIAS, "answer-1")
    assert [hit.id for hit in parking] == ["answer-2"]
    assert engine.related(ALIAS, "answer-1", doc_types=("policy",)) == []
    assert [hit.id for hit in engine.related(ALIAS, "policy-1", limit=1)] == related_ids[:1]


def test_related_skips_deleted_documents_and_unknown_ids(engine: SearchEngine) -> None:
    index_corpus(engine, RELATED_CORPUS)
    assert engine.delete_document(ALIAS, "answer-2", version=2)
    engine.refresh(ALIAS)
    assert "answer-2" not in [hit.id for hit in engine.related(ALIAS, "answer-1")]
    assert engine.related(ALIAS, "answer-2") == []  # deleted itself
    assert engine.related(ALIAS, "nobody") == []
    with pytest.raises(ValueError, match="limit"):
        engine.related(ALIAS, "policy-1", limit=0)
