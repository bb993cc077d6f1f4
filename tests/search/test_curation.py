"""What the disclosure office curates (synonyms, best bets) and what the query log keeps (and does not).

* The query log: normalised text, filters, count, duration, time; no address, identity, user agent
  or session (the table's columns and a row's content are checked); suggest calls are not logged;
  a broken log never fails a search.
* Synonym groups and best bets through the console (``/search/admin/...``): refused input is answered
  422 with field errors and saves nothing, each change is audited, and searches apply it at once
  (without a rebuild); a best bet is shown first, marked, not again further down, and no longer after
  its day or once its document is withdrawn.
* The zero-result report and ``popular_queries``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import inspect, select
from werkzeug.test import Client, TestResponse

from search import curation
from search.curation import clear_curation_cache, normalise_query, popular_queries, zero_result_queries
from search.models import BestBet, OutboxEvent, QueryLog, SynonymGroup
from search.query import resume_query_log, today_in_china
from services.db import get_database
from services.suite import PathDispatcher
from services.web import content_alias

from support.org import STAFF_PASSWORD

DOCUMENTS: list[dict[str, Any]] = [
    {"id": "policy-11", "doc_type": "policy", "title": "住房公积金管理条例实施办法",
     "summary": "住房公积金的缴存、提取和使用", "body": "本办法适用于本市住房公积金的缴存、提取、使用和管理。",
     "url": "/interpret/policies/11", "published_at": "2026-01-05T09:00:00+08:00", "department": "市住建局"},
    {"id": "answer-12", "doc_type": "answer", "title": "公积金能否用于支付房租？",
     "summary": "租房提取", "body": "职工连续足额缴存满3个月的，可申请提取用于支付房租。",
     "url": "/consult/answers/12", "published_at": "2026-02-01T09:00:00+08:00", "department": "市住建局"},
    {"id": "policy-13", "doc_type": "policy", "title": "关于做好2026年春季学期开学工作的通知",
     "summary": "春季开学", "body": "各地要做好开学准备工作。",
     "url": "/interpret/policies/13", "published_at": "2026-02-10T09:00:00+08:00", "department": "教育厅"},
    {"id": "interpretation-14", "doc_type": "interpretation", "title": "新学期入学报名指南",
     "summary": "入学报名", "body": "适龄儿童入学报名的时间和材料。",
     "url": "/interpret/interpretations/14", "published_at": "2026-02-12T09:00:00+08:00", "department": "教育厅"},
]


@pytest.fixture(autouse=True)
def _fresh_curation(suite: dict[str, Flask], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    clear_curation_cache(suite["search"])
    resume_query_log()
    # Audit events stay in the (rolled-back) outbox instead of going to the broker.
    monkeypatch.setattr(get_database("search", suite["search"]), "publisher", None)
    yield
    clear_curation_cache(suite["search"])
    resume_query_log()


@pytest.fixture
def corpus(suite: dict[str, Flask]) -> list[dict[str, Any]]:
    engine, alias = content_alias(suite["search"])
    for document in DOCUMENTS:
        assert engine.index_document(alias, document["id"], document, 1)
    engine.refresh(alias)
    return DOCUMENTS


def address() -> dict[str, str]:
    return {"REMOTE_ADDR": f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"}


@pytest.fixture
def public(suite: dict[str, Flask]) -> Client:
    return Client(PathDispatcher(suite), use_cookies=False)


def search(client: Client, **query: Any) -> dict[str, Any]:
    answer = client.get("/api/search", query_string=query, environ_base=address())
    assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
    body: dict[str, Any] = answer.get_json()
    return body


def log_rows(suite: dict[str, Flask]) -> list[QueryLog]:
    with get_database("search", suite["search"]).transaction() as session:
        return list(session.scalars(select(QueryLog).order_by(QueryLog.id)))


def _csrf(page: TestResponse) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    assert found, page.request.path
    return found.group(1)


class Staff:
    """A signed-in browser with its session cookie and CSRF token."""

    def __init__(self, suite: dict[str, Flask], username: str) -> None:
        self.client = Client(PathDispatcher(suite))
        self.environ = address()
        form = self.client.get("/staff/login", environ_base=self.environ)
        answer = self.client.post("/staff/login", environ_base=self.environ, data={
            "csrf_token": _csrf(form), "username": username, "password": STAFF_PASSWORD, "next": "/staff/",
        })
        assert answer.headers.get("Location") == "/staff/", username
        self.csrf = _csrf(self.client.get("/staff/", environ_base=self.environ))

    def get(self, path: str, **query: Any) -> TestResponse:
        return self.client.get(path, query_string=query, environ_base=self.environ)

    def post(self, path: str, data: dict[str, Any] | None = None) -> TestResponse:
        return self.client.post(path, environ_base=self.environ, data={"csrf_token": self.csrf, **(data or {})})


StaffFactory = Callable[[str], Staff]


@pytest.fixture
def staff(suite: dict[str, Flask]) -> StaffFactory:
    """Signs in a member of staff holding one role (``disclosure_office``, ``editor``...) in a department of
    their own: only the users a test needs (each password hash takes a while)."""
    from services.identity.accounts import assign_role, create_department, create_user
    from services.permissions import Role

    settings = suite["identity"].extensions["gongkai.settings"]
    with get_database("identity", suite["identity"]).transaction() as session:
        department = create_department(session, "SSJ", "搜索测试局", "bureau", None)
        department_id = department.id

    def sign_in(role: str) -> Staff:
        from services.identity.models import Department

        with get_database("identity", suite["identity"]).transaction() as session:
            user = create_user(session, settings, username=f"{role}_s", display_name=f"{role}_s",
                               password=STAFF_PASSWORD)
            assign_role(session, user, Role(role), session.get(Department, department_id))
            user.must_change_password = False
        return Staff(suite, f"{role}_s")

    return sign_in


@pytest.fixture
def office(staff: StaffFactory) -> Staff:
    """The disclosure office, who runs site search."""
    return staff("disclosure_office")


def audit_events(suite: dict[str, Flask]) -> list[dict[str, Any]]:
    with get_database("search", suite["search"]).transaction() as session:
        events = session.scalars(select(OutboxEvent).where(OutboxEvent.topic == "audit.recorded")
                                 .order_by(OutboxEvent.created_at)).all()
        return [event.payload for event in events]


# -- normalisation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  住房   公积金 ", "住房 公积金"),
        ("ＡＢＣ　住房", "abc 住房"),  # full-width letters and the ideographic space
        ("Gongkai\tPolicy\n2026", "gongkai policy 2026"),
        ("公积\u200b金", "公积金"),  # a zero-width space is no separator
        ("公积\x00金\x07", "公积 金"),
        ("", ""),
    ],
)
def test_queries_are_normalised(raw: str, expected: str) -> None:
    assert normalise_query(raw) == expected


# -- the query log -----------------------------------------------------------------------------------


def test_the_query_log_has_no_column_for_who_searched(suite: dict[str, Flask]) -> None:
    database = get_database("search", suite["search"])
    with database.engine.connect() as connection:
        columns = {column["name"] for column in inspect(connection).get_columns("query_log", schema=database.schema)}
    assert columns == {"id", "query", "filters", "result_count", "duration_ms", "created_at"}


def test_a_search_is_logged_normalised_with_its_filters_and_nothing_about_the_searcher(
    suite: dict[str, Flask], public: Client, corpus: list[dict[str, Any]]
) -> None:
    secret_address = "203.0.113.77"
    query = {"q": "  住房ＧＪＪ\u3000公积金 ", "type": "policy", "department": "市住建局", "date_from": "2026-01-01"}
    answer = public.get("/api/search", query_string=query,
                        headers={"User-Agent": "SecretBrowser/9.9", "Cookie": "session=secret-session-id",
                                 "Referer": "https://example.org/secret-referrer"},
                        environ_base={"REMOTE_ADDR": secret_address})
    assert answer.status_code == 200
    [row] = log_rows(suite)
    assert row.query == "住房gjj 公积金"
    assert row.filters == {"type": ["policy"], "department": "市住建局", "date_from": "2026-01-01"}
    assert row.result_count == answer.get_json()["total"]
    assert 0 <= row.duration_ms < 60_000
    assert abs((datetime.now(UTC) - row.created_at).total_seconds()) < 60
    stored = repr({column: getattr(row, column) for column in ("query", "filters", "result_count", "duration_ms")})
    for secret in (secret_address, "SecretBrowser", "secret-session-id", "secret-referrer"):
        assert secret not in stored


def test_personal_numbers_typed_into_search_are_masked_in_the_log(
    suite: dict[str, Flask], public: Client, corpus: list[dict[str, Any]]
) -> None:
    search(public, q="公积金 13912345678 zhang.san@example.com")
    [row] = log_rows(suite)
    assert "13912345678" not in row.query and "zhang.san@example.com" not in row.query
    assert row.query.startswith("公积金 ")


def test_only_first_pages_of_searches_with_text_are_logged_and_never_suggest_calls(
    suite: dict[str, Flask], public: Client, corpus: list[dict[str, Any]]
) -> None:
    search(public, q="公积金")
    search(public, q="公积金", page=2, per_page=1)  # paging through the same search
    search(public, type="policy")  # browsing without text
    search(public, q="***")  # nothing to search for
    for prefix in ("公", "公积", "公积金"):
        assert public.get("/api/search/suggest", query_string={"q": prefix}, environ_base=address()).status_code == 200
    assert [row.query for row in log_rows(suite)] == ["公积金"]


def test_the_search_page_logs_too(suite: dict[str, Flask], public: Client, corpus: list[dict[str, Any]]) -> None:
    assert public.get("/search/", query_string={"q": "入学报名"}, environ_base=address()).status_code == 200
    [row] = log_rows(suite)
    assert (row.query, row.result_count) == ("入学报名", 1)


def test_a_broken_query_log_never_fails_the_search(
    suite: dict[str, Flask], public: Client, corpus: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from sqlalchemy.exc import OperationalError

    database = get_database("search", suite["search"])
    calls = []

    def broken() -> Any:
        calls.append(1)
        raise OperationalError("INSERT INTO query_log", {}, Exception("server closed the connection"))

    monkeypatch.setattr(database, "new_session", broken)
    body = search(public, q="公积金")
    assert body["total"] == 2
    search(public, q="入学")  # within the pause: not even tried
    assert len(calls) == 2  # one for the (cached afterwards) curation rules, one for the log
    assert "公积金" not in caplog.text  # the failure is logged without the query
    assert "query log not written" in caplog.text


# -- popular queries and the zero-result report ------------------------------------------------------


def _log(suite: dict[str, Flask], rows: list[tuple[str, int, datetime]]) -> None:
    with get_database("search", suite["search"]).transaction() as session:
        for query, count, created_at in rows:
            session.add(QueryLog(query=query, filters={}, result_count=count, duration_ms=3, created_at=created_at))


def test_popular_and_zero_result_queries(suite: dict[str, Flask]) -> None:
    now = datetime.now(UTC)
    _log(suite, [("公积金", 5, now - timedelta(hours=h)) for h in range(4)]
         + [("社保卡", 2, now - timedelta(hours=1)), ("社保卡", 2, now)]
         + [("不存在的政策", 0, now - timedelta(days=d)) for d in (1, 2, 3)]
         + [("另一个无结果", 0, now - timedelta(hours=2))]
         + [("很久以前", 0, now - timedelta(days=100))] * 5)
    since = now - timedelta(days=30)
    with get_database("search", suite["search"]).transaction() as session:
        popular = popular_queries(session, since, 10)
        assert [(item.query, item.count) for item in popular] == [
            ("公积金", 4), ("不存在的政策", 3), ("社保卡", 2), ("另一个无结果", 1)]
        found = popular_queries(session, since, 10, with_results=True, min_count=3)
        assert [item.query for item in found] == ["公积金"]
        assert popular_queries(session, since, 1)[0].query == "公积金"
        zero = zero_result_queries(session, since, 10)
        assert [(item.query, item.count) for item in zero] == [("不存在的政策", 3), ("另一个无结果", 1)]
        assert abs((zero[0].last_seen - (now - timedelta(days=1))).total_seconds()) < 1


def test_zero_result_report_for_editors(suite: dict[str, Flask], public: Client, staff: StaffFactory,
                                        corpus: list[dict[str, Any]]) -> None:
    for _ in range(3):
        search(public, q="人才公寓申请")
    search(public, q="无人机 培训")
    search(public, q="公积金")  # found something: not in the report
    _log(suite, [("去年的无结果搜索", 0, datetime.now(UTC) - timedelta(days=200))])
    editor = staff("editor")
    page = editor.get("/search/admin/zero-results")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    table = html[html.index('id="zero-results"'):]
    rows = re.findall(r"<tr><td><a [^>]*>([^<]+)</a></td><td class=\"count\">(\d+)</td><td>([^<]+)</td>", table)
    assert [(query, int(count)) for query, count, _ in rows] == [("人才公寓申请", 3), ("无人机 培训", 1)]
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", seen) for _, _, seen in rows)
    assert "去年的无结果搜索" not in html
    assert "去年的无结果搜索" in editor.get("/search/admin/zero-results", days="365").get_data(as_text=True)
    # Who may see it: staff who read records; the press office too; not an anonymous visitor.
    assert staff("press_officer").get("/search/admin/zero-results").status_code == 200
    assert Client(PathDispatcher(suite)).get("/search/admin/zero-results").status_code == 302


# -- synonyms ----------------------------------------------------------------------------------------


def test_a_synonym_group_finds_the_other_term_at_once(
    suite: dict[str, Flask], public: Client, office: Staff, corpus: list[dict[str, Any]]
) -> None:
    before = {hit["id"] for hit in search(public, q="开学")["hits"]}
    assert before == {"policy-13"}
    added = office.post("/search/admin/synonyms", {"terms": "开学 / 入学"})
    assert (added.status_code, added.headers["Location"]) == (303, "/search/admin/synonyms?done=add")
    after = {hit["id"] for hit in search(public, q="开学")["hits"]}
    assert after == {"policy-13", "interpretation-14"}  # no rebuild, no waiting for the cache
    assert {hit["id"] for hit in search(public, q="入学")["hits"]} == {"policy-13", "interpretation-14"}
    page = office.get("/search/admin/synonyms").get_data(as_text=True)
    assert "开学 / 入学" in page
    [event] = audit_events(suite)
    assert (event["action"], event["service"], event["username"]) == ("search.synonyms.add", "search",
                                                                     "disclosure_office_s")
    assert event["detail"] == {"terms": ["开学", "入学"]}


@pytest.mark.parametrize(
    ("terms", "message"),
    [
        ("", "至少填写两个"),
        ("公积金", "至少填写两个"),
        ("公积金 公积金", "至少填写两个"),
        ("公积金 ，、", "至少填写两个"),
        ("公积金 " + "长" * 51, "过长"),
        ("公积金 ***", "不含文字或数字"),
        (" ".join(f"词{i}" for i in range(21)), "最多 20 个"),
    ],
)
def test_bad_synonym_groups_are_refused_and_nothing_is_saved(
    suite: dict[str, Flask], office: Staff, terms: str, message: str
) -> None:
    answer = office.post("/search/admin/synonyms", {"terms": terms})
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert 'data-field="terms"' in html and message in html and 'aria-invalid="true"' in html
    with get_database("search", suite["search"]).transaction() as session:
        assert session.scalars(select(SynonymGroup)).all() == []
    assert audit_events(suite) == []


def test_a_term_belongs_to_one_group_and_deleting_twice_is_harmless(
    suite: dict[str, Flask], office: Staff, public: Client, corpus: list[dict[str, Any]]
) -> None:
    assert office.post("/search/admin/synonyms", {"terms": "开学，入学"}).status_code == 303
    refused = office.post("/search/admin/synonyms", {"terms": "入学 报名"})
    assert refused.status_code == 422 and "已在另一组同义词中" in refused.get_data(as_text=True)
    with get_database("search", suite["search"]).transaction() as session:
        [group] = session.scalars(select(SynonymGroup)).all()
    for _ in range(2):
        deleted = office.post(f"/search/admin/synonyms/{group.id}/delete")
        assert (deleted.status_code, deleted.headers["Location"]) == (303, "/search/admin/synonyms?done=delete")
    assert {hit["id"] for hit in search(public, q="开学")["hits"]} == {"policy-13"}
    assert [event["action"] for event in audit_events(suite)] == ["search.synonyms.add", "search.synonyms.delete"]


def test_only_the_disclosure_office_curates(suite: dict[str, Flask], staff: StaffFactory) -> None:
    editor = staff("editor")
    for path in ("/search/admin/synonyms", "/search/admin/best-bets"):
        assert editor.get(path).status_code == 403
        assert editor.post(path, {"terms": "甲 乙", "query": "甲", "doc_id": "policy-1", "until": "2099-01-01"}
                           ).status_code == 403
    assert Client(PathDispatcher(suite)).get("/search/admin/synonyms").status_code == 302
    with get_database("search", suite["search"]).transaction() as session:
        assert session.scalars(select(SynonymGroup)).all() == [] and session.scalars(select(BestBet)).all() == []


# -- best bets -----------------------------------------------------------------------------------------


def _pin(office: Staff, query: str, doc_id: str, until: date, label: str = "") -> TestResponse:
    return office.post("/search/admin/best-bets", {"query": query, "doc_id": doc_id, "until": until.isoformat(),
                                                   "label": label})


def test_a_best_bet_comes_first_marked_and_not_again(
    suite: dict[str, Flask], public: Client, office: Staff, corpus: list[dict[str, Any]]
) -> None:
    plain = [hit["id"] for hit in search(public, q="公积金")["hits"]]
    assert set(plain) == {"policy-11", "answer-12"}
    answer = _pin(office, "  公积金 ", "answer-12", today_in_china())
    assert (answer.status_code, answer.headers["Location"]) == (303, "/search/admin/best-bets?done=add")
    hits = search(public, q=" 公积金\u3000")["hits"]  # the same query, normalised
    assert hits[0]["id"] == "answer-12" and hits[0]["pinned"] is True and hits[0]["pin_label"] == "推荐"
    assert "<mark>" in hits[0]["highlights"]["title"]  # found by the engine too: its highlights are kept
    assert [hit["id"] for hit in hits].count("answer-12") == 1
    assert all(hit["pinned"] is False for hit in hits[1:])
    # Only that query: a longer one is another search.
    assert all(not hit["pinned"] for hit in search(public, q="公积金 提取")["hits"])
    # The page shows the mark too.
    html = public.get("/search/", query_string={"q": "公积金"}, environ_base=address()).get_data(as_text=True)
    first = html[html.index('class="search-results"'):]
    assert first.index('data-id="answer-12"') < first.index('data-id="policy-11"')
    assert '<span class="pin">推荐</span>' in first
    [event] = audit_events(suite)
    assert event["action"] == "search.best_bet.add"
    assert event["detail"]["query"] == "公积金" and event["detail"]["doc_id"] == "answer-12"


def test_a_best_bet_for_a_query_without_matches_still_shows_and_keeps_the_filters(
    suite: dict[str, Flask], public: Client, office: Staff, corpus: list[dict[str, Any]]
) -> None:
    assert _pin(office, "租房", "answer-12", today_in_china() + timedelta(days=30), "租房提取看这里").status_code == 303
    body = search(public, q="租房")
    assert [hit["id"] for hit in body["hits"]] == ["answer-12"] and body["hits"][0]["pin_label"] == "租房提取看这里"
    assert search(public, q="租房", type="policy")["hits"] == []  # a pin never breaks the filters
    assert [hit["id"] for hit in search(public, q="租房", type="answer")["hits"]] == ["answer-12"]
    assert search(public, q="租房", page=2)["hits"] == []  # first page only


def test_an_expired_best_bet_is_no_longer_shown(
    suite: dict[str, Flask], public: Client, office: Staff, corpus: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    last_day = today_in_china() + timedelta(days=2)
    assert _pin(office, "公积金", "answer-12", last_day).status_code == 303
    monkeypatch.setattr("search.query.today_in_china", lambda: last_day)
    assert search(public, q="公积金")["hits"][0]["pinned"] is True  # shown on its last day
    monkeypatch.setattr("search.query.today_in_china", lambda: last_day + timedelta(days=1))
    assert all(not hit["pinned"] for hit in search(public, q="公积金")["hits"])
    page = office.get("/search/admin/best-bets").get_data(as_text=True)
    assert "公积金" in page and "answer-12" in page


def test_a_withdrawn_pinned_document_is_simply_skipped(
    suite: dict[str, Flask], public: Client, office: Staff, corpus: list[dict[str, Any]]
) -> None:
    assert _pin(office, "公积金", "answer-12", today_in_china()).status_code == 303
    engine, alias = content_alias(suite["search"])
    assert engine.delete_document(alias, "answer-12", 2)
    engine.refresh(alias)
    body = search(public, q="公积金")
    assert [hit["id"] for hit in body["hits"]] == ["policy-11"]
    assert "索引中已没有这个文档" in office.get("/search/admin/best-bets").get_data(as_text=True)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"query": "", "doc_id": "answer-12", "until": "+0"}, "query"),
        ({"query": "***", "doc_id": "answer-12", "until": "+0"}, "query"),
        ({"query": "公" * 201, "doc_id": "answer-12", "until": "+0"}, "query"),
        ({"query": "公积金", "doc_id": "", "until": "+0"}, "doc_id"),
        ({"query": "公积金", "doc_id": "answer-999", "until": "+0"}, "doc_id"),
        ({"query": "公积金", "doc_id": "x" * 201, "until": "+0"}, "doc_id"),
        ({"query": "公积金", "doc_id": "answer-12", "until": ""}, "until"),
        ({"query": "公积金", "doc_id": "answer-12", "until": "2026-02-30"}, "until"),
        ({"query": "公积金", "doc_id": "answer-12", "until": "next week"}, "until"),
        ({"query": "公积金", "doc_id": "answer-12", "until": "-1"}, "until"),
        ({"query": "公积金", "doc_id": "answer-12", "until": "+2000"}, "until"),
        ({"query": "公积金", "doc_id": "answer-12", "until": "+0", "label": "长" * 51}, "label"),
    ],
)
def test_bad_best_bets_are_refused_and_nothing_is_saved(
    suite: dict[str, Flask], office: Staff, corpus: list[dict[str, Any]], values: dict[str, str], field: str
) -> None:
    until = values["until"]
    if until[:1] in "+-" and until[1:].isdigit():
        values = {**values, "until": (today_in_china() + timedelta(days=int(until))).isoformat()}
    answer = office.post("/search/admin/best-bets", values)
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert f'data-field="{field}"' in html
    with get_database("search", suite["search"]).transaction() as session:
        assert session.scalars(select(BestBet)).all() == []
    assert audit_events(suite) == []


def test_the_same_pin_twice_is_refused_and_deleting_is_audited(
    suite: dict[str, Flask], office: Staff, public: Client, corpus: list[dict[str, Any]]
) -> None:
    assert _pin(office, "公积金", "answer-12", today_in_china()).status_code == 303
    again = _pin(office, "公积金", "answer-12", today_in_china())
    assert again.status_code == 422 and "已为该搜索词置顶" in again.get_data(as_text=True)
    with get_database("search", suite["search"]).transaction() as session:
        [bet] = session.scalars(select(BestBet)).all()
    for _ in range(2):
        deleted = office.post(f"/search/admin/best-bets/{bet.id}/delete")
        assert (deleted.status_code, deleted.headers["Location"]) == (303, "/search/admin/best-bets?done=delete")
    assert all(not hit["pinned"] for hit in search(public, q="公积金")["hits"])
    assert [event["action"] for event in audit_events(suite)] == ["search.best_bet.add", "search.best_bet.delete"]


def test_the_best_bet_console_helps_find_the_document(office: Staff, corpus: list[dict[str, Any]]) -> None:
    assert _pin(office, "公积金", "answer-12", today_in_china()).status_code == 303  # the preview ignores pins
    page = office.get("/search/admin/best-bets", preview="公积金")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    preview = html[html.index('id="preview-results"'):]
    assert "<code>policy-11</code>" in preview and "<code>answer-12</code>" in preview


def test_curation_rules_are_cached_briefly_per_process(
    suite: dict[str, Flask], public: Client, corpus: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process's change shows up once the cache expires, without a restart or a rebuild."""
    app = suite["search"]
    assert {hit["id"] for hit in search(public, q="开学")["hits"]} == {"policy-13"}  # rules cached: none
    with get_database("search", app).transaction() as session:  # as another process would write them
        session.add(SynonymGroup(terms=["开学", "入学"], created_by="其他进程"))
    assert {hit["id"] for hit in search(public, q="开学")["hits"]} == {"policy-13"}  # still the cached rules
    later = curation._clock() + curation.RULES_TTL_SECONDS + 1
    monkeypatch.setattr(curation, "_clock", lambda: later)
    assert {hit["id"] for hit in search(public, q="开学")["hits"]} == {"policy-13", "interpretation-14"}


def test_the_daily_task_deletes_query_log_rows_past_retention(suite: dict[str, Flask],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from search.tasks import prune_query_log

    now = datetime.now(UTC)
    _log(suite, [("去年的查询", 1, now - timedelta(days=400)), ("上个月的查询", 1, now - timedelta(days=40)),
                 ("今天的查询", 1, now)])
    app = suite["search"]
    monkeypatch.setitem(app.extensions, "gongkai.settings",
                        replace(app.extensions["gongkai.settings"], query_log_retention_days=30))
    with app.app_context():
        assert prune_query_log() == 2
        assert prune_query_log() == 0
    with get_database("search", app).transaction() as session:
        assert [row.query for row in session.scalars(select(QueryLog))] == ["今天的查询"]
