"""Seed the suite with demo policies and answered consultations, through the services' own rules.

Each record goes through the same workflow functions as real work does, so its
outbox events index it for search. Seeding is idempotent: a service that already
holds data is left alone.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

from flask import Flask
from sqlalchemy import func, select
from tqdm import tqdm

from services.db import get_database

DATA_DIR = Path(__file__).parent / "data"
BEIJING = timezone(timedelta(hours=8))
DOCUMENT_NUMBER = re.compile(r"[\u4e00-\u9fa5]{1,8}〔\d{4}〕\d+号")
URL_DATE = re.compile(r"/(\d{4})-(\d{2})/(\d{2})/")
WHITESPACE = re.compile(r"\s+")


@dataclass
class SeedReport:
    policies: int = 0
    answers: int = 0
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


@dataclass(frozen=True)
class DemoAnswer:
    tracking_number: str
    title: str
    question: str
    reply: str
    received_at: datetime
    replied_at: datetime


def _beijing(text: str) -> datetime:
    """A local Beijing time as the source writes it (``2019/4/25 9:32:09`` or ``2019-04-08 08:37:20``)."""
    cleaned = text.strip().replace("-", "/")
    local = datetime.strptime(cleaned, "%Y/%m/%d %H:%M:%S" if " " in cleaned else "%Y/%m/%d")
    return local.replace(tzinfo=BEIJING).astimezone(UTC)


def _clean(text: str) -> str:
    return WHITESPACE.sub(" ", text).strip()


def demo_answers() -> Iterator[DemoAnswer]:
    with (DATA_DIR / "messages_with_replies.csv").open(encoding="utf-8-sig") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: _beijing(row["留言时间"]))
    serial_by_day: Counter[str] = Counter()
    for row in rows:
        received_at = _beijing(row["留言时间"])
        day = received_at.astimezone(BEIJING).strftime("%Y%m%d")
        serial_by_day[day] += 1
        yield DemoAnswer(
            tracking_number=f"ZX{day}-{serial_by_day[day]:04d}",
            title=_clean(row["留言主题"]),
            question=_clean(row["留言详情"]),
            reply=_clean(row["答复意见"]),
            received_at=received_at,
            replied_at=_beijing(row["答复时间"]),
        )


def seed_demo(app: Flask, progress: bool = True, department: str = "ORG") -> SeedReport:
    """Load the demo data into interpret and consult unless they already hold data."""
    from consult.models import Consultation
    from consult.workflow import publish_answer, record_answered_consultation
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
        consult_db = get_database("consult")
        with consult_db.transaction() as session:
            if session.scalar(select(func.count()).select_from(Consultation)):
                skipped.append("consult")
            else:
                for answer in tqdm(list(demo_answers()), desc="咨询回复 answers", disable=not progress):
                    consultation = record_answered_consultation(
                        session, tracking_number=answer.tracking_number, title=answer.title,
                        question=answer.question, reply=answer.reply,
                        received_at=answer.received_at, replied_at=answer.replied_at,
                    )
                    publish_answer(session, consultation, at=answer.replied_at)
                    report.answers += 1
    report.skipped = tuple(skipped)
    return report
