"""The public search page ``/search/`` as a visitor (and a keyboard or screen-reader user) meets it."""

from __future__ import annotations

import html as html_lib
import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from flask import Flask
from werkzeug.test import Client, TestResponse

from search.curation import clear_curation_cache
from search.models import QueryLog
from search.query import resume_query_log
from services.db import get_database
from services.searchengine.port import SearchUnavailable
from services.suite import PathDispatcher
from services.web import content_alias


def _document(number: int, **fields: Any) -> dict[str, Any]:
    doc_type = fields.pop("doc_type", "policy")
    return {"id": f"{doc_type}-{number}", "doc_type": doc_type, "url": f"/interpret/policies/{number}",
            "summary": "", "body": "", "department": "市住建局", **fields}


DOCUMENTS = [
    _document(1, title="关于住房公积金提取的通知", body="职工可按规定提取住房公积金。", summary="提取规定",
              published_at="2026-03-01T09:00:00+08:00", level="本级", validity="有效"),
    _document(2, doc_type="answer", title="异地购房能否提取住房公积金", body="可以提取，须提供购房合同。",
              summary="异地购房提取", published_at="2026-04-01T09:00:00+08:00", category="住房保障"),
    _document(3, doc_type="interpretation", title="住房公积金新政解读", body="解读住房公积金新政。",
              summary="新政解读", published_at="2026-03-02T09:00:00+08:00", department="市财政局", form="文字解读"),
    _document(4, title="关于<b onmouseover=alert(1)>住房公积金</b>的说明", body="<script>alert('x')</script>住房公积金",
              summary="<i>摘要</i>", published_at="2025-01-01T09:00:00+08:00"),
    *[_document(100 + n, title=f"住房公积金年度报告（第{n}号）", body="住房公积金年度报告正文。",
                published_at=f"2024-{n % 12 + 1:02d}-01T09:00:00+08:00", validity="失效") for n in range(25)],
]


@pytest.fixture(autouse=True)
def _fresh_curation(suite: dict[str, Flask]) -> Iterator[None]:
    clear_curation_cache(suite["search"])
    resume_query_log()
    yield
    clear_curation_cache(suite["search"])
    resume_query_log()


@pytest.fixture
def client(suite: dict[str, Flask]) -> Client:
    return Client(PathDispatcher(suite), use_cookies=False)


@pytest.fixture
def corpus(suite: dict[str, Flask]) -> list[dict[str, Any]]:
    engine, alias = content_alias(suite["search"])
    for document in DOCUMENTS:
        assert engine.index_document(alias, document["id"], document, 1)
    engine.refresh(alias)
    return DOCUMENTS


def page(client: Client, status: int = 200, **query: Any) -> str:
    address = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    answer: TestResponse = client.get("/search/", query_string=query, environ_base={"REMOTE_ADDR": address})
    assert answer.status_code == status, (query, answer.status_code)
    return answer.get_data(as_text=True)


def results_of(html: str) -> list[str]:
    return re.findall(r'<li class="hit[^"]*" data-id="([^"]+)"', html)


def links(html: str, rel: str) -> list[str]:
    return [html_lib.unescape(href) for href in re.findall(rf'<a href="([^"]+)" rel="{rel}"', html)]


def test_the_empty_page_is_a_labelled_form_that_works_without_script(client: Client) -> None:
    html = page(client)
    assert '<form class="search-page-form" action="/search/" method="get" role="search"' in html
    for control in ("q", "date_from", "date_to", "sort"):
        assert f'<label for="{control}">' in html and f'id="{control}"' in html
    assert html.count('type="checkbox" name="type"') == 4
    assert '<button type="submit">搜索</button>' in html
    assert 'data-suggest-url="/api/search/suggest"' in html
    assert '<script src="/static/js/search-suggest.js" defer></script>' in html
    assert not re.search(r"<script>[^<]", html) and " onclick=" not in html  # no inline script (CSP)
    assert "search-results" not in html  # no search yet


def test_results_are_a_list_with_type_labels_and_safe_highlights(client: Client, corpus: list[Any]) -> None:
    html = page(client, q="住房公积金 提取")
    found = results_of(html)
    assert set(found) == {"policy-1", "answer-2"}
    assert '<ol class="search-results"' in html
    assert '<span class="type type-policy">政策文件</span>' in html
    assert '<span class="type type-answer">咨询回复</span>' in html
    assert "<mark>" in html
    assert "“住房公积金 提取”共找到 2 条结果" in html


def test_nothing_from_a_document_runs_as_markup(client: Client, corpus: list[Any]) -> None:
    html = page(client, q="说明")
    assert results_of(html) == ["policy-4"]
    start = html.index('data-id="policy-4"')
    item = html[start:html.index("</li>", start)]
    tags = set(re.findall(r"<\s*/?\s*([a-zA-Z]+)", item))
    assert tags <= {"span", "a", "p", "mark", "time"}, tags  # no <b>, <i>, <script> from the document
    assert "&lt;b onmouseover=alert(1)&gt;" in item or "&lt;b onmouseover" in item
    assert "&lt;script&gt;" in item or "&lt;i&gt;" in item


def test_type_filters_facets_and_dates(client: Client, corpus: list[Any]) -> None:
    html = page(client, q="住房公积金")
    assert re.search(r'value="answer"\s*>\s*咨询回复 <span class="count">\(1\)</span>', html)
    # A keyword facet is a link that keeps the query and adds the filter.
    department = re.search(r'<a href="([^"]+)">市财政局</a> <span class="count">\((\d+)\)</span>', html)
    assert department and department.group(2) == "1"
    target = parse_qs(urlsplit(html_lib.unescape(department.group(1))).query)
    assert target == {"q": ["住房公积金"], "department": ["市财政局"]}
    narrowed = page(client, q="住房公积金", department="市财政局")
    assert results_of(narrowed) == ["interpretation-3"]
    assert "已选条件" in narrowed and 'name="department" value="市财政局"' in narrowed  # kept by the form
    both = page(client, q="住房公积金", type=["answer", "interpretation"])
    assert set(results_of(both)) == {"answer-2", "interpretation-3"}
    assert both.count(" checked>") == 2
    dated = page(client, q="住房公积金", date_from="2026-03-01", date_to="2026-03-31", sort="date")
    assert results_of(dated) == ["interpretation-3", "policy-1"]
    assert 'value="2026-03-01"' in dated and '<option value="date" selected>' in dated


def test_pagination_keeps_every_filter(client: Client, corpus: list[Any]) -> None:
    html = page(client, q="年度报告", validity="失效", sort="date", date_from="2024-01-01")
    assert len(results_of(html)) == 10
    assert "第 1 页，共 3 页" in html
    [following] = links(html, "next")
    assert parse_qs(urlsplit(following).query) == {
        "q": ["年度报告"], "validity": ["失效"], "date_from": ["2024-01-01"], "sort": ["date"], "page": ["2"]}
    last = page(client, q="年度报告", validity="失效", sort="date", date_from="2024-01-01", page="3")
    assert len(results_of(last)) == 5 and links(last, "next") == []
    [previous] = links(last, "prev")
    assert parse_qs(urlsplit(previous).query)["page"] == ["2"]
    assert not set(results_of(html)) & set(results_of(last))


def test_an_empty_result_says_so_with_suggestions(client: Client, corpus: list[Any], suite: dict[str, Flask]) -> None:
    from datetime import UTC, datetime

    with get_database("search", suite["search"]).transaction() as session:
        for _ in range(3):
            session.add(QueryLog(query="住房公积金", filters={}, result_count=4, duration_ms=2,
                                 created_at=datetime.now(UTC)))
    html = page(client, q="火星移民补贴", type="policy")
    assert results_of(html) == []
    assert "没有找到与“火星移民补贴”相关的结果。" in html
    assert "检查输入是否有错别字" in html
    without_filters = "/search/?" + urlencode({"q": "火星移民补贴"})
    assert f'<a href="{without_filters}">去掉全部筛选条件再搜索</a>' in html
    assert "大家都在搜" in html and ">住房公积金</a>" in html


@pytest.mark.parametrize(
    ("query", "field"),
    [({"q": "长" * 201}, "q"), ({"page": "0", "q": "x"}, "page"), ({"page": "5000", "q": "x"}, "page"),
     ({"date_from": "2026-02-30"}, "date_from"), ({"date_from": "2026-05-01", "date_to": "2026-04-01"}, "date_to"),
     ({"type": "secret"}, "type"), ({"sort": "random"}, "sort")],
)
def test_bad_input_re_renders_the_form_with_messages(client: Client, query: dict[str, Any], field: str) -> None:
    html = page(client, 422, **query)
    assert 'id="search-errors"' in html and f'data-field="{field}"' in html
    assert '<form class="search-page-form"' in html


def test_unknown_parameters_are_ignored_by_the_page(client: Client, corpus: list[Any]) -> None:
    assert results_of(page(client, q="异地购房", utm_source="weixin", debug="1")) == ["answer-2"]


def test_engine_down_shows_a_notice_not_an_error_page(
    suite: dict[str, Flask], client: Client, corpus: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, _alias = content_alias(suite["search"])

    def down(*_args: Any, **_kwargs: Any) -> Any:
        raise SearchUnavailable("connection refused to 10.0.0.9:9200")

    monkeypatch.setattr(engine, "search", down)
    html = page(client, 503, q="住房公积金")
    assert 'id="search-down"' in html and "搜索服务暂时不可用" in html
    assert '<form class="search-page-form"' in html and 'value="住房公积金"' in html
    assert "10.0.0.9" not in html and "服务器内部错误" not in html
    assert page(client) and client.get("/", environ_base={"REMOTE_ADDR": "10.1.1.1"}).status_code == 200


def test_the_page_is_cacheable(client: Client, corpus: list[Any]) -> None:
    first = client.get("/search/", query_string={"q": "住房公积金"}, environ_base={"REMOTE_ADDR": "10.2.2.2"})
    assert first.status_code == 200 and "public" in first.headers["Cache-Control"] and first.headers["ETag"]
    again = client.get("/search/", query_string={"q": "住房公积金"}, environ_base={"REMOTE_ADDR": "10.2.2.2"},
                       headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304


def test_the_suggest_script_is_served_and_builds_no_html_from_text(client: Client) -> None:
    answer = client.get("/static/js/search-suggest.js")
    assert answer.status_code == 200
    script = answer.get_data(as_text=True)
    assert "data-suggest-url" in script and "encodeURIComponent" in script
    assert "innerHTML" not in script and "textContent" in script
    assert 'setAttribute("role", "combobox")' in script and "aria-activedescendant" in script
    assert "Escape" in script and "ArrowDown" in script


def test_the_page_switches_to_english(client: Client, corpus: list[Any]) -> None:
    html = page(client, q="住房公积金", lang="en")
    assert '<html lang="en">' in html
    assert len(results_of(html)) > 0
    assert 'data-suggest-url="/api/search/suggest"' in html
