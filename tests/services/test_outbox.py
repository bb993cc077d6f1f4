"""The outbox commits with the data, survives a failing broker, and consumers apply events once."""

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from interpret.models import OutboxEvent, Policy
from search.models import ProcessedEvent
from services.db import get_database
from services.outbox import BrokerUnavailable, first_delivery, pending_count, relay_pending

from support.content import published_policy


class RecordingPublisher:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.sent: list[tuple[str, dict[str, Any], str | None]] = []

    def __call__(self, task_name: str, message: dict[str, Any], request_id: str | None) -> None:
        if self.fail:
            raise BrokerUnavailable("connection refused")
        self.sent.append((task_name, message, request_id))


def _publish_one(app: Flask, title: str = "关于做好住房公积金缴存工作的通知") -> int:
    database = get_database("interpret", app)
    with database.transaction() as session:
        policy = published_policy(session, title)
        return policy.id


def test_event_and_data_commit_together(suite: dict[str, Flask]) -> None:
    app = suite["interpret"]
    database = get_database("interpret", app)
    database.publisher = None  # keep the event pending for inspection
    policy_id = _publish_one(app)
    with database.transaction() as session:
        event = session.scalars(
            select(OutboxEvent).where(
                OutboxEvent.aggregate_id == str(policy_id), OutboxEvent.aggregate_type == "policy"
            )
        ).one()
        audited = session.scalars(select(OutboxEvent.aggregate_id).where(OutboxEvent.topic == "audit.recorded")).all()
    assert event.topic == "interpret.policy.published"
    assert event.aggregate_version == 1
    assert audited == ["policy.create", "policy.submit", "policy.approve", "policy.publish"]
    assert event.payload["document"]["title"] == "关于做好住房公积金缴存工作的通知"
    assert event.sent_at is None


def test_a_failed_write_leaves_neither_data_nor_event(suite: dict[str, Flask]) -> None:
    database = get_database("interpret", suite["interpret"])

    def write_then_fail() -> None:
        with database.transaction() as session:
            published_policy(session, "不会保存")
            raise RuntimeError("the request failed after the event was written")

    with pytest.raises(RuntimeError):
        write_then_fail()
    with database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Policy)) == 0
        assert session.scalar(select(func.count()).select_from(OutboxEvent)) == 0


def test_relay_keeps_events_while_the_broker_is_down_and_sends_them_after(suite: dict[str, Flask]) -> None:
    app = suite["interpret"]
    database = get_database("interpret", app)
    database.publisher = None
    for number in range(3):
        _publish_one(app, f"政策{number}")

    events = pending_count(database, OutboxEvent)  # per policy: one index event and four audit entries
    assert events == 3 * 5

    down = RecordingPublisher(fail=True)
    report = relay_pending(database, OutboxEvent, down, min_age=timedelta(0))
    assert (report.sent, report.failed) == (0, 1)
    assert pending_count(database, OutboxEvent) == events
    with database.transaction() as session:
        attempts = session.scalars(select(OutboxEvent.attempts)).all()
        errors = session.scalars(select(OutboxEvent.last_error)).all()
    assert sorted(attempts) == [0] * (events - 1) + [1]
    assert any(error and "connection refused" in error for error in errors)

    up = RecordingPublisher()
    report = relay_pending(database, OutboxEvent, up, min_age=timedelta(0))
    assert report.sent == events
    assert pending_count(database, OutboxEvent) == 0
    tasks = [task for task, _, _ in up.sent]
    assert tasks.count("search.index_document") == 3
    assert tasks.count("identity.append_audit") == 12
    assert relay_pending(database, OutboxEvent, up, min_age=timedelta(0)).sent == 0


def test_events_are_sent_right_after_commit_when_the_broker_answers(suite: dict[str, Flask]) -> None:
    app = suite["interpret"]
    database = get_database("interpret", app)
    publisher = RecordingPublisher()
    database.publisher = publisher
    try:
        _publish_one(app)
    finally:
        database.publisher = None
    # One task per subscriber: the policy's publication goes to the index and to the press office's policy list.
    assert len(publisher.sent) == 6
    assert pending_count(database, OutboxEvent) == 0


def test_a_consumer_applies_each_event_once(suite: dict[str, Flask]) -> None:
    database = get_database("search", suite["search"])
    applied = []
    for _ in range(3):
        with first_delivery(database, ProcessedEvent, "test.consumer", "event-1") as session:
            if session is not None:
                applied.append("event-1")
    assert applied == ["event-1"]
