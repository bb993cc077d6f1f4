"""What the index shows follows the newest event, whatever order events arrive in (issue 6, must-show 3).

Content is made through the services' workflows; their outbox events are handed to
``search.tasks`` in-process, sometimes held back and delivered late, as a slow or
redelivering broker would."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from services.searchengine.port import SearchEngine, SearchQuery
from services.web import content_alias

from support.search_content import Newsroom


@pytest.fixture
def room(suite: dict[str, Flask], monkeypatch: pytest.MonkeyPatch) -> Newsroom:
    from services.db import get_database

    # Events wait in the outbox for the test to deliver them, in whatever order it chooses.
    for service in ("interpret", "consult"):
        monkeypatch.setattr(get_database(service, suite[service]), "publisher", None)
    return Newsroom(suite)


def _index(suite: dict[str, Flask]) -> tuple[SearchEngine, str]:
    engine, alias = content_alias(suite["search"])
    engine.refresh(alias)
    return engine, alias


def found(suite: dict[str, Flask], text: str) -> list[str]:
    engine, alias = _index(suite)
    return [hit.id for hit in engine.search(alias, SearchQuery(text=text)).hits]


def suggested(suite: dict[str, Flask], prefix: str) -> list[str]:
    engine, alias = _index(suite)
    return [suggestion.doc_id for suggestion in engine.suggest(alias, prefix)]


def stored(suite: dict[str, Flask], doc_id: str) -> dict[str, Any] | None:
    engine, alias = _index(suite)
    return engine.get_document(alias, doc_id)


def test_an_older_event_delivered_after_a_newer_one_leaves_the_newer_document(
    suite: dict[str, Flask], room: Newsroom
) -> None:
    policy_id = room.policy("关于促进青稞产业发展的通知")
    first = room.take()
    room.revise_policy(policy_id, "关于进一步促进青稞产业高质量发展的通知")
    second = room.take()
    doc_id = f"policy-{policy_id}"

    # The republication arrives first, the original publication long after it.
    assert room.deliver(second) == ["indexed"]
    assert room.deliver(first) == ["stale"]

    document = stored(suite, doc_id)
    assert document is not None
    assert document["title"] == "关于进一步促进青稞产业高质量发展的通知"
    assert document["_version"] == second[-1]["version"] > first[-1]["version"]
    assert found(suite, "高质量发展") == [doc_id]
    assert found(suite, "青稞") == [doc_id]
    # A redelivery of the newer event changes nothing either.
    assert room.deliver(second) == ["duplicate"]


def test_a_late_publication_cannot_bring_back_a_withdrawn_policy(suite: dict[str, Flask], room: Newsroom) -> None:
    policy_id = room.policy("关于牦牛养殖补贴的通知")
    published = room.take()
    room.withdraw_policy(policy_id)
    withdrawn = room.take()

    assert room.deliver(withdrawn) == ["removed"]
    assert room.deliver(published) == ["stale"]

    assert stored(suite, f"policy-{policy_id}") is None
    assert found(suite, "牦牛养殖") == []


def test_a_withdrawn_policy_leaves_search_and_suggestions(suite: dict[str, Flask], room: Newsroom) -> None:
    kept = room.policy("冰雪旅游高质量发展行动方案")
    withdrawn = room.policy("冰雪运动进校园实施意见")
    room.sync()
    assert sorted(found(suite, "冰雪")) == sorted([f"policy-{kept}", f"policy-{withdrawn}"])
    assert f"policy-{withdrawn}" in suggested(suite, "冰雪运动")

    room.withdraw_policy(withdrawn)
    assert room.sync() == ["removed"]

    assert found(suite, "冰雪") == [f"policy-{kept}"]
    assert found(suite, "进校园") == []
    assert f"policy-{withdrawn}" not in suggested(suite, "冰雪")
    assert suggested(suite, "冰雪运动") == []
    assert suggested(suite, "冰雪旅游") == [f"policy-{kept}"]


def test_an_unpublished_answer_leaves_search_and_suggestions(suite: dict[str, Flask], room: Newsroom) -> None:
    answer_id = room.answer("骆驼奶合作社注册咨询", question="请问骆驼奶合作社如何注册？")
    room.sync()
    doc_id = f"answer-{answer_id}"
    assert found(suite, "骆驼奶") == [doc_id]
    assert suggested(suite, "骆驼奶") == [doc_id]

    room.unpublish_answer(answer_id)
    assert room.sync() == ["removed"]

    assert found(suite, "骆驼奶") == []
    assert suggested(suite, "骆驼奶") == []
    # Published again, it is back, at a newer version than both earlier events.
    room.republish_answer(answer_id)
    assert room.sync() == ["indexed"]
    assert found(suite, "骆驼奶") == [doc_id]
