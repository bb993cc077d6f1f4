"""The suite as a visitor and an API client see it: one origin, Chinese first, one error shape."""

import logging
import re
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import Client

from search.tasks import index_document
from services.db import get_database
from services.searchengine.elastic import ElasticsearchEngine
from services.settings import SERVICES
from services.suite import PathDispatcher

from support.content import published_policy
from support.servers import free_port


@pytest.fixture
def client(suite: dict[str, Flask]) -> Client:
    return Client(PathDispatcher(suite))


def publish_and_index(suite: dict[str, Flask], title: str, body: str = "为做好有关工作，现通知如下。") -> int:
    """Publish through the interpret workflow and run the search consumer on its event, as the worker does."""
    database = get_database("interpret", suite["interpret"])
    database.publisher = None
    with database.transaction() as session:
        policy = published_policy(
            session, title, issuer="国务院办公厅", body=body, document_number="国办发〔2026〕12号"
        )
    message = _message_of(suite, policy.id)
    with suite["search"].app_context():
        assert index_document(message) == "indexed"
        assert index_document(message) == "duplicate"
    return policy.id


def _message_of(suite: dict[str, Flask], policy_id: int) -> dict[str, Any]:
    from interpret.models import OutboxEvent

    with get_database("interpret", suite["interpret"]).transaction() as session:
        event = session.query(OutboxEvent).filter_by(aggregate_id=str(policy_id)).one()
        return event.as_message()


def test_home_page_speaks_chinese_with_navigation(client: Client) -> None:
    page = client.get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert '<html lang="zh-CN">' in html
    for label in ("政策文件", "政策解读", "咨询回复", "搜索", "工作人员入口"):
        assert label in html
    assert "<script>" not in html  # no inline scripts anywhere in the shell


def test_english_is_one_switch_away_and_remembered(client: Client) -> None:
    switched = client.get("/lang/en?next=/consult/answers")
    assert switched.status_code == 302
    assert switched.headers["Location"].endswith("/consult/answers")
    html = client.get("/").get_data(as_text=True)
    assert '<html lang="en">' in html
    assert "Policies" in html and "Interpretations" in html


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "javascript:alert(1)"])
def test_language_switch_never_redirects_off_site(client: Client, target: str) -> None:
    answer = client.get(f"/lang/en?next={target}")
    assert answer.headers["Location"] in ("/", "http://localhost/")


def test_static_assets_are_cacheable(client: Client) -> None:
    answer = client.get("/static/css/site.css")
    assert answer.status_code == 200
    assert "max-age=604800" in answer.headers["Cache-Control"]
    assert answer.headers.get("ETag")


def test_readyz_names_every_service_and_its_checks(client: Client) -> None:
    answer = client.get("/readyz")
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert set(body["services"]) == set(SERVICES)
    for service in SERVICES:
        checks = body["services"][service]["checks"]
        assert {"database", "broker", "search"} <= set(checks)
        assert checks["database"]["detail"] == "postgresql"
    assert client.get("/healthz").get_json()["status"] == "ok"


def test_readyz_says_which_dependency_failed(suite: dict[str, Flask], client: Client) -> None:
    dead = ElasticsearchEngine(f"http://127.0.0.1:{free_port()}", timeout=1)
    suite["search"].extensions["gongkai.search_engine"] = dead
    answer = client.get("/readyz")
    assert answer.status_code == 503
    body = answer.get_json()
    assert body["services"]["search"]["ready"] is False
    assert body["services"]["search"]["checks"]["search"]["ok"] is False
    assert body["services"]["interpret"]["ready"] is True


def test_unknown_api_route_answers_json_404(client: Client) -> None:
    for path in ("/api/nothing", "/api/interpret/nothing", "/api/consult/answers/999999"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert answer.get_json()["code"] == 404


def test_unknown_page_answers_a_chinese_page(client: Client) -> None:
    answer = client.get("/interpret/no-such-page")
    assert answer.status_code == 404
    assert "页面不存在" in answer.get_data(as_text=True)


@pytest.mark.parametrize(
    ("path", "location", "field"),
    [
        ("/api/search?page=abc", "query", "page"),
        ("/api/search?page=100000", "query", "page"),
        ("/api/search?type=secret", "query", "type"),
        ("/api/search?q=" + "长" * 201, "query", "q"),
        ("/api/interpret/policies?per_page=500", "query", "per_page"),
    ],
)
def test_bad_input_gets_field_errors(client: Client, path: str, location: str, field: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 422
    body = answer.get_json()
    assert body["code"] == 422
    assert field in body["errors"][location]


def test_unexpected_errors_never_show_a_traceback(suite: dict[str, Flask], client: Client, monkeypatch: Any) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr("search.api.run_search", broken)
    answer = client.get("/api/search?q=x")
    assert answer.status_code == 500
    text = answer.get_data(as_text=True)
    assert "Traceback" not in text and "secret internal detail" not in text
    assert answer.get_json()["code"] == 500


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_publishes_openapi_and_docs(client: Client, service: str) -> None:
    spec = client.get(f"/api/{service}/openapi.json")
    assert spec.status_code == 200
    document = spec.get_json()
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"].startswith("Gongkai")
    docs = client.get(f"/api/{service}/docs")
    assert docs.status_code == 200
    html = docs.get_data(as_text=True)
    assert f"/api/{service}/openapi.json" in html
    assert not re.search(r"<script>[^<]", html)
    assert client.get(f"/api/{service}/docs/assets/swagger-ui-bundle.js").status_code == 200


def test_request_id_is_returned_and_logged(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gongkai.access")
    answer = client.get("/interpret/policies", headers={"X-Request-ID": "trace-abc-12345"})
    assert answer.headers["X-Request-ID"] == "trace-abc-12345"
    assert any(getattr(record, "request_id", None) == "trace-abc-12345" for record in caplog.records)
    made_up = client.get("/", headers={"X-Request-ID": "<script>"}).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made_up)


def test_metrics_count_requests(client: Client) -> None:
    client.get("/")
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "gongkai_http_requests_total" in metrics


def test_a_published_policy_reaches_the_public_pages_and_search(suite: dict[str, Flask], client: Client) -> None:
    policy_id = publish_and_index(suite, "国务院办公厅关于加强住房公积金管理的通知")
    listing = client.get("/interpret/policies").get_data(as_text=True)
    assert "国务院办公厅关于加强住房公积金管理的通知" in listing
    page = client.get(f"/interpret/policies/{policy_id}").get_data(as_text=True)
    assert "国办发〔2026〕12号" in page and "发布机构" in page
    api = client.get(f"/api/interpret/policies/{policy_id}").get_json()
    assert api["document_number"] == "国办发〔2026〕12号"
    found = client.get("/api/search", query_string={"q": "住房公积金"}).get_json()
    assert [hit["id"] for hit in found["hits"]] == [f"policy-{policy_id}"]
    assert "住房公积金" in client.get("/search/", query_string={"q": "住房公积金"}).get_data(as_text=True)


def test_search_down_gives_503_api_and_a_notice_on_pages(suite: dict[str, Flask], client: Client) -> None:
    dead = ElasticsearchEngine(f"http://127.0.0.1:{free_port()}", timeout=1)
    for app in suite.values():
        app.extensions["gongkai.search_engine"] = dead
        app.extensions.pop("gongkai.search_alias_ready", None)
    api = client.get("/api/search?q=公积金")
    assert api.status_code == 503
    assert "搜索服务暂时不可用" in api.get_json()["message"]
    home = client.get("/")
    assert home.status_code == 200
    assert "搜索服务暂时不可用" in home.get_data(as_text=True)
    assert client.get("/interpret/policies").status_code == 503
