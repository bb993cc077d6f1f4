"""Index versions as a property (issue 9): any delivery order converges to the newest.

A few documents each get versioned writes and deletes (versions drawn at random, often the same
twice: a redelivered event), and hypothesis delivers them in any order. Afterwards the index holds,
for each document, what its highest version said: the write of that version, or nothing when a
delete carries it (a delete wins a tie with a write of the same version, as the port documents).
Checked on both engines (the embedded FTS5 engine and the Elasticsearch adapter against
osmem-server, through the ``engine`` fixture of conftest.py) with the port's public methods, and one
level up, through the indexing tasks of ``search/tasks.py`` applying the services' events.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.searchengine.port import SearchEngine, SearchQuery

ALIAS = "gongkai"
DOCUMENTS = 3
MAX_VERSION = 6


@dataclass(frozen=True)
class Delivery:
    document: int  # 0..DOCUMENTS-1, named per example
    delete: bool
    version: int


deliveries = st.lists(
    st.builds(Delivery, st.integers(0, DOCUMENTS - 1), st.booleans(), st.integers(1, MAX_VERSION)),
    min_size=1, max_size=10,
)


@st.composite
def shuffled(draw: st.DrawFn) -> list[Delivery]:
    """The deliveries in one order (the order they were made), then any permutation of them."""
    made = draw(deliveries)
    return draw(st.permutations(made))


def expected_state(delivered: list[Delivery]) -> dict[int, int | None]:
    """Document -> the version its stored write holds, or None when it must be absent. Order-free."""
    expected: dict[int, int | None] = {}
    for document in {d.document for d in delivered}:
        own = [d for d in delivered if d.document == document]
        newest = max(d.version for d in own)
        deleted = any(d.delete and d.version == newest for d in own)
        expected[document] = None if deleted else newest
    return expected


def title(example: int, document: int, version: int) -> str:
    return f"第{example}组第{document}号文件第{version}版"


def make_document(doc_id: str, example: int, document: int, version: int) -> dict[str, Any]:
    return {
        "id": doc_id, "doc_type": "policy", "title": title(example, document, version),
        "summary": "", "body": f"版本{version}的正文。", "url": f"https://gov.example.cn/{doc_id}",
        "published_at": f"2026-0{1 + version % 9}-01T09:00:00+08:00", "department": f"D{example}",
    }


_examples = itertools.count(1)


# -- the port, on both engines ---------------------------------------------------------------------------


def _check_engine_converges(engine: SearchEngine, delivered: list[Delivery], batch_writes: bool) -> None:
    example = next(_examples)
    doc_ids = {n: f"policy-{example}0{n}" for n in range(DOCUMENTS)}
    stored: dict[int, int] = {}  # the model: the version each document's write or tombstone holds

    def applies(delivery: Delivery) -> bool:
        before = stored.get(delivery.document)
        newer = before is None or (delivery.version >= before if delivery.delete else delivery.version > before)
        if newer:
            stored[delivery.document] = delivery.version
        return newer

    pending_writes: list[Delivery] = []

    def flush_writes() -> None:
        if pending_writes:
            answers = engine.index_documents(ALIAS, [
                (doc_ids[d.document], make_document(doc_ids[d.document], example, d.document, d.version), d.version)
                for d in pending_writes
            ])
            assert answers == [applies(d) for d in pending_writes]
            pending_writes.clear()

    for delivery in delivered:
        doc_id = doc_ids[delivery.document]
        if delivery.delete:
            flush_writes()
            assert engine.delete_document(ALIAS, doc_id, delivery.version) == applies(delivery)
        elif batch_writes:
            pending_writes.append(delivery)  # consecutive writes go as one bulk request, as a rebuild sends them
        else:
            written = engine.index_document(
                ALIAS, doc_id, make_document(doc_id, example, delivery.document, delivery.version), delivery.version)
            assert written == applies(delivery)
    flush_writes()

    engine.refresh(ALIAS)
    expected = expected_state(delivered)
    for document, version in expected.items():
        found = engine.get_document(ALIAS, doc_ids[document])
        if version is None:
            assert found is None, (document, delivered)
        else:
            assert found is not None, (document, delivered)
            assert (found["title"], found["_version"]) == (title(example, document, version), version), delivered
    # What the public sees: exactly the live documents, each at its newest version.
    listed = engine.search(ALIAS, SearchQuery(filters={"department": f"D{example}"}, per_page=DOCUMENTS + 1))
    assert sorted(hit.title for hit in listed.hits) == sorted(
        title(example, document, version) for document, version in expected.items() if version is not None)
    assert listed.total == len(listed.hits)


def _settings(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


EXAMPLES = {"fts": 150, "elasticsearch": 60}  # osmem-server is slower: fewer there


@pytest.fixture
def aliased(engine: SearchEngine) -> SearchEngine:
    engine.ensure_alias(ALIAS)
    return engine


def test_any_delivery_order_converges_to_the_newest_version(
    aliased: SearchEngine, request: pytest.FixtureRequest
) -> None:
    engine_name = request.node.callspec.params["engine"]

    @_settings(EXAMPLES[engine_name])
    @given(delivered=shuffled(), batch_writes=st.booleans())
    def converges(delivered: list[Delivery], batch_writes: bool) -> None:
        _check_engine_converges(aliased, delivered, batch_writes)

    converges()


def test_the_model_itself_is_order_free() -> None:
    """``expected_state`` depends on the set of deliveries only, and a delete wins a tie."""
    made = [Delivery(0, False, 3), Delivery(0, True, 3), Delivery(1, False, 2), Delivery(1, False, 5),
            Delivery(2, True, 4), Delivery(2, False, 1)]
    for order in itertools.permutations(made):
        assert expected_state(list(order)) == {0: None, 1: 5, 2: None}


# -- the consumer: search/tasks.py applying the services' events in any order --------------------------------


@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(made=deliveries, data=st.data())
def test_the_indexing_tasks_converge_whatever_the_order_and_redeliveries(
    suite: dict[str, Flask], made: list[Delivery], data: st.DataObject
) -> None:
    """Events as interpret emits them (``interpret.policy.published`` / ``.withdrawn``), one id per
    event; a delivery drawn twice is the same event delivered again (a broker's redelivery)."""
    from search.tasks import index_document, remove_document
    from services.web import content_alias

    example = next(_examples)
    run = uuid.uuid4().hex
    aggregate_ids = {n: 900_000 + example * 10 + n for n in range(DOCUMENTS)}

    def event(delivery: Delivery) -> dict[str, Any]:
        aggregate_id = aggregate_ids[delivery.document]
        kind = "withdrawn" if delivery.delete else "published"
        payload: dict[str, Any] = {"doc_type": "policy"} if delivery.delete else {
            "document": make_document(f"policy-{aggregate_id}", example, delivery.document, delivery.version)}
        return {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{run}/{delivery}")), "topic": f"interpret.policy.{kind}",
            "aggregate_type": "policy", "aggregate_id": aggregate_id, "version": delivery.version,
            "payload": payload, "created_at": "2026-11-26T09:00:00+00:00",
        }

    order = data.draw(st.permutations(made))
    answers = []
    with suite["search"].app_context():
        for delivery in order:
            task = remove_document if delivery.delete else index_document
            answers.append(task(event(delivery)))
        engine, alias = content_alias(suite["search"])
        engine.refresh(alias)
        for document, version in expected_state(made).items():
            found = engine.get_document(alias, f"policy-{aggregate_ids[document]}")
            if version is None:
                assert found is None, order
            else:
                assert found is not None, order
                assert (found["title"], found["_version"]) == (title(example, document, version), version), order
    # Each answer is the one the version rules give; a repeated event is recognised as such and does nothing.
    assert answers == expected_answers(order), order


def expected_answers(order: list[Delivery]) -> list[str]:
    stored: dict[int, int] = {}
    seen: set[Delivery] = set()
    answers = []
    for delivery in order:
        if delivery in seen:
            answers.append("duplicate")
            continue
        seen.add(delivery)
        before = stored.get(delivery.document)
        newer = before is None or (delivery.version >= before if delivery.delete else delivery.version > before)
        if newer:
            stored[delivery.document] = delivery.version
        answers.append(("removed" if delivery.delete else "indexed") if newer else "stale")
    return answers
