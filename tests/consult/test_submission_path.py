"""What a public submission costs on the request path (issue 8), against the real PostgreSQL.

* The query code is hashed with small argon2id parameters (one pass over 4 MiB), and a code hashed with
  the library's defaults before that change still verifies.
* The day's tracking serial is drawn in a statement of its own on PostgreSQL: a submission whose
  transaction is still open does not hold the next one back, and concurrent submissions get distinct,
  consecutive serials.
* Duplicate detection compares a bounded number of the contact's latest consultations.

The serial tests commit, so they run on a consult database of their own (a schema prefix, dropped
afterwards) rather than the suite's rolled-back connection.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher, Type, extract_parameters
from flask import Flask
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from consult import workflow
from consult.models import Consultation
from consult.workflow import Submission
from services.db import ServiceDatabase, get_database, open_service_database
from services.migrations import upgrade
from services.settings import Settings, load_settings

from support.env import base_env, drop_schemas, unique_prefix

NOW = datetime(2026, 11, 3, 2, tzinfo=UTC)  # Tuesday 3 November 2026, 10:00 in Beijing
_numbers = iter(range(20_000_000, 30_000_000))


def submission(**overrides: object) -> Submission:
    fields = {"title": "高新技术企业认定材料",
              "question": "请问申请高新技术企业认定，需要提交哪些材料？研发费用占比怎么计算？",
              "name": "张三", "phone": f"137{next(_numbers)}", "consent_to_publish": False}
    fields.update(overrides)
    return Submission(**fields)  # type: ignore[arg-type]


@pytest.fixture
def settings(suite: dict[str, Flask], tmp_path: Path) -> Settings:
    base: Settings = suite["consult"].extensions["gongkai.settings"]
    return dataclasses.replace(base, data_dir=tmp_path)  # no routing model: submissions wait for a dispatcher


@pytest.fixture
def db(suite: dict[str, Flask]) -> Iterator[Session]:
    session = get_database("consult", suite["consult"]).new_session()
    try:
        yield session
    finally:
        session.close()


@pytest.fixture(scope="module")
def committed(postgres_url: str,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceDatabase, Settings]]:
    """A consult database of its own on PostgreSQL whose sessions really commit (no outer test transaction)."""
    prefix = unique_prefix("sub")
    data_dir = tmp_path_factory.mktemp("submission-path")
    settings = load_settings(base_env(data_dir, DATABASE_URL=postgres_url, DATABASE_SCHEMA_PREFIX=prefix))
    database = open_service_database(settings, "consult")
    try:
        database.ensure_schema()
        upgrade(database)
        yield database, settings
    finally:
        database.dispose()
        drop_schemas(postgres_url, prefix)


def serial(tracking_number: str) -> int:
    match = re.fullmatch(r"ZX\d{8}-(\d{4,})", tracking_number)
    assert match is not None, tracking_number
    return int(match.group(1))


# -- the query code ------------------------------------------------------------------------------


def test_the_query_code_is_hashed_with_small_argon2id_parameters(db: Session, settings: Settings) -> None:
    result = workflow.submit_consultation(db, settings, submission(), now=NOW)
    stored = result.consultation.query_code_hash
    assert stored is not None and result.query_code is not None
    parameters = extract_parameters(stored)
    assert (parameters.type, parameters.time_cost, parameters.memory_cost, parameters.parallelism) == (
        Type.ID, 1, 4096, 1)
    assert workflow.check_query_code(result.consultation, result.query_code)
    assert workflow.check_query_code(result.consultation, result.query_code.lower())
    assert not workflow.check_query_code(result.consultation, "ABCDEFGH")


def test_a_query_code_hashed_with_the_former_default_parameters_still_verifies(
    db: Session, settings: Settings
) -> None:
    consultation = workflow.submit_consultation(db, settings, submission(), now=NOW).consultation
    code = workflow.new_query_code()
    consultation.query_code_hash = PasswordHasher().hash(code)  # argon2-cffi's defaults: 3 passes over 64 MiB
    assert extract_parameters(consultation.query_code_hash).memory_cost == 65536
    assert workflow.check_query_code(consultation, code)
    assert not workflow.check_query_code(consultation, "ABCDEFGH" if code != "ABCDEFGH" else "HGFEDCBA")


# -- the tracking serial ---------------------------------------------------------------------------


def test_an_open_submission_does_not_hold_the_next_one_back(committed: tuple[ServiceDatabase, Settings]) -> None:
    """The first submission's transaction stays open (as it does while its request writes its steps and events);
    a second one on another connection must still be stored at once, with the next serial."""
    database, settings = committed
    first = database.new_session()
    try:
        held = workflow.submit_consultation(first, settings, submission(), now=NOW)
        outcome: dict[str, object] = {}

        def second() -> None:
            try:
                with database.transaction() as session:
                    session.execute(text("SET LOCAL lock_timeout = '5s'"))
                    result = workflow.submit_consultation(session, settings, submission(), now=NOW)
                    outcome["tracking_number"] = result.consultation.tracking_number
            except Exception as error:  # reported by the assertion below
                outcome["error"] = error

        other = threading.Thread(target=second)
        other.start()
        other.join(timeout=20)
        assert not other.is_alive(), "the second submission waited for the first one's transaction"
        assert "error" not in outcome, outcome
        assert serial(str(outcome["tracking_number"])) == serial(held.consultation.tracking_number) + 1
        first.commit()
    finally:
        first.close()
    with database.transaction() as session:
        numbers = set(session.scalars(select(Consultation.tracking_number)))
    assert {held.consultation.tracking_number, outcome["tracking_number"]} <= numbers


def test_concurrent_submissions_get_distinct_consecutive_serials(committed: tuple[ServiceDatabase, Settings]) -> None:
    database, settings = committed
    day = NOW + timedelta(days=1)  # a day of its own: its serials start at 1

    def submit(_: int) -> str:
        with database.transaction() as session:
            return workflow.submit_consultation(session, settings, submission(), now=day).consultation.tracking_number

    with ThreadPoolExecutor(max_workers=8) as pool:
        numbers = list(pool.map(submit, range(40)))
    assert len(set(numbers)) == 40
    assert all(number.startswith("ZX20261104-") for number in numbers)
    assert sorted(serial(number) for number in numbers) == list(range(1, 41))


def test_a_failed_submission_leaves_a_gap_never_a_reused_number(committed: tuple[ServiceDatabase, Settings]) -> None:
    database, settings = committed
    day = NOW + timedelta(days=2)
    session = database.new_session()
    try:
        dropped = workflow.submit_consultation(session, settings, submission(), now=day).consultation.tracking_number
        session.rollback()
    finally:
        session.close()
    with database.transaction() as session:
        kept = workflow.submit_consultation(session, settings, submission(), now=day).consultation.tracking_number
        assert session.scalar(select(Consultation).where(Consultation.tracking_number == dropped)) is None
    assert serial(kept) == serial(dropped) + 1


# -- duplicate detection ---------------------------------------------------------------------------------


def test_duplicate_detection_compares_a_bounded_number_of_recent_consultations(
    db: Session, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workflow, "DUPLICATE_CANDIDATES", 3)
    phone = f"136{next(_numbers)}"
    original = workflow.submit_consultation(db, settings, submission(phone=phone), now=NOW)
    others = (("科技项目验收", "今年的科技项目验收什么时候开始？需要准备哪些验收材料？"),
              ("技术合同登记", "技术合同认定登记需要多长时间？在哪里办理？"),
              ("人才公寓申请", "引进人才申请人才公寓，需要满足什么条件，排队多久？"))
    for minutes, (title, question) in enumerate(others, start=1):
        other = workflow.submit_consultation(db, settings, submission(phone=phone, title=title, question=question),
                                             now=NOW + timedelta(minutes=minutes))
        assert not other.duplicate
    again = workflow.submit_consultation(db, settings, submission(phone=phone), now=NOW + timedelta(minutes=10))
    assert not again.duplicate  # the original is older than the contact's latest three
    monkeypatch.setattr(workflow, "DUPLICATE_CANDIDATES", 50)
    repeated = workflow.submit_consultation(db, settings, submission(phone=phone), now=NOW + timedelta(minutes=11))
    assert repeated.duplicate
    assert repeated.consultation.id == original.consultation.id  # the earliest match of the window
