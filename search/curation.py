"""What the disclosure office curates for site search, and what the query log tells.

* Synonym groups (公积金 / 住房公积金) and best bets (a document pinned at the top of one
  query's results until a day, marked 推荐) are kept in the search service's tables and
  applied at query time (``search.query``): no rebuild. Each process caches the rules for
  :data:`RULES_TTL_SECONDS` and drops its cache when it changes them itself.
* The query log feeds :func:`popular_queries` (suggestions, the press office's hot topics)
  and :func:`zero_result_queries` (the editors' report of what people look for in vain).

Like the workflows of the other services, the functions that change something check the
actor's permission, validate (raising :class:`~services.workflow.ContentProblem` with field
errors before anything is written), write, record an audit entry through the outbox, and
flush; the caller commits once.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import delete, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from search.models import DOC_ID_MAX, LABEL_MAX, QUERY_MAX, TERM_MAX, BestBet, OutboxEvent, QueryLog, SynonymGroup
from services.audit import AuditRecord, AuditResult, record_via_outbox
from services.auth import StaffIdentity
from services.db import DatabaseUnavailable, get_database, utcnow
from services.permissions import Permission, require
from services.text.pii import BANK_CARD, EMAIL, ID_CARD, MARKERS, PHONE, find_personal_data
from services.workflow import ContentProblem

log = logging.getLogger(__name__)

RULES_TTL_SECONDS = 5.0
"""How long a process serves the curation rules it read before reading them again."""
SUGGESTION_TTL_SECONDS = 60.0
SUGGESTION_DAYS = 30
SUGGESTION_MIN_COUNT = 3
"""A query becomes a public suggestion only when searched this often (and found something):
one person's odd query never reaches everybody's suggestion list."""
SUGGESTION_POOL = 500
MAX_TERMS = 20
MAX_PIN_DAYS = 3 * 366
"""A pin ends within about three years: nothing is pinned for ever by mistake."""

PERSONAL_NUMBERS = (EMAIL, ID_CARD, BANK_CARD, PHONE)
"""Kinds of personal data masked in the query log (what people type may be their own number)."""

_TERM_SEPARATORS = re.compile(r"[\s,，、;；/／|｜]+")


# -- normalisation -------------------------------------------------------------------------------


def normalise_query(text: str) -> str:
    """The canonical form of a query: NFKC, control and format characters dropped, spaces
    collapsed, letters lower-cased (Chinese is untouched), at most ``QUERY_MAX`` characters."""
    folded = unicodedata.normalize("NFKC", text)
    kept = []
    for char in folded:
        category = unicodedata.category(char)
        if category in ("Cc", "Zl", "Zp"):
            kept.append(" ")  # tabs, newlines, NUL...: a separator
        elif category[0] == "C":
            continue  # zero-width and other format characters, private use, unassigned
        else:
            kept.append(char)
    return " ".join("".join(kept).split()).lower()[:QUERY_MAX].strip()


def has_words(text: str) -> bool:
    return any(char.isalnum() for char in text)


def mask_personal_numbers(text: str) -> str:
    """``text`` with phone numbers, ID numbers, bank cards and e-mail addresses replaced by markers."""
    findings = find_personal_data(text, PERSONAL_NUMBERS)
    if not findings:
        return text
    parts: list[str] = []
    position = 0
    for finding in findings:
        if finding.start < position:
            continue
        parts.extend((text[position:finding.start], MARKERS[finding.kind]))
        position = finding.end
    parts.append(text[position:])
    return "".join(parts)


def log_form(text: str) -> str:
    """How a query is stored in the log: normalised, personal numbers masked."""
    return mask_personal_numbers(normalise_query(text))[:QUERY_MAX]


# -- the rules applied at query time --------------------------------------------------------------


@dataclass(frozen=True)
class Pin:
    doc_id: str
    label: str | None
    until: date


@dataclass(frozen=True)
class CurationRules:
    synonyms: tuple[tuple[str, ...], ...] = ()
    pins: dict[str, tuple[Pin, ...]] = field(default_factory=dict)

    def synonyms_for(self, text: str) -> tuple[tuple[str, ...], ...]:
        """The groups with a term in ``text`` (normalised): the only ones the engine needs."""
        if not text:
            return ()
        return tuple(group for group in self.synonyms if any(term in text for term in group))

    def pins_for(self, text: str, today: date) -> tuple[Pin, ...]:
        """The documents pinned for exactly this (normalised) query whose last day has not passed."""
        return tuple(pin for pin in self.pins.get(text, ()) if pin.until >= today)


NO_RULES = CurationRules()
_CACHE_KEY = "gongkai.search_curation"
_cache_lock = threading.Lock()


def _cache(app: Flask) -> dict[str, tuple[float, Any]]:
    with _cache_lock:
        cache: dict[str, tuple[float, Any]] = app.extensions.setdefault(_CACHE_KEY, {})
    return cache


def clear_curation_cache(app: Flask) -> None:
    """Forget the cached rules and suggestions (after a change, and between tests)."""
    _cache(app).clear()


def _clock() -> float:
    return time.monotonic()


def _cached(app: Flask, key: str, ttl: float, load: Callable[[Session], Any], fallback: Any) -> Any:
    """``load`` through the search database, cached for ``ttl`` seconds. When the database
    fails, the last value (or ``fallback``) is served and kept for another ``ttl``: search
    goes on without its curation rather than failing or waiting on every request."""
    cache = _cache(app)
    entry = cache.get(key)
    now = _clock()
    if entry is not None and now - entry[0] < ttl:
        return entry[1]
    try:
        with get_database("search", app).transaction() as session:
            value = load(session)
    except (SQLAlchemyError, DatabaseUnavailable) as error:
        log.warning("search curation not read (%s): serving %s", type(error).__name__,
                    "the last rules" if entry else "none")
        value = entry[1] if entry is not None else fallback
    cache[key] = (now, value)
    return value


def _load_rules(session: Session) -> CurationRules:
    groups = tuple(tuple(group.terms) for group in session.scalars(select(SynonymGroup).order_by(SynonymGroup.id)))
    pins: dict[str, list[Pin]] = {}
    for bet in session.scalars(select(BestBet).order_by(BestBet.id)):
        pins.setdefault(bet.query, []).append(Pin(bet.doc_id, bet.label, bet.until))
    return CurationRules(groups, {query: tuple(items) for query, items in pins.items()})


def curation_rules(app: Flask) -> CurationRules:
    rules: CurationRules = _cached(app, "rules", RULES_TTL_SECONDS, _load_rules, NO_RULES)
    return rules


def suggestion_queries(app: Flask) -> list[str]:
    """Popular queries fit to suggest to anybody: searched at least ``SUGGESTION_MIN_COUNT``
    times in the last ``SUGGESTION_DAYS`` days, found something, and hold no personal data."""

    def load(session: Session) -> list[str]:
        since = utcnow() - timedelta(days=SUGGESTION_DAYS)
        popular = popular_queries(session, since, SUGGESTION_POOL, min_count=SUGGESTION_MIN_COUNT,
                                  with_results=True)
        return [item.query for item in popular if _fit_to_suggest(item.query)]

    queries: list[str] = _cached(app, "suggestions", SUGGESTION_TTL_SECONDS, load, [])
    return queries


def _fit_to_suggest(query: str) -> bool:
    return has_words(query) and not any(marker in query for marker in MARKERS.values()) and not find_personal_data(
        query
    )


# -- the query log -------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryCount:
    query: str
    count: int
    last_seen: datetime


def query_counts(
    session: Session, since: datetime, limit: int, *conditions: Any, min_count: int = 1
) -> list[QueryCount]:
    """The most frequent normalised queries since ``since`` matching ``conditions``, most frequent first."""
    count = func.count(QueryLog.id)
    last_seen = func.max(QueryLog.created_at)
    statement = (
        select(QueryLog.query, count.label("n"), last_seen.label("last_seen"))
        .where(QueryLog.created_at >= since, *conditions)
        .group_by(QueryLog.query)
        .having(count >= min_count)
        .order_by(count.desc(), last_seen.desc(), QueryLog.query)
        .limit(limit)
    )
    result = []
    for query, number, seen in session.execute(statement):
        if isinstance(seen, str):  # SQLite hands back max() of a timestamp as text
            seen = datetime.fromisoformat(seen)
        result.append(QueryCount(query, int(number), _aware(seen)))
    return result


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def prune_query_log(session: Session, retention_days: int, now: datetime | None = None) -> int:
    """Delete the query log rows older than ``retention_days``; returns how many."""
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    result = session.execute(delete(QueryLog).where(QueryLog.created_at < cutoff))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def popular_queries(
    session: Session, since: datetime, limit: int, *, min_count: int = 1, with_results: bool = False
) -> list[QueryCount]:
    """The most searched (normalised) queries since ``since``, most frequent first; with
    ``with_results`` only searches that found something count."""
    conditions = (QueryLog.result_count > 0,) if with_results else ()
    return query_counts(session, since, limit, *conditions, min_count=min_count)


def zero_result_queries(session: Session, since: datetime, limit: int) -> list[QueryCount]:
    """The queries that found nothing since ``since``, most frequent first, with when last seen."""
    return query_counts(session, since, limit, QueryLog.result_count == 0)


# -- synonym groups ------------------------------------------------------------------------------


def _audit(session: Session, actor: StaffIdentity, action: str, object_type: str, object_id: str,
           detail: dict[str, Any]) -> None:
    record_via_outbox(session, OutboxEvent, AuditRecord.by(
        actor, "search", action, AuditResult.SUCCESS, object_type=object_type, object_id=object_id, detail=detail,
    ))


def _actor_name(actor: StaffIdentity) -> str:
    return (actor.display_name or actor.username)[:100]


def synonym_groups(session: Session) -> list[SynonymGroup]:
    return list(session.scalars(select(SynonymGroup).order_by(SynonymGroup.id)))


def parse_terms(raw: str) -> list[str]:
    """Terms separated by spaces, commas, 、, semicolons or slashes; normalised, each once."""
    return list(dict.fromkeys(term for term in (normalise_query(part) for part in _TERM_SEPARATORS.split(raw)) if term))


def add_synonym_group(session: Session, actor: StaffIdentity, raw_terms: str) -> SynonymGroup:
    require(actor.grants, Permission.PUBLISH)
    terms = parse_terms(raw_terms or "")
    problems: list[str] = []
    if len(terms) < 2:
        problems.append("请至少填写两个不同的词，用空格、逗号、顿号或斜线分隔")
    elif len(terms) > MAX_TERMS:
        problems.append(f"一组最多 {MAX_TERMS} 个词")
    for term in terms:
        if len(term) > TERM_MAX:
            problems.append(f"“{term[:20]}…”过长：每个词不超过 {TERM_MAX} 字")
        elif not has_words(term):
            problems.append(f"“{term}”不含文字或数字")
    taken = {term: group.id for group in synonym_groups(session) for term in group.terms}
    problems.extend(f"“{term}”已在另一组同义词中" for term in terms if term in taken)
    if problems:
        raise ContentProblem({"terms": problems})
    group = SynonymGroup(terms=terms, created_by=_actor_name(actor), created_at=utcnow())
    session.add(group)
    session.flush()
    _audit(session, actor, "search.synonyms.add", "synonym_group", str(group.id), {"terms": terms})
    return group


def delete_synonym_group(session: Session, actor: StaffIdentity, group_id: int) -> bool:
    """Delete a group; False when it was already gone (deleting twice is no error)."""
    require(actor.grants, Permission.PUBLISH)
    group = session.get(SynonymGroup, group_id)
    if group is None:
        return False
    terms = list(group.terms)
    session.delete(group)
    session.flush()
    _audit(session, actor, "search.synonyms.delete", "synonym_group", str(group_id), {"terms": terms})
    return True


# -- best bets -----------------------------------------------------------------------------------


def best_bets(session: Session) -> list[BestBet]:
    return list(session.scalars(select(BestBet).order_by(BestBet.query, BestBet.id)))


@dataclass(frozen=True)
class BestBetInput:
    query: str
    doc_id: str
    until: str
    label: str = ""


def add_best_bet(
    session: Session,
    actor: StaffIdentity,
    values: BestBetInput,
    *,
    today: date,
    document_exists: Callable[[str], bool | None],
) -> BestBet:
    """Pin ``values.doc_id`` for ``values.query`` up to and including ``values.until``.

    ``document_exists`` answers whether the index holds the document (None: cannot tell now)."""
    require(actor.grants, Permission.PUBLISH)
    errors: dict[str, list[str]] = {}
    query = normalise_query(values.query or "")
    if not has_words(query):
        errors["query"] = ["请填写搜索词"]
    elif len((values.query or "").strip()) > QUERY_MAX:
        errors["query"] = [f"搜索词不超过 {QUERY_MAX} 字"]
    doc_id = (values.doc_id or "").strip()
    until = _parse_day(values.until or "")
    label = " ".join((values.label or "").split())
    if not doc_id:
        errors["doc_id"] = ["请填写要置顶的文档编号，如 policy-12"]
    elif len(doc_id) > DOC_ID_MAX or not doc_id.isprintable():
        errors["doc_id"] = ["文档编号无效"]
    else:
        exists = document_exists(doc_id)
        if exists is None:
            errors["doc_id"] = ["搜索服务暂时不可用，无法核对该文档，请稍后再试"]
        elif not exists:
            errors["doc_id"] = ["索引中没有这个文档（可能未发布或已撤回）"]
        elif "query" not in errors and session.scalar(
            select(BestBet.id).where(BestBet.query == query, BestBet.doc_id == doc_id)
        ) is not None:
            errors["doc_id"] = ["这个文档已为该搜索词置顶"]
    if until is None:
        errors["until"] = ["请填写截止日期（YYYY-MM-DD）"]
    elif until < today:
        errors["until"] = ["截止日期不能早于今天"]
    elif until > today + timedelta(days=MAX_PIN_DAYS):
        errors["until"] = ["截止日期最多在三年之内"]
    if len(label) > LABEL_MAX:
        errors["label"] = [f"说明不超过 {LABEL_MAX} 字"]
    if errors:
        raise ContentProblem(errors)
    assert until is not None
    bet = BestBet(query=query, doc_id=doc_id, label=label or None, until=until, created_by=_actor_name(actor),
                  created_at=utcnow())
    session.add(bet)
    session.flush()
    _audit(session, actor, "search.best_bet.add", "best_bet", str(bet.id),
           {"query": query, "doc_id": doc_id, "until": until.isoformat(), "label": label or None})
    return bet


def delete_best_bet(session: Session, actor: StaffIdentity, bet_id: int) -> bool:
    """Delete a best bet; False when it was already gone (deleting twice is no error)."""
    require(actor.grants, Permission.PUBLISH)
    bet = session.get(BestBet, bet_id)
    if bet is None:
        return False
    detail = {"query": bet.query, "doc_id": bet.doc_id, "until": bet.until.isoformat()}
    session.delete(bet)
    session.flush()
    _audit(session, actor, "search.best_bet.delete", "best_bet", str(bet_id), detail)
    return True


def _parse_day(raw: str) -> date | None:
    value = raw.strip()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None
