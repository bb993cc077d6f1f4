"""What reaches the press office: consult's events and imported files of historical messages.

Consult tells the press office about a new consultation with ``consult.consultation.received``
(redacted title and question, category, department, time, and ``asker_key``: a keyed hash of
consult's contact key, only good for counting distinct askers), then about each change with
``consult.consultation.<action>`` (its public summary: state, department, category, reply_due,
replied_at). Every message is stored redacted (``services.text.pii.redact`` again, in case),
its keywords segmented once here (:func:`services.press.topics.keywords_of`) and the emergency
terms it mentions recorded. ``source_version`` (consult's version of the record) makes the
order of events irrelevant: an older event never overwrites a newer state.

Topic assignment is not done here: new messages keep ``topic_id`` NULL until
``services.press.engine.update_topics`` (the debounced ``press.update_topics`` task) runs.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.press import topics
from services.press.models import PressMessage
from services.settings import Settings
from services.text.pii import redact

BEIJING = timezone(timedelta(hours=8))
MARKER = re.compile(r"［[^］]*］")
"""A redaction marker (［已隐去：电话号码］): not a keyword, or every message with a phone would look alike."""
IMPORT_BATCH = 500


class NotYetIngested(Exception):
    """A state event arrived before the consultation's intake event (retried until it has)."""


@dataclass
class ImportReport:
    imported: int = 0
    already: int = 0
    skipped: int = 0


def keyed_asker(settings: Settings, material: str, purpose: str = "import") -> str | None:
    """A keyed hash (HMAC-SHA256 with the secret key) of an asker's identifier: counts distinct askers,
    never reveals them."""
    if not material:
        return None
    return hmac.new(settings.secret_key.encode(), f"press-{purpose}|{material}".encode(), hashlib.sha256).hexdigest()


def _clean(text: str | None, limit: int | None = None) -> str:
    shown = redact(" ".join((text or "").split())).text
    return shown[:limit] if limit else shown


def _emergency(settings: Settings, title: str, text: str) -> str | None:
    found = topics.emergency_terms_in(f"{title}\n{text}", settings.press_emergency_terms)
    return "，".join(found)[:300] or None


def _parse_moment(value: str | None) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _parse_day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def new_message(
    settings: Settings, *, source: str, source_id: str, title: str, text: str, received_at: datetime,
    category: str | None = None, department: str | None = None, asker_key: str | None = None, likes: int = 0,
    tracking_number: str | None = None, state: str | None = None, version: int = 0,
) -> PressMessage:
    """A press message (not added to a session): redacted, segmented once, emergency terms found."""
    shown_title = _clean(title, 300)
    shown_text = _clean(text)
    return PressMessage(
        source=source, source_id=str(source_id)[:64], tracking_number=tracking_number, title=shown_title,
        text=shown_text, category=category, department=department, asker_key=asker_key,
        received_at=received_at, likes=max(likes, 0),
        keywords=topics.keywords_of(MARKER.sub(" ", shown_title), MARKER.sub(" ", shown_text)),
        emergency_terms=_emergency(settings, shown_title, shown_text), topic_id=None, state=state,
        source_version=version,
    )


def ingest_consultation(session: Session, settings: Settings, event: dict[str, Any]) -> PressMessage:
    """Store the consultation of a ``consult.consultation.received`` event (once: a redelivery or a
    second event for the same consultation returns the stored message)."""
    payload = event["payload"]["consultation"]
    source_id = str(payload["id"])
    existing = session.scalar(
        select(PressMessage).where(PressMessage.source == "consult", PressMessage.source_id == source_id)
    )
    if existing is not None:
        return existing
    received_at = _parse_moment(payload.get("received_at")) or datetime.now(UTC)
    message = new_message(
        settings, source="consult", source_id=source_id, title=payload.get("title") or "",
        text=payload.get("question") or "", received_at=received_at, category=payload.get("category"),
        department=payload.get("department"), asker_key=payload.get("asker_key"),
        tracking_number=payload.get("tracking_number"), state=payload.get("state"),
        version=int(event.get("version") or 0),
    )
    message.reply_due = _parse_day(payload.get("reply_due"))
    message.replied_at = _parse_moment(payload.get("replied_at"))
    session.add(message)
    session.flush()
    return message


def apply_consultation_state(session: Session, event: dict[str, Any]) -> str:
    """Keep a message's consult state current from a ``consult.consultation.<action>`` event.

    ``applied``, or ``stale`` when the stored version is newer or the same (an older event never
    overwrites a newer state). Raises :class:`NotYetIngested` when the intake event has not arrived.
    """
    payload = event["payload"]["consultation"]
    version = int(event.get("version") or 0)
    message = session.scalar(
        select(PressMessage).where(PressMessage.source == "consult", PressMessage.source_id == str(payload["id"]))
        .with_for_update()
    )
    if message is None:
        raise NotYetIngested(f"consultation {payload['id']} not ingested yet")
    if version <= message.source_version and message.state is not None:
        return "stale"
    message.state = payload.get("state")
    message.department = payload.get("department")
    message.category = payload.get("category")
    message.reply_due = _parse_day(payload.get("reply_due"))
    message.replied_at = _parse_moment(payload.get("replied_at"))
    message.source_version = version
    return "applied"


ImportProgress = Callable[[int], None]


def import_messages(
    transaction: Callable[[], Any], settings: Settings, messages: Iterable[topics.Message],
    progress: ImportProgress | None = None,
) -> ImportReport:
    """Import historical messages (``source=import``, ``source_id`` = 留言编号), IMPORT_BATCH per
    transaction; a message already imported is left as it is, so running it twice imports nothing twice.
    Times without a zone are Beijing time."""
    report = ImportReport()
    batch: list[topics.Message] = []

    def flush() -> None:
        with transaction() as session:
            ids = [message.id for message in batch]
            known = set(session.scalars(
                select(PressMessage.source_id).where(PressMessage.source == "import", PressMessage.source_id.in_(ids))
            ))
            seen: set[str] = set()
            for message in batch:
                if message.id in known or message.id in seen:
                    report.already += 1
                    continue
                seen.add(message.id)
                moment = message.time if message.time.tzinfo else message.time.replace(tzinfo=BEIJING)
                session.add(new_message(
                    settings, source="import", source_id=message.id, title=message.title, text=message.text,
                    received_at=moment.astimezone(UTC), asker_key=keyed_asker(settings, message.asker),
                    likes=message.likes,
                ))
                report.imported += 1
        if progress is not None:
            progress(len(batch))
        batch.clear()

    for message in messages:
        batch.append(message)
        if len(batch) >= IMPORT_BATCH:
            flush()
    if batch:
        flush()
    return report


def import_csv(transaction: Callable[[], Any], settings: Settings, path: Path,
               progress: ImportProgress | None = None) -> ImportReport:
    """Import a file shaped like ``messages_with_likes.csv`` (raises ``topics.MessageFileError``)."""
    messages, skipped = topics.read_messages_csv(path)
    report = import_messages(transaction, settings, messages, progress)
    report.skipped = skipped
    return report
