"""The weekly briefing (舆情周报): built from seeded press rows and read back with python-docx; the
policies the press office keeps from interpret's events; the page and the download with their rules.

The week briefed is Monday 2026-11-16 to Sunday 2026-11-22 (Beijing), made on Tuesday 2026-11-24.
"""

from __future__ import annotations

import io
import re
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from docx import Document
from docx.oxml.ns import qn
from flask import Flask
from sqlalchemy import select
from werkzeug.test import Client, TestResponse

from interpret.models import OutboxEvent as InterpretOutbox
from interpret.workflow import (
    InterpretationFields,
    PolicyFields,
    approve,
    create_interpretation,
    import_published_policy,
    link_policy,
    publish,
    submit,
    withdraw,
)
from services.auth import StaffIdentity
from services.db import get_database, utcnow
from services.events import subscribers
from services.permissions import Grant, Role
from services.press.briefing import BriefingError, Week, build_weekly_briefing, collect_briefing
from services.press.models import (
    Alert,
    AlertRule,
    OutboxEvent,
    PressMessage,
    PressPolicy,
    Response,
    ResponseTopic,
    Topic,
)
from services.press.policies import PolicyMatcher, known_policies, sync_policy
from services.suite import PathDispatcher
from services.text.pii import ID_CARD, MARKERS
from services.text.pii import PHONE as PHONE_KIND

from support.clock import bj
from support.env import base_env
from support.org import STAFF_PASSWORD

WEEK = Week(date(2026, 11, 16))
NOW = bj(2026, 11, 24, 10)
PHONE = "13812345678"
ID_NUMBER = "11010519491231002X"
PHONE_MARKER = MARKERS[PHONE_KIND]


# -- seeding ---------------------------------------------------------------------------------------


@pytest.fixture
def press(suite: dict[str, Flask], monkeypatch: pytest.MonkeyPatch) -> Flask:
    """The press app; events stay in its (rolled-back) outbox."""
    app = suite["press"]
    monkeypatch.setattr(get_database("press", app), "publisher", None)
    return app


class Seeder:
    def __init__(self, session: Any) -> None:
        self.session = session
        self.count = 0

    def topic(self, label: str, **fields: Any) -> Topic:
        topic = Topic(label=label, keywords=label.split("·"), **fields)
        self.session.add(topic)
        self.session.flush()
        return topic

    def message(self, title: str, at: datetime, *, text: str = "", topic: Topic | None = None,
                department: str | None = "KJTA", asker: str | None = None, likes: int = 0,
                **fields: Any) -> PressMessage:
        self.count += 1
        message = PressMessage(
            source=fields.pop("source", "import"), source_id=f"m{self.count}-{uuid.uuid4().hex[:8]}", title=title,
            text=text, department=department, asker_key=asker or f"asker{self.count}", received_at=at, likes=likes,
            keywords=[], topic_id=topic.id if topic else None, **fields,
        )
        self.session.add(message)
        self.session.flush()
        return message


def seed(press: Flask) -> dict[str, Any]:
    """Topics, messages, a response, alerts, consultations in every state and known policies."""
    made: dict[str, Any] = {}
    with get_database("press", press).transaction() as session:
        s = Seeder(session)
        # A burst: five messages this week (one asker twice), one the week before; two carry a phone or an ID.
        plant = s.topic("丽发新城·搅拌站·噪音", first_at=bj(2026, 11, 10), last_at=bj(2026, 11, 21))
        first = s.message(f"丽发新城搅拌站噪音扰民 联系电话{PHONE}", bj(2026, 11, 16, 9), topic=plant, likes=4,
                          asker="owner1", text="夜间施工噪音大")
        second = s.message(f"丽发新城搅拌站粉尘严重 身份证{ID_NUMBER}", bj(2026, 11, 17, 9), topic=plant,
                           department="KJTB", likes=2, text=f"请联系{PHONE}")
        s.message("丽发新城搅拌站夜间施工", bj(2026, 11, 18, 22), topic=plant, asker="owner1")
        s.message("搅拌站何时搬迁", bj(2026, 11, 20, 8), topic=plant)
        s.message("丽发新城搅拌站噪音扰民 联系电话[电话]", bj(2026, 11, 21, 23, 30), topic=plant)
        s.message("丽发新城搅拌站", bj(2026, 11, 10, 9), topic=plant)
        session.get(Topic, plant.id).representative_ids = [second.id, first.id]  # type: ignore[union-attr]
        # Steady: two this week, two the week before; answered by a published response.
        parking = s.topic("伊景园·停车位", first_at=bj(2026, 11, 9), last_at=bj(2026, 11, 19))
        for day in (9, 12, 17, 19):
            s.message(f"伊景园滨河苑停车位捆绑销售{day}", bj(2026, 11, day), topic=parking, department="KJTB")
        # Nothing this week: not among the week's topics.
        quiet = s.topic("旧话题·无新留言", first_at=bj(2026, 10, 1), last_at=bj(2026, 10, 2))
        s.message("旧话题无新留言", bj(2026, 10, 2), topic=quiet)
        # This week, but of a department outside the KJT bureau.
        outside = s.topic("卫生·疫苗接种", first_at=bj(2026, 11, 18), last_at=bj(2026, 11, 18))
        s.message("疫苗接种点在哪里", bj(2026, 11, 18), topic=outside, department="WSJ")

        response = Response(kind="response", title="关于伊景园停车位问题的回应", state="published",
                            published_at=bj(2026, 11, 20, 15))
        draft = Response(kind="response", title="关于丽发新城搅拌站的回应（草稿）", state="draft")
        focus = Response(kind="media_focus", title="媒体聚焦：停车难", state="published", outlet="安徽日报",
                         published_at=bj(2026, 11, 21, 9))
        session.add_all([response, draft, focus])
        session.flush()
        session.add_all([ResponseTopic(response_id=response.id, topic_id=parking.id),
                         ResponseTopic(response_id=draft.id, topic_id=plant.id)])
        rule = AlertRule(name="增长", kind="growth", min_messages=3, within_hours=72, min_burst=2.0)
        session.add(rule)
        session.flush()
        session.add_all([
            Alert(rule_id=rule.id, topic_id=plant.id, window_key="w1", reason="增长", fired_at=bj(2026, 11, 18, 23),
                  response_due=bj(2026, 11, 20, 23)),
            Alert(rule_id=rule.id, topic_id=parking.id, window_key="w1", reason="增长", fired_at=bj(2026, 11, 17, 12),
                  response_due=bj(2026, 11, 19, 12), responded_at=bj(2026, 11, 20, 15), response_id=response.id),
            Alert(rule_id=rule.id, topic_id=quiet.id, window_key="w0", reason="增长", fired_at=bj(2026, 10, 2),
                  response_due=bj(2026, 10, 4)),
        ])

        # Consultations as consult's events left them (received long ago: not in the week's counts).
        long_ago = bj(2026, 9, 1)
        for number, state, due, title, department in (
            ("ZX2026110001", "drafting", date(2026, 11, 20), "高新区人才公寓申请", "KJTA"),
            ("ZX2026110002", "assigned", date(2026, 11, 10), "科技项目经费拨付", "KJTB"),
            ("ZX2026110003", "replied", date(2026, 11, 1), "已经答复的咨询", "KJTA"),
            ("ZX2026110004", "awaiting_info", date(2026, 11, 5), "等待补充材料", "KJTA"),
            ("ZX2026110005", "drafting", date(2026, 11, 24), "今天到期", "KJTA"),
            ("ZX2026110006", "accepted", date(2026, 11, 23), f"请回电{PHONE}", None),
            ("ZX2026110007", "in_review", None, "没有期限", "KJTA"),
            ("ZX2026110008", "drafting", date(2026, 11, 2), "外单位逾期", "WSJ"),
        ):
            s.message(title, long_ago, department=department, source="consult", tracking_number=number, state=state,
                      reply_due=due)

        # Policies, as interpret's events told.
        session.add_all([
            PressPolicy(id=101, title="关于促进科技成果转化的若干措施", document_number="皖科政〔2017〕12号",
                        department="KJTA", url="/interpret/policies/101", interpretations=[], source_version=1),
            PressPolicy(id=102, title="高新技术企业认定管理办法", document_number="国科发火〔2016〕32号",
                        department="KJTB", url="/interpret/policies/102", source_version=1,
                        interpretations=[{"id": 7, "title": "解读", "url": "/interpret/interpretations/7"}]),
            PressPolicy(id=103, title="科技型中小企业评价办法", document_number=None, department="KJTB",
                        url="/interpret/policies/103", interpretations=[], source_version=1),
            PressPolicy(id=104, title="关于加强实验室安全管理的通知", document_number="皖科基〔2026〕5号",
                        department="KJTA", url="/interpret/policies/104", interpretations=[], source_version=1),
            PressPolicy(id=105, title="已经撤回的政策文件名称", document_number="皖科政〔2020〕1号", department="KJTA",
                        url="/interpret/policies/105", interpretations=[], published=False, source_version=2),
        ])
        s.message("请问皖科政[2017]12号文件中成果转化奖励如何兑现", bj(2026, 11, 16, 11))
        s.message("咨询《关于促进科技成果转化的若干措施》的适用范围", bj(2026, 11, 19, 11))
        s.message("成果转化政策咨询", bj(2026, 11, 22, 23),
                  text="关于促进科技成果转化的若干措施 第三条，即皖科政〔2017〕12号，是否适用于高校？")
        s.message("高新技术企业认定管理办法第十条", bj(2026, 11, 17, 10))
        s.message("高新技术企业认定管理办法 研发费用", bj(2026, 11, 18, 10))
        s.message("科技型中小企业评价办法怎么申报", bj(2026, 11, 20, 10))
        for day in (1, 3, 5):
            s.message("实验室安全", bj(2026, 11, day, 10), text="《关于加强实验室安全管理的通知》何时执行？")
        s.message("成果转化", bj(2026, 10, 10, 10), text="皖科政〔2017〕12号")  # more than 30 days before
        for day in (16, 17, 18):
            s.message("撤回的政策", bj(2026, 11, day, 12), text="《已经撤回的政策文件名称》还有效吗")
        s.message("下周的留言", bj(2026, 11, 23, 0, 1), text="皖科政〔2017〕12号")  # after the week
        made.update(plant=plant.id, parking=parking.id, quiet=quiet.id, outside=outside.id)
    return made


def docx_text(content: bytes) -> tuple[list[str], list[list[list[str]]]]:
    document = Document(io.BytesIO(content))
    paragraphs = [paragraph.text for paragraph in document.paragraphs]
    tables = [[[cell.text for cell in row.cells] for row in table.rows] for table in document.tables]
    return paragraphs, tables


def all_text(content: bytes) -> str:
    paragraphs, tables = docx_text(content)
    return "\n".join(paragraphs + [cell for table in tables for row in table for cell in row])


# -- the document ------------------------------------------------------------------------------------


def test_the_briefing_reads_back_with_topics_overdue_and_policies(press: Flask) -> None:
    made = seed(press)
    with get_database("press", press).transaction() as session:
        content = build_weekly_briefing(session, WEEK, NOW)
    paragraphs, tables = docx_text(content)
    assert paragraphs[0] == "舆情周报"
    assert paragraphs[1] == "2026年11月16日（星期一）至 2026年11月22日（星期日）"
    # 5 + 2 + 1 this week in topics, 3 + 2 + 1 + 3 policy questions.
    assert "收到留言 17 条，涉及话题 3 个（其中新话题 1 个）。" in paragraphs
    assert "触发告警 2 次。" in paragraphs
    assert "发布回应关切 1 篇、媒体聚焦 1 篇。" in paragraphs
    assert "逾期未答复咨询 4 件；咨询集中但尚无解读的政策 2 件。" in paragraphs

    topics, overdue, policies = tables
    assert topics[0] == ["序号", "话题", "热度", "留言数", "增长", "涉及部门", "代表性留言", "回应情况", "回应时限"]
    assert [row[1] for row in topics[1:]] == ["丽发新城·搅拌站·噪音", "伊景园·停车位", "卫生·疫苗接种"]
    plant = topics[1]
    assert plant[3] == "本周 5\n累计 6"
    assert plant[4] == "+4（+400%）"
    assert plant[5] == "KJTA、KJTB"
    samples = plant[6].split("\n")
    assert len(samples) == 3
    assert samples[0].startswith("· 丽发新城搅拌站粉尘严重 身份证")  # the representatives first
    assert samples[1].startswith("· 丽发新城搅拌站噪音扰民")
    assert plant[7] == "未回应"  # only a draft is linked
    assert plant[8] == "已超时 83 小时 未回应（时限 11-20 23:00）"
    parking = topics[2]
    assert parking[3] == "本周 2\n累计 4" and parking[4] == "+0（+0%）"
    assert parking[7] == "已回应：关于伊景园停车位问题的回应"
    assert parking[8] == "已回应，超时 27 小时（时限 11-19 12:00）"
    assert topics[3][8] == "未触发告警"
    assert float(plant[2].split("\n")[0]) > float(parking[2].split("\n")[0])

    assert overdue == [
        ["序号", "咨询编号", "办理部门", "标题", "答复期限", "逾期天数"],
        ["1", "ZX2026110008", "WSJ", "外单位逾期", "2026-11-02", "22"],
        ["2", "ZX2026110002", "KJTB", "科技项目经费拨付", "2026-11-10", "14"],
        ["3", "ZX2026110001", "KJTA", "高新区人才公寓申请", "2026-11-20", "4"],
        ["4", "ZX2026110006", "未分办", f"请回电{PHONE_MARKER}", "2026-11-23", "1"],
    ]
    assert policies == [
        ["序号", "政策文件", "文号", "发文部门", "本周咨询", "近 30 日咨询"],
        ["1", "关于促进科技成果转化的若干措施", "皖科政〔2017〕12号", "KJTA", "3", "3"],
        ["2", "关于加强实验室安全管理的通知", "皖科基〔2026〕5号", "KJTA", "0", "3"],
    ]
    text = all_text(content)
    assert PHONE not in text and ID_NUMBER not in text and ID_NUMBER[:17] not in text
    assert PHONE_MARKER in text and MARKERS[ID_CARD] in text
    assert made["quiet"]  # seeded, and not shown:
    assert "旧话题" not in text


def test_fonts_are_set_for_chinese_text(press: Flask) -> None:
    seed(press)
    with get_database("press", press).transaction() as session:
        document = Document(io.BytesIO(build_weekly_briefing(session, WEEK, NOW)))
    def east_asian(element: Any) -> str | None:
        fonts = element.find(f"{qn('w:rPr')}/{qn('w:rFonts')}")
        return None if fonts is None else str(fonts.get(qn("w:eastAsia")))

    assert east_asian(document.styles["Normal"].element) == "仿宋"
    assert east_asian(document.styles["Heading 1"].element) == "黑体"
    assert east_asian(document.paragraphs[0].runs[0]._element) == "宋体"
    assert east_asian(document.tables[0].rows[0].cells[0].paragraphs[0].runs[0]._element) == "黑体"


def test_departments_limit_the_messages_counted(press: Flask) -> None:
    seed(press)
    with get_database("press", press).transaction() as session:
        briefing = collect_briefing(session, WEEK, NOW, departments={"KJTA", "KJTB"})
        only_b = collect_briefing(session, WEEK, NOW, departments={"KJTB"})
    assert [line.label for line in briefing.top_topics] == ["丽发新城·搅拌站·噪音", "伊景园·停车位"]
    assert [line.tracking_number for line in briefing.overdue] == ["ZX2026110002", "ZX2026110001", "ZX2026110006"]
    assert briefing.messages == 16
    # In KJTB alone: the KJTB plant message and the unrouted ones only.
    plant = only_b.top_topics[0] if only_b.top_topics[0].label.startswith("丽发") else only_b.top_topics[1]
    assert (plant.week_count, plant.departments) == (1, ["KJTB"])
    assert [line.tracking_number for line in only_b.overdue] == ["ZX2026110002", "ZX2026110006"]


def test_an_empty_week_still_makes_a_document(press: Flask) -> None:
    with get_database("press", press).transaction() as session:
        content = build_weekly_briefing(session, Week(date(2020, 1, 6)), NOW)
    paragraphs, tables = docx_text(content)
    assert "收到留言 0 条，涉及话题 0 个（其中新话题 0 个）。" in paragraphs
    assert "本周没有归入话题的留言。" in paragraphs and "尚未收到已发布政策的信息。" in paragraphs
    assert tables == []


@pytest.mark.parametrize(("text", "problem"), [
    ("2026-11-17", "是星期二，周次应为星期一（如 2026-11-16）"),
    ("2026/11/16", "格式 YYYY-MM-DD"),
    ("2026-02-30", "格式 YYYY-MM-DD"),
    ("2026-11-30", "这一周尚未开始"),
])
def test_weeks_that_cannot_be_briefed(text: str, problem: str) -> None:
    with pytest.raises(BriefingError, match=re.escape(problem)):
        Week.parse(text, NOW)


def test_weeks_in_beijing_time() -> None:
    assert Week.parse("", NOW) == WEEK
    # Sunday 23:59 Beijing is still that week; Monday 00:00 Beijing (Sunday 16:00 UTC) starts the next.
    assert Week.last_full(bj(2026, 11, 29, 23, 59)) == WEEK
    assert Week.last_full(bj(2026, 11, 30, 0, 0)).monday == date(2026, 11, 23)
    assert WEEK.start == bj(2026, 11, 16, 0, 0) and WEEK.end == bj(2026, 11, 23, 0, 0)


# -- policies -------------------------------------------------------------------------------------------


def test_the_matching_rule() -> None:
    from services.press.policies import KnownPolicy

    matcher = PolicyMatcher([
        KnownPolicy(1, "关于促进科技成果转化的若干措施", "皖科政〔2017〕12号", "KJTA", "/p/1", False),
        KnownPolicy(2, "《通知》", None, None, "/p/2", False),
        KnownPolicy(3, "科技成果转化", None, None, "/p/3", False),
    ])
    assert matcher.match("皖科政（2017）12号怎么执行") == {1}
    assert matcher.match("皖科政〔2017〕13号怎么执行") == set()
    assert matcher.match("请问皖科政[2017]12号怎么执行") == {1}
    assert matcher.match("鲁皖科政〔2017〕12号") == {1}  # the trailing characters of a longer code: still named
    assert matcher.match("皖科〔2017〕12号") == set()
    assert matcher.match("关于 促进科技成果转化的 若干措施") == {1, 3}  # spaces ignored; the shorter title inside too
    assert matcher.match("《通知》说了什么") == {2}
    assert matcher.match("这个通知说了什么") == set()  # short titles only when quoted
    assert matcher.match("") == set()


STAFF = StaffIdentity(
    1, "editor_k", "编辑", (Grant(Role.EDITOR, "KJT", ("KJT",)), Grant(Role.REVIEWER, "KJT", ("KJT",)),
                            Grant(Role.DISCLOSURE_OFFICE, "KJT", ("KJT",))), "test", "api",
)
RELEASER = StaffIdentity(
    2, "reviewer_k", "审核", (Grant(Role.REVIEWER, "KJT", ("KJT",)), Grant(Role.DISCLOSURE_OFFICE, "KJT", ("KJT",))),
    "test", "api",
)


def _deliver(suite: dict[str, Flask], since: set[str]) -> list[str]:
    """Send the new interpret events to press.sync_policy as the relay would; the outcomes."""
    with get_database("interpret", suite["interpret"]).transaction() as session:
        events = [event.as_message() for event in session.scalars(
            select(InterpretOutbox).order_by(InterpretOutbox.created_at, InterpretOutbox.aggregate_version)
        ) if event.id not in since]
    since.update(event["id"] for event in events)
    outcomes = []
    with suite["press"].app_context():
        for event in events:
            if "press.sync_policy" in subscribers(event["topic"]):
                outcomes.append(sync_policy.run(event))
        # A repeated delivery changes nothing.
        for event in events:
            if "press.sync_policy" in subscribers(event["topic"]):
                assert sync_policy.run(event) == "duplicate"
    return outcomes


def _known(press: Flask) -> dict[int, tuple[str, str | None, bool, bool]]:
    with get_database("press", press).transaction() as session:
        rows = session.scalars(select(PressPolicy)).all()
        return {row.id: (row.title, row.document_number, bool(row.interpretations), row.published) for row in rows}


def test_interpret_events_keep_the_press_policy_table(
    suite: dict[str, Flask], press: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_database("interpret", suite["interpret"]), "publisher", None)
    seen: set[str] = set()
    with get_database("interpret", suite["interpret"]).transaction() as session:
        policy = import_published_policy(session, PolicyFields(
            title="安徽省科学技术厅关于加强科技成果转化工作的通知", issuer="安徽省科学技术厅", level="本级",
            department="KJT", document_number="皖科政〔2026〕3号", body="<p>现就有关事项通知如下。</p>",
        ), utcnow() - timedelta(days=3))
        policy_id = policy.id
    assert _deliver(suite, seen) == ["stored"]
    assert _known(press)[policy_id] == (
        "安徽省科学技术厅关于加强科技成果转化工作的通知", "皖科政〔2026〕3号", False, True)

    with get_database("interpret", suite["interpret"]).transaction() as session:
        interpretation = create_interpretation(session, STAFF, InterpretationFields(
            title="《关于加强科技成果转化工作的通知》政策解读", form="文字解读", interpreter_kind="第一解读人",
            interpreter_name="张某某", department="KJT", body="<p>一、出台背景</p>",
        ))
        link_policy(session, STAFF, interpretation, session.merge(policy))
        submit(session, STAFF, interpretation)
        approve(session, RELEASER, interpretation)
        publish(session, RELEASER, interpretation)
        interpretation_id = interpretation.id
    assert "stored" in _deliver(suite, seen)
    assert _known(press)[policy_id][2] is True
    with get_database("press", press).transaction() as session:
        assert [p.interpreted for p in known_policies(session) if p.id == policy_id] == [True]

    with get_database("interpret", suite["interpret"]).transaction() as session:
        from interpret.models import Interpretation, Policy

        withdraw(session, RELEASER, session.get(Interpretation, interpretation_id))  # type: ignore[arg-type]
    _deliver(suite, seen)
    assert _known(press)[policy_id][2] is False

    with get_database("interpret", suite["interpret"]).transaction() as session:
        withdraw(session, RELEASER, session.get(Policy, policy_id))  # type: ignore[arg-type]
    assert _deliver(suite, seen) == ["withdrawn"]
    assert _known(press)[policy_id][3] is False
    with get_database("press", press).transaction() as session:
        assert policy_id not in {p.id for p in known_policies(session)}


def test_a_late_press_database_catches_up_from_interpret(
    suite: dict[str, Flask], press: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.press.policies import sync_policies

    monkeypatch.setattr(get_database("interpret", suite["interpret"]), "publisher", None)
    with get_database("interpret", suite["interpret"]).transaction() as session:
        first = import_published_policy(session, PolicyFields(
            title="关于开展科技特派员工作的通知", issuer="安徽省科学技术厅", level="本级", department="KJT",
            document_number="皖科农〔2026〕8号", body="<p>通知如下。</p>",
        ), utcnow() - timedelta(days=1)).id
    with get_database("press", press).transaction() as session:
        session.add(PressPolicy(id=first + 1000, title="早已撤回", url="/x", interpretations=[], source_version=1))
    assert sync_policies(press, suite["interpret"]) == 2
    known = _known(press)
    assert known[first] == ("关于开展科技特派员工作的通知", "皖科农〔2026〕8号", False, True)
    assert known[first + 1000][3] is False
    assert sync_policies(press, suite["interpret"]) == 1  # the same version again: rewritten, nothing else


def test_an_older_event_never_overwrites_a_newer_one(press: Flask) -> None:
    def event(version: int, topic: str = "interpret.policy.published", **document: Any) -> dict[str, Any]:
        return {"id": str(uuid.uuid4()), "topic": topic, "aggregate_type": "policy", "aggregate_id": "900",
                "version": version, "payload": {"document": {"title": "政策", "related": [], **document}}}

    with press.app_context():
        assert sync_policy.run(event(3, related=[{"id": 1, "title": "解读", "url": "/i/1"}])) == "stored"
        assert sync_policy.run(event(2)) == "stale"
        assert sync_policy.run(event(2, "interpret.policy.withdrawn")) == "stale"
        assert sync_policy.run(event(4, "interpret.policy.withdrawn")) == "withdrawn"
        assert sync_policy.run(event(3, document_number="皖科政[2017]9号")) == "stale"
        assert sync_policy.run(event(5, document_number="皖科政[2017]9号")) == "stored"
        assert sync_policy.run({**event(6), "aggregate_type": "interpretation"}) == "ignored"
    assert _known(press)[900] == ("政策", "皖科政〔2017〕9号", False, True)


# -- the page and the download -------------------------------------------------------------------------


class Staff:
    def __init__(self, suite: dict[str, Flask], username: str | None) -> None:
        self.client = Client(PathDispatcher(suite))
        self.environ = {"REMOTE_ADDR": f"10.8.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"}
        if username is None:
            return
        form = self.client.get("/staff/login", environ_base=self.environ)
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.get_data(as_text=True))
        assert token
        answer = self.client.post("/staff/login", environ_base=self.environ, data={
            "csrf_token": token.group(1), "username": username, "password": STAFF_PASSWORD, "next": "/staff/",
        })
        assert answer.headers.get("Location") == "/staff/", username

    def get(self, path: str) -> TestResponse:
        return self.client.get(path, environ_base=self.environ)


def _audited(press: Flask) -> list[dict[str, Any]]:
    with get_database("press", press).transaction() as session:
        events = session.scalars(select(OutboxEvent).where(OutboxEvent.topic == "audit.recorded"))
        return [event.payload for event in events if event.payload["action"] == "briefing.export"]


def test_page_and_download_for_the_press_office_only(suite: dict[str, Flask], org: dict[str, Any],
                                                     press: Flask) -> None:
    seed(press)
    officer = Staff(suite, "press_officer_a")
    page = officer.get("/press/briefing")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    last = Week.last_full(utcnow())
    assert f'value="{last.monday.isoformat()}"' in html
    assert f'href="/press/briefing.docx?week={last.monday.isoformat()}"' in html
    assert "<script>" not in html

    answer = officer.get("/press/briefing.docx?week=2026-11-16")
    assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
    assert answer.mimetype == "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    assert answer.headers["Content-Disposition"] == "attachment; filename=press-briefing-20261116.docx"
    assert answer.headers["Cache-Control"] == "private, no-store"
    text = all_text(answer.get_data())
    # press_officer_a holds the role in KJTA: the KJTB and WSJ messages are not counted.
    assert "丽发新城·搅拌站·噪音" in text and "伊景园·停车位" not in text and "卫生·疫苗接种" not in text
    assert PHONE not in text and ID_NUMBER not in text
    assert [(entry["username"], entry["object_id"], entry["detail"]["departments"]) for entry in _audited(press)] == [
        ("press_officer_a", "2026-11-16", ["KJTA"])]

    default = officer.get("/press/briefing.docx")
    assert default.status_code == 200
    assert default.headers["Content-Disposition"] == f"attachment; filename=press-briefing-{last.monday:%Y%m%d}.docx"

    for bad, reason in (("2026-11-17", "周次应为星期一"), ("next-week", "格式 YYYY-MM-DD"), ("2999-01-07", "尚未开始")):
        refused = officer.get(f"/press/briefing.docx?week={bad}")
        assert refused.status_code == 400 and reason in refused.get_data(as_text=True), bad
        shown = officer.get(f"/press/briefing?week={bad}")
        assert shown.status_code == 400 and reason in shown.get_data(as_text=True), bad
    assert len(_audited(press)) == 2

    for username in ("editor_a", "disclosure_office_a", "auditor_a"):
        other = Staff(suite, username)
        assert other.get("/press/briefing").status_code == 403
        assert other.get("/press/briefing.docx?week=2026-11-16").status_code == 403
    anonymous = Staff(suite, None)
    for path in ("/press/briefing", "/press/briefing.docx?week=2026-11-16"):
        refused = anonymous.get(path)
        assert refused.status_code in (302, 303) and "/staff/login" in refused.headers["Location"]
    assert len(_audited(press)) == 2


def test_the_command_writes_the_file_and_refuses_bad_input(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from services.cli import main

    def invoke(*args: str) -> Any:
        return CliRunner().invoke(main, list(args), env=base_env(tmp_path / "var"))

    assert invoke("migrate").exit_code == 0
    out = tmp_path / "weekly.docx"
    result = invoke("press", "briefing", "--week", "2020-01-06", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output and "for 2020-01-06 to 2020-01-12" in result.output
    assert docx_text(out.read_bytes())[0][:2] == ["舆情周报", "2020年01月06日（星期一）至 2020年01月12日（星期日）"]
    for arguments, message in (
        (["--week", "2020-01-07", "--out", str(out)], "--week: 2020-01-07 是星期二"),
        (["--week", "soon", "--out", str(out)], "--week: 周次应为某周星期一的日期"),
        (["--week", "2020-01-06", "--out", str(tmp_path / "weekly.txt")], "should end in .docx"),
        (["--week", "2020-01-06", "--out", str(tmp_path / "missing" / "weekly.docx")], "--out"),
    ):
        refused = invoke("press", "briefing", *arguments)
        assert refused.exit_code != 0 and message in refused.output, (arguments, refused.output)
        assert "Traceback" not in refused.output
