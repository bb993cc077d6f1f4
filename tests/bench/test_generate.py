"""The data generator (bench.generate) at a tiny scale: the counts asked for, real recombined Chinese
text, the real index built, and a second run that changes nothing (or refuses other content)."""

from __future__ import annotations

import csv
import html
import json
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bench.generate import (
    BENCH_QUERY_CODE,
    DEFAULT_SOURCE,
    MANIFEST,
    Counts,
    GenerateError,
    generate,
    plan_counts,
    settings_for,
)

COUNTS = Counts(consultations=80, policies=12, interpretations=9, answers=35)
NOW = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)
HAN = re.compile(r"[\u4e00-\u9fff]")


def _real_titles() -> set[str]:
    titles = set()
    for name in ("messages_with_replies.csv", "messages_with_likes.csv"):
        with (DEFAULT_SOURCE / name).open(encoding="utf-8-sig") as handle:
            titles |= {re.sub(r"\s+", "", row["留言主题"])[:100] for row in csv.DictReader(handle)}
    return titles


def _policy_text() -> str:
    with (DEFAULT_SOURCE / "policies_govcn.csv").open(encoding="utf-8-sig") as handle:
        return re.sub(r"\s+", "", "".join(row["Policy_Content"] for row in csv.DictReader(handle)))


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:  # type: ignore[type-arg]
    data_dir = tmp_path_factory.mktemp("generated")
    report = generate(data_dir, COUNTS, quiet=True, now=NOW)
    assert not report.already
    return data_dir, report.manifest


def test_the_counts_asked_for_are_written_and_indexed(generated: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    from consult.models import Consultation, ConsultationStep
    from interpret.models import Interpretation, InterpretationPolicy, Policy
    from services.db import get_database
    from services.suite import create_worker_app
    from services.web import get_search_engine

    data_dir, manifest = generated
    settings, _env = settings_for(data_dir, "sqlite", None, "")
    app = create_worker_app(settings)
    with app.app_context():
        with get_database("interpret", app).transaction() as session:
            assert session.scalar(select(func.count()).select_from(Policy)) == COUNTS.policies
            assert session.scalar(select(func.count()).select_from(Interpretation)) == COUNTS.interpretations
            links = session.scalar(select(func.count()).select_from(InterpretationPolicy)) or 0
            assert links >= COUNTS.interpretations
            numbers = session.execute(select(Policy.issuer, Policy.document_number)).all()
            assert len(set(numbers)) == len(numbers)
        with get_database("consult", app).transaction() as session:
            states = Counter(dict(session.execute(
                select(Consultation.state, func.count()).group_by(Consultation.state)).all()))
            published = session.scalar(select(func.count()).select_from(Consultation)
                                       .where(Consultation.published_at.is_not(None)))
            steps = session.scalar(select(func.count()).select_from(ConsultationStep))
            sample = session.scalars(select(Consultation).order_by(Consultation.id).limit(40)).all()
            assert len({c.tracking_number for c in sample}) == len(sample)
        engine = get_search_engine(app)
        alias = settings.search_alias
        assert engine.count(alias) == COUNTS.documents
        assert engine.count(alias, "answer") == COUNTS.answers
    assert sum(states.values()) == COUNTS.consultations
    assert published == COUNTS.answers
    assert states["published"] + states["closed"] >= COUNTS.answers
    assert steps and steps > COUNTS.consultations
    assert manifest["index"]["documents"] == COUNTS.documents
    assert manifest["counts"] == COUNTS.as_dict()
    assert manifest["query_code"] == BENCH_QUERY_CODE


def test_text_is_real_chinese_recombined_from_the_shared_data(generated: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    from consult.models import Consultation
    from interpret.models import Policy
    from services.db import get_database
    from services.suite import create_worker_app
    from services.text.pii import find_personal_data

    data_dir, _manifest = generated
    settings, _env = settings_for(data_dir, "sqlite", None, "")
    app = create_worker_app(settings)
    titles = _real_titles()
    policy_text = _policy_text()
    with app.app_context():
        with get_database("consult", app).transaction() as session:
            consultations = session.scalars(select(Consultation)).all()
        with get_database("interpret", app).transaction() as session:
            policies = session.scalars(select(Policy)).all()
    for consultation in consultations:
        assert consultation.title in titles
        assert len(HAN.findall(consultation.question)) > 0.6 * len(consultation.question)
    answered = [c for c in consultations if c.published_at is not None]
    for consultation in answered:
        assert consultation.published_reply and consultation.published_question
        personal = find_personal_data(consultation.published_reply)
        assert not any(f.kind in ("phone", "id_card", "email") for f in personal)
    for policy in policies:
        text = html.unescape(policy.body).replace("\n", "")
        sentences = [s for s in re.split(r"(?<=[。；！？])", text) if len(s) >= 10]
        found = sum(1 for sentence in sentences if sentence in policy_text)
        assert sentences and found >= 0.8 * len(sentences), (found, len(sentences))
    categories = {c.category for c in consultations}
    assert len(categories) >= 5


def test_a_second_run_changes_nothing_and_other_content_is_refused(
        generated: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    data_dir, manifest = generated
    again = generate(data_dir, COUNTS, quiet=True, now=NOW)
    assert again.already
    assert json.loads((data_dir / MANIFEST).read_text(encoding="utf-8"))["generated_at"] == manifest["generated_at"]
    bigger = Counts(COUNTS.consultations + 1, COUNTS.policies, COUNTS.interpretations, COUNTS.answers)
    with pytest.raises(GenerateError, match="already holds content"):
        generate(data_dir, bigger, quiet=True, now=NOW)


def test_impossible_counts_are_refused() -> None:
    with pytest.raises(GenerateError, match="cannot exceed"):
        plan_counts(10, 1, 1, 11, 1.0)
    assert plan_counts(100_000, 20_000, 20_000, 50_000, 0.02) == Counts(2000, 400, 400, 1000)


def test_the_inbox_due_filter_in_sql_agrees_with_the_badges(generated: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    """The staff API's ``due`` filter (SQL since issue 8) picks exactly the cases whose badge says so."""
    from bench.staff_inbox import identities
    from consult import workflow
    from consult.models import Consultation
    from services.db import get_database
    from services.suite import create_app_for, create_worker_app

    data_dir, _manifest = generated
    settings, _env = settings_for(data_dir, "sqlite", None, "")
    app = create_app_for("consult", settings)
    token, _console = identities(create_worker_app(settings), settings)
    client = app.test_client()
    with app.app_context(), get_database("consult", app).transaction() as session:
        calendar = workflow.consult_calendar(session)
        open_cases = session.scalars(select(Consultation).where(
            Consultation.state.in_(list(workflow.open_states())))).all()
        expected = Counter(workflow.deadline_status(c, calendar) for c in open_cases)
    assert expected["overdue"] and expected["paused"]
    for due in ("overdue", "due_soon", "paused", "on_time"):
        answer = client.get(f"/api/consult/manage/consultations?due={due}&per_page=200",
                            headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.get_data(as_text=True)
        body = answer.get_json()
        assert body["total"] == expected[due], due
        assert all(item["deadline_status"] == due for item in body["items"])
