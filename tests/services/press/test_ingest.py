"""Ingest: consult's events and imported files reach the press office redacted, once, in version order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import func, select

from services.db import get_database
from services.press import ingest
from services.press.models import PressMessage
from services.press.topics import Message

from support.env import base_env


def _event(consultation_id: int, version: int, state: str = "submitted", **extra: Any) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "version": version, "payload": {"consultation": {
        "id": consultation_id, "tracking_number": f"ZX{consultation_id}", "title": "燃气泄漏 电话13912345678",
        "question": "小区燃气泄漏，身份证110101199003071234，请处理", "state": state, "department": "KJTA",
        "category": "城乡建设", "received_at": "2025-03-01T02:00:00+00:00", "reply_due": None, "replied_at": None,
        "asker_key": "k" * 64, **extra}}}


def test_a_received_consultation_is_stored_redacted_once_with_keywords_and_emergency_terms(
        suite: dict[str, Flask]) -> None:
    settings = suite["press"].extensions["gongkai.settings"]
    with get_database("press", suite["press"]).transaction() as session:
        event = _event(901, 1)
        first = ingest.ingest_consultation(session, settings, event)
        again = ingest.ingest_consultation(session, settings, _event(901, 1))
        assert first.id == again.id
        assert session.scalar(select(func.count()).select_from(PressMessage)) == 1
        assert "13912345678" not in first.title and "110101199003071234" not in first.text
        assert "燃气" in first.keywords and not any("隐去" in word for word in first.keywords)
        assert first.emergency_terms == "泄漏" and first.topic_id is None and first.asker_key == "k" * 64


def test_state_events_apply_in_version_order_and_wait_for_the_intake(suite: dict[str, Flask]) -> None:
    settings = suite["press"].extensions["gongkai.settings"]
    with get_database("press", suite["press"]).transaction() as session:
        with pytest.raises(ingest.NotYetIngested):
            ingest.apply_consultation_state(session, _event(902, 3, "assigned"))
        ingest.ingest_consultation(session, settings, _event(902, 1))
        newer = _event(902, 4, "replied", replied_at="2025-03-02T02:00:00+00:00", reply_due="2025-03-08")
        assert ingest.apply_consultation_state(session, newer) == "applied"
        assert ingest.apply_consultation_state(session, _event(902, 3, "assigned")) == "stale"
        message = session.scalar(select(PressMessage).where(PressMessage.source_id == "902"))
        assert message is not None and message.state == "replied" and message.source_version == 4
        assert message.replied_at == datetime(2025, 3, 2, 2, tzinfo=UTC) and str(message.reply_due) == "2025-03-08"


def test_an_import_is_idempotent_and_hashes_the_asker(suite: dict[str, Flask]) -> None:
    settings = suite["press"].extensions["gongkai.settings"]
    database = get_database("press", suite["press"])
    messages = [Message(id=f"m{i}", title="停车收费", text=f"电话1381234567{i} 停车收费太高", asker="A0001",
                        time=datetime(2019, 3, 1, 9, i)) for i in range(3)]
    first = ingest.import_messages(database.transaction, settings, messages)
    second = ingest.import_messages(database.transaction, settings, messages)
    assert (first.imported, second.imported, second.already) == (3, 0, 3)
    with database.transaction() as session:
        stored = session.scalars(select(PressMessage).where(PressMessage.source == "import")).all()
    assert len(stored) == 3 and len({m.asker_key for m in stored}) == 1 and "A0001" not in str(stored[0].asker_key)
    assert all("138123456" not in m.text for m in stored)
    assert stored[0].received_at == datetime(2019, 3, 1, 1, 0, tzinfo=UTC)  # Beijing 09:00


def test_import_of_a_bad_csv_is_one_readable_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.cli import main

    bad = tmp_path / "bad.csv"
    bad.write_text("编号,标题\n1,停车\n", encoding="utf-8")
    for key, value in base_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(main, ["press", "import", str(bad)])
    assert result.exit_code == 1
    assert "missing columns 留言编号, 留言主题, 留言时间, 留言详情" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
