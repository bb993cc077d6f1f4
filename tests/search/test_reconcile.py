"""Reconciliation finds what the index lost, missed or kept too long, and repairs it (issue 6).

The drift is made the way it happens: events lost on the way, an index restored from an older
copy, a document the services never published."""

from __future__ import annotations

import pytest
from flask import Flask

from search.reconcile import reconcile
from search.reindex import SOURCES
from services.searchengine.port import SearchQuery
from services.web import content_alias

from support.search_content import Newsroom


@pytest.fixture
def room(suite: dict[str, Flask], monkeypatch: pytest.MonkeyPatch) -> Newsroom:
    from services.db import get_database

    for service in ("interpret", "consult"):
        monkeypatch.setattr(get_database(service, suite[service]), "publisher", None)
    return Newsroom(suite)


def restore_without(suite: dict[str, Flask], doc_id: str) -> None:
    """Point the alias at a copy of its index that lacks ``doc_id`` (a restore from an older backup)."""
    engine, alias = content_alias(suite["search"])
    copy = engine.create_index(alias)
    listed = engine.search(alias, SearchQuery(per_page=100))
    assert listed.total <= 100
    for hit in listed.hits:
        if hit.id != doc_id:
            document = engine.get_document(alias, hit.id)
            assert document is not None
            version = document.pop("_version")
            assert engine.index_document(copy, hit.id, document, version)
    engine.swap_alias(alias, copy)


def test_reconciliation_repairs_deleted_stale_missing_and_extra_documents(
    suite: dict[str, Flask], room: Newsroom
) -> None:
    policies = [room.policy(f"关于推进数字乡村建设的第{n}号通知") for n in range(1, 6)]
    interpretation = room.interpretation("数字乡村建设政策解读", policies[0])
    answers = [room.answer(f"数字乡村宽带接入咨询{n}") for n in range(1, 4)]
    room.sync()
    engine, alias = content_alias(suite["search"])
    clean = reconcile(suite)
    assert clean.drift == 0 and clean.unrepaired == 0
    assert {name: r.published for name, r in clean.types.items()} == {"policy": 5, "interpretation": 1, "answer": 3,
                                                                    "press_response": 0}

    # Deleted: the index was restored from a copy made before this answer was there.
    restore_without(suite, f"answer-{answers[0]}")
    # Stale: the republication's event was lost; the index keeps the first version.
    room.revise_policy(policies[1], "关于加快推进数字乡村建设的通知（修订）")
    room.take()
    # Extra: the withdrawal's event was lost; the index still shows it.
    room.withdraw_policy(policies[2])
    room.take()
    # Missing: a new publication whose event was lost.
    new_policy = room.policy("数字乡村建设专项资金管理办法")
    room.take()
    # Extra too: something in the index no service ever published.
    assert engine.index_document(alias, "answer-990001", {
        "doc_type": "answer", "title": "数字乡村来历不明的答复", "body": "不应出现"}, 1)

    found = reconcile(suite)

    policy, answer = found.types["policy"], found.types["answer"]
    assert (policy.published, policy.missing, policy.stale, policy.extra, policy.repaired) == (5, 1, 1, 1, 3)
    assert (answer.published, answer.missing, answer.stale, answer.extra, answer.repaired) == (3, 1, 0, 1, 2)
    assert found.types["interpretation"].drift == 0
    assert found.drift == 5 and found.unrepaired == 0

    engine.refresh(alias)
    revised = engine.get_document(alias, f"policy-{policies[1]}")
    assert revised is not None and revised["title"] == "关于加快推进数字乡村建设的通知（修订）"
    assert engine.get_document(alias, f"policy-{policies[2]}") is None
    assert engine.get_document(alias, f"policy-{new_policy}") is not None
    assert engine.get_document(alias, f"answer-{answers[0]}") is not None
    assert engine.get_document(alias, "answer-990001") is None
    titles = [hit.title for hit in engine.search(alias, SearchQuery(text="数字乡村", per_page=50)).hits]
    assert "数字乡村来历不明的答复" not in titles and "关于推进数字乡村建设的第3号通知" not in titles
    assert engine.count(alias, "policy") == 5 and engine.count(alias, "answer") == 3
    assert engine.get_document(alias, f"interpretation-{interpretation}") is not None

    # Repaired, the index agrees with the services: a second run finds nothing.
    assert reconcile(suite).drift == 0


def test_a_dry_run_reports_the_drift_and_repairs_nothing(suite: dict[str, Flask], room: Newsroom) -> None:
    room.policy("高标准农田建设规划")
    lost = room.policy("高标准农田建设补助标准")
    room.sync()
    room.withdraw_policy(lost)
    room.take()

    report = reconcile(suite, repair=False)

    assert report.types["policy"].extra == 1 and report.types["policy"].repaired == 0
    engine, alias = content_alias(suite["search"])
    assert engine.get_document(alias, f"policy-{lost}") is not None
    assert report.lines()[0].split()[:4] == ["type", "published", "indexed", "missing"]
    assert reconcile(suite).types["policy"].repaired == 1
    assert engine.get_document(alias, f"policy-{lost}") is None


def test_a_publication_applied_while_reconciling_is_not_taken_for_drift(
    suite: dict[str, Flask], room: Newsroom, monkeypatch: pytest.MonkeyPatch
) -> None:
    room.policy("智慧农业示范项目申报指南")
    room.sync()
    interpret_source = next(source for source in SOURCES if source.service == "interpret")
    original = type(interpret_source).versions
    calls: list[int] = []

    def versions_then_publish(self: object, apps: dict[str, Flask]) -> dict[str, int]:
        answer = original(interpret_source, apps)
        if not calls:
            # Just after the service was asked what it publishes, a publication reaches the index.
            calls.append(room.policy("智慧农业补贴发放办法"))
            room.sync()
        return answer

    monkeypatch.setattr(type(interpret_source), "versions", versions_then_publish)
    report = reconcile(suite)

    assert report.types["policy"].extra == 0 and report.types["policy"].repaired == 0
    engine, alias = content_alias(suite["search"])
    assert engine.get_document(alias, f"policy-{calls[0]}") is not None


def test_the_exports_agree_with_what_the_events_indexed(suite: dict[str, Flask], room: Newsroom) -> None:
    """Whatever state a document is in, the services' exports name exactly what their events put in
    the index, with the same version and the same fields: a rebuild or a repair changes nothing."""
    plain = room.policy("关于开展河湖清四乱专项行动的通知")
    being_revised = room.policy("关于加强水土保持工作的意见")
    room.revise_policy(being_revised, "关于加强水土保持工作的意见（征求意见稿）", republish=False)
    withdrawn = room.policy("关于地下水超采治理的通知")
    room.withdraw_policy(withdrawn)
    withdrawn_then_revised = room.policy("关于河长制考核的办法")
    room.withdraw_policy(withdrawn_then_revised)
    room.revise_policy(withdrawn_then_revised, "关于河长制考核的办法（修订稿）", republish=False)
    explained = room.policy("关于推进幸福河湖建设的指导意见")
    interpretation = room.interpretation("幸福河湖建设指导意见解读", explained)
    answered = [room.answer(f"河道采砂许可咨询第{n}号") for n in range(4)]
    room.unpublish_answer(answered[1])
    room.unpublish_answer(answered[2])
    room.republish_answer(answered[2])
    room.rate_answer(answered[3])
    room.close_answer(answered[3])
    room.sync()

    assert reconcile(suite, repair=False).drift == 0
    engine, alias = content_alias(suite["search"])
    exported = {doc_id: (document, version) for source in SOURCES
                for doc_id, document, version in source.documents(suite, batch_size=2)}
    assert sorted(exported) == sorted([
        f"policy-{plain}", f"policy-{being_revised}", f"policy-{explained}", f"interpretation-{interpretation}",
        f"answer-{answered[0]}", f"answer-{answered[2]}", f"answer-{answered[3]}",
    ])
    for doc_id, (document, version) in exported.items():
        indexed = engine.get_document(alias, doc_id)
        assert indexed is not None, doc_id
        assert indexed.pop("_version") == version, doc_id
        assert indexed == {**document, "id": doc_id}, doc_id
    assert exported[f"policy-{being_revised}"][0]["title"] == "关于加强水土保持工作的意见"
    assert not {f"policy-{withdrawn}", f"policy-{withdrawn_then_revised}", f"answer-{answered[1]}"} & set(exported)
    assert {name: engine.count(alias, name) for name in ("policy", "interpretation", "answer")} == {
        "policy": 3, "interpretation": 1, "answer": 3}
