"""The console's read side (services.press.dashboard) on real PostgreSQL with press rows seeded directly.

Bucket counts are checked to the message at the edges of the window (an hour or a Beijing day), the
formulas against services.press.topics, and every text shown for phone and ID numbers.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from services.db import get_database
from services.press import dashboard
from services.press.models import Alert, AlertRule, PressMessage, RecomputeRun, Response, ResponseTopic, Topic
from services.press.topics import burst_score, hotness

NOW = datetime(2025, 3, 10, 10, 30, tzinfo=UTC)
"""18:30 in Beijing: the 24 h window is [03-09 11:00, 03-10 11:00) UTC; the 7-day window is the Beijing days
03-04 .. 03-10, [03-03 16:00, 03-10 16:00) UTC."""
PHONE = "13812345678"
ID_NUMBER = "11010519491231002X"


@pytest.fixture
def db(suite: dict[str, Flask]) -> Iterator[Session]:
    with get_database("press", suite["press"]).transaction() as session:
        yield session


def topic(session: Session, label: str, keywords: list[str], **fields: Any) -> Topic:
    made = Topic(label=label, keywords=keywords, centroid={}, representative_ids=[], **fields)
    session.add(made)
    session.flush()
    return made


def message(session: Session, owner: Topic | None, at: datetime, title: str = "小区停车难", *,
            text: str = "小区车位不够。", department: str | None = "KJTA", category: str | None = "城乡建设",
            asker: str | None = None, likes: int = 0, state: str | None = "submitted") -> PressMessage:
    made = PressMessage(
        source="import", source_id=uuid.uuid4().hex, title=title, text=text, category=category,
        department=department, asker_key=asker or uuid.uuid4().hex, received_at=at, likes=likes, keywords=[],
        topic_id=owner.id if owner else None, state=state,
    )
    session.add(made)
    session.flush()
    return made


def test_hour_buckets_count_every_message_at_the_edges_of_the_window(db: Session) -> None:
    parking = topic(db, "停车·车位", ["停车", "车位"])
    start = datetime(2025, 3, 9, 11, tzinfo=UTC)
    times = {
        start - timedelta(microseconds=1): None,  # previous window
        start - timedelta(hours=5): None,  # previous window
        start: 0,
        start + timedelta(minutes=59, seconds=59, microseconds=999_999): 0,
        start + timedelta(hours=1): 1,
        datetime(2025, 3, 9, 20, 30, tzinfo=UTC): 9,
        datetime(2025, 3, 10, 10, 15, tzinfo=UTC): 23,
        datetime(2025, 3, 10, 10, 59, 59, tzinfo=UTC): 23,
    }
    for at in times:
        message(db, parking, at, asker="same-asker")
    message(db, parking, start - timedelta(days=3))  # history: baseline, outside both windows
    message(db, parking, datetime(2025, 3, 10, 11, tzinfo=UTC))  # after the window's end: not counted

    found = dashboard.rising_topics(db, "24h", now=NOW)

    assert (found.start, found.end) == (start, datetime(2025, 3, 10, 11, tzinfo=UTC))
    assert len(found.buckets) == 24 and found.labels[0] == "19:00" and found.labels[-1] == "18:00"
    [trend] = found.topics
    expected = [0] * 24
    for bucket in times.values():
        if bucket is not None:
            expected[bucket] += 1
    assert trend.counts == expected
    assert trend.current == sum(expected) == 6
    assert trend.previous == 2
    assert trend.size == 9 and trend.askers == 2  # one asker wrote eight of them
    assert trend.baseline == 3
    history = int((found.start - (start - timedelta(days=3))) / timedelta(days=1))
    assert trend.burst == pytest.approx(burst_score(6, 3, history))
    age = (NOW - datetime(2025, 3, 10, 10, 59, 59, tzinfo=UTC)).total_seconds() / 86400
    assert trend.hotness == pytest.approx(hotness(9, 2, 0, 6, 2, max(age, 0.0), 1.0))


def test_day_buckets_follow_beijing_days(db: Session) -> None:
    flood = topic(db, "积水·排水", ["积水", "排水"])
    start = datetime(2025, 3, 3, 16, tzinfo=UTC)  # 03-04 00:00 in Beijing
    message(db, flood, start - timedelta(seconds=1))  # 03-03 23:59:59 Beijing: previous window
    message(db, flood, start)  # bucket 0
    message(db, flood, datetime(2025, 3, 5, 15, 59, tzinfo=UTC))  # 03-05 23:59 Beijing: bucket 1
    message(db, flood, datetime(2025, 3, 5, 16, 0, tzinfo=UTC))  # 03-06 00:00 Beijing: bucket 2
    message(db, flood, datetime(2025, 3, 10, 10, 0, tzinfo=UTC), likes=4)  # today: bucket 6
    for window, buckets in (("7d", 7), ("30d", 30)):
        found = dashboard.rising_topics(db, window, now=NOW)
        assert found.end == datetime(2025, 3, 10, 16, tzinfo=UTC)
        assert len(found.topics[0].counts) == buckets and found.labels[-1] == "3月10日"
    found = dashboard.rising_topics(db, "7d", now=NOW)
    assert found.labels[0] == "3月4日"
    [trend] = found.topics
    assert trend.counts == [1, 1, 1, 0, 0, 0, 1]
    assert (trend.current, trend.previous, trend.likes) == (4, 1, 4)
    thirty = dashboard.rising_topics(db, "30d", now=NOW).topics[0]
    assert sum(thirty.counts) == thirty.current == 5 and thirty.counts[-7:] == [1, 1, 1, 0, 0, 0, 1]


def test_rising_topics_rank_by_hotness_and_leave_out_quiet_topics(db: Session) -> None:
    rising = topic(db, "搅拌站·噪音", ["搅拌站", "噪音"])
    steady = topic(db, "公交·线路", ["公交", "线路"])
    quiet = topic(db, "路灯", ["路灯"])
    for hours in range(8):
        message(db, rising, NOW - timedelta(hours=hours))
    for days in range(1, 14):
        message(db, steady, NOW - timedelta(days=days, hours=1))
    message(db, steady, NOW - timedelta(hours=2))
    message(db, quiet, NOW - timedelta(days=20))
    found = dashboard.rising_topics(db, "24h", now=NOW)
    assert [trend.topic_id for trend in found.topics] == [rising.id, steady.id]
    assert found.topics[0].burst > found.topics[1].burst
    assert found.chart(top=1)["series"] == [{"name": "搅拌站·噪音", "id": rising.id, "data": found.topics[0].counts}]
    assert [trend.topic_id for trend in dashboard.rising_topics(db, "24h", now=NOW, limit=1).topics] == [rising.id]


def test_filters_by_department_and_category(db: Session) -> None:
    shared = topic(db, "社保·缴费", ["社保", "缴费"])
    other = topic(db, "学位·入学", ["学位", "入学"])
    message(db, shared, NOW - timedelta(hours=1), department="KJTA", category="社会保障")
    message(db, shared, NOW - timedelta(hours=2), department="KJTB", category="社会保障")
    message(db, shared, NOW - timedelta(hours=3), department="KJTB", category="教育")
    message(db, other, NOW - timedelta(hours=1), department="KJTB", category="教育")

    everything = {t.topic_id: t for t in dashboard.rising_topics(db, "24h", now=NOW).topics}
    assert everything[shared.id].departments == ["KJTA", "KJTB"]
    assert everything[shared.id].categories == ["教育", "社会保障"]
    only_a = dashboard.rising_topics(db, "24h", department="KJTA", now=NOW)
    assert [(t.topic_id, t.current, t.departments) for t in only_a.topics] == [(shared.id, 1, ["KJTA"])]
    education_b = dashboard.rising_topics(db, "24h", department="KJTB", category="教育", now=NOW)
    assert sorted((t.topic_id, t.current) for t in education_b.topics) == [(shared.id, 1), (other.id, 1)]
    assert dashboard.filter_choices(db) == (["KJTA", "KJTB"], ["教育", "社会保障"])


def test_samples_keywords_and_messages_never_show_phone_or_id_numbers(db: Session) -> None:
    leaky = topic(db, f"电话{PHONE}", ["停车", f"身份证{ID_NUMBER}"])
    first = message(db, leaky, NOW - timedelta(hours=1), title=f"我的电话{PHONE}，请回电",
                    text=f"身份证号{ID_NUMBER}，手机{PHONE}。" + "小区停车位被占用。" * 20)
    message(db, leaky, NOW - timedelta(hours=2), title=f"身份证{ID_NUMBER}办理停车证")
    message(db, leaky, NOW - timedelta(hours=3), title="停车证怎么办")
    leaky.representative_ids = [first.id]
    db.flush()

    [trend] = dashboard.rising_topics(db, "24h", now=NOW).topics
    page = dashboard.topic_messages(db, leaky.id)
    detail = dashboard.topic_detail(db, leaky.id, "24h", now=NOW)
    assert detail is not None
    shown = repr((trend.as_dict(), page.as_dict(), detail.as_dict()))
    assert PHONE not in shown and ID_NUMBER not in shown and ID_NUMBER.lower() not in shown
    assert "［已隐去：电话号码］" in trend.samples[0]  # the representative comes first
    assert len(trend.samples) == 3 and "停车证怎么办" in trend.samples
    assert "［已隐去：身份证号］" in page.items[0].excerpt and page.items[0].excerpt.endswith("…")


def test_topic_messages_are_paginated_newest_first(db: Session) -> None:
    owner = topic(db, "停车", ["停车"])
    made = [message(db, owner, NOW - timedelta(minutes=minutes), title=f"留言{minutes}") for minutes in range(5)]
    first = dashboard.topic_messages(db, owner.id, page=1, per_page=2)
    last = dashboard.topic_messages(db, owner.id, page=3, per_page=2)
    assert (first.total, first.pages) == (5, 3)
    assert [item.id for item in first.items] == [made[0].id, made[1].id]
    assert [item.id for item in last.items] == [made[4].id]


def test_responded_only_with_a_published_linked_response(db: Session) -> None:
    answered = topic(db, "停车", ["停车"])
    drafted = topic(db, "噪音", ["噪音"])
    for owner in (answered, drafted):
        message(db, owner, NOW - timedelta(hours=1))
    published = Response(kind="response", title="关于停车问题的回应", state="published", published_at=NOW)
    draft = Response(kind="response", title="关于噪音问题的回应（草稿）", state="draft")
    db.add_all([published, draft])
    db.flush()
    db.add_all([ResponseTopic(response_id=published.id, topic_id=answered.id),
                ResponseTopic(response_id=draft.id, topic_id=drafted.id)])
    db.flush()
    trends = {t.topic_id: t for t in dashboard.rising_topics(db, "24h", now=NOW).topics}
    assert trends[answered.id].responded is True
    assert trends[drafted.id].responded is False
    assert [r["title"] for r in trends[answered.id].as_dict()["responses"]] == ["关于停车问题的回应"]
    detail = dashboard.topic_detail(db, drafted.id, now=NOW)
    assert detail is not None and [r.state for r in detail.responses] == ["draft"]


def test_alert_clocks_running_overdue_and_answered(db: Session) -> None:
    owner = topic(db, "停车", ["停车"])
    message(db, owner, NOW - timedelta(hours=1))
    rule = AlertRule(name="增长", kind="growth", terms=[], email_to=[])
    db.add(rule)
    db.flush()
    running = Alert(rule_id=rule.id, topic_id=owner.id, window_key="a", reason="24小时内新增10条",
                    fired_at=NOW - timedelta(hours=2), response_due=NOW + timedelta(hours=46))
    overdue = Alert(rule_id=rule.id, topic_id=owner.id, window_key="b", reason=f"提及电话{PHONE}",
                    fired_at=NOW - timedelta(hours=50), response_due=NOW - timedelta(hours=2))
    answered = Alert(rule_id=rule.id, topic_id=owner.id, window_key="c", reason="旧预警",
                     fired_at=NOW - timedelta(days=9), response_due=NOW - timedelta(days=7),
                     responded_at=NOW - timedelta(days=8))
    db.add_all([running, overdue, answered])
    db.flush()

    clocks = dashboard.alert_clocks(db, NOW)
    assert [clock.id for clock in clocks] == [overdue.id, running.id, answered.id]
    assert [clock.status for clock in clocks] == ["overdue", "running", "responded"]
    assert math.isclose(clocks[0].remaining_hours, -2) and math.isclose(clocks[1].remaining_hours, 46)
    assert [dashboard.clock_text(clock) for clock in clocks] == ["已超时 2.0 小时", "剩余 46 小时", "已回应"]
    assert PHONE not in clocks[0].reason
    assert [clock.id for clock in dashboard.alert_clocks(db, NOW, open_only=True)] == [overdue.id, running.id]
    [trend] = dashboard.rising_topics(db, "24h", now=NOW).topics
    assert [alert["id"] for alert in trend.as_dict()["open_alerts"]] == [overdue.id, running.id]


def test_recompute_status_reports_the_latest_run(db: Session) -> None:
    assert dashboard.recompute_status(db) is None
    db.add(RecomputeRun(state="finished", stage="done", done=10, total=10, started_at=NOW - timedelta(hours=2),
                        finished_at=NOW - timedelta(hours=1)))
    db.add(RecomputeRun(state="running", stage="clustering", done=25, total=100, started_at=NOW))
    db.flush()
    status = dashboard.recompute_status(db)
    assert status is not None
    assert (status["state"], status["stage"], status["percent"]) == ("running", "clustering", 25.0)


def test_linked_documents_come_from_the_search_index(suite: dict[str, Flask], monkeypatch: pytest.MonkeyPatch) -> None:
    from services.web import content_alias

    from support.search_content import Newsroom

    for service in ("interpret", "consult"):
        monkeypatch.setattr(get_database(service, suite[service]), "publisher", None)
    newsroom = Newsroom(suite)
    newsroom.answer("高新技术企业认定如何申请", question=f"高新技术企业认定怎么申请？电话{PHONE}")
    newsroom.answer("公积金提取流程")
    newsroom.sync()
    with suite["press"].app_context():
        engine, alias = content_alias(suite["press"])
        documents, available = dashboard.linked_documents(engine, alias, ["高新技术企业", "认定", "不存在的词"])
    assert available
    assert [document["title"] for document in documents] == ["高新技术企业认定如何申请"]
    assert documents[0]["doc_type"] == "answer" and PHONE not in repr(documents)


def test_sparkline_points_scale_to_the_box() -> None:
    assert dashboard.sparkline_points([0, 2, 1], width=100, height=20) == "0.0,18.0 50.0,2.0 100.0,10.0"
    assert dashboard.sparkline_points([]) == ""
