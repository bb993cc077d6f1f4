"""Seed the suite with demo policies and answered consultations, through the services' own rules.

Each record goes through the same workflow functions as real work does, so its
outbox events index it for search. Seeding is idempotent: a service that already
holds data is left alone.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

from flask import Flask
from sqlalchemy import func, select
from tqdm import tqdm

from consult.importing import SourceFile, read_messages
from services.db import get_database

DATA_DIR = Path(__file__).parent / "data"
BEIJING = timezone(timedelta(hours=8))
DOCUMENT_NUMBER = re.compile(r"[\u4e00-\u9fa5]{1,8}〔\d{4}〕\d+号")
URL_DATE = re.compile(r"/(\d{4})-(\d{2})/(\d{2})/")


@dataclass
class SeedReport:
    policies: int = 0
    answers: int = 0
    press_messages: int = 0
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True)
class DemoPolicy:
    title: str
    document_number: str | None
    body: str
    published_at: datetime


def demo_policies() -> Iterator[DemoPolicy]:
    """The policies of the demo file, each once (the source lists a few twice)."""
    seen: set[str] = set()
    with (DATA_DIR / "policies_govcn.csv").open(encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            title = row["Policy"].strip()
            if title in seen:
                continue
            seen.add(title)
            content = row["Policy_Content"].strip()
            body = content.removeprefix(title)
            number_match = DOCUMENT_NUMBER.match(body)
            document_number = number_match.group(0) if number_match else None
            if number_match:
                body = body[number_match.end():]
            yield DemoPolicy(title, document_number, body.strip(), _published_at(row))


def _published_at(row: dict[str, str]) -> datetime:
    year = int(row["Year"])
    found = URL_DATE.search(row["URL"])
    if found and int(found.group(1)) == year:
        day = date(int(found.group(1)), int(found.group(2)), int(found.group(3)))
    else:
        day = date(year, 1, 1)
    return datetime(day.year, day.month, day.day, 9, 0, tzinfo=BEIJING).astimezone(UTC)


def demo_answers() -> SourceFile:
    """The demo file of answered messages (its rows sorted by the time received)."""
    return read_messages(DATA_DIR / "messages_with_replies.csv")


def seed_demo(app: Flask, progress: bool = True, department: str = "ORG") -> SeedReport:
    """Load the demo data: interpret's policies unless it holds some, consult's answers not there yet."""
    from consult.importing import import_messages, installed_router
    from interpret.models import Policy
    from interpret.workflow import PolicyFields, import_published_policy

    report = SeedReport()
    skipped = []
    with app.app_context():
        interpret_db = get_database("interpret")
        with interpret_db.transaction() as session:
            if session.scalar(select(func.count()).select_from(Policy)):
                skipped.append("interpret")
            else:
                for item in tqdm(list(demo_policies()), desc="政策文件 policies", disable=not progress):
                    fields = PolicyFields(
                        title=item.title, issuer="国务院", level="国家", body=item.body, department=department,
                        document_number=item.document_number, category_group="政策文件", source="中国政府网",
                    )
                    import_published_policy(session, fields, item.published_at)
                    report.policies += 1
        # The answers go in 500 at a time and the import skips rows already there, so a seed that was
        # interrupted (Ctrl-C during the first `gongkai up`) is completed by the next run.
        consult_db = get_database("consult")
        settings = app.extensions["gongkai.settings"]
        imported = import_messages(consult_db.transaction, settings, demo_answers(), department=department,
                                   router=installed_router(settings), progress=progress)
        report.answers = imported.imported
        if not imported.imported:
            skipped.append("consult")
        report.press_messages = _seed_press(app, progress)
        if not report.press_messages:
            skipped.append("press")
    report.skipped = tuple(skipped)
    return report


def _seed_press(app: Flask, progress: bool) -> int:
    """The press office's copy of the demo messages (redacted, imported once), then a full recompute so
    the console has topics; the default alert rules are created if there are none."""
    from services.press.alerts import ensure_default_rules
    from services.press.engine import recompute
    from services.press.ingest import import_csv
    from services.press.models import PressMessage

    press_db = get_database("press")
    settings = app.extensions["gongkai.settings"]
    with press_db.transaction() as session:
        ensure_default_rules(session, settings)
        if session.scalar(select(func.count()).select_from(PressMessage)):
            return 0
    with tqdm(desc="舆情留言 press", unit="msg", disable=not progress) as bar:
        report = import_csv(press_db.transaction, settings, DATA_DIR / "messages_with_replies.csv", progress=bar.update)
    recompute(press_db)
    return report.imported
