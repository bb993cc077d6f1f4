"""The read side of the press office console: rising topics, a topic's detail, alert clocks.

Plain functions over the press tables, shared by the API (:mod:`services.press.api`) and the pages
(:mod:`services.press.pages`). Nothing here writes.

Windows and buckets
-------------------
A window ends at the end of the current bucket, so that the chart's last point is "now" and the
buckets add up exactly to the window's count:

* ``24h``: 24 hour buckets, the last one the hour in progress;
* ``7d`` / ``30d``: 7 or 30 day buckets in Beijing time (UTC+8, no daylight saving), the last one today.

The *current* window is ``[start, end)``, the *previous* one the same length before it. Counts per
bucket are one SQL ``GROUP BY`` (topic, bucket number) over ``press_message``; the bucket number is
``floor((epoch(received_at) - epoch(start)) / bucket seconds)``, written for PostgreSQL and SQLite.

Hotness and the burst score are :func:`services.press.topics.hotness` and
:func:`services.press.topics.burst_score` (formulas in that module's docstring), fed with the
counts of the messages that pass the filters: ``size`` (all messages up to the window's end),
distinct askers, likes, the current and previous windows, the age of the latest message in days,
and as the burst baseline the topic's messages before the window over the whole windows of history
since the press office's first message.

Everything shown passes through :func:`services.text.pii.redact` once more, however it was stored.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import ColumnElement, Float, Integer, String, and_, case, cast, func, literal, select
from sqlalchemy.orm import Session

from services.press.models import Alert, AlertRule, PressMessage, RecomputeRun, Response, ResponseTopic, Topic
from services.press.search_interest import search_interest_by_topic
from services.press.topics import burst_score, hotness
from services.searchengine.port import SearchEngine, SearchEngineError, SearchQuery, SearchUnavailable
from services.text.pii import redact

BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")


@dataclass(frozen=True)
class Window:
    key: str
    buckets: int
    bucket_seconds: int

    @property
    def days(self) -> float:
        return self.buckets * self.bucket_seconds / 86400

    @property
    def length(self) -> timedelta:
        return timedelta(seconds=self.buckets * self.bucket_seconds)


WINDOWS: dict[str, Window] = {
    "24h": Window("24h", 24, 3600),
    "7d": Window("7d", 7, 86400),
    "30d": Window("30d", 30, 86400),
}
DEFAULT_WINDOW = "7d"
WINDOW_LABELS = {"24h": "24小时", "7d": "7天", "30d": "30天"}
SAMPLES = 3
"""Sample questions per topic."""
EXCERPT = 120
"""Characters of a message's redacted text shown in the drill-down list."""
MESSAGES_PER_PAGE = 50
LINKED_DOCUMENTS = 5
RESPONDED_STATE = "published"


def safe(text: str | None) -> str:
    """Text fit for the press office: phone, ID, e-mail and bank card numbers (and the like) replaced."""
    return redact(text or "").text


def as_of_moment(day: date) -> datetime:
    """The last moment of a Beijing day: the dashboard "as of" that day (a past period, for a report or
    for historical messages) ends its windows with that day."""
    return datetime.combine(day + timedelta(days=1), time.min, BEIJING).astimezone(UTC) - timedelta(seconds=1)


def latest_message_day(session: Session) -> date | None:
    """The Beijing day of the newest message (offered when the current window is empty)."""
    latest = session.scalar(select(func.max(PressMessage.received_at)))
    return latest.astimezone(BEIJING).date() if latest else None


def window_bounds(window: Window, now: datetime) -> tuple[datetime, datetime]:
    """``(start, end)`` of the current window ending with the bucket ``now`` falls in."""
    now = now.astimezone(UTC)
    if window.bucket_seconds == 3600:
        end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    else:
        local = now.astimezone(BEIJING)
        end = local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    end = end.astimezone(UTC)
    return end - window.length, end


def bucket_starts(window: Window, start: datetime) -> list[datetime]:
    return [start + timedelta(seconds=i * window.bucket_seconds) for i in range(window.buckets)]


def bucket_label(window: Window, moment: datetime) -> str:
    local = moment.astimezone(BEIJING)
    return local.strftime("%H:00") if window.bucket_seconds == 3600 else f"{local.month}月{local.day}日"


def _epoch(session: Session, column: Any) -> ColumnElement[Any]:
    """Seconds since 1970 of a timestamp column, in the session's SQL dialect."""
    if session.get_bind().dialect.name == "sqlite":
        return cast(func.strftime("%s", column), Integer)
    return func.extract("epoch", column)


def _bucket(session: Session, column: Any, start: datetime, seconds: int) -> ColumnElement[Any]:
    offset = _epoch(session, column) - literal(int(start.timestamp()))
    if session.get_bind().dialect.name == "sqlite":
        return cast(offset / seconds, Integer)  # integer division of non-negative whole seconds
    return cast(func.floor(cast(offset, Float) / seconds), Integer)


def _filters(department: str | None, category: str | None) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [PressMessage.topic_id.is_not(None)]
    if department:
        conditions.append(PressMessage.department == department)
    if category:
        conditions.append(PressMessage.category == category)
    return conditions


# -- rising topics --------------------------------------------------------------------------------


@dataclass
class AlertClock:
    """An alert and its response clock."""

    id: int
    topic_id: int
    topic_label: str
    rule_id: int
    rule_name: str
    rule_kind: str
    reason: str
    fired_at: datetime
    response_due: datetime
    responded_at: datetime | None
    response_id: int | None
    remaining_hours: float
    """Hours left until the response is due; negative once overdue."""

    @property
    def open(self) -> bool:
        return self.responded_at is None and self.response_id is None

    @property
    def overdue(self) -> bool:
        return self.open and self.remaining_hours < 0

    @property
    def status(self) -> str:
        """``responded``, ``overdue`` or ``running``."""
        return "responded" if not self.open else ("overdue" if self.overdue else "running")

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "topic_id": self.topic_id, "topic_label": self.topic_label, "rule_id": self.rule_id,
            "rule_name": self.rule_name, "rule_kind": self.rule_kind, "reason": self.reason,
            "fired_at": self.fired_at, "response_due": self.response_due, "responded_at": self.responded_at,
            "response_id": self.response_id, "open": self.open, "overdue": self.overdue, "status": self.status,
            "remaining_hours": round(self.remaining_hours, 2),
        }


@dataclass
class ResponseRef:
    id: int
    kind: str
    title: str
    state: str
    published_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "title": self.title, "state": self.state,
                "published_at": self.published_at}


@dataclass
class TopicTrend:
    topic_id: int
    label: str
    keywords: list[str]
    """The shared keywords: why these messages were grouped."""
    size: int
    askers: int
    likes: int
    current: int
    previous: int
    baseline: int
    burst: float
    hotness: float
    first_at: datetime | None
    last_at: datetime | None
    counts: list[int] = field(default_factory=list)
    """Messages per bucket of the current window (adds up to ``current``)."""
    departments: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)
    responses: list[ResponseRef] = field(default_factory=list)
    alerts: list[AlertClock] = field(default_factory=list)
    emergency: bool = False
    searches: int = 0
    """Public searches of the last ``PRESS_SEARCH_WINDOW_HOURS`` sharing a word with the keywords."""

    @property
    def responded(self) -> bool:
        return any(response.state == RESPONDED_STATE for response in self.responses)

    @property
    def open_alerts(self) -> list[AlertClock]:
        return [alert for alert in self.alerts if alert.open]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.topic_id, "label": self.label, "keywords": self.keywords, "size": self.size,
            "askers": self.askers, "likes": self.likes, "current": self.current, "previous": self.previous,
            "baseline": self.baseline, "burst": round(self.burst, 3), "hotness": round(self.hotness, 3),
            "first_at": self.first_at, "last_at": self.last_at, "counts": self.counts,
            "departments": self.departments, "categories": self.categories, "samples": self.samples,
            "responded": self.responded, "emergency": self.emergency, "searches": self.searches,
            "responses": [response.as_dict() for response in self.responses if response.state == RESPONDED_STATE],
            "open_alerts": [alert.as_dict() for alert in self.open_alerts],
        }


@dataclass
class RisingTopics:
    window: Window
    start: datetime
    end: datetime
    now: datetime
    department: str | None
    category: str | None
    buckets: list[datetime]
    topics: list[TopicTrend]

    @property
    def labels(self) -> list[str]:
        return [bucket_label(self.window, moment) for moment in self.buckets]

    def chart(self, top: int = 5) -> dict[str, Any]:
        """The data of the main chart: the counts over time of the top topics."""
        return {
            "labels": self.labels,
            "series": [{"name": topic.label, "id": topic.topic_id, "data": topic.counts}
                       for topic in self.topics[:top]],
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "window": self.window.key, "start": self.start, "end": self.end, "now": self.now,
            "department": self.department, "category": self.category,
            "buckets": self.buckets, "bucket_labels": self.labels,
            "topics": [topic.as_dict() for topic in self.topics],
        }


def rising_topics(
    session: Session,
    window: str = DEFAULT_WINDOW,
    department: str | None = None,
    category: str | None = None,
    now: datetime | None = None,
    limit: int = 20,
    topic_ids: Sequence[int] | None = None,
) -> RisingTopics:
    """The topics with messages in the current window, hottest first (or the given topics, in that order)."""
    spec = WINDOWS[window]
    now = (now or datetime.now(UTC)).astimezone(UTC)
    start, end = window_bounds(spec, now)
    previous_start = start - spec.length
    conditions = [*_filters(department, category), PressMessage.received_at < end]
    if topic_ids is not None:
        conditions.append(PressMessage.topic_id.in_(list(topic_ids)))
    received = PressMessage.received_at
    asker = func.coalesce(PressMessage.asker_key, cast(PressMessage.id, String))
    rows: list[Any] = list(session.execute(
        select(
            PressMessage.topic_id,
            func.count(),
            func.count(asker.distinct()),
            func.coalesce(func.sum(PressMessage.likes), 0),
            func.sum(case((received >= start, 1), else_=0)),
            func.sum(case((and_(received >= previous_start, received < start), 1), else_=0)),
            func.sum(case((received < start, 1), else_=0)),
            func.min(received),
            func.max(received),
        ).where(*conditions).group_by(PressMessage.topic_id)
    ).all())
    first = session.scalar(select(func.min(PressMessage.received_at)))
    history_windows = max(int((start - first) / spec.length), 0) if first is not None and first < start else 0
    trends: dict[int, TopicTrend] = {}
    searches = search_interest_by_topic(session, [int(row[0]) for row in rows if row[0] is not None])
    for topic_id, size, askers, likes, current, previous, baseline, first_at, last_at in rows:
        if topic_id is None or (topic_ids is None and not current):
            continue
        age_days = max((now - last_at).total_seconds(), 0.0) / 86400 if last_at else 0.0
        trends[int(topic_id)] = TopicTrend(
            topic_id=int(topic_id), label="", keywords=[], size=int(size), askers=int(askers), likes=int(likes),
            current=int(current), previous=int(previous), baseline=int(baseline),
            burst=burst_score(int(current), int(baseline), history_windows),
            hotness=hotness(int(size), int(askers), int(likes), int(current), int(previous), age_days, spec.days,
                            searches=searches.get(int(topic_id), 0)),
            first_at=first_at, last_at=last_at, counts=[0] * spec.buckets, searches=searches.get(int(topic_id), 0),
        )
    if topic_ids is None:
        chosen = sorted(trends.values(), key=lambda t: (-t.hotness, -t.burst, -t.current, t.topic_id))[:limit]
    else:
        chosen = [trends[topic_id] for topic_id in topic_ids if topic_id in trends]
    _fill(session, chosen, spec, start, end, department, category, now)
    return RisingTopics(spec, start, end, now, department, category, bucket_starts(spec, start), chosen)


def _fill(session: Session, trends: list[TopicTrend], spec: Window, start: datetime, end: datetime,
          department: str | None, category: str | None, now: datetime) -> None:
    """Labels, buckets, departments, samples, responses and alerts of the chosen topics."""
    if not trends:
        return
    by_id = {trend.topic_id: trend for trend in trends}
    ids = list(by_id)
    conditions = [*_filters(department, category), PressMessage.topic_id.in_(ids)]
    topics = {topic.id: topic for topic in session.scalars(select(Topic).where(Topic.id.in_(ids)))}
    for topic_id, trend in by_id.items():
        topic = topics[topic_id]
        trend.label = safe(topic.label)
        trend.keywords = [safe(word) for word in topic.keywords or []]
        trend.emergency = bool(topic.emergency)
    bucket = _bucket(session, PressMessage.received_at, start, spec.bucket_seconds).label("bucket")
    counted: list[Any] = list(session.execute(
        select(PressMessage.topic_id, bucket, func.count())
        .where(*conditions, PressMessage.received_at >= start, PressMessage.received_at < end)
        .group_by(PressMessage.topic_id, bucket)
    ).all())
    for owner, number, count in counted:
        if 0 <= int(number) < spec.buckets:
            by_id[int(owner)].counts[int(number)] += int(count)
    involved: list[Any] = list(session.execute(
        select(PressMessage.topic_id, PressMessage.department, PressMessage.category).distinct()
        .where(*conditions, PressMessage.received_at < end)
    ).all())
    for owner, department_code, category_name in involved:
        trend = by_id[int(owner)]
        if department_code and department_code not in trend.departments:
            trend.departments.append(department_code)
        if category_name and category_name not in trend.categories:
            trend.categories.append(category_name)
    for trend in trends:
        trend.departments.sort()
        trend.categories.sort()
    _samples(session, by_id, topics, conditions, end)
    for topic_id, responses in linked_responses(session, ids).items():
        by_id[topic_id].responses = responses
    for clock in alert_clocks(session, now, topic_ids=ids):
        by_id[clock.topic_id].alerts.append(clock)


def _samples(session: Session, by_id: dict[int, TopicTrend], topics: dict[int, Topic],
             conditions: list[ColumnElement[bool]], end: datetime) -> None:
    """Up to :data:`SAMPLES` distinct redacted titles per topic: its representatives, then its latest."""
    representative_ids = {message_id for topic in topics.values() for message_id in topic.representative_ids or []}
    titles: dict[int, list[str]] = defaultdict(list)

    def add(topic_id: int, title: str) -> None:
        shown = safe(title).strip()
        if shown and shown not in titles[topic_id] and len(titles[topic_id]) < SAMPLES:
            titles[topic_id].append(shown)

    if representative_ids:
        found = {message.id: message for message in session.scalars(
            select(PressMessage).where(*conditions, PressMessage.id.in_(representative_ids),
                                       PressMessage.received_at < end))}
        for topic_id, topic in topics.items():
            for message_id in topic.representative_ids or []:
                message = found.get(message_id)
                if message is not None and message.topic_id == topic_id:
                    add(topic_id, message.title)
    rank = func.row_number().over(partition_by=PressMessage.topic_id,
                                  order_by=(PressMessage.received_at.desc(), PressMessage.id.desc())).label("rank")
    latest = select(PressMessage.topic_id, PressMessage.title, rank).where(
        *conditions, PressMessage.received_at < end).subquery()
    newest: list[Any] = list(session.execute(
        select(latest.c.topic_id, latest.c.title, latest.c.rank)
        .where(latest.c.rank <= SAMPLES * 2).order_by(latest.c.topic_id, latest.c.rank)
    ).all())
    for owner, title, _rank in newest:
        add(int(owner), str(title))
    for topic_id, trend in by_id.items():
        trend.samples = titles.get(topic_id, [])


def linked_responses(session: Session, topic_ids: Sequence[int]) -> dict[int, list[ResponseRef]]:
    """The responses linked to each topic (every state), newest first."""
    result: dict[int, list[ResponseRef]] = defaultdict(list)
    if not topic_ids:
        return result
    rows: list[Any] = list(session.execute(
        select(ResponseTopic.topic_id, Response).join(Response, Response.id == ResponseTopic.response_id)
        .where(ResponseTopic.topic_id.in_(list(topic_ids)))
        .order_by(Response.published_at.desc().nulls_last(), Response.id.desc())
    ).all())
    for topic_id, response in rows:
        result[int(topic_id)].append(ResponseRef(response.id, response.kind, safe(response.title), response.state,
                                                 response.published_at))
    return result


# -- alerts ------------------------------------------------------------------------------------


def alert_clocks(session: Session, now: datetime | None = None, *, topic_ids: Sequence[int] | None = None,
                 open_only: bool = False, limit: int = 500) -> list[AlertClock]:
    """Alerts with their response clocks: open ones first (the soonest due first), then answered ones."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    is_open = and_(Alert.responded_at.is_(None), Alert.response_id.is_(None))
    query = (
        select(Alert, AlertRule.name, AlertRule.kind, Topic.label)
        .join(AlertRule, AlertRule.id == Alert.rule_id).join(Topic, Topic.id == Alert.topic_id)
        .order_by(case((is_open, 0), else_=1), case((is_open, Alert.response_due), else_=None),
                  Alert.fired_at.desc(), Alert.id.desc())
        .limit(limit)
    )
    if topic_ids is not None:
        query = query.where(Alert.topic_id.in_(list(topic_ids)))
    if open_only:
        query = query.where(is_open)
    clocks = []
    rows: list[Any] = list(session.execute(query).all())
    for alert, rule_name, rule_kind, topic_label in rows:
        clocks.append(AlertClock(
            id=alert.id, topic_id=alert.topic_id, topic_label=safe(topic_label), rule_id=alert.rule_id,
            rule_name=rule_name, rule_kind=rule_kind, reason=safe(alert.reason), fired_at=alert.fired_at,
            response_due=alert.response_due, responded_at=alert.responded_at, response_id=alert.response_id,
            remaining_hours=(alert.response_due - now).total_seconds() / 3600,
        ))
    return clocks


def clock_text(clock: AlertClock) -> str:
    """``剩余 x 小时`` / ``已超时 x 小时`` / ``已回应``, in the visitor's language (the console's badges)."""
    if not clock.open:
        return str(_("已回应"))
    hours = abs(clock.remaining_hours)
    shown = f"{hours:.1f}" if hours < 10 else str(math.floor(hours))
    return str(_("已超时 %(hours)s 小时", hours=shown) if clock.overdue else _("剩余 %(hours)s 小时", hours=shown))


# -- one topic ---------------------------------------------------------------------------------


@dataclass
class MessageRow:
    id: int
    title: str
    excerpt: str
    department: str | None
    category: str | None
    state: str | None
    received_at: datetime
    likes: int

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "excerpt": self.excerpt, "department": self.department,
                "category": self.category, "state": self.state, "received_at": self.received_at,
                "likes": self.likes}


@dataclass
class MessagePage:
    items: list[MessageRow]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    def as_dict(self) -> dict[str, Any]:
        return {"items": [item.as_dict() for item in self.items], "total": self.total, "page": self.page,
                "per_page": self.per_page, "pages": self.pages}


def excerpt(text: str, length: int = EXCERPT) -> str:
    """The start of a message's text, redacted first (a number is never cut in half and then missed)."""
    shown = " ".join(safe(text).split())
    return shown if len(shown) <= length else shown[:length] + "…"


def topic_messages(session: Session, topic_id: int, page: int = 1, per_page: int = MESSAGES_PER_PAGE) -> MessagePage:
    """The drill-down: every message of a topic, newest first, redacted."""
    conditions = [PressMessage.topic_id == topic_id]
    total = session.scalar(select(func.count()).select_from(PressMessage).where(*conditions)) or 0
    rows = session.scalars(
        select(PressMessage).where(*conditions)
        .order_by(PressMessage.received_at.desc(), PressMessage.id.desc())
        .offset((page - 1) * per_page).limit(per_page)
    )
    items = [MessageRow(m.id, safe(m.title), excerpt(m.text), m.department, m.category, m.state, m.received_at,
                        m.likes) for m in rows]
    return MessagePage(items, total, page, per_page)


@dataclass
class TopicDetail:
    topic: Topic
    label: str
    keywords: list[str]
    trend: TopicTrend | None
    rising: RisingTopics
    responses: list[ResponseRef]
    alerts: list[AlertClock]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.topic.id, "label": self.label, "keywords": self.keywords, "size": self.topic.size,
            "askers": self.topic.askers, "likes": self.topic.likes, "near_duplicates": self.topic.near_duplicates,
            "departments": list(self.topic.departments or []), "categories": list(self.topic.categories or []),
            "first_at": self.topic.first_at, "last_at": self.topic.last_at, "emergency": bool(self.topic.emergency),
            "window": self.rising.window.key, "bucket_labels": self.rising.labels, "buckets": self.rising.buckets,
            "trend": self.trend.as_dict() if self.trend else None,
            "responded": any(response.state == RESPONDED_STATE for response in self.responses),
            "responses": [response.as_dict() for response in self.responses],
            "alerts": [alert.as_dict() for alert in self.alerts],
        }


def topic_detail(session: Session, topic_id: int, window: str = DEFAULT_WINDOW,
                 now: datetime | None = None) -> TopicDetail | None:
    topic = session.get(Topic, topic_id)
    if topic is None:
        return None
    rising = rising_topics(session, window, now=now, topic_ids=[topic_id])
    trend = rising.topics[0] if rising.topics else None
    return TopicDetail(
        topic=topic, label=safe(topic.label), keywords=[safe(word) for word in topic.keywords or []], trend=trend,
        rising=rising, responses=linked_responses(session, [topic_id]).get(topic_id, []),
        alerts=alert_clocks(session, now, topic_ids=[topic_id]),
    )


def linked_documents(engine: SearchEngine, alias: str, keywords: Sequence[str],
                     limit: int = LINKED_DOCUMENTS) -> tuple[list[dict[str, Any]], bool]:
    """Published answers and interpretations about the topic's keywords (its top three, then fewer: the
    index matches every word of a query), and whether the index answered."""
    found: dict[str, dict[str, Any]] = {}
    words = [word for word in keywords if word and "［" not in word][:3]
    try:
        for count in range(len(words), 0, -1):
            result = engine.search(alias, SearchQuery(text=" ".join(words[:count]),
                                                      doc_types=("answer", "interpretation"), per_page=limit))
            for hit in result.hits:
                if hit.id not in found:
                    found[hit.id] = {"id": hit.id, "doc_type": hit.doc_type, "title": safe(hit.title),
                                     "summary": safe(hit.summary), "url": hit.url, "published_at": hit.published_at}
            if len(found) >= limit:
                break
    except (SearchUnavailable, SearchEngineError):
        return list(found.values())[:limit], False
    return list(found.values())[:limit], True


# -- the recompute -----------------------------------------------------------------------------


def recompute_status(session: Session) -> dict[str, Any] | None:
    """The latest full recompute and its progress, or None if none ever ran."""
    run = session.scalars(select(RecomputeRun).order_by(RecomputeRun.started_at.desc(), RecomputeRun.id.desc())
                          .limit(1)).first()
    if run is None:
        return None
    return {"id": run.id, "state": run.state, "stage": run.stage, "done": run.done, "total": run.total,
            "percent": round(100 * run.done / run.total, 1) if run.total else (100.0 if run.state == "finished"
                                                                                 else 0.0),
            "error": run.error, "started_at": run.started_at, "finished_at": run.finished_at}


# -- filter choices ----------------------------------------------------------------------------


def filter_choices(session: Session) -> tuple[list[str], list[str]]:
    """The departments and categories present among the messages (for the filter lists)."""
    departments = sorted(d for d in session.scalars(select(PressMessage.department).distinct()) if d)
    categories = sorted(c for c in session.scalars(select(PressMessage.category).distinct()) if c)
    return departments, categories


def sparkline_points(counts: Sequence[int], width: int = 120, height: int = 28) -> str:
    """``x,y`` pairs of an SVG polyline drawing ``counts`` (the per-row trend of the table)."""
    if not counts:
        return ""
    top = max(max(counts), 1)
    step = width / max(len(counts) - 1, 1)
    return " ".join(f"{i * step:.1f},{height - 2 - (count / top) * (height - 4):.1f}" for i, count in enumerate(counts))
