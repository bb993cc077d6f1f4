"""Alert rules: growth with a burst against the topic's own baseline, emergency terms, once per window,
the response clock and its stop."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Flask
from sqlalchemy import select

from services.db import get_database
from services.press import alerts, engine, ingest
from services.press.models import Alert, AlertRule, OutboxEvent, Response
from services.press.topics import Message

NOW = datetime(2025, 3, 20, 12, tzinfo=UTC)


def _add(suite: dict[str, Flask], prefix: str, title: str, text: str, times: list[datetime]) -> None:
    settings = suite["press"].extensions["gongkai.settings"]
    ingest.import_messages(get_database("press", suite["press"]).transaction, settings, [
        Message(id=f"{prefix}{i}", title=title, text=f"{text}{i}", asker=f"{prefix}{i}", time=moment)
        for i, moment in enumerate(times)])


def test_a_burst_fires_once_a_steady_topic_never_and_a_response_stops_the_clock(suite: dict[str, Flask]) -> None:
    settings = suite["press"].extensions["gongkai.settings"]
    database = get_database("press", suite["press"])
    steady = [NOW - timedelta(days=d, hours=h) for d in range(10) for h in (1, 5, 9, 13, 17, 21)]
    _add(suite, "s", "阳光花园小区停车位收费过高", "停车位收费过高", steady)
    with database.transaction() as session:
        alerts.ensure_default_rules(session, settings)
        assert engine.update_topics(session, settings, now=NOW).alerts == []  # 6 a day, every day: steady
        growth = session.scalar(select(AlertRule).where(AlertRule.kind == "growth"))
        assert growth is not None
        growth.min_messages = 5
    _add(suite, "b", "滨江壹号小区自来水发黄", "自来水发黄有异味", [NOW - timedelta(minutes=m) for m in range(1, 7)])
    with database.transaction() as session:
        fired = engine.update_topics(session, settings, now=NOW).alerts
        assert len(fired) == 1
        alert = session.get(Alert, fired[0])
        assert alert is not None and alert.response_due == NOW + timedelta(hours=48)
        assert alert.details["current"] == 6 and alert.details["burst"] >= 3
        assert session.scalars(select(OutboxEvent).where(OutboxEvent.topic == "press.alert.fired")).all()
        # Same window, later: no second alert; nor in the next bucket while the first is < 24 h old.
        assert alerts.evaluate(session, settings, [alert.topic_id], now=NOW + timedelta(minutes=5)) == []
        assert alerts.evaluate(session, settings, [alert.topic_id], now=NOW + timedelta(hours=13)) == []
        response = Response(kind="response", title="关于滨江壹号小区供水的回应")
        session.add(response)
        session.flush()
        assert alerts.record_response(session, [alert.topic_id], response.id, at=NOW + timedelta(hours=3)) == 1
        session.refresh(alert)
        assert alert.responded_at == NOW + timedelta(hours=3) and alert.response_id == response.id
        assert alerts.record_response(session, [alert.topic_id], response.id) == 0  # already stopped


def test_an_emergency_term_fires_with_the_short_clock(suite: dict[str, Flask]) -> None:
    settings = suite["press"].extensions["gongkai.settings"]
    database = get_database("press", suite["press"])
    _add(suite, "e", "化工厂附近有刺鼻气味", "疑似气体泄漏，电话13912345678", [NOW - timedelta(minutes=3)])
    with database.transaction() as session:
        fired = engine.update_topics(session, settings, now=NOW).alerts
        assert len(fired) == 1
        alert = session.get(Alert, fired[0])
        assert alert is not None and alert.details["terms"] == ["泄漏"]
        assert alert.response_due == NOW + timedelta(hours=5)
        rule = session.get(AlertRule, alert.rule_id)
        assert rule is not None
        shown = alerts.notice(alert, rule, None, settings)
        assert "13912345678" not in str(shown) and shown["samples"]
