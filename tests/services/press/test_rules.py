"""Alert rules (services.press.rules) through the API and the console pages: validation with field errors
(422, nothing written), defaults for the response clock, every change audited through the outbox."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from services.auth import StaffIdentity
from services.db import get_database, utcnow
from services.permissions import Grant, NotPermitted, Role
from services.press import rules
from services.press.models import Alert, AlertRule, OutboxEvent, Topic
from services.workflow import ContentProblem

from .test_console_api import Officer

VALID: dict[str, Any] = {
    "name": "停车话题增长", "kind": "growth", "min_messages": 10, "within_hours": 24, "min_burst": 3,
    "email_to": ["press@example.gov.cn"], "webhook_url": "https://hooks.example.gov.cn/press",
}
OFFICER = StaffIdentity(7001, "press_x", "宣传", (Grant(Role.PRESS_OFFICER, "KJT", ("KJT",)),), "s", "api")


@pytest.fixture
def officer(suite: dict[str, Flask], org: dict[str, Any]) -> Officer:
    return Officer(suite, "press_officer_a")


def _counts(suite: dict[str, Flask]) -> tuple[int, int]:
    with get_database("press", suite["press"]).transaction() as session:
        rules_count = session.scalar(select(func.count()).select_from(AlertRule)) or 0
        audits = session.scalar(select(func.count()).select_from(OutboxEvent)
                                .where(OutboxEvent.topic == "audit.recorded")) or 0
    return rules_count, audits


def _audit_actions(suite: dict[str, Flask]) -> list[str]:
    with get_database("press", suite["press"]).transaction() as session:
        events = session.scalars(select(OutboxEvent).where(OutboxEvent.topic == "audit.recorded")
                                 .order_by(OutboxEvent.created_at, OutboxEvent.id))
        return [event.payload["action"] for event in events]


def test_rules_crud_through_the_api_is_audited(suite: dict[str, Flask], officer: Officer) -> None:
    created = officer.call("POST", "/api/press/rules", VALID)
    assert created.status_code == 201, created.get_json()
    rule = created.get_json()
    assert rule["response_hours"] == 48 and rule["enabled"] is True
    emergency = officer.call("POST", "/api/press/rules", {"name": "突发事件", "kind": "emergency",
                                                          "terms": ["爆炸", "火灾", "爆炸"]}).get_json()
    assert emergency["response_hours"] == 5 and emergency["terms"] == ["爆炸", "火灾"]
    listed = officer.call("GET", "/api/press/rules").get_json()["items"]
    assert {item["id"] for item in listed} == {rule["id"], emergency["id"]}
    changed = officer.call("PUT", f"/api/press/rules/{rule['id']}", {**VALID, "within_hours": 6, "enabled": False,
                                                                     "response_hours": 24})
    assert changed.status_code == 200
    assert (changed.get_json()["within_hours"], changed.get_json()["enabled"]) == (6, False)
    assert officer.call("GET", f"/api/press/rules/{rule['id']}").get_json()["response_hours"] == 24
    assert officer.call("DELETE", f"/api/press/rules/{emergency['id']}").status_code == 204
    assert officer.call("GET", f"/api/press/rules/{emergency['id']}").status_code == 404
    assert officer.call("PUT", "/api/press/rules/999999999", VALID).status_code == 404
    assert _audit_actions(suite) == ["alert_rule.create", "alert_rule.create", "alert_rule.update",
                                     "alert_rule.delete"]


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"kind": "sometimes"}, "kind"),
    ({"min_messages": 0}, "min_messages"),
    ({"within_hours": 0}, "within_hours"),
    ({"within_hours": 721}, "within_hours"),
    ({"min_burst": -0.5}, "min_burst"),
    ({"kind": "emergency", "terms": []}, "terms"),
    ({"response_hours": 0}, "response_hours"),
    ({"response_hours": 1000}, "response_hours"),
    ({"email_to": ["press@example.gov.cn", "not-an-address"]}, "email_to"),
    ({"webhook_url": "ftp://hooks.example.gov.cn/press"}, "webhook_url"),
    ({"webhook_url": "javascript:alert(1)"}, "webhook_url"),
    ({"name": ""}, "name"),
]


def test_invalid_rules_are_refused_with_field_errors_and_nothing_written(
    suite: dict[str, Flask], officer: Officer
) -> None:
    before = _counts(suite)
    for change, field in INVALID:
        answer = officer.call("POST", "/api/press/rules", {**VALID, **change})
        assert answer.status_code == 422, (change, answer.get_json())
        assert field in answer.get_json()["errors"]["json"], change
    created = officer.call("POST", "/api/press/rules", VALID).get_json()
    for change, field in INVALID:
        answer = officer.call("PUT", f"/api/press/rules/{created['id']}", {**VALID, **change})
        assert answer.status_code == 422 and field in answer.get_json()["errors"]["json"], change
    assert officer.call("GET", f"/api/press/rules/{created['id']}").get_json()["name"] == VALID["name"]
    assert _counts(suite) == (before[0] + 1, before[1] + 1)


def test_the_business_rule_checks_what_the_schema_cannot(suite: dict[str, Flask]) -> None:
    """The pages send text: the same checks run in services.press.rules, with Chinese messages."""
    cases: list[tuple[dict[str, Any], str]] = [
        ({"kind": "emergency", "terms": " ，\n"}, "terms"),
        ({"min_messages": "十"}, "min_messages"),
        ({"within_hours": "1.5"}, "within_hours"),
        ({"min_burst": "abc"}, "min_burst"),
        ({"email_to": "a@b"}, "email_to"),
        ({"webhook_url": "https:///no-host"}, "webhook_url"),
        ({"response_hours": "721"}, "response_hours"),
        ({"name": "规" * 101}, "name"),
    ]
    with get_database("press", suite["press"]).transaction() as session:
        for change, field in cases:
            with pytest.raises(ContentProblem) as refused:
                rules.create_rule(session, OFFICER, rules.RuleFields.from_mapping({**VALID, **change}))
            assert field in refused.value.errors, change
        assert session.scalar(select(func.count()).select_from(AlertRule)) == 0
        rule = rules.create_rule(session, OFFICER, rules.RuleFields.from_mapping(
            {**VALID, "email_to": "a@example.gov.cn，b@example.gov.cn\nc@example.gov.cn", "response_hours": ""}))
        assert rule.email_to == ["a@example.gov.cn", "b@example.gov.cn", "c@example.gov.cn"]
        assert rule.response_hours == 48
        editor = StaffIdentity(7002, "editor_x", "编辑", (Grant(Role.EDITOR, "KJT", ("KJT",)),), "s", "api")
        with pytest.raises(NotPermitted):
            rules.create_rule(session, editor, rules.RuleFields.from_mapping(VALID))


def test_a_rule_that_fired_cannot_be_deleted_only_disabled(suite: dict[str, Flask], officer: Officer) -> None:
    with get_database("press", suite["press"]).transaction() as session:
        topic = Topic(label="停车", keywords=["停车"], centroid={}, representative_ids=[])
        rule = AlertRule(name="已触发", kind="growth", terms=[], email_to=[])
        session.add_all([topic, rule])
        session.flush()
        session.add(Alert(rule_id=rule.id, topic_id=topic.id, window_key="w", reason="增长",
                          response_due=utcnow()))
        rule_id = rule.id
    before = _counts(suite)
    answer = officer.call("DELETE", f"/api/press/rules/{rule_id}")
    assert answer.status_code == 422 and "rule" in answer.get_json()["errors"]["json"]
    page = officer.post(f"/press/rules/{rule_id}/delete", {})
    assert page.status_code == 422 and "请改为停用" in page.get_data(as_text=True)
    assert _counts(suite) == before


def test_rules_pages_create_edit_and_refuse(suite: dict[str, Flask], officer: Officer) -> None:
    form = {"name": "紧急事件", "kind": "emergency", "min_messages": "10", "within_hours": "24", "min_burst": "3",
            "terms": "爆炸\n坍塌", "response_hours": "", "email_to": "duty@example.gov.cn", "webhook_url": "",
            "enabled": "1"}
    refused = officer.post("/press/rules", {**form, "terms": "", "webhook_url": "ftp://x"})
    assert refused.status_code == 422
    text = refused.get_data(as_text=True)
    assert "紧急词规则至少需要一个紧急词" in text and "Webhook 地址须为" in text
    assert 'value="紧急事件"' in text  # the form keeps what was typed
    assert _counts(suite)[0] == 0
    created = officer.post("/press/rules", form)
    assert (created.status_code, created.headers["Location"]) == (303, "/press/rules?done=create")
    with get_database("press", suite["press"]).transaction() as session:
        rule = session.scalars(select(AlertRule)).one()
        assert (rule.terms, rule.response_hours, rule.email_to) == (["爆炸", "坍塌"], 5, ["duty@example.gov.cn"])
        rule_id = rule.id
    listing = officer.page("/press/rules?done=create").get_data(as_text=True)
    assert "规则已添加。" in listing and "爆炸、坍塌" in listing
    edited = officer.post(f"/press/rules/{rule_id}", {**form, "response_hours": "3", "enabled": ""})
    assert edited.status_code == 303
    bad_edit = officer.post(f"/press/rules/{rule_id}", {**form, "within_hours": "0"})
    assert bad_edit.status_code == 422 and "时间范围须为" in bad_edit.get_data(as_text=True)
    with get_database("press", suite["press"]).transaction() as session:
        saved = session.get(AlertRule, rule_id)
        assert saved is not None and (saved.response_hours, saved.enabled, saved.within_hours) == (3, False, 24)
    assert officer.post(f"/press/rules/{rule_id}/delete", {}).headers["Location"] == "/press/rules?done=delete"
    assert _audit_actions(suite) == ["alert_rule.create", "alert_rule.update", "alert_rule.delete"]
    assert officer.page("/press/rules/999999999").status_code == 404
