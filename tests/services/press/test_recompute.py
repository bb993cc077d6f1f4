"""Full recompute: reclusters from stored keywords, keeps topic ids, reports progress."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Flask
from sqlalchemy import select

from services.db import get_database
from services.press import engine, ingest
from services.press.models import PressMessage, RecomputeRun, Topic
from services.press.topics import Message, build_vectors

TOPICS = [("阳光花园小区停车位收费过高", "停车位收费过高物业涨价"), ("滨江壹号小区自来水发黄", "自来水发黄有异味"),
          ("高新区公交线路调整不便", "公交线路站点变远换乘不便")]


def _corpus(count: int) -> list[Message]:
    start = datetime(2025, 3, 1, tzinfo=UTC)
    return [Message(id=f"r{t}-{i}", title=TOPICS[t][0], text=f"{TOPICS[t][1]}，第{i}次", asker=f"{t}{i}",
                    time=start + timedelta(hours=i)) for t in range(len(TOPICS)) for i in range(count)]


def test_recompute_keeps_topic_ids_and_records_its_run(suite: dict[str, Flask]) -> None:
    settings = suite["press"].extensions["gongkai.settings"]
    database = get_database("press", suite["press"])
    ingest.import_messages(database.transaction, settings, _corpus(5))
    with database.transaction() as session:
        engine.update_topics(session, settings, evaluate_alerts=False)
        before = dict(session.execute(select(PressMessage.source_id, PressMessage.topic_id)).all())
    run_id = engine.recompute(database)
    with database.transaction() as session:
        after = dict(session.execute(select(PressMessage.source_id, PressMessage.topic_id)).all())
        assert after == before
        assert len(set(after.values())) == 3
        assert all(topic.size == 5 for topic in session.scalars(select(Topic)))
        run = session.get(RecomputeRun, run_id)
        assert run is not None and run.state == "finished"
        status = engine.recompute_status(session)
        assert status is not None and status["id"] == run_id and status["state"] == "finished"


def test_the_scalable_path_groups_like_the_exact_one() -> None:
    from services.press.topics import keywords_of

    messages = _corpus(40)
    vectors, _ = build_vectors([keywords_of(m.title, m.text) for m in messages])
    labels = engine.scalable_cluster(vectors, dense_limit=30)
    groups = [{labels[t * 40 + i] for i in range(40)} for t in range(3)]
    assert all(len(group) == 1 for group in groups) and len(set().union(*groups)) == 3
