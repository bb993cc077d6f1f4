"""``GET /api/search``, ``/api/search/suggest`` and ``/api/search/related/<doc_id>`` as a client sees them.

Documents are written straight into the suite's (fresh, per-test) index through the search port,
the way the indexing tasks write them; the engine's own behaviours (matching, ranking, highlights,
facets, synonyms) are covered by the conformance suite on both adapters, so these tests check what
the query side adds: validation, the answer's shape, labels, safe highlights, the staff debug mode,
suggestions from the query log, and that no bad query ever reaches the public as a 500.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import Client

from search.curation import clear_curation_cache
from search.query import resume_query_log
from services.searchengine.fts import FtsSearchEngine
from services.searchengine.port import SearchUnavailable
from services.suite import PathDispatcher
from services.web import content_alias

from support.org import STAFF_PASSWORD

DOCUMENTS: list[dict[str, Any]] = [
    {"id": "policy-1", "doc_type": "policy", "title": "关于调整住房公积金缴存基数的通知",
     "summary": "住房公积金缴存基数调整", "body": "各单位应当按时足额缴存住房公积金，缴存基数每年调整一次。",
     "url": "/interpret/policies/1", "published_at": "2026-03-02T09:00:00+08:00", "department": "市住建局",
     "level": "本级", "validity": "有效"},
    {"id": "policy-2", "doc_type": "policy", "title": "关于印发高新技术企业认定管理办法的通知",
     "summary": "高新技术企业认定", "body": "高新技术企业认定须同时满足下列条件。",
     "url": "/interpret/policies/2", "published_at": "2025-06-15T10:00:00+08:00", "department": "科学技术厅",
     "level": "本级", "validity": "失效"},
    {"id": "interpretation-3", "doc_type": "interpretation", "title": "一图读懂住房公积金新政",
     "summary": "图解公积金缴存调整", "body": "本次调整后，住房公积金缴存比例为5%至12%。",
     "url": "/interpret/interpretations/3", "published_at": "2026-03-05T09:00:00+08:00", "department": "市住建局",
     "level": "本级", "form": "图片图解"},
    {"id": "answer-4", "doc_type": "answer", "title": "离职后住房公积金如何提取？",
     "summary": "离职提取公积金", "body": "离职后可凭相关材料申请提取住房公积金账户余额。",
     "url": "/consult/answers/4", "published_at": "2026-04-01T15:30:00+08:00", "department": "市住建局",
     "category": "住房保障"},
    {"id": "press_response-5", "doc_type": "press_response", "title": "关于公积金贷款额度问题的回应",
     "summary": "回应公积金贷款额度关切", "body": "针对群众关心的公积金贷款额度问题，现回应如下。",
     "url": "/press/responses/5", "published_at": "2026-05-20T11:00:00+08:00", "department": "市住建局"},
    {"id": "policy-6", "doc_type": "policy", "title": "关于<script>alert(1)</script>公积金的通知",
     "summary": "含有特殊字符 <b>粗体</b> & 符号", "body": "公积金 <img src=x onerror=alert(1)> 管理",
     "url": "/interpret/policies/6", "published_at": "2024-01-10T09:00:00+08:00", "department": "市财政局",
     "level": "本级", "validity": "有效"},
]


@pytest.fixture(autouse=True)
def _fresh_curation(suite: dict[str, Flask]) -> Iterator[None]:
    """No curation rules or suggestions cached from another test, and the query log not paused."""
    clear_curation_cache(suite["search"])
    resume_query_log()
    yield
    clear_curation_cache(suite["search"])
    resume_query_log()


@pytest.fixture
def client(suite: dict[str, Flask]) -> Client:
    return Client(PathDispatcher(suite), use_cookies=False)


def index(suite: dict[str, Flask], documents: list[dict[str, Any]]) -> None:
    engine, alias = content_alias(suite["search"])
    for document in documents:
        assert engine.index_document(alias, document["id"], document, 1)
    engine.refresh(alias)


@pytest.fixture
def corpus(suite: dict[str, Flask]) -> list[dict[str, Any]]:
    index(suite, DOCUMENTS)
    return DOCUMENTS


def address() -> dict[str, str]:
    """A REMOTE_ADDR of its own, so the per-address rate limit never trips across requests of other tests."""
    return {"REMOTE_ADDR": f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"}


def get(client: Client, path: str, status: int = 200, **query: Any) -> dict[str, Any]:
    answer = client.get(path, query_string=query, environ_base=address())
    assert answer.status_code == status, (path, query, answer.status_code, answer.get_data(as_text=True)[:500])
    body: dict[str, Any] = answer.get_json()
    return body


# -- the answer --------------------------------------------------------------------------------------


def test_search_answers_total_hits_facets_and_paging(client: Client, corpus: list[dict[str, Any]]) -> None:
    body = get(client, "/api/search", q="公积金")
    assert set(body) >= {"total", "hits", "facets", "page", "per_page"}
    ids = {hit["id"] for hit in body["hits"]}
    assert {"policy-1", "interpretation-3", "answer-4", "press_response-5"} <= ids
    assert "policy-2" not in ids
    assert body["total"] == len(body["hits"]) and (body["page"], body["per_page"]) == (1, 10)
    assert "debug" not in body and all("explanation" not in hit for hit in body["hits"])


def test_every_hit_carries_a_chinese_type_label(client: Client, corpus: list[dict[str, Any]]) -> None:
    labels = {hit["doc_type"]: hit["type_label"] for hit in get(client, "/api/search", q="公积金")["hits"]}
    assert labels == {"policy": "政策文件", "interpretation": "政策解读", "answer": "咨询回复",
                      "press_response": "回应关切"}


def test_facets_count_types_and_keyword_fields_over_all_matches(client: Client, corpus: list[dict[str, Any]]) -> None:
    body = get(client, "/api/search", q="公积金", per_page=1)
    assert len(body["hits"]) == 1
    facets = body["facets"]
    assert set(facets) == {"doc_type", "department", "level", "form", "category", "validity"}
    assert facets["doc_type"] == {"policy": 2, "interpretation": 1, "answer": 1, "press_response": 1}
    assert facets["department"] == {"市住建局": 4, "市财政局": 1}
    assert facets["form"] == {"图片图解": 1}


def test_filters_narrow_the_results(client: Client, corpus: list[dict[str, Any]]) -> None:
    def ids(**query: Any) -> set[str]:
        return {hit["id"] for hit in get(client, "/api/search", **query)["hits"]}

    assert ids(q="公积金", type="answer") == {"answer-4"}
    assert ids(q="公积金", type=["answer", "interpretation"]) == {"answer-4", "interpretation-3"}
    assert ids(q="公积金", department="市财政局") == {"policy-6"}
    assert ids(q="公积金", form="图片图解") == {"interpretation-3"}
    assert ids(q="公积金", category="住房保障") == {"answer-4"}
    assert ids(type="policy", validity="失效") == {"policy-2"}
    assert ids(q="公积金", date_from="2026-03-05", date_to="2026-04-01") == {"interpretation-3", "answer-4"}
    # A day in China's time: published 2026-03-02 09:00 +08:00 is still 2026-03-02 there (01:00 UTC).
    assert ids(q="公积金", date_from="2026-03-02", date_to="2026-03-02") == {"policy-1"}
    # Empty values (a form's unselected fields) mean no filter.
    assert ids(q="公积金", department="", type="") >= {"policy-1", "answer-4"}


def test_sort_by_date_lists_newest_first(client: Client, corpus: list[dict[str, Any]]) -> None:
    hits = get(client, "/api/search", q="公积金", sort="date")["hits"]
    assert [hit["id"] for hit in hits] == ["press_response-5", "answer-4", "interpretation-3", "policy-1", "policy-6"]
    assert all(hit["score"] is None for hit in hits)


def test_highlights_are_safe_html_with_marks(client: Client, corpus: list[dict[str, Any]]) -> None:
    hits = {hit["id"]: hit for hit in get(client, "/api/search", q="公积金")["hits"]}
    title = hits["policy-1"]["highlights"]["title"]
    assert "<mark>" in title and "公积金" in title.replace("<mark>", "").replace("</mark>", "")
    nasty = hits["policy-6"]["highlights"]
    joined = " ".join(nasty.values())
    assert "<script" not in joined and "<img" not in joined and "<b>" not in joined
    assert "&lt;script&gt;" in nasty["title"]
    # The plain fields stay text: it is the page's job to escape them.
    assert hits["policy-6"]["title"] == DOCUMENTS[5]["title"]


def test_paging_is_bounded_by_the_result_window(client: Client, corpus: list[dict[str, Any]]) -> None:
    second = get(client, "/api/search", q="公积金", per_page=2, page=2)
    assert second["page"] == 2 and len(second["hits"]) == 2 and second["total"] == 5
    assert get(client, "/api/search", q="公积金", per_page=50, page=200)["hits"] == []  # the last page allowed
    refused = get(client, "/api/search", 422, q="公积金", per_page=50, page=201)
    assert "page" in refused["errors"]["query"]
    assert "10000" in " ".join(refused["errors"]["query"]["page"])


# -- bad input: a field error or a safe answer, never a 500 ------------------------------------------


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"q": "长" * 201}, "q"),
        ({"page": "0"}, "page"),
        ({"page": "-1"}, "page"),
        ({"page": "abc"}, "page"),
        ({"page": "1e9"}, "page"),
        ({"page": "99999999999999999999999"}, "page"),
        ({"page": "1001"}, "page"),
        ({"per_page": "0"}, "per_page"),
        ({"per_page": "51"}, "per_page"),
        ({"per_page": "ten"}, "per_page"),
        ({"type": "secret"}, "type"),
        ({"type": ["policy", "secret"]}, "type"),
        ({"sort": "popularity"}, "sort"),
        ({"date_from": "2026-13-01"}, "date_from"),
        ({"date_from": "yesterday"}, "date_from"),
        ({"date_to": "2026-02-30"}, "date_to"),
        ({"date_from": "0001-01-01"}, "date_from"),
        ({"date_from": "2026-05-01", "date_to": "2026-04-01"}, "date_to"),
        ({"department": "部" * 101}, "department"),
        ({"debug": "maybe"}, "debug"),
        ({"lang": "xx"}, "lang"),
        ({"unknown": "1"}, "unknown"),
        ({"title": "公积金"}, "title"),
        ({"filter[department]": "x"}, "filter[department]"),
        ({"types": "policy"}, "types"),
    ],
)
def test_bad_arguments_get_field_errors(client: Client, corpus: list[dict[str, Any]], query: dict[str, Any],
                                        field: str) -> None:
    body = get(client, "/api/search", 422, **query)
    assert body["code"] == 422
    assert field in body["errors"]["query"], body


def test_unknown_parameters_are_named(client: Client) -> None:
    body = get(client, "/api/search", 422, q="公积金", departmnt="市住建局", colour="red")
    assert set(body["errors"]["query"]) == {"departmnt", "colour"}


NASTY_QUERIES = [
    '"abc', "(", ")", "((公积金", "公积金)", "AND OR", "AND", "OR NOT", "NOT", "*", "公积*", "?", "title:",
    "title:公积金", "body:(", "_id:1", "\\", "\\\\\\", "'", "''", '"', '""', "\x00", "公积\x00金", "\x07\x1b[31m",
    "\u200b", "公积金\u200b", "\ufeff", "\t\n\r", "%", "%%", "%s%s%s", "{", "}", "[", "]", "[1 TO 5]", "~", "公积金~2",
    "^", "公积金^10", "/", "/.*/", "a" * 200, "公" * 200, "<script>alert(1)</script>", "&amp;", "NEAR(a b)", "-",
    "--", "+", "+-", "!", "||", "&&", ":", "::", "@", "#", "😀", "公积金😀", "\U0010ffff", "\ud7ff", "ＡＮＤ",
    "（公积金）", "“公积金”", "公积金 OR 1=1; DROP TABLE query_log; --", "$where", "{\"match_all\":{}}",
    "../../etc/passwd", "0", "-1", "1e309", "NaN", "null", "undefined", "   ", "",
]


@pytest.mark.parametrize("text", NASTY_QUERIES)
def test_odd_queries_are_plain_text(client: Client, corpus: list[dict[str, Any]], text: str) -> None:
    answer = client.get("/api/search", query_string={"q": text}, environ_base=address())
    assert answer.status_code == 200, (text, answer.get_data(as_text=True)[:300])
    body = answer.get_json()
    assert isinstance(body["total"], int) and isinstance(body["hits"], list)
    assert set(body["facets"]) == {"doc_type", "department", "level", "form", "category", "validity"}


def test_operators_are_words_not_syntax(client: Client, corpus: list[dict[str, Any]]) -> None:
    # "公积金 OR 高新技术" would match both policies if OR were an operator; as text, the words must all occur.
    ids = {hit["id"] for hit in get(client, "/api/search", q="公积金 OR 高新技术")["hits"]}
    assert "policy-2" not in ids
    assert {hit["id"] for hit in get(client, "/api/search", q="(公积金")["hits"]} >= {"policy-1"}


def test_an_engine_that_refuses_a_query_gives_no_results_not_an_error(
    suite: dict[str, Flask], client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.searchengine.port import SearchEngineError

    engine, _alias = content_alias(suite["search"])

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise SearchEngineError("parse error at line 1: internal detail")

    monkeypatch.setattr(engine, "search", refuse)
    answer = client.get("/api/search", query_string={"q": "公积金"}, environ_base=address())
    assert answer.status_code == 200
    assert answer.get_json()["total"] == 0
    assert "internal detail" not in answer.get_data(as_text=True)


# -- the engine is down ------------------------------------------------------------------------------


@pytest.fixture
def engine_down(suite: dict[str, Flask], tmp_path: Path) -> Iterator[None]:
    """The search app's engine is an FTS index on a path that cannot be opened."""
    app = suite["search"]
    saved = app.extensions["gongkai.search_engine"]
    app.extensions["gongkai.search_engine"] = FtsSearchEngine(Path("/proc/gongkai-no-such-dir") / "index.sqlite3")
    app.extensions.pop("gongkai.search_alias_ready", None)
    yield
    app.extensions["gongkai.search_engine"] = saved
    app.extensions.pop("gongkai.search_alias_ready", None)


@pytest.mark.usefixtures("engine_down")
@pytest.mark.parametrize("path", ["/api/search?q=公积金", "/api/search", "/api/search/suggest?q=公积",
                                  "/api/search/related/policy-1"])
def test_engine_down_answers_503_in_chinese_and_english(client: Client, path: str) -> None:
    answer = client.get(path, environ_base=address())
    assert answer.status_code == 503
    body = answer.get_json()
    assert body["code"] == 503
    assert "搜索服务暂时不可用" in body["message"] and "Search is temporarily unavailable" in body["message"]
    assert int(answer.headers["Retry-After"]) >= 10  # the rate limiter may only push it later
    assert "/proc" not in answer.get_data(as_text=True)  # no engine detail leaks


def test_engine_search_raising_unavailable_answers_503(
    suite: dict[str, Flask], client: Client, corpus: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, _alias = content_alias(suite["search"])

    def down(*_args: Any, **_kwargs: Any) -> Any:
        raise SearchUnavailable("connection refused")

    monkeypatch.setattr(engine, "search", down)
    answer = client.get("/api/search", query_string={"q": "公积金"}, environ_base=address())
    assert answer.status_code == 503
    assert "connection refused" not in answer.get_data(as_text=True)
    # Nothing else in the suite fails: the other services' pages still answer.
    assert client.get("/consult/ask", environ_base=address()).status_code == 200


# -- staff debug mode ---------------------------------------------------------------------------------


def _token(client: Client, username: str) -> str:
    answer = client.post("/api/auth/token", json={"username": username, "password": STAFF_PASSWORD},
                         environ_base=address())
    assert answer.status_code == 200, answer.get_json()
    token: str = answer.get_json()["token"]
    return token


def test_debug_explains_scores_for_staff_only(
    client: Client, corpus: list[dict[str, Any]], org: dict[str, Any]
) -> None:
    anonymous = get(client, "/api/search", q="公积金", debug="1")
    assert "debug" not in anonymous and all("explanation" not in hit for hit in anonymous["hits"])
    token = _token(client, "editor_a")
    answer = client.get("/api/search", query_string={"q": "公积金", "debug": "true"},
                        headers={"Authorization": f"Bearer {token}"}, environ_base=address())
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["debug"]["query"] == "公积金"
    assert all("explanation" in hit for hit in body["hits"])
    assert all(isinstance(hit["explanation"], dict) and hit["explanation"] for hit in body["hits"])
    # A forged token is nobody: no debug, and no error either.
    forged = client.get("/api/search", query_string={"q": "公积金", "debug": "1"},
                        headers={"Authorization": "Bearer not-a-token"}, environ_base=address())
    assert forged.status_code == 200 and "debug" not in forged.get_json()


# -- suggestions and related documents --------------------------------------------------------------


def test_suggest_completes_titles(client: Client, corpus: list[dict[str, Any]]) -> None:
    suggestions = get(client, "/api/search/suggest", q="关于")["suggestions"]
    assert 0 < len(suggestions) <= 8
    titles = [item for item in suggestions if item["kind"] == "title"]
    assert titles and all(item["text"].startswith("关于") for item in titles)
    assert all({"text", "url", "doc_id", "doc_type", "type_label"} <= set(item) for item in titles)
    assert get(client, "/api/search/suggest", q="")["suggestions"] == []
    assert get(client, "/api/search/suggest", q="  *  ")["suggestions"] == []


def test_suggest_offers_popular_queries_that_found_something(
    suite: dict[str, Flask], client: Client, corpus: list[dict[str, Any]]
) -> None:
    for _ in range(3):
        get(client, "/api/search", q="住房公积金 提取")
        get(client, "/api/search", q="住房公积金 贷款额度查询")  # finds nothing: never suggested
    get(client, "/api/search", q="住房公积金 缴存")  # only once: not popular enough
    clear_curation_cache(suite["search"])
    suggestions = get(client, "/api/search/suggest", q="住房")["suggestions"]
    queries = [item["text"] for item in suggestions if item["kind"] == "query"]
    assert queries == ["住房公积金 提取"]
    assert suggestions[0]["url"] == "/search/?q=%E4%BD%8F%E6%88%BF%E5%85%AC%E7%A7%AF%E9%87%91+%E6%8F%90%E5%8F%96"
    assert len(suggestions) <= 8


def test_suggest_and_related_refuse_bad_arguments(client: Client) -> None:
    assert "q" in get(client, "/api/search/suggest", 422, q="长" * 201)["errors"]["query"]
    assert "page" in get(client, "/api/search/suggest", 422, q="公积", page="2")["errors"]["query"]
    assert "type" in get(client, "/api/search/related/policy-1", 422, type="secret")["errors"]["query"]


def test_related_lists_similar_documents_never_itself(client: Client, corpus: list[dict[str, Any]]) -> None:
    hits = get(client, "/api/search/related/policy-1")["hits"]
    ids = [hit["id"] for hit in hits]
    assert "policy-1" not in ids and 0 < len(ids) <= 5
    assert "interpretation-3" in ids or "answer-4" in ids
    assert all(hit["type_label"] for hit in hits)
    assert get(client, "/api/search/related/policy-999")["hits"] == []
    assert get(client, "/api/search/related/" + "x" * 300)["hits"] == []


def test_openapi_documents_the_search_endpoints(client: Client) -> None:
    spec = get(client, "/api/search/openapi.json")
    assert {"/api/search", "/api/search/suggest", "/api/search/related/{doc_id}"} <= set(spec["paths"])
    names = {parameter["name"] for parameter in spec["paths"]["/api/search"]["get"]["parameters"]}
    assert {"q", "type", "department", "date_from", "date_to", "sort", "page", "per_page", "debug"} <= names


def test_suggest_and_related_share_the_search_rate_limit(suite: dict[str, Flask], client: Client) -> None:
    from limits import parse

    allowed = parse(suite["search"].extensions["gongkai.settings"].search_rate_limit).amount
    environ = address()
    for path in ("/api/search/suggest?q=公积", "/api/search/related/policy-1"):
        answers = [client.get(path, environ_base=environ).status_code for _ in range(allowed + 1)]
        assert answers[:allowed] == [200] * allowed and answers[-1] == 429, path
        environ = address()
