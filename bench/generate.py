"""Fill a suite data directory with realistic Chinese content, fast (issue 8: the data generator).

    .venv/bin/python -m bench.generate --data-dir DIR [--database sqlite|postgres] [--scale F]
        [--consultations 100000] [--policies 20000] [--interpretations 20000] [--answers 50000]

The directory gets the layout ``gongkai up`` uses (``GONGKAI_DATA_DIR``: ``db/<service>.sqlite3``, the
embedded index under ``search/``, ``secret_key``); with ``--database postgres`` the services' tables go
to PostgreSQL schemas ``<prefix><service>`` instead (``--database-url``, ``--schema-prefix``). Run the
suite on it with the environment the generator prints (also kept in ``DIR/bench-generated.json``).

What goes in, and how it is made
    Text is never random characters: the real texts of ``../shared/data`` (citizen messages and the
    official replies, State Council policies, policy Q&A) are cut into sentences (names and contact
    details redacted once, for the published forms) and recombined: a consultation keeps a real
    title and opening sentence and gets 1-4 sentences of other messages of its category; a reply is
    a real opening, body sentences and a real closing; a policy gets an issuer and a subject from the
    real titles and paragraphs of policy sentences. Categories and departments are the taxonomy's 15
    first-level classes and the category -> department table (``consult/data``); dates spread over
    four years up to today; consultations mix states as an office does (``--answers`` of them
    published, most of the others answered, some open, a part of those overdue).

    Rows are written in bulk with SQLAlchemy core into each service's own tables, as the workflow
    writes them (states, deadlines counted in Chinese working days, tracking numbers and their day
    serials, the history steps, 索引号 and their serials, 文号, links). Not written: outbox rows (the
    index is built by the real rebuild instead: ``search.reindex.reindex``, as ``gongkai search
    reindex`` runs it), published-version snapshots, audit entries. Every generated consultation
    shares one query code (hashing 100,000 codes with argon2 would take over an hour): it is in the
    manifest.

    Published documents = policies + interpretations + answers (all published): 90,000 at the
    default scale. The issue's "190,000 documents" is the sum of all four counts; consultations that
    are not published are private and never indexed, so ``bench.reindex`` generates 150,000 answers
    for its 190,000 documents.

Idempotent: a directory generated with the same counts is left as it is ("already generated");
one holding other content is refused with a one-line reason (exit 1).
"""

from __future__ import annotations

import argparse
import csv
import html
import json
import random
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from sqlalchemy import Table

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data"
DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MANIFEST = "bench-generated.json"
DEFAULTS = {"consultations": 100_000, "policies": 20_000, "interpretations": 20_000, "answers": 50_000}
BENCH_PASSWORD = "Bench-Password-2026!"  # noqa: S105 (a throwaway bench account, printed in the manifest)
"""The password of the generated staff accounts (bench_admin, bench_dispatcher, bench_reviewer...)."""
BENCH_QUERY_CODE = "BENCH234"
"""The query code of every generated consultation (one argon2 hash shared by all)."""
BEIJING = timezone(timedelta(hours=8))
CHUNK = 2000
TOP_DEPARTMENT = ("ORG", "本机关")
YEARS_BACK = 4

SENTENCE_END = re.compile(r"(?<=[。！？!?；;])")
SPACES = re.compile(r"\s+")


class GenerateError(Exception):
    """The generator cannot go on; the message is one readable line."""


# -- the source texts --------------------------------------------------------------------------------


@dataclass
class Message:
    title: str
    sentences: list[str]
    category: str | None


@dataclass
class Corpus:
    """Sentence pools cut from ``../shared/data``; ``public`` holds the redacted form of each sentence."""

    messages: list[Message]
    by_category: dict[str, list[Message]]
    message_sentences: dict[str, list[str]]
    reply_openings: list[str]
    reply_bodies: list[str]
    reply_closings: list[str]
    policy_titles: list[tuple[str, str]]
    """(subject, kind) of real policy titles: 关于<subject>的<kind>."""
    policy_sentences: list[str]
    qa_answers: list[str]
    qa_questions: list[str]
    taxonomy: dict[str, list[str]]
    """first-level category -> its second- and third-level terms."""
    departments: dict[str, tuple[str, str]]
    """category -> (department code, department name)."""
    public: dict[str, str] = field(default_factory=dict)

    def redacted(self, sentence: str) -> str:
        found = self.public.get(sentence)
        if found is None:
            from services.text.pii import redact

            found = self.public[sentence] = redact(sentence).text
        return found


def _sentences(text: str, shortest: int = 6, longest: int = 220) -> list[str]:
    cleaned = SPACES.sub("", text.replace("\u3000", ""))
    return [part for part in (piece.strip() for piece in SENTENCE_END.split(cleaned))
            if shortest <= len(part) <= longest]


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise GenerateError(f"{path}: missing (the source texts live in ../shared/data; see --source-dir)")
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


POLICY_TITLE = re.compile(r"关于(.{4,40})的(通知|意见|决定|办法|规定|报告|批复|指导意见|实施意见|实施方案|若干规定)$")


def load_corpus(source: Path) -> Corpus:
    """Cut the real texts into the pools the generator recombines."""
    taxonomy: dict[str, list[str]] = defaultdict(list)
    for row in _read_csv(source / "taxonomy.csv"):
        for term in (row["二级分类"], row["三级分类"]):
            if term and term not in taxonomy[row["一级分类"]]:
                taxonomy[row["一级分类"]].append(term)
    departments = {row["category"]: (row["department_code"], row["department_name"])
                   for row in _read_csv(REPO / "consult" / "data" / "category_departments.csv")}
    missing = set(taxonomy) - set(departments)
    if missing:
        raise GenerateError(f"taxonomy categories without a department: {', '.join(sorted(missing))}")

    def category_of(text: str) -> str | None:
        scores = Counter({category: sum(1 for term in terms if len(term) >= 2 and term in text)
                          for category, terms in taxonomy.items()})
        best = scores.most_common(1)
        return best[0][0] if best and best[0][1] else None

    messages: list[Message] = []
    openings, bodies, closings = [], [], []
    for row in _read_csv(source / "messages_with_replies.csv"):
        sentences = _sentences(row["留言详情"])
        title = SPACES.sub("", row["留言主题"])[:120]
        if title and sentences:
            messages.append(Message(title, sentences, category_of(title + "".join(sentences))))
        reply = _sentences(row["答复意见"])
        if len(reply) >= 3:
            openings.append(reply[0])
            closings.append(reply[-1])
            bodies.extend(reply[1:-1])
    for row in _read_csv(source / "messages_with_likes.csv"):
        sentences = _sentences(row["留言详情"])
        title = SPACES.sub("", row["留言主题"])[:120]
        if title and sentences:
            messages.append(Message(title, sentences, category_of(title + "".join(sentences))))
    labelled_file = source / "messages_labeled_raw.csv"
    labelled: dict[str, list[str]] = defaultdict(list)
    if labelled_file.is_file():
        for row in _read_csv(labelled_file):
            if row["label"] in departments:
                labelled[row["label"]].extend(_sentences(row["text"]))
    by_category: dict[str, list[Message]] = defaultdict(list)
    message_sentences: dict[str, list[str]] = defaultdict(list)
    for message in messages:
        if message.category:
            by_category[message.category].append(message)
            message_sentences[message.category].extend(message.sentences)
    for category, sentences in labelled.items():
        message_sentences[category].extend(sentences)
    message_sentences["*"] = [s for message in messages for s in message.sentences]

    policy_titles: list[tuple[str, str]] = []
    policy_sentences: list[str] = []
    for row in _read_csv(source / "policies_govcn.csv"):
        found = POLICY_TITLE.search(row["Policy"].strip())
        if found:
            policy_titles.append((found.group(1), found.group(2)))
        policy_sentences.extend(_sentences(row["Policy_Content"], shortest=10, longest=260))
    qa_answers, qa_questions = [], []
    qa_file = source / "policy_qa_pairs.csv"
    if qa_file.is_file():
        for row in _read_csv(qa_file):
            answer, question = row["answer"].strip(), row["question"].strip()
            if 12 <= len(answer) <= 200:
                qa_answers.append(answer)
                qa_questions.append(question)
    if not (messages and openings and policy_titles and policy_sentences):
        raise GenerateError(f"{source}: the source files hold too little text to recombine")
    return Corpus(messages, dict(by_category), dict(message_sentences), openings, bodies, closings,
                  policy_titles, policy_sentences, qa_answers or policy_sentences[:200],
                  qa_questions or [t for t, _k in policy_titles], dict(taxonomy), departments)


# -- the plan: how many of what ----------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    consultations: int
    policies: int
    interpretations: int
    answers: int

    @property
    def documents(self) -> int:
        return self.policies + self.interpretations + self.answers

    def as_dict(self) -> dict[str, int]:
        return {"consultations": self.consultations, "policies": self.policies,
                "interpretations": self.interpretations, "answers": self.answers}


def plan_counts(consultations: int, policies: int, interpretations: int, answers: int, scale: float) -> Counts:
    if scale <= 0:
        raise GenerateError("--scale must be positive")
    counts = Counts(*(max(0, round(value * scale)) for value in (consultations, policies, interpretations, answers)))
    if counts.answers > counts.consultations:
        raise GenerateError(f"--answers ({counts.answers}) cannot exceed --consultations ({counts.consultations}): "
                            "a published answer is a consultation")
    if counts.interpretations and not counts.policies:
        raise GenerateError("interpretations need at least one policy to explain")
    return counts


# -- small helpers -------------------------------------------------------------------------------------


def _spread(rng: random.Random, start: datetime, end: datetime, skew: float = 1.0) -> datetime:
    """A moment between start and end, office hours mostly; ``skew`` > 1 favours recent ones."""
    share = rng.random() ** (1 / skew)
    moment = start + (end - start) * share
    local = moment.astimezone(BEIJING)
    hour = rng.choice((8, 9, 9, 10, 10, 11, 14, 14, 15, 15, 16, 17, 20, 21))
    local = local.replace(hour=hour, minute=rng.randrange(60), second=rng.randrange(60), microsecond=0)
    moment = local.astimezone(UTC)
    return moment if moment < end else end


def _paragraphs(rng: random.Random, sentences: Sequence[str], count: int, per_paragraph: tuple[int, int]) -> str:
    chosen = rng.sample(list(sentences), min(count, len(sentences))) if len(sentences) > count * 4 else \
        [rng.choice(sentences) for _ in range(count)]
    paragraphs, at = [], 0
    while at < len(chosen):
        size = rng.randint(*per_paragraph)
        paragraphs.append("".join(chosen[at:at + size]))
        at += size
    return "\n".join(paragraphs)


def _chunks(rows: list[dict[str, Any]], size: int = CHUNK) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def _progress(total: int, desc: str, quiet: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="row", disable=quiet, leave=False, dynamic_ncols=True)


SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国志红玉兰文斌俊峰海燕雪梅晓东"


def _person(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))


# -- identity ------------------------------------------------------------------------------------------


BENCH_USERS = (("bench_admin", "admin"), ("bench_dispatcher", "dispatcher"), ("bench_reviewer", "reviewer"),
               ("bench_editor", "editor"), ("bench_press", "press_officer"))


def write_identity(app: Any, settings: Any, corpus: Corpus) -> dict[str, Any]:
    """The top department, one department per category, and the bench staff accounts (all at the top)."""
    from sqlalchemy import select

    from services.db import get_database
    from services.identity.accounts import assign_role, create_department, create_user
    from services.identity.models import Department, User
    from services.permissions import Role

    with get_database("identity", app).transaction() as session:
        top = session.scalar(select(Department).where(Department.code == TOP_DEPARTMENT[0]))
        if top is None:
            top = create_department(session, TOP_DEPARTMENT[0], TOP_DEPARTMENT[1], "bureau", None)
        for code, name in sorted(set(corpus.departments.values())):
            if session.scalar(select(Department.id).where(Department.code == code)) is None:
                create_department(session, code, name, "division", top)
        for username, role in BENCH_USERS:
            user = session.scalar(select(User).where(User.username == username))
            if user is None:
                user = create_user(session, settings, username=username, display_name=username,
                                   password=BENCH_PASSWORD)
            user.must_change_password = False
            assign_role(session, user, Role(role), top)
    return {"department": TOP_DEPARTMENT[0], "password": BENCH_PASSWORD,
            "users": {username: role for username, role in BENCH_USERS}}


# -- interpret -----------------------------------------------------------------------------------------


ISSUERS_ABOVE = (("国务院", "国发", "国家", "中国政府网"), ("国务院办公厅", "国办发", "国家", "中国政府网"),
                 ("西地省人民政府", "西政发", "省", "西地省人民政府网"),
                 ("西地省人民政府办公厅", "西政办发", "省", "西地省人民政府网"))
KINDS = ("通知", "意见", "实施意见", "办法", "规定", "实施方案", "决定", "指导意见")
SUBJECT_TEMPLATES = ("进一步加强{t}工作", "做好{t}有关工作", "印发{t}管理办法", "推进{t}改革", "规范{t}管理",
                     "开展{t}专项整治", "完善{t}政策措施", "支持{t}发展的若干措施")
FORM_WEIGHTS = (("文字解读", 58), ("图解", 15), ("问答式解读", 8), ("专家解读", 7), ("视频", 4), ("新闻发布会", 3),
                ("媒体解读", 3), ("音频", 2))
INTERPRETER_KINDS = (("第一解读人", 5), ("处室", 3), ("专家", 2))


def _weighted(rng: random.Random, pairs: Sequence[tuple[str, int]]) -> str:
    return rng.choices([name for name, _w in pairs], weights=[weight for _n, weight in pairs])[0]


def write_interpret(app: Any, counts: Counts, corpus: Corpus, rng: random.Random, now: datetime,
                    quiet: bool) -> dict[str, int]:
    from sqlalchemy import insert

    from interpret.models import IndexNumberSerial, Interpretation, InterpretationPolicy, Policy
    from services.db import get_database

    database = get_database("interpret", app)
    start = now - timedelta(days=365 * YEARS_BACK)
    categories = sorted(corpus.departments)
    serials: Counter[tuple[str, str]] = Counter()
    numbers: Counter[tuple[str, int]] = Counter()
    policies: list[dict[str, Any]] = []
    for policy_id in range(1, counts.policies + 1):
        category = rng.choice(categories)
        code, department_name = corpus.departments[category]
        roll = rng.random()
        if roll < 0.25:
            issuer, prefix, level, source = rng.choice(ISSUERS_ABOVE)
        elif roll < 0.4:
            issuer, prefix, level, source = "A市人民政府", "A政发", "本级", "A市人民政府网"
        else:
            issuer, prefix, level, source = f"A市{department_name}", f"A{code}发", "本级", "A市人民政府网"
        if rng.random() < 0.5:
            subject, kind = rng.choice(corpus.policy_titles)
        else:
            subject = rng.choice(SUBJECT_TEMPLATES).format(t=rng.choice(corpus.taxonomy[category]))
            kind = rng.choice(KINDS)
        published = _spread(rng, start, now, skew=1.3)
        numbers[(prefix, published.year)] += 1
        serial_key = (code, published.astimezone(BEIJING).strftime("%Y%m"))
        serials[serial_key] += 1
        body = _paragraphs(rng, corpus.policy_sentences, rng.randint(8, 26), (2, 5))
        policies.append({
            "id": policy_id, "department": code, "state": "published", "version": 1, "index_version": 1,
            "author_name": "bench_editor", "submitted_at": published - timedelta(days=2),
            "approved_at": published - timedelta(days=1), "published_at": published, "first_published_at": published,
            "created_at": published - timedelta(days=3), "updated_at": published,
            "index_number": f"{serial_key[0]}/{serial_key[1]}-{serials[serial_key]:05d}",
            "category_group": rng.choice(("政策文件", "政策文件", "规范性文件", "部门文件")),
            "title": f"{issuer}关于{subject}的{kind}"[:300],
            "document_number": f"{prefix}〔{published.year}〕{numbers[(prefix, published.year)]}号",
            "issuer": issuer, "topic": category, "source": source, "level": level,
            "body": html.escape(body, quote=False),
            "written_on": (published.astimezone(BEIJING) - timedelta(days=rng.randint(0, 12))).date(),
            "validity": _weighted(rng, (("有效", 88), ("已修订", 5), ("失效", 5), ("废止", 2))),
        })
    interpretations: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    for interpretation_id in range(1, counts.interpretations + 1):
        policy = policies[rng.randrange(len(policies))]
        published = min(now, policy["published_at"] + timedelta(days=rng.randint(0, 10), hours=rng.randint(0, 8)))
        form = _weighted(rng, FORM_WEIGHTS)
        short = policy["title"].split("关于", 1)[-1]
        title = {"图解": f"一图读懂{short}", "新闻发布会": f"{short}新闻发布会答记者问",
                 "专家解读": f"专家解读：{short}", "问答式解读": f"{short}问答"}.get(
                     form, f"《{policy['title']}》政策解读")
        body = _paragraphs(rng, corpus.policy_sentences, rng.randint(5, 16), (2, 4))
        key_points = [rng.choice(corpus.qa_answers) for _ in range(rng.randint(2, 4))]
        interpretations.append({
            "id": interpretation_id, "department": policy["department"], "state": "published", "version": 1,
            "index_version": 1, "author_name": "bench_editor", "submitted_at": published - timedelta(hours=20),
            "approved_at": published - timedelta(hours=4), "published_at": published, "first_published_at": published,
            "created_at": published - timedelta(days=1), "updated_at": published,
            "title": title[:300], "form": form, "interpreter_kind": _weighted(rng, INTERPRETER_KINDS),
            "interpreter_name": _person(rng), "summary": body.split("\n", 1)[0][:160],
            "body": html.escape(body, quote=False), "key_points": key_points,
            "text_alternative": _paragraphs(rng, corpus.qa_answers, 4, (4, 4)) if form == "图解" else None,
            "transcript": (_paragraphs(rng, corpus.policy_sentences, 8, (2, 3))
                           if form in ("视频", "音频", "新闻发布会") else None),
            "media_url": (f"https://media.example.gov.cn/interpret/{interpretation_id}.mp4"
                          if form in ("视频", "音频", "新闻发布会") else None),
        })
        linked = {policy["id"]}
        if rng.random() < 0.15:
            linked.add(rng.randint(1, len(policies)))
        links.extend({"interpretation_id": interpretation_id, "policy_id": policy_id,
                      "created_at": published} for policy_id in sorted(linked))
    with database.transaction() as session:
        connection = session.connection()
        for table, rows, desc in ((Policy.__table__, policies, "政策文件 policies"),
                                  (Interpretation.__table__, interpretations, "政策解读 interpretations"),
                                  (InterpretationPolicy.__table__, links, "关联 links")):
            with _progress(len(rows), desc, quiet) as bar:
                for chunk in _chunks(rows):
                    connection.execute(insert(cast("Table", table)), chunk)
                    bar.update(len(chunk))
        serial_rows = [{"department": department, "month": month, "last_serial": last}
                       for (department, month), last in serials.items()]
        if serial_rows:
            connection.execute(insert(cast("Table", IndexNumberSerial.__table__)), serial_rows)
        _fix_sequences(connection, ("policy", "interpretation"))
    return {"policies": len(policies), "interpretations": len(interpretations), "links": len(links)}


def _fix_sequences(connection: Any, tables: Sequence[str]) -> None:
    """After inserts with explicit ids, PostgreSQL's sequences must move past them (SQLite needs nothing)."""
    from sqlalchemy import text

    if connection.dialect.name != "postgresql":
        return
    for table in tables:
        connection.execute(text(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608 (fixed table names)
            f"GREATEST((SELECT COALESCE(MAX(id), 0) FROM {table}), 1))"
        ))


# -- consult -------------------------------------------------------------------------------------------


OPEN_MIX = (("submitted", 14), ("accepted", 9), ("assigned", 14), ("drafting", 25), ("awaiting_info", 8),
            ("in_review", 12), ("approved", 6), ("reopened", 12))
OTHER_MIX = (("closed", 40), ("private", 14), ("replied", 15), ("rejected", 6), ("open", 25))
PATHS: dict[str, tuple[str, ...]] = {
    "submitted": ("submit",),
    "rejected": ("submit", "reject"),
    "accepted": ("submit", "accept"),
    "assigned": ("submit", "accept", "assign"),
    "drafting": ("submit", "accept", "assign", "draft"),
    "awaiting_info": ("submit", "accept", "assign", "request_info"),
    "in_review": ("submit", "accept", "assign", "draft", "submit_review"),
    "approved": ("submit", "accept", "assign", "draft", "submit_review", "approve"),
    "replied": ("submit", "accept", "assign", "draft", "submit_review", "approve", "reply"),
    "private": ("submit", "accept", "assign", "draft", "submit_review", "approve", "reply", "keep_private"),
    "published": ("submit", "accept", "assign", "draft", "submit_review", "approve", "reply", "publish"),
    "published_closed": ("submit", "accept", "assign", "draft", "submit_review", "approve", "reply", "publish",
                         "close"),
    "closed": ("submit", "accept", "assign", "draft", "submit_review", "approve", "reply", "close"),
    "reopened": ("submit", "accept", "assign", "draft", "submit_review", "approve", "reply", "reopen"),
}
TARGETS = {"submit": "submitted", "reject": "rejected", "accept": "accepted", "assign": "assigned",
           "draft": "drafting", "request_info": "awaiting_info", "submit_review": "in_review", "approve": "approved",
           "reply": "replied", "keep_private": "private", "publish": "published", "close": "closed",
           "reopen": "reopened"}
SENSITIVE = ("上访", "集体维权")


def _states(rng: random.Random, counts: Counts) -> list[str]:
    """The final state of each consultation: ``answers`` published (a fifth of them closed since)."""
    states = ["published_closed" if rng.random() < 0.2 else "published" for _ in range(counts.answers)]
    for _ in range(counts.consultations - counts.answers):
        kind = _weighted(rng, OTHER_MIX)
        states.append(_weighted(rng, OPEN_MIX) if kind == "open" else kind)
    rng.shuffle(states)
    return states


def write_consult(app: Any, settings: Any, counts: Counts, corpus: Corpus, rng: random.Random, now: datetime,
                  quiet: bool) -> dict[str, Any]:
    from argon2 import PasswordHasher
    from sqlalchemy import insert

    from consult.models import Consultation, ConsultationStep, TrackingSerial
    from consult.workflow import consult_calendar, contact_key, local_day
    from services.db import get_database

    database = get_database("consult", app)
    with database.transaction() as session:
        calendar = consult_calendar(session)
    code_hash = PasswordHasher().hash(BENCH_QUERY_CODE)
    categories = sorted(corpus.departments)
    weights = [len(corpus.by_category.get(category, ())) + 20 for category in categories]
    start = now - timedelta(days=365 * YEARS_BACK)
    today = local_day(now)
    due_cache: dict[date, tuple[date, date]] = {}
    accept_days, reply_days = settings.consult_accept_working_days, settings.consult_reply_working_days

    def deadlines(day: date) -> tuple[date, date]:
        if day not in due_cache:
            accept_due = calendar.add_working_days(day, accept_days)
            due_cache[day] = (accept_due, calendar.add_working_days(day, reply_days))
        return due_cache[day]

    handlers = {code: [(9000 + index * 10 + n, _person(rng)) for n in range(6)]
                for index, code in enumerate(sorted({code for code, _n in corpus.departments.values()}))}
    states = _states(rng, counts)
    serials: Counter[str] = Counter()
    consultation_rows: list[dict[str, Any]] = []
    step_rows: list[dict[str, Any]] = []
    tally: Counter[str] = Counter()
    with _progress(len(states), "咨询 composing consultations", quiet) as bar:
        for consultation_id, final in enumerate(states, start=1):
            category = rng.choices(categories, weights=weights)[0]
            code = corpus.departments[category][0]
            pool = corpus.by_category.get(category) or corpus.messages
            base = rng.choice(pool)
            extra = corpus.message_sentences.get(category) or corpus.message_sentences["*"]
            sentences = base.sentences[:rng.randint(1, 2)] + [rng.choice(extra) for _ in range(rng.randint(1, 4))]
            question = "".join(sentences)
            state = "published" if final == "published_closed" else final
            is_open = state in dict(OPEN_MIX)
            if is_open:  # open work is recent: most within its deadline, a part overdue
                received = _spread(rng, now - timedelta(days=40 if rng.random() < 0.3 else 9), now, skew=1.0)
            else:
                received = _spread(rng, start, now - timedelta(days=12), skew=1.4)
            received_on = local_day(received)
            accept_due, reply_due = deadlines(received_on)
            day_key = received_on.strftime("%Y%m%d")
            serials[day_key] += 1
            answered = state in ("replied", "private", "published", "closed", "reopened")
            replied = received + timedelta(days=rng.uniform(1, 9)) if answered else None
            reply_sentences = ([rng.choice(corpus.reply_openings)]
                               + [rng.choice(corpus.reply_bodies) for _ in range(rng.randint(1, 4))]
                               + [rng.choice(corpus.reply_closings)]) if (answered or state in (
                                   "drafting", "in_review", "approved")) else []
            reply = "".join(reply_sentences) or None
            published = state == "published"
            flagged = rng.random() < 0.02
            needs_routing = state == "submitted" and rng.random() < 0.4
            department = TOP_DEPARTMENT[0] if needs_routing else code
            handler = rng.choice(handlers[code]) if state not in ("submitted", "accepted", "rejected") else None
            phone = f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"
            email = f"user{consultation_id}@example.com" if rng.random() < 0.3 else None
            row: dict[str, Any] = {
                "id": consultation_id, "tracking_number": f"ZX{day_key}-{serials[day_key]:04d}",
                "query_code_hash": code_hash, "title": base.title[:100], "question": question,
                "category": category, "category_source": rng.choice(("asker", "router", "router")),
                "category_confidence": round(rng.uniform(0.6, 0.99), 4),
                "name": _person(rng), "phone": phone, "email": email,
                "contact_key": contact_key(settings, phone, email),
                "consent_to_publish": published or rng.random() < 0.6,
                "sensitive_terms": rng.choice(SENSITIVE) if flagged else None,
                "state": state, "department": department, "needs_routing": needs_routing,
                "handler_id": handler[0] if handler else None, "handler_name": handler[1] if handler else None,
                "reviewer_name": "bench_reviewer" if answered else None,
                "accept_due": accept_due, "reply_due": None if state in ("submitted", "rejected") else reply_due,
                "reply_working_days": reply_days,
                "clock_started_on": None if state in ("submitted", "rejected") else received_on,
                "deadline_estimated": False, "paused_since": today if state == "awaiting_info" else None,
                "paused_working_days": 0, "extension_working_days": 0,
                "rejection_reason": "not_our_duty" if state == "rejected" else None,
                "info_request": "请补充相关材料" if state == "awaiting_info" else None,
                "reply_draft": reply, "reply": reply if answered else None,
                "published_question": ("\n".join((corpus.redacted(base.title),
                                                  "".join(corpus.redacted(s) for s in sentences)))
                                       if published else None),
                "published_reply": "".join(corpus.redacted(s) for s in reply_sentences) if published else None,
                "redaction_confirmed_by": "bench_reviewer" if published else None,
                "rating": rng.choice(("satisfied", "satisfied", "basically_satisfied", "dissatisfied"))
                if answered and rng.random() < 0.3 else None,
                "reopen_count": 1 if state == "reopened" else 0,
                "received_at": received, "accepted_at": received + timedelta(hours=3)
                if state not in ("submitted", "rejected") else None,
                "first_replied_at": replied, "replied_at": replied if state != "reopened" else None,
                "published_at": replied + timedelta(hours=2) if published and replied else None,
                "closed_at": (replied + timedelta(days=15)
                              if final in ("closed", "published_closed") and replied else None),
                "historical": False, "version": len(PATHS[final]), "created_at": received,
            }
            consultation_rows.append(row)
            tally[final] += 1
            step_rows.extend(_steps(consultation_id, final, row, department))
            bar.update(1)
    with database.transaction() as session:
        connection = session.connection()
        for table, rows, desc in ((Consultation.__table__, consultation_rows, "咨询 consultations"),
                                  (ConsultationStep.__table__, step_rows, "办理记录 steps")):
            with _progress(len(rows), desc, quiet) as bar:
                for chunk in _chunks(rows):
                    connection.execute(insert(cast("Table", table)), chunk)
                    bar.update(len(chunk))
        connection.execute(insert(cast("Table", TrackingSerial.__table__)),
                           [{"day": day, "last_serial": last} for day, last in serials.items()])
        _fix_sequences(connection, ("consultation", "consultation_step"))
    open_count = sum(count for state, count in tally.items() if state in dict(OPEN_MIX))
    overdue = sum(1 for row in consultation_rows if row["state"] in dict(OPEN_MIX) and row["state"] != "awaiting_info"
                  and ((row["accept_due"] if row["state"] == "submitted" else row["reply_due"]) or today) < today)
    return {"consultations": len(consultation_rows), "steps": len(step_rows), "states": dict(sorted(tally.items())),
            "open": open_count, "overdue": overdue, "published": tally["published"] + tally["published_closed"]}


def _steps(consultation_id: int, final: str, row: dict[str, Any], department: str) -> Iterator[dict[str, Any]]:
    path = PATHS[final]
    start: datetime = row["received_at"]
    end: datetime = row["closed_at"] or row["published_at"] or row["first_replied_at"] or (start + timedelta(days=2))
    previous: str | None = None
    for number, action in enumerate(path):
        at = start + (end - start) * (number / max(1, len(path) - 1))
        target = TARGETS[action]
        public = action in ("submit", "accept", "reject", "reply", "publish", "close", "reopen", "request_info")
        yield {"consultation_id": consultation_id, "action": action, "from_state": previous, "to_state": target,
               "department": department, "actor_id": None,
               "actor_name": "提交人" if action in ("submit", "reopen") else "bench_dispatcher",
               "detail": None, "public_note": None, "public": public, "at": at}
        previous = target


# -- the whole run -------------------------------------------------------------------------------------


def settings_for(data_dir: Path, database: str, database_url: str | None, prefix: str) -> tuple[Any, dict[str, str]]:
    """The suite's settings for a generated directory, and the environment that gives them."""
    from services.settings import load_settings

    env = {"GONGKAI_DATA_DIR": str(data_dir), "GONGKAI_ENV": "development", "LOG_LEVEL": "WARNING"}
    if database == "postgres":
        env["DATABASE_URL"] = database_url or DEFAULT_DATABASE_URL
        env["DATABASE_SCHEMA_PREFIX"] = prefix
    return load_settings(env), env


def _existing_content(app: Any) -> dict[str, int]:
    from sqlalchemy import func, select

    from consult.models import Consultation
    from interpret.models import Interpretation, Policy
    from services.db import get_database

    found = {}
    for service, model in (("interpret", Policy), ("interpret", Interpretation), ("consult", Consultation)):
        with get_database(service, app).transaction() as session:
            found[model.__tablename__] = int(session.scalar(select(func.count()).select_from(model)) or 0)
    return found


@dataclass
class GenerateReport:
    already: bool
    counts: Counts
    manifest: dict[str, Any]
    path: Path


def generate(data_dir: Path, counts: Counts, *, database: str = "sqlite", database_url: str | None = None,
             schema_prefix: str = "bench_", source: Path = DEFAULT_SOURCE, seed: int = 8, index: bool = True,
             quiet: bool = False, now: datetime | None = None) -> GenerateReport:
    """Fill ``data_dir`` (see the module docstring); refuse a directory that holds other content."""
    from services.migrations import migrate_all
    from services.suite import create_worker_app

    data_dir = data_dir.expanduser().resolve()
    manifest_path = data_dir / MANIFEST
    settings, env = settings_for(data_dir, database, database_url, schema_prefix)
    if manifest_path.is_file():
        previous = json.loads(manifest_path.read_text(encoding="utf-8"))
        if previous.get("counts") == counts.as_dict() and previous.get("database") == database and (
                not index or previous.get("index", {}).get("documents") is not None):
            return GenerateReport(True, counts, previous, manifest_path)
    started = time.perf_counter()
    migrate_all(settings)
    app = create_worker_app(settings)
    with app.app_context():
        present = _existing_content(app)
    if any(present.values()):
        held = ", ".join(f"{count} {name}" for name, count in present.items() if count)
        raise GenerateError(f"{data_dir} already holds content ({held}) that this generator did not make with these "
                            "counts: use an empty --data-dir (or another --schema-prefix)")
    now = now or datetime.now(UTC).replace(microsecond=0)
    rng = random.Random(seed)
    corpus = load_corpus(source)
    timings: dict[str, float] = {}
    with app.app_context():
        mark = time.perf_counter()
        identity = write_identity(app, settings, corpus)
        interpret_counts = write_interpret(app, counts, corpus, rng, now, quiet)
        timings["interpret_seconds"] = round(time.perf_counter() - mark, 1)
        mark = time.perf_counter()
        consult_counts = write_consult(app, settings, counts, corpus, rng, now, quiet)
        timings["consult_seconds"] = round(time.perf_counter() - mark, 1)
        index_report: dict[str, Any] = {}
        if index:
            index_report = build_index(app, quiet)
    manifest = {
        "generated_at": now.isoformat(), "counts": counts.as_dict(), "database": database, "env": env,
        "seed": seed, "source": str(source), "identity": identity, "query_code": BENCH_QUERY_CODE,
        "interpret": interpret_counts, "consult": consult_counts, "index": index_report,
        "seconds": round(time.perf_counter() - started, 1), **timings,
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(manifest, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    return GenerateReport(False, counts, manifest, manifest_path)


def build_index(app: Any, quiet: bool) -> dict[str, Any]:
    """The search index, through the real rebuild (``gongkai search reindex``), with a progress bar."""
    from tqdm import tqdm

    from search.reindex import reindex, worker_apps

    bars: dict[str, Any] = {}

    def progress(doc_type: str, done: int, total: int) -> None:
        bar = bars.get(doc_type)
        if bar is None:
            bar = bars[doc_type] = tqdm(total=total, desc=f"索引 indexing {doc_type}", unit="doc", disable=quiet,
                                        leave=False, dynamic_ncols=True)
        bar.total = max(bar.total or 0, total)
        bar.update(done - bar.n)

    try:
        report = reindex(worker_apps(app), settle_seconds=0, started_by="bench.generate", progress=progress)
    finally:
        for bar in bars.values():
            bar.close()
    documents = sum(report.counts.values())
    return {"documents": documents, "by_type": report.counts, "index": report.index,
            "seconds": round(report.seconds, 1),
            "documents_per_second": round(documents / report.seconds, 1) if report.seconds else None}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="the suite data directory to fill")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--database-url", default=None, help=f"PostgreSQL (default {DEFAULT_DATABASE_URL})")
    parser.add_argument("--schema-prefix", default="bench_", help="PostgreSQL schema prefix (default bench_)")
    for name, value in DEFAULTS.items():
        parser.add_argument(f"--{name}", type=int, default=value, help=f"default {value:,}")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every count (0.02 for development)")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--source-dir", type=Path, default=DEFAULT_SOURCE, help="the real texts (../shared/data)")
    parser.add_argument("--no-index", action="store_true", help="do not build the search index")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        counts = plan_counts(args.consultations, args.policies, args.interpretations, args.answers, args.scale)
        report = generate(args.data_dir, counts, database=args.database, database_url=args.database_url,
                          schema_prefix=args.schema_prefix, source=args.source_dir, seed=args.seed,
                          index=not args.no_index, quiet=args.quiet or not sys.stderr.isatty())
    except GenerateError as error:
        print(f"bench.generate: {error}", file=sys.stderr)
        return 1
    manifest = report.manifest
    if report.already:
        print(f"already generated with these counts: {report.path} (nothing to do)")
    else:
        consult = manifest["consult"]
        print(f"generated in {manifest['seconds']} s: {counts.policies:,} policies, {counts.interpretations:,} "
              f"interpretations, {consult['consultations']:,} consultations ({consult['published']:,} published, "
              f"{consult['open']:,} open of which {consult['overdue']:,} overdue), {consult['steps']:,} steps")
        if manifest["index"]:
            print(f"index: {manifest['index']['documents']:,} documents in {manifest['index']['seconds']} s "
                  f"({manifest['index']['documents_per_second']} documents/s)")
    print("run the suite on it with: " + " ".join(f"{key}={value}" for key, value in manifest["env"].items())
          + " .venv/bin/gongkai up --no-seed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
