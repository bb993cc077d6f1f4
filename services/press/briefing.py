"""The weekly briefing (舆情周报): a Word document for the press office's week, Monday to Sunday.

:func:`collect_briefing` gathers the figures from the press office's own tables, :func:`render_docx`
writes them with python-docx (仿宋 body, 黑体 headings, 宋体 title, set as East-Asian fonts so Word
and WPS use them for the Chinese text), and :func:`build_weekly_briefing` does both. The page
(``services.press.briefing_pages``) and ``gongkai press briefing`` call it.

What it says
------------
The week is given by its Monday (Beijing dates): ``[Monday 00:00, next Monday 00:00)`` Beijing time.

* **Summary**: messages received in the week, topics with messages in the week (new: whose first
  message came this week), alerts fired in the
  week, responses (回应关切) and media focus items (媒体聚焦) published in the week.
* **Top topics** (:data:`TOP_TOPICS`): topics with messages in the week, ranked by the hotness index of
  ``services.press.topics.hotness`` with a 7-day window ending at the week's end: size, distinct askers
  and likes of the topic's messages up to then, growth = this week's messages against last week's,
  recency from its latest message; the burst score is ``topics.burst_score`` of this week against the
  whole weeks before it since the first message. Computed here by one query over ``press_message``
  (not the console's dashboard code). Each topic lists its departments in the week, two or three
  sample questions of the week (the topic's representative messages first, then the most liked;
  redacted again with ``services.text.pii.redact``), whether a published response is linked to it,
  and its response clock (the latest alert's ``response_due`` / ``responded_at``).
* **Overdue consultations**: messages from consult whose state (as consult's events told) is open,
  i.e. not rejected, answered or closed, and not awaiting the asker's information (the clock is paused
  then, as consult's own overdue list has it), with ``reply_due`` before today (Beijing, when the
  briefing is made); days overdue in calendar days, most overdue first.
* **Policies that draw questions but have no interpretation**: see ``services.press.policies`` for the
  matching rule. Questions are counted in the week and in the 30 days ending with the week; a published
  policy without a published interpretation is listed when asked at least :data:`MIN_POLICY_QUESTIONS`
  times in those 30 days, most asked in the week first (then in 30 days, then by id).

States (responded, clocks, overdue) are as of the moment the briefing is made; counts are the week's.
With ``departments`` given (the page passes the caller's press departments) only messages of those
departments, and messages not routed to any department yet, are counted.
"""

from __future__ import annotations

import io
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from docx import Document
from docx.enum.section import WD_ORIENT
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Mm, Pt, RGBColor
from sqlalchemy import ColumnElement, String, and_, case, cast, func, or_, select, true
from sqlalchemy.orm import Session

from services.db import utcnow
from services.press.models import Alert, PressMessage, Response, ResponseTopic, Topic
from services.press.policies import PolicyMatcher, known_policies
from services.press.topics import burst_score, hotness
from services.text.pii import redact

BEIJING = timezone(timedelta(hours=8))
WEEK = timedelta(days=7)
POLICY_DAYS = 30
TOP_TOPICS = 10
SAMPLES = 3
MIN_POLICY_QUESTIONS = 2
MAX_POLICIES = 30
MAX_OVERDUE = 500
PUBLISHED = "published"
"""The state of a published response (the review workflow's last state)."""
CLOSED_STATES = frozenset({"rejected", "replied", "published", "private", "closed"})
PAUSED_STATES = frozenset({"awaiting_info"})
DOCX_MIMETYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
WEEKDAYS = "一二三四五六日"

BODY_FONT = "仿宋"
HEADING_FONT = "黑体"
TITLE_FONT = "宋体"


class BriefingError(ValueError):
    """A week that cannot be briefed (one readable line)."""


@dataclass(frozen=True)
class Week:
    monday: date

    @property
    def sunday(self) -> date:
        return self.monday + timedelta(days=6)

    @property
    def start(self) -> datetime:
        """Monday 00:00 Beijing time, in UTC."""
        return datetime.combine(self.monday, datetime.min.time(), BEIJING).astimezone(UTC)

    @property
    def end(self) -> datetime:
        """The next Monday 00:00 Beijing time, in UTC (excluded)."""
        return self.start + WEEK

    @classmethod
    def parse(cls, text: str | None, now: datetime | None = None) -> Week:
        """``YYYY-MM-DD`` of a Monday; empty means the last full week."""
        cleaned = (text or "").strip()
        if not cleaned:
            return cls.last_full(now)
        try:
            day = date.fromisoformat(cleaned)
        except ValueError:
            raise BriefingError(f"周次应为某周星期一的日期，格式 YYYY-MM-DD（收到 {cleaned[:20]!r}）") from None
        if day.weekday() != 0:
            monday = day - timedelta(days=day.weekday())
            raise BriefingError(
                f"{day.isoformat()} 是星期{WEEKDAYS[day.weekday()]}，周次应为星期一（如 {monday.isoformat()}）"
            )
        week = cls(day)
        if week.start > (now or utcnow()):
            raise BriefingError(f"{day.isoformat()} 这一周尚未开始")
        return week

    @classmethod
    def last_full(cls, now: datetime | None = None) -> Week:
        today = (now or utcnow()).astimezone(BEIJING).date()
        return cls(today - timedelta(days=today.weekday() + 7))

    def label(self) -> str:
        return f"{self.monday:%Y年%m月%d日}（星期一）至 {self.sunday:%Y年%m月%d日}（星期日）"


@dataclass
class TopicLine:
    topic_id: int
    label: str
    hotness: float
    burst: float
    size: int
    week_count: int
    previous_count: int
    askers: int
    likes: int
    departments: list[str]
    samples: list[str]
    responded: bool
    response_titles: list[str]
    clock: str

    @property
    def growth(self) -> str:
        change = self.week_count - self.previous_count
        if self.previous_count == 0:
            return f"+{change}（上周无）"
        return f"{change:+d}（{change / self.previous_count:+.0%}）"


@dataclass
class OverdueLine:
    tracking_number: str
    department: str
    title: str
    reply_due: date
    days_overdue: int
    state: str


@dataclass
class PolicyLine:
    policy_id: int
    title: str
    document_number: str
    department: str
    week_questions: int
    month_questions: int


@dataclass
class Briefing:
    week: Week
    made_at: datetime
    messages: int = 0
    topics: int = 0
    new_topics: int = 0
    alerts: int = 0
    responses: int = 0
    media_focus: int = 0
    top_topics: list[TopicLine] = field(default_factory=list)
    overdue: list[OverdueLine] = field(default_factory=list)
    overdue_total: int = 0
    policies: list[PolicyLine] = field(default_factory=list)
    policies_known: int = 0


def _safe(text: str | None) -> str:
    return redact(text or "").text


def _in_scope(departments: Collection[str] | None) -> ColumnElement[bool]:
    if departments is None:
        return true()
    return or_(PressMessage.department.in_(sorted(departments)), PressMessage.department.is_(None))


def _between(start: datetime, end: datetime) -> ColumnElement[bool]:
    return and_(PressMessage.received_at >= start, PressMessage.received_at < end)


# -- collecting -------------------------------------------------------------------------------------


def collect_briefing(
    session: Session, week: Week, now: datetime | None = None, departments: Collection[str] | None = None
) -> Briefing:
    now = now or utcnow()
    scope = _in_scope(departments)
    briefing = Briefing(week=week, made_at=now)
    in_week = _between(week.start, week.end)
    briefing.messages = session.scalar(select(func.count(PressMessage.id)).where(scope, in_week)) or 0
    briefing.topics = session.scalar(
        select(func.count(func.distinct(PressMessage.topic_id)))
        .where(scope, in_week, PressMessage.topic_id.is_not(None))
    ) or 0
    firsts = (
        select(PressMessage.topic_id, func.min(PressMessage.received_at).label("first"))
        .where(scope, PressMessage.topic_id.is_not(None), PressMessage.received_at < week.end)
        .group_by(PressMessage.topic_id)
        .subquery()
    )
    briefing.new_topics = session.scalar(
        select(func.count()).select_from(firsts).where(firsts.c.first >= week.start)
    ) or 0
    briefing.alerts = session.scalar(
        select(func.count(Alert.id)).where(Alert.fired_at >= week.start, Alert.fired_at < week.end)
    ) or 0
    published = session.execute(
        select(Response.kind, func.count(Response.id))
        .where(Response.state == PUBLISHED, Response.published_at >= week.start, Response.published_at < week.end)
        .group_by(Response.kind)
    ).all()
    counts = {kind: number for kind, number in published}
    briefing.responses = counts.get("response", 0)
    briefing.media_focus = counts.get("media_focus", 0)
    briefing.top_topics = _top_topics(session, week, now, scope)
    briefing.overdue, briefing.overdue_total = _overdue(session, now, scope)
    briefing.policies, briefing.policies_known = _policies(session, week, scope)
    return briefing


def _top_topics(session: Session, week: Week, now: datetime, scope: ColumnElement[bool]) -> list[TopicLine]:
    active = select(PressMessage.topic_id).where(
        scope, _between(week.start, week.end), PressMessage.topic_id.is_not(None)
    ).distinct()
    previous_start = week.start - WEEK
    asker = func.coalesce(PressMessage.asker_key, cast(PressMessage.id, String))
    rows: list[Any] = list(session.execute(
        select(
            PressMessage.topic_id,
            func.count(PressMessage.id),
            func.count(func.distinct(asker)),
            func.coalesce(func.sum(PressMessage.likes), 0),
            func.sum(case((PressMessage.received_at >= week.start, 1), else_=0)),
            func.sum(case((PressMessage.received_at >= previous_start, 1), else_=0)),
            func.max(PressMessage.received_at),
        )
        .where(scope, PressMessage.topic_id.in_(active), PressMessage.received_at < week.end)
        .group_by(PressMessage.topic_id)
    ).all())
    if not rows:
        return []
    first = session.scalar(select(func.min(PressMessage.received_at)).where(scope)) or week.start
    windows = max(int((week.start - first) / WEEK), 0)
    window_days = WEEK.days
    scored = []
    for topic_id, size, askers, likes, current, recent, last in rows:
        previous = int(recent) - int(current)
        baseline = int(size) - int(current)
        age = (week.end - last).total_seconds() / 86400
        score = hotness(int(size), int(askers), int(likes), int(current), previous, age, window_days)
        scored.append((score, burst_score(int(current), baseline, windows), int(topic_id), int(size), int(askers),
                       int(likes), int(current), previous))
    scored.sort(key=lambda item: (-item[0], -item[6], item[2]))
    chosen = scored[:TOP_TOPICS]
    ids = [item[2] for item in chosen]
    topics = {topic.id: topic for topic in session.scalars(select(Topic).where(Topic.id.in_(ids)))}
    responses = _responses(session, ids)
    clocks = _clocks(session, ids, now)
    lines = []
    for score, burst, topic_id, size, askers, likes, current, previous in chosen:
        topic = topics[topic_id]
        messages = session.scalars(
            select(PressMessage).where(scope, _between(week.start, week.end), PressMessage.topic_id == topic_id)
            .order_by(PressMessage.received_at, PressMessage.id)
        ).all()
        titles = responses.get(topic_id, [])
        lines.append(TopicLine(
            topic_id=topic_id, label=_safe(topic.label) or f"话题 {topic_id}", hotness=score, burst=burst, size=size,
            week_count=current, previous_count=previous, askers=askers, likes=likes,
            departments=sorted({m.department for m in messages if m.department}),
            samples=_samples(messages, list(topic.representative_ids or [])),
            responded=bool(titles), response_titles=titles, clock=clocks.get(topic_id, "未触发告警"),
        ))
    return lines


def _samples(messages: Collection[PressMessage], representatives: list[int]) -> list[str]:
    rank = {message_id: index for index, message_id in enumerate(representatives)}
    ordered = sorted(messages, key=lambda m: (rank.get(m.id, len(rank)), -(m.likes or 0), m.received_at, m.id))
    samples: list[str] = []
    for message in ordered:
        text = _safe(message.title.strip() or message.text.strip()[:60])
        if text and text not in samples:
            samples.append(text)
        if len(samples) == SAMPLES:
            break
    return samples


def _responses(session: Session, topic_ids: list[int]) -> dict[int, list[str]]:
    rows = session.execute(
        select(ResponseTopic.topic_id, Response.title)
        .join(Response, Response.id == ResponseTopic.response_id)
        .where(ResponseTopic.topic_id.in_(topic_ids), Response.state == PUBLISHED)
        .order_by(Response.published_at, Response.id)
    ).all()
    found: dict[int, list[str]] = {}
    for topic_id, title in rows:
        found.setdefault(topic_id, []).append(_safe(title))
    return found


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.0f} 小时" if hours >= 10 else f"{hours:.1f} 小时"


def clock_state(alert: Alert | None, now: datetime) -> str:
    """The response clock of a topic's latest alert, in words."""
    if alert is None:
        return "未触发告警"
    due = f"{alert.response_due.astimezone(BEIJING):%m-%d %H:%M}"
    if alert.responded_at is not None:
        if alert.responded_at <= alert.response_due:
            return f"已按时回应（时限 {due}）"
        return f"已回应，超时 {_hours(alert.responded_at - alert.response_due)}（时限 {due}）"
    if now > alert.response_due:
        return f"已超时 {_hours(now - alert.response_due)} 未回应（时限 {due}）"
    return f"剩余 {_hours(alert.response_due - now)}（时限 {due}）"


def _clocks(session: Session, topic_ids: list[int], now: datetime) -> dict[int, str]:
    latest: dict[int, Alert] = {}
    alerts = session.scalars(
        select(Alert).where(Alert.topic_id.in_(topic_ids), Alert.fired_at <= now).order_by(Alert.fired_at, Alert.id)
    )
    for alert in alerts:
        latest[alert.topic_id] = alert
    return {topic_id: clock_state(alert, now) for topic_id, alert in latest.items()}


def _overdue(session: Session, now: datetime, scope: ColumnElement[bool]) -> tuple[list[OverdueLine], int]:
    today = now.astimezone(BEIJING).date()
    conditions = (
        scope, PressMessage.state.is_not(None), PressMessage.state.not_in(sorted(CLOSED_STATES | PAUSED_STATES)),
        PressMessage.reply_due < today,
    )
    total = session.scalar(select(func.count(PressMessage.id)).where(*conditions)) or 0
    rows = session.scalars(
        select(PressMessage).where(*conditions)
        .order_by(PressMessage.reply_due, PressMessage.tracking_number, PressMessage.id).limit(MAX_OVERDUE)
    ).all()
    lines = [
        OverdueLine(
            tracking_number=row.tracking_number or row.source_id, department=row.department or "未分办",
            title=_safe(row.title), reply_due=row.reply_due, days_overdue=(today - row.reply_due).days,
            state=row.state or "",
        )
        for row in rows if row.reply_due is not None
    ]
    return lines, total


def _policies(session: Session, week: Week, scope: ColumnElement[bool]) -> tuple[list[PolicyLine], int]:
    policies = known_policies(session)
    if not policies:
        return [], 0
    matcher = PolicyMatcher(policies)
    month_start = week.end - timedelta(days=POLICY_DAYS)
    week_counts: dict[int, int] = {}
    month_counts: dict[int, int] = {}
    rows = session.execute(
        select(PressMessage.title, PressMessage.text, PressMessage.received_at).where(
            scope, _between(month_start, week.end)
        )
    )
    for title, text, received_at in rows:
        for policy_id in matcher.match(f"{title}\n{text}"):
            month_counts[policy_id] = month_counts.get(policy_id, 0) + 1
            if received_at >= week.start:
                week_counts[policy_id] = week_counts.get(policy_id, 0) + 1
    lines = [
        PolicyLine(
            policy_id=policy.id, title=policy.title, document_number=policy.document_number or "",
            department=policy.department or "", week_questions=week_counts.get(policy.id, 0),
            month_questions=month_counts[policy.id],
        )
        for policy in policies
        if not policy.interpreted and month_counts.get(policy.id, 0) >= MIN_POLICY_QUESTIONS
    ]
    lines.sort(key=lambda line: (-line.week_questions, -line.month_questions, line.policy_id))
    return lines[:MAX_POLICIES], len(policies)


# -- writing ----------------------------------------------------------------------------------------


def _fonts(element: Any, name: str) -> None:
    """Set the Latin and the East-Asian font of a style or run element."""
    properties = element.get_or_add_rPr()
    fonts = properties.find(qn("w:rFonts"))
    if fonts is None:
        fonts = OxmlElement("w:rFonts")
        properties.insert(0, fonts)
    for attribute in ("w:ascii", "w:hAnsi", "w:eastAsia", "w:cs"):
        fonts.set(qn(attribute), name)
    for theme in ("w:asciiTheme", "w:hAnsiTheme", "w:eastAsiaTheme", "w:cstheme"):
        fonts.attrib.pop(qn(theme), None)


def _styles(document: Any) -> None:
    normal = document.styles["Normal"]
    normal.font.size = Pt(12)
    _fonts(normal.element, BODY_FONT)
    for name, size in (("Heading 1", 16), ("Heading 2", 14)):
        style = document.styles[name]
        style.font.size = Pt(size)
        style.font.bold = True
        style.font.color.rgb = RGBColor(0, 0, 0)
        _fonts(style.element, HEADING_FONT)
    table_style = document.styles["Table Grid"]
    _fonts(table_style.element, BODY_FONT)


def _paragraph(document: Any, text: str, *, bold: bool = False, size: float | None = None,
               font: str | None = None, center: bool = False) -> Any:
    paragraph = document.add_paragraph()
    run = paragraph.add_run(text)
    run.bold = bold
    if size is not None:
        run.font.size = Pt(size)
    if font is not None:
        _fonts(run._element, font)
    if center:
        paragraph.alignment = WD_ALIGN_PARAGRAPH.CENTER
    return paragraph


def _table(document: Any, header: list[str], rows: list[list[str]], widths: list[float]) -> None:
    table = document.add_table(rows=1, cols=len(header))
    table.style = document.styles["Table Grid"]
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    for cell, text in zip(table.rows[0].cells, header, strict=True):
        run = cell.paragraphs[0].add_run(text)
        run.bold = True
        _fonts(run._element, HEADING_FONT)
    for values in rows:
        cells = table.add_row().cells
        for cell, text in zip(cells, values, strict=True):
            lines = text.split("\n")
            cell.text = lines[0]
            for line in lines[1:]:
                cell.add_paragraph(line)
    for row in table.rows:
        for cell, width in zip(row.cells, widths, strict=True):
            cell.width = Mm(width)
            for paragraph in cell.paragraphs:
                for run in paragraph.runs:
                    run.font.size = Pt(10.5)


def render_docx(briefing: Briefing) -> bytes:
    document = Document()
    section = document.sections[0]
    section.orientation = WD_ORIENT.LANDSCAPE
    section.page_width, section.page_height = Mm(297), Mm(210)
    for side in ("left_margin", "right_margin"):
        setattr(section, side, Mm(20))
    section.top_margin = section.bottom_margin = Mm(20)
    _styles(document)
    core = document.core_properties
    core.title = f"舆情周报 {briefing.week.monday.isoformat()}"
    core.author = "Gongkai 新闻宣传"
    core.language = "zh-CN"

    week = briefing.week
    _paragraph(document, "舆情周报", bold=True, size=22, font=TITLE_FONT, center=True)
    _paragraph(document, week.label(), center=True)
    made = briefing.made_at.astimezone(BEIJING)
    _paragraph(document, f"生成时间：{made:%Y年%m月%d日 %H:%M}（北京时间）", size=10.5, center=True)

    document.add_heading("一、本周概况", level=1)
    for text in (
        f"收到留言 {briefing.messages} 条，涉及话题 {briefing.topics} 个（其中新话题 {briefing.new_topics} 个）。",
        f"触发告警 {briefing.alerts} 次。",
        f"发布回应关切 {briefing.responses} 篇、媒体聚焦 {briefing.media_focus} 篇。",
        f"逾期未答复咨询 {briefing.overdue_total} 件；咨询集中但尚无解读的政策 {len(briefing.policies)} 件。",
    ):
        document.add_paragraph(text, style="List Bullet")

    document.add_heading(f"二、热点话题（前 {TOP_TOPICS} 个）", level=1)
    if briefing.top_topics:
        _table(document, ["序号", "话题", "热度", "留言数", "增长", "涉及部门", "代表性留言", "回应情况", "回应时限"], [
            [
                str(rank), line.label, f"{line.hotness:.2f}\n突发 {line.burst:+.1f}",
                f"本周 {line.week_count}\n累计 {line.size}", line.growth, "、".join(line.departments) or "—",
                "\n".join(f"· {sample}" for sample in line.samples) or "—",
                ("已回应：" + "；".join(line.response_titles)) if line.responded else "未回应",
                line.clock,
            ]
            for rank, line in enumerate(briefing.top_topics, start=1)
        ], [10, 32, 18, 20, 22, 22, 80, 30, 30])
    else:
        document.add_paragraph("本周没有归入话题的留言。")

    document.add_heading("三、逾期未答复的咨询", level=1)
    if briefing.overdue:
        _table(document, ["序号", "咨询编号", "办理部门", "标题", "答复期限", "逾期天数"], [
            [str(rank), line.tracking_number, line.department, line.title, line.reply_due.isoformat(),
             str(line.days_overdue)]
            for rank, line in enumerate(briefing.overdue, start=1)
        ], [12, 40, 25, 120, 30, 20])
        if briefing.overdue_total > len(briefing.overdue):
            document.add_paragraph(f"另有 {briefing.overdue_total - len(briefing.overdue)} 件未列出。")
    else:
        document.add_paragraph("没有逾期未答复的咨询。")

    document.add_heading("四、咨询集中但尚无解读的政策", level=1)
    if briefing.policies:
        _table(document, ["序号", "政策文件", "文号", "发文部门", "本周咨询", f"近 {POLICY_DAYS} 日咨询"], [
            [str(rank), line.title, line.document_number or "—", line.department or "—", str(line.week_questions),
             str(line.month_questions)]
            for rank, line in enumerate(briefing.policies, start=1)
        ], [12, 120, 45, 25, 22, 25])
    elif briefing.policies_known:
        document.add_paragraph(f"近 {POLICY_DAYS} 日没有咨询达到 {MIN_POLICY_QUESTIONS} 次且尚无解读的政策。")
    else:
        document.add_paragraph("尚未收到已发布政策的信息。")

    document.add_heading("说明", level=2)
    for text in (
        "热度 = ln(1+留言数) + ln(1+提问人数) + 0.5×ln(1+点赞数) + ln((1+本周留言)/(1+上周留言)) "
        "+ 2×0.5^(距最近留言天数/7)；突发度为本周留言数相对此前各周平均数的泊松 z 值（+1 平滑）。",
        "逾期：尚未答复、未处于待补充材料状态、答复期限早于生成日期的咨询，按自然日计算逾期天数。",
        f"政策咨询：留言中写明该政策文号、以《》引用其标题或包含其完整标题的，计为一次咨询；"
        f"近 {POLICY_DAYS} 日达到 {MIN_POLICY_QUESTIONS} 次且尚无已发布解读的政策列入。",
        "留言内容已去除电话、身份证号、电子邮箱、银行卡号等个人信息。",
    ):
        _paragraph(document, text, size=10.5)

    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def build_weekly_briefing(
    session: Session, week: Week, now: datetime | None = None, departments: Collection[str] | None = None
) -> bytes:
    """The week's briefing as a .docx file."""
    return render_docx(collect_briefing(session, week, now, departments))


def file_name(week: Week) -> str:
    return f"press-briefing-{week.monday:%Y%m%d}.docx"
