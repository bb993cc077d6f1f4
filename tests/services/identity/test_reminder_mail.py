"""The weekly coverage reminder reaches the department's editors and reviewers by e-mail (a real SMTP sink)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask

from services.db import get_database

from support.servers import free_port
from support.smtp import SmtpSink, running_smtp_sink


@pytest.fixture
def smtp_sink() -> Iterator[tuple[SmtpSink, int]]:
    with running_smtp_sink() as sink:
        yield sink, sink.port


def _event(department: str = "KJTA") -> dict[str, Any]:
    """An ``interpret.coverage.reminder`` message with the keys ``send_coverage_reminders`` and the relay give it."""
    missing = {"policy_id": 11, "department": department, "title": "关于促进科技成果转化的若干措施",
               "index_number": "KJTA-2026-0011", "document_number": "科发〔2026〕11号", "published_on": "2026-10-09",
               "due_on": "2026-10-09", "url": "/interpret/policies/11"}
    late = {"policy_id": 12, "department": department, "title": "科技计划项目管理办法",
            "index_number": "KJTA-2026-0012", "document_number": None, "published_on": "2026-10-12",
            "due_on": "2026-10-12", "url": "/interpret/policies/12", "interpretation_id": 5,
            "interpretation_title": "《科技计划项目管理办法》解读",
            "interpretation_url": "/interpret/interpretations/5",
            "interpreted_on": "2026-10-14", "working_days_after": 2, "working_days_late": 2}
    return {
        "id": str(uuid.uuid4()),
        "topic": "interpret.coverage.reminder",
        "aggregate_type": "department_coverage",
        "aggregate_id": department,
        "version": 202643,
        "payload": {
            "department": department, "week": "2026-W43", "generated_on": "2026-10-19", "late_working_days": 0,
            "missing_period": {"start": "2026-08-20", "end": "2026-10-19"},
            "late_period": {"start": "2026-10-12", "end": "2026-10-18"},
            "missing_count": 1, "late_count": 1, "missing": [missing], "late": [late], "truncated": False,
            "dashboard_url": f"/interpret/dashboard?department={department}",
        },
        "created_at": "2026-10-19T01:00:00+00:00",
    }


def _set_emails(app: Flask, org: dict[str, Any]) -> dict[str, str]:
    from services.identity.accounts import assign_role, create_user
    from services.identity.models import Department, User
    from services.permissions import Role

    addresses = {name: f"{name}@kjt.example.gov.cn" for name in org["users"]}
    with get_database("identity", app).transaction() as session:
        for name, user in org["users"].items():
            session.get(User, user.id).email = addresses[name]
        # A bureau-level editor covers the divisions below; an inactive one and one without e-mail get nothing.
        bureau = session.query(Department).filter_by(code="KJT").one()
        settings = app.extensions["gongkai.settings"]
        for name, active, address in (("editor_kjt", True, "editor_kjt@kjt.example.gov.cn"),
                                      ("gone_kjt", False, "gone@kjt.example.gov.cn"), ("noemail_kjt", True, None)):
            user = create_user(session, settings, username=name, display_name=name, password="Correct-Horse-42!")
            user.active, user.email = active, address
            assign_role(session, user, Role.EDITOR, bureau)
    return addresses


def test_the_reminder_is_mailed_once_to_the_departments_editors_and_reviewers(
    suite: dict[str, Flask], org: dict[str, Any], smtp_sink: tuple[SmtpSink, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.events import subscribers
    from services.identity.tasks import deliver_coverage_reminder

    assert subscribers("interpret.coverage.reminder") == ("identity.deliver_coverage_reminder",)
    sink, port = smtp_sink
    app = suite["identity"]
    addresses = _set_emails(app, org)
    monkeypatch.setitem(app.extensions, "gongkai.settings", replace(
        app.extensions["gongkai.settings"], smtp_host="127.0.0.1", smtp_port=port,
        public_base_url="https://gongkai.example.gov.cn/"))
    event = _event()
    with app.app_context():
        assert deliver_coverage_reminder(event) == "sent to 3"
        assert deliver_coverage_reminder(event) == "duplicate"  # a redelivery sends nothing more

    assert len(sink.messages) == 1
    recipients, message = sink.messages[0]
    expected = sorted([addresses["editor_a"], addresses["reviewer_a"], "editor_kjt@kjt.example.gov.cn"])
    assert sorted(recipients) == expected
    assert sorted(a.strip() for a in str(message["To"]).split(",")) == expected
    assert message["Subject"] == "【政策解读提醒】KJTA 2026年第43周：2 件本级政策缺少或逾期解读"
    assert message["From"] == "gongkai@localhost"
    body = message.get_content()
    assert "关于促进科技成果转化的若干措施" in body and "KJTA-2026-0011" in body
    assert "科技计划项目管理办法" in body and "KJTA-2026-0012" in body
    assert "https://gongkai.example.gov.cn/interpret/dashboard?department=KJTA" in body
    assert "https://gongkai.example.gov.cn/interpret/policies/11" in body


def test_without_smtp_host_the_reminder_is_skipped_with_a_warning(
    suite: dict[str, Flask], org: dict[str, Any], smtp_sink: tuple[SmtpSink, int], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from services.identity.tasks import deliver_coverage_reminder

    sink, _port = smtp_sink
    app = suite["identity"]
    _set_emails(app, org)
    monkeypatch.setitem(app.extensions, "gongkai.settings", replace(app.extensions["gongkai.settings"],
                                                                    smtp_host=None))
    event = _event()
    with app.app_context(), caplog.at_level(logging.WARNING, logger="services.identity.tasks"):
        assert deliver_coverage_reminder(event) == "skipped: e-mail disabled"
        assert deliver_coverage_reminder(event) == "duplicate"
    assert sink.messages == []
    warnings = [r for r in caplog.records if r.name == "services.identity.tasks" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "SMTP_HOST" in warnings[0].getMessage()


def test_an_unreachable_server_raises_mail_unavailable_for_a_retry(
    suite: dict[str, Flask], org: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.identity.tasks import deliver_coverage_reminder
    from services.mail import MailUnavailable

    app = suite["identity"]
    _set_emails(app, org)
    monkeypatch.setitem(app.extensions, "gongkai.settings", replace(
        app.extensions["gongkai.settings"], smtp_host="127.0.0.1", smtp_port=free_port()))
    event = _event()
    with app.app_context():
        with pytest.raises(MailUnavailable):
            deliver_coverage_reminder(event)
        # Nothing was recorded, so the retry tries again.
        with pytest.raises(MailUnavailable):
            deliver_coverage_reminder(event)
