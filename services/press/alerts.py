"""Alert rules over topics, the response clock, and what an alert's notice carries.

Growth rule
    Fires for a topic with at least ``min_messages`` messages received within the last
    ``within_hours`` (``c``) when its burst score reaches ``min_burst``: the Poisson z-score of
    ``c`` against the topic's own baseline, ``b`` messages in the ``k`` whole windows of
    ``within_hours`` before the current one (from the first message the press office holds, at
    most :data:`BASELINE_WINDOWS` windows back), smoothed as in ``topics.burst_score``:
    ``λ = (b + 1) / (k + 1)``, ``z = (c - λ) / sqrt(λ)``. A steady topic of the same volume has
    ``λ ≈ c`` and a score near 0; a new topic with no history has ``λ = 1 / (k + 1)``.
Emergency rule
    Fires when a message of the topic received within ``within_hours`` mentions one of the
    rule's ``terms``.

Once per topic per window: ``window_key`` is the start of the rule's window bucket (UTC time
floored to ``within_hours``; unique with rule and topic) and no alert fires for a rule and topic
while an earlier one is less than ``within_hours`` old. Each alert starts the response clock
(``response_due = fired_at + rule.response_hours``) and emits ``press.alert.fired`` in the same
transaction; ``press.deliver_alert`` e-mails and posts it. :func:`record_response` stops the
clock when the office publishes a response for the topic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import case, func, or_, select, update
from sqlalchemy.orm import Session

from services.db import utcnow
from services.outbox import emit
from services.press import topics
from services.press.models import Alert, AlertRule, OutboxEvent, PressMessage, Topic
from services.settings import Settings
from services.text.pii import redact

BASELINE_WINDOWS = 28
"""At most this many earlier windows form a topic's baseline."""
SAMPLES = 3
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def ensure_default_rules(session: Session, settings: Settings) -> list[AlertRule]:
    """The default rules when none exist: growth (10 in 24 h, burst >= 3) and emergency terms."""
    if session.scalar(select(func.count()).select_from(AlertRule)):
        return []
    rules = [
        AlertRule(name="话题快速增长", kind="growth", min_messages=10, within_hours=24, min_burst=3.0, terms=[],
                  response_hours=settings.press_response_hours, email_to=[], webhook_url=None, enabled=True),
        AlertRule(name="突发事件关键词", kind="emergency", min_messages=1, within_hours=24, min_burst=0.0,
                  terms=list(settings.press_emergency_terms), response_hours=settings.press_emergency_response_hours,
                  email_to=[], webhook_url=None, enabled=True),
    ]
    session.add_all(rules)
    session.flush()
    return rules


def window_key(rule: AlertRule, now: datetime) -> str:
    """The start of the rule's window bucket that ``now`` falls in (UTC, ISO)."""
    width = timedelta(hours=max(rule.within_hours, 1))
    start = EPOCH + ((now - EPOCH) // width) * width
    return start.isoformat()


def _bursts(session: Session, topic_ids: Sequence[int], now: datetime, window: timedelta
            ) -> dict[int, tuple[int, int, int, float]]:
    """Per topic: (current count, baseline count, baseline windows, burst score), in one grouped query
    per thousand topics."""
    begin = now - window
    corpus_start = session.scalar(select(func.min(PressMessage.received_at)))
    windows = 0
    if corpus_start is not None:
        if corpus_start.tzinfo is None:
            corpus_start = corpus_start.replace(tzinfo=UTC)
        windows = min(max(int((begin - corpus_start) / window), 0), BASELINE_WINDOWS)
    counts: dict[int, tuple[int, int]] = {}
    received = PressMessage.received_at
    ids = list(dict.fromkeys(topic_ids))
    for start in range(0, len(ids), 1000):
        for topic_id, current, baseline in session.execute(
            select(PressMessage.topic_id, func.sum(case((received > begin, 1), else_=0)),
                   func.sum(case((received <= begin, 1), else_=0)))
            .where(PressMessage.topic_id.in_(ids[start:start + 1000]), received > begin - windows * window,
                   received <= now)
            .group_by(PressMessage.topic_id)
        ):
            counts[int(cast(int, topic_id))] = (int(cast(int, current or 0)), int(cast(int, baseline or 0)))
    result: dict[int, tuple[int, int, int, float]] = {}
    for topic_id in ids:
        current, baseline = counts.get(topic_id, (0, 0))
        result[topic_id] = (current, baseline, windows, topics.burst_score(current, baseline, windows))
    return result


def _emergency_hits(session: Session, topic_ids: Sequence[int], rule: AlertRule, now: datetime
                    ) -> dict[int, list[str]]:
    """Per topic, the rule's terms its messages of the rule's window mention (one query per thousand topics)."""
    terms = [term for term in rule.terms or () if term]
    found: dict[int, list[str]] = {}
    if not terms:
        return found
    begin = now - timedelta(hours=rule.within_hours)
    ids = list(dict.fromkeys(topic_ids))
    for start in range(0, len(ids), 1000):
        rows = session.execute(select(PressMessage.topic_id, PressMessage.title, PressMessage.text).where(
            PressMessage.topic_id.in_(ids[start:start + 1000]), PressMessage.received_at > begin,
            PressMessage.received_at <= now,
            or_(*[PressMessage.title.contains(term) for term in terms],
                *[PressMessage.text.contains(term) for term in terms]),
        )).all()
        for topic_id, title, text in rows:
            hits = found.setdefault(int(cast(int, topic_id)), [])
            for term in topics.emergency_terms_in(f"{title}\n{text}", terms):
                if term not in hits:
                    hits.append(term)
    return {topic_id: hits for topic_id, hits in found.items() if hits}


def _samples(session: Session, topic_id: int, now: datetime, window: timedelta) -> list[str]:
    titles = session.scalars(select(PressMessage.title).where(
        PressMessage.topic_id == topic_id, PressMessage.received_at > now - window, PressMessage.received_at <= now,
    ).order_by(PressMessage.received_at.desc()).limit(10)).all()
    shown: list[str] = []
    for title in titles:
        safe = redact(title).text
        if safe and safe not in shown:
            shown.append(safe)
        if len(shown) == SAMPLES:
            break
    return shown


def evaluate(session: Session, settings: Settings, topic_ids: Sequence[int], now: datetime | None = None
             ) -> list[Alert]:
    """Fire the enabled rules for ``topic_ids`` (once per topic per window); the caller commits."""
    if not topic_ids:
        return []
    now = now or utcnow()
    ensure_default_rules(session, settings)
    rules = session.scalars(select(AlertRule).where(AlertRule.enabled.is_(True)).order_by(AlertRule.id)).all()
    fired: list[Alert] = []
    for rule in rules:
        window = timedelta(hours=max(rule.within_hours, 1))
        recent = set(session.scalars(select(Alert.topic_id).where(
            Alert.rule_id == rule.id, Alert.topic_id.in_(topic_ids), Alert.fired_at > now - window)))
        key = window_key(rule, now)
        candidates = [topic_id for topic_id in topic_ids if topic_id not in recent]
        bursts = _bursts(session, candidates, now, window) if rule.kind == "growth" else {}
        mentions = _emergency_hits(session, candidates, rule, now) if rule.kind == "emergency" else {}
        for topic_id in candidates:
            details: dict[str, Any]
            if rule.kind == "growth":
                current, baseline, windows, score = bursts[topic_id]
                if current < rule.min_messages or score < rule.min_burst or not math.isfinite(score):
                    continue
                reason = (f"{rule.within_hours} 小时内新增 {current} 条留言，突增指数 {score:.1f}"
                          f"（基线 {baseline} 条 / {windows} 个时段）")
                details = {"current": current, "baseline": baseline, "baseline_windows": windows,
                           "burst": round(score, 3)}
            elif rule.kind == "emergency":
                terms = mentions.get(topic_id, [])
                if not terms:
                    continue
                reason = f"留言提及突发事件关键词：{'、'.join(terms)}"
                details = {"terms": terms}
            else:
                continue
            exists = session.scalar(select(Alert.id).where(
                Alert.rule_id == rule.id, Alert.topic_id == topic_id, Alert.window_key == key))
            if exists is not None:
                continue
            topic = session.get(Topic, topic_id)
            details["label"] = topic.label if topic else ""
            details["samples"] = _samples(session, topic_id, now, window)
            alert = Alert(rule_id=rule.id, topic_id=topic_id, window_key=key, reason=reason, details=details,
                          fired_at=now, response_due=now + timedelta(hours=rule.response_hours))
            session.add(alert)
            session.flush()
            emit(session, OutboxEvent, "press.alert.fired", aggregate_type="alert", aggregate_id=alert.id, version=1,
                 payload={"alert_id": alert.id, "rule_id": rule.id, "topic_id": topic_id})
            fired.append(alert)
    return fired


def record_response(session: Session, topic_ids: Sequence[int], response_id: int, at: datetime | None = None) -> int:
    """Stop the response clock of the open alerts of ``topic_ids``; returns how many it stopped."""
    if not topic_ids:
        return 0
    result = session.execute(update(Alert).where(Alert.topic_id.in_(list(topic_ids)), Alert.responded_at.is_(None))
                             .values(responded_at=at or utcnow(), response_id=response_id))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def notice(alert: Alert, rule: AlertRule, topic: Topic | None, settings: Settings) -> dict[str, Any]:
    """What the e-mail and the webhook carry: the topic's label, the reason, the clock and redacted
    sample titles, never a name, phone or ID number."""
    details = alert.details or {}
    return {
        "alert_id": alert.id,
        "rule": rule.name,
        "kind": rule.kind,
        "topic_id": alert.topic_id,
        "topic": redact(topic.label if topic else str(details.get("label", ""))).text,
        "reason": redact(alert.reason).text,
        "fired_at": alert.fired_at.isoformat(),
        "response_due": alert.response_due.isoformat(),
        "samples": [redact(str(sample)).text for sample in details.get("samples", [])],
        "url": f"{settings.public_base_url}/press/topics/{alert.topic_id}",
    }


def notice_text(payload: dict[str, Any]) -> tuple[str, str]:
    """The e-mail subject and body of a notice."""
    subject = f"【舆情预警】{payload['topic']}（{payload['rule']}）"
    lines = [
        f"话题：{payload['topic']}",
        f"规则：{payload['rule']}",
        f"原因：{payload['reason']}",
        f"触发时间：{payload['fired_at']}",
        f"回应期限：{payload['response_due']}",
        "",
        "留言示例（已隐去个人信息）：",
        *[f"- {sample}" for sample in payload["samples"]],
        "",
        f"查看：{payload['url']}",
    ]
    return subject, "\n".join(lines)
