"""Fault tests 4 and 5 of issue 9: PostgreSQL restarted under load, gunicorn workers killed mid-request.

4. The suite runs on a PostgreSQL of its own (``StoppablePostgres``: never the shared server), which the
   test stops for about ten seconds and starts again while public submissions (the API and the form with
   an attachment), public page reads and staff actions (accept, assign, save a draft, publish) run in
   threads. Every request answers 503 with a readable Chinese message in the one error shape, or
   succeeds; none hangs. Nothing is half-written, and the suite recovers without restarting a process.
5. The suite runs with three gunicorn workers while clients submit unique consultations (the API, and the
   form with an attachment) and the test SIGKILLs workers that hold a request. Each client sees a success
   or a dropped connection; the database holds exactly the successful submissions plus those whose answer
   was lost in transit, each whole, none twice; a client that resubmits after a dropped connection gets
   the first submission's number back when that one was stored.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import itertools
import os
import random
import re
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from consult.models import Consultation, ConsultationStep, OutboxEvent, SubmissionAttachment
from services.audit import audit_key, verify_chain
from services.db import get_database
from services.identity.models import AuditEntry
from services.outbox import pending_count

from support.running_suite import Answer, RunningSuite, child_pids, print_counts, running_suite, wait_for
from support.servers import RedisProcess, StoppablePostgres

INTAKE = "KJTA"
"""Submissions without a category land in this division, where dispatcher_a and editor_a work."""

OUTAGE_SECONDS = 10.0
HANG_LIMIT_SECONDS = 30.0
"""No answer may take longer: the database connect timeout is 5 s, a refused connection fails at once."""

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
TRACKING_NUMBER = re.compile(r'class="tracking-number">(ZX\d{8}-\d{4,})<')


# --------------------------------------------------------------------------- clients


def new_submission(label: str, number: int, *, consent: bool = False) -> dict[str, Any]:
    """A unique consultation: its own title, text and contact, so duplicate detection never joins two."""
    token = uuid.uuid4().hex[:10]
    return {
        "title": f"{label}第{number}号咨询{token}",
        "question": f"请问科技项目申报需要准备哪些材料？在哪里可以查到办理流程？（{token}）",
        "name": "张测试",
        "phone": f"139{random.randrange(10**8):08d}",
        "email": f"asker-{token}@example.com",
        "consent_to_publish": consent,
    }


class FormClient:
    """The public form (/consult/ask) as a browser uses it: a session cookie, its CSRF token, multipart posts."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self.csrf_token = ""

    def open_form(self) -> None:
        page = self._send(urllib.request.Request(self.base_url + "/consult/ask"), timeout=30)
        assert page.status == 200, (page.status, page.text[:500])
        found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert found, page.text[:500]
        self.csrf_token = found.group(1)

    def submit(self, fields: dict[str, Any], attachment: bytes | None, timeout: float = 60) -> Answer:
        boundary = f"----gongkai{uuid.uuid4().hex}"
        values = {key: value for key, value in fields.items() if key != "consent_to_publish"}
        if fields.get("consent_to_publish"):
            values["consent_to_publish"] = "on"
        values["csrf_token"] = self.csrf_token
        body = bytearray()
        for name, value in values.items():
            body += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n').encode()
        if attachment is not None:
            body += (f'--{boundary}\r\nContent-Disposition: form-data; name="attachments"; filename="材料.png"\r\n'
                     "Content-Type: image/png\r\n\r\n").encode() + attachment + b"\r\n"
        body += f"--{boundary}--\r\n".encode()
        request = urllib.request.Request(
            self.base_url + "/consult/ask", data=bytes(body), method="POST",
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}", "Accept": "text/html"},
        )
        return self._send(request, timeout)

    def _send(self, request: urllib.request.Request, timeout: float) -> Answer:
        try:
            with self.opener.open(request, timeout=timeout) as answer:
                return Answer(answer.status, answer.read(), dict(answer.headers))
        except urllib.error.HTTPError as error:
            return Answer(error.code, error.read(), dict(error.headers))
        except (urllib.error.URLError, OSError) as error:
            return Answer(0, b"", {}, error=f"{type(error).__name__}: {error}")


def tracking_number_of(answer: Answer) -> str | None:
    """The tracking number a successful submission answered (JSON from the API, the receipt page from the form)."""
    if answer.status not in (200, 201):
        return None
    if answer.headers.get("Content-Type", "").startswith("application/json"):
        number: str = answer.json()["tracking_number"]
        return number
    found = TRACKING_NUMBER.search(answer.text)
    return found.group(1) if found else None


def is_duplicate_answer(answer: Answer) -> bool:
    """The product recognised the submission as one it already holds (same contact, same text, within 24 h)."""
    if not tracking_number_of(answer):
        return False
    if answer.headers.get("Content-Type", "").startswith("application/json"):
        return bool(answer.json()["duplicate"])
    return 'class="query-code"' not in answer.text  # the receipt shows the query code only for a new case


@dataclass
class Sent:
    """One request of the load and its answer."""

    kind: str
    path: str
    answer: Answer
    began: float
    elapsed: float


@dataclass
class Submitted:
    """One consultation a client sent (and resent after a dropped connection)."""

    title: str
    via_form: bool
    attachment: bool
    attempts: list[Answer] = field(default_factory=list)
    began: float = 0.0

    @property
    def first(self) -> Answer:
        return self.attempts[0]

    def numbers(self) -> list[str]:
        return [number for number in map(tracking_number_of, self.attempts) if number]


def unavailable_shape_problem(sent: Sent) -> str | None:
    """Why a 503 is not the one readable error shape (None when it is)."""
    answer = sent.answer
    content_type = answer.headers.get("Content-Type", "")
    if sent.path.startswith("/api/"):
        if not content_type.startswith("application/json"):
            return f"{sent.path}: 503 as {content_type}"
        body = answer.json()
        if body.get("code") != 503 or "不可用" not in body.get("message", ""):
            return f"{sent.path}: 503 body {body}"
        if "Retry-After" not in answer.headers:
            return f"{sent.path}: 503 without Retry-After"
        return None
    if not content_type.startswith("text/html") or "服务暂时不可用" not in answer.text:
        return f"{sent.path}: 503 page {content_type} {answer.text[:300]!r}"
    if "Traceback" in answer.text:
        return f"{sent.path}: a stack trace on the error page"
    return None


# --------------------------------------------------------------------------- what was stored


@dataclass
class StoredReport:
    by_title: dict[str, list[Consultation]]
    problems: dict[str, list[str]]
    """Tracking number -> why that consultation is not whole."""
    orphans: list[str]
    audit_event_ids: set[str]
    published: int

    @property
    def stored(self) -> int:
        return sum(len(rows) for rows in self.by_title.values())

    @property
    def duplicates(self) -> int:
        return sum(len(rows) - 1 for rows in self.by_title.values())

    @property
    def half(self) -> int:
        return len(self.problems)

    @property
    def whole(self) -> int:
        return self.stored - self.half


def examine_consultations(suite: RunningSuite, attachments_expected: dict[str, int]) -> StoredReport:
    """Every stored consultation with its history, outbox events, audit events and attachments.

    Each transition writes one step, one ``consult.consultation.<action>`` event and one audit event in the
    same transaction; a submission also writes its ``consult.consultation.received`` event for the press
    office. A consultation missing any of them, or an event whose consultation is not there, is a partial write.
    """
    with get_database("consult", suite.app).transaction() as session:
        consultations = session.scalars(select(Consultation).order_by(Consultation.id)).all()
        steps = session.execute(select(ConsultationStep.consultation_id, ConsultationStep.action)).all()
        events = session.scalars(select(OutboxEvent)).all()
        files = session.execute(select(SubmissionAttachment.consultation_id, SubmissionAttachment.sha256)).all()
        session.expunge_all()

    ids = {consultation.id for consultation in consultations}
    step_actions: dict[int, Counter[str]] = defaultdict(Counter)
    for consultation_id, action in steps:
        step_actions[consultation_id][action] += 1
    changes: dict[int, Counter[str]] = defaultdict(Counter)
    received: Counter[int] = Counter()
    answers_published: Counter[int] = Counter()
    audits: Counter[int] = Counter()
    audit_event_ids = set()
    orphans = []
    for event in events:
        if event.topic == "audit.recorded":
            audit_event_ids.add(event.id)
            if event.payload.get("object_type") == "consultation":
                target = int(event.payload["object_id"])
                if target not in ids:
                    orphans.append(f"audit event {event.id} of missing consultation {target}")
                audits[target] += 1
            continue
        owner = int(event.aggregate_id)
        if owner not in ids:
            orphans.append(f"{event.topic} of missing consultation {owner}")
        if event.topic == "consult.consultation.received":
            received[owner] += 1
        elif event.topic.startswith("consult.consultation."):
            changes[owner][event.topic.rsplit(".", 1)[1]] += 1
        elif event.topic == "consult.answer.published":
            answers_published[owner] += 1
    attached: Counter[int] = Counter(consultation_id for consultation_id, _ in files)
    orphans += [f"attachment of missing consultation {owner}" for owner in attached if owner not in ids]
    orphans += [f"step of missing consultation {owner}" for owner in step_actions if owner not in ids]

    by_title: dict[str, list[Consultation]] = defaultdict(list)
    problems: dict[str, list[str]] = {}
    for consultation in consultations:
        by_title[consultation.title].append(consultation)
        found = []
        history = step_actions[consultation.id]
        if history["submit"] != 1:
            found.append(f"{history['submit']} submit steps")
        events = changes[consultation.id]
        # Every save of a draft sends an event; only the first one adds a step to the history.
        if {**history, "draft": 0} != {**events, "draft": 0} or (events["draft"] > 0) != (history["draft"] > 0):
            found.append(f"steps {dict(history)} but events {dict(events)}")
        if received[consultation.id] != 1:
            found.append(f"{received[consultation.id]} received events")
        if audits[consultation.id] != sum(changes[consultation.id].values()):
            found.append(f"{audits[consultation.id]} audit events for {sum(changes[consultation.id].values())} changes")
        if answers_published[consultation.id] != history["publish"]:
            found.append(f"{answers_published[consultation.id]} answer events for {history['publish']} publications")
        expected_files = attachments_expected.get(consultation.title, 0)
        if attached[consultation.id] != expected_files:
            found.append(f"{attached[consultation.id]} attachments, expected {expected_files}")
        if found:
            problems[consultation.tracking_number] = found
    numbers = Counter(consultation.tracking_number for consultation in consultations)
    orphans += [f"tracking number {number} used {count} times" for number, count in numbers.items() if count > 1]
    published = sum(1 for consultation in consultations if consultation.state == "published")
    return StoredReport(dict(by_title), problems, orphans, audit_event_ids, published)


def audit_entries_for(suite: RunningSuite, event_ids: set[str]) -> Counter[str]:
    """How many audit log entries each of these outbox events became (the consumer applies each once)."""
    with get_database("identity", suite.app).transaction() as session:
        rows = session.scalars(select(AuditEntry.event_id).where(AuditEntry.event_id.is_not(None))).all()
    return Counter(event_id for event_id in rows if event_id in event_ids)


def wait_until_delivered(suite: RunningSuite, report: StoredReport, timeout: float = 120) -> None:
    """The consult outbox drains and every audit event reaches the audit log exactly once."""
    consult_db = get_database("consult", suite.app)
    wait_for(lambda: pending_count(consult_db, OutboxEvent) == 0, timeout, "the consult outbox to drain")
    wait_for(lambda: len(audit_entries_for(suite, report.audit_event_ids)) == len(report.audit_event_ids),
             timeout, "every audit event to reach the audit log")
    entries = audit_entries_for(suite, report.audit_event_ids)
    assert set(entries.values()) <= {1}, "an audit event was recorded twice"
    with get_database("identity", suite.app).transaction() as session:
        chain = verify_chain(session, audit_key(suite.settings.secret_key))
    assert chain.ok, chain.reason


def log_tails(suite: RunningSuite) -> str:
    return "\n".join(f"--- {name} ---\n{suite.log(name)[-3000:]}" for name in ("web", "worker", "beat"))


# --------------------------------------------------------------------------- staff work for test 4


@dataclass
class StaffStep:
    """A one-time staff action on a seeded case, retried until it is known to have happened."""

    user: str
    action: str
    case_id: int
    target_state: str
    method: str = "POST"
    body: dict[str, Any] = field(default_factory=dict)
    done: bool = False
    uncertain: bool = False
    """An attempt answered 503: it may have committed before the answer failed; look before retrying."""


class Staff:
    def __init__(self, suite: RunningSuite) -> None:
        self.suite = suite

    def act(self, user: str, case_id: int, action: str, body: dict[str, Any] | None = None,
            method: str = "POST") -> dict[str, Any]:
        answer = self.suite.request(method, f"/api/consult/manage/consultations/{case_id}/{action}",
                                    json_body=body or {}, token=self.suite.token(user))
        assert answer.status == 200, (action, answer.status, answer.text[:500])
        result: dict[str, Any] = answer.json()
        return result

    def submit(self, label: str, number: int, *, consent: bool = False) -> int:
        answer = self.suite.post("/api/consult/consultations", new_submission(label, number, consent=consent))
        assert answer.status == 201, answer.text[:500]
        with get_database("consult", self.suite.app).transaction() as session:
            case_id = session.scalar(select(Consultation.id).where(
                Consultation.tracking_number == answer.json()["tracking_number"]))
        assert case_id is not None
        return case_id

    def seed(self) -> tuple[list[StaffStep], list[int]]:
        """Cases waiting for each staff action of the load: accept, assign, save a draft, publish."""
        steps = []
        for number in range(3):
            steps.append(StaffStep("dispatcher_a", "accept", self.submit("待受理", number), "accepted"))
        for number in range(3):
            case_id = self.submit("待认领", number)
            self.act("dispatcher_a", case_id, "accept")
            steps.append(StaffStep("editor_a", "assign", case_id, "assigned"))
        drafting = []
        for number in range(2):
            case_id = self.submit("起草中", number)
            self.act("dispatcher_a", case_id, "accept")
            self.act("editor_a", case_id, "assign")
            self.act("editor_a", case_id, "draft", {"reply": "初稿"}, method="PUT")
            drafting.append(case_id)
        for number in range(2):
            case_id = self.submit("待公开", number, consent=True)
            self.act("dispatcher_a", case_id, "accept")
            self.act("editor_a", case_id, "assign")
            reply = "您好，申报材料清单见科技厅网站办事指南栏目。"
            self.act("editor_a", case_id, "draft", {"reply": reply}, method="PUT")
            self.act("editor_a", case_id, "submit-review")
            self.act("reviewer_a", case_id, "approve")
            self.act("editor_a", case_id, "reply")
            review = self.suite.get(f"/api/consult/manage/consultations/{case_id}/personal-data",
                                    token=self.suite.token("reviewer_a")).json()
            self.act("reviewer_a", case_id, "confirm-redaction", {
                "published_question": review["proposed_question"], "published_reply": review["proposed_reply"]})
            steps.append(StaffStep("disclosure_office_a", "publish", case_id, "published"))
        return steps, drafting


# --------------------------------------------------------------------------- test 4


@pytest.fixture
def restartable_suite(tmp_path: Path) -> Iterator[tuple[RunningSuite, StoppablePostgres]]:
    with (
        StoppablePostgres() as database,
        RedisProcess() as broker,
        running_suite(tmp_path, database_url=database.url, redis_url=broker.url,
                      CONSULT_INTAKE_DEPARTMENT=INTAKE) as suite,
    ):
        yield suite, database


def test_requests_during_a_database_restart_fail_cleanly_and_the_suite_recovers_by_itself(
    restartable_suite: tuple[RunningSuite, StoppablePostgres],
) -> None:
    suite, database = restartable_suite
    staff = Staff(suite)
    for user in ("dispatcher_a", "editor_a", "reviewer_a", "disclosure_office_a"):
        suite.token(user)
    one_time_steps, drafting = staff.seed()
    asker = suite.post("/api/consult/consultations", new_submission("查询用", 0)).json()
    tracking_path = f"/api/consult/consultations/{asker['tracking_number']}?code={asker['query_code']}"
    read_paths = [
        "/", "/consult/", "/consult/answers", "/consult/statistics", "/interpret/", "/search/?q=科技",
        "/api/consult/answers", "/api/search?q=科技", "/api/consult/statistics", tracking_path,
    ]
    forms = [FormClient(suite.base_url) for _ in range(2)]
    for form in forms:
        form.open_form()
    processes_before = {name: suite.pid(name) for name in ("web", "worker", "beat")}
    web_workers_before = child_pids(suite.pid("web"))

    sent: list[Sent] = []
    submitted: list[Submitted] = []
    drafts: dict[int, list[tuple[str, int]]] = defaultdict(list)
    stop = threading.Event()
    errors: list[BaseException] = []

    def timed(kind: str, path: str, call: Callable[..., Answer], *args: Any, **kwargs: Any) -> Answer:
        began = time.monotonic()
        answer = call(*args, **kwargs)
        sent.append(Sent(kind, path, answer, began, time.monotonic() - began))
        return answer

    def guarded(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except BaseException as error:  # reported by the main thread
                errors.append(error)
                stop.set()
        return run

    def submitter(index: int) -> None:
        form = forms[index]
        for number in itertools.count():
            if stop.is_set():
                return
            fields = new_submission(f"库重启{index}-", number)
            via_form = number % 3 == 2
            attachment = via_form and number % 2 == 0
            item = Submitted(fields["title"], via_form, attachment, began=time.monotonic())
            if via_form:
                answer = timed("submit", "/consult/ask", form.submit, fields, PNG if attachment else None)
            else:
                path = "/api/consult/consultations"
                answer = timed("submit", path, suite.post, path, fields, timeout=60)
            item.attempts.append(answer)
            submitted.append(item)
            time.sleep(0.25 if answer.status == 503 else 0.05)

    def reader() -> None:
        for path in itertools.cycle(read_paths):
            if stop.is_set():
                return
            answer = timed("read", path, suite.get, path, timeout=60)
            time.sleep(0.1 if answer.status == 503 else 0.03)

    def staff_worker() -> None:
        for turn in itertools.count():
            if stop.is_set():
                return
            waiting = [step for step in one_time_steps if not step.done]
            if waiting:
                perform(waiting[turn % len(waiting)])
            case_id = drafting[turn % len(drafting)]
            text = f"答复草稿第{turn}版"
            path = f"/api/consult/manage/consultations/{case_id}/draft"
            answer = timed("staff", path, suite.request, "PUT", path, json_body={"reply": text},
                           token=suite.token("editor_a"), timeout=60)
            drafts[case_id].append((text, answer.status))
            time.sleep(0.2)

    def perform(step: StaffStep) -> None:
        base = f"/api/consult/manage/consultations/{step.case_id}"
        token = suite.token(step.user)
        if step.uncertain:
            view = timed("staff", base, suite.get, base, token=token, timeout=60)
            if view.status != 200:
                return
            if view.json()["state"] == step.target_state:
                step.done = True  # the earlier attempt committed; its answer was the 503
                return
        path = f"{base}/{step.action}"
        answer = timed("staff", path, suite.request, step.method, path, json_body=step.body, token=token, timeout=60)
        step.done = answer.status == 200
        step.uncertain = answer.status == 503

    threads = [threading.Thread(target=guarded(work), daemon=True) for work in (
        lambda: submitter(0), lambda: submitter(1), reader, staff_worker)]
    readiness_during_outage: list[Answer] = []
    try:
        for thread in threads:
            thread.start()
        wait_for(lambda: errors or sum(1 for item in submitted if item.first.status == 201) >= 8, 60,
                 "submissions before the outage")

        stopped_at = time.monotonic()
        database.stop("fast")
        while time.monotonic() - stopped_at < OUTAGE_SECONDS and not errors:
            readiness_during_outage.append(suite.get("/readyz", timeout=60))
            time.sleep(1)
        database.start()
        back_at = time.monotonic()

        def succeeded_since(kind: str, since: float, path_test: Callable[[str], bool] = lambda _: True) -> bool:
            return any(item.kind == kind and item.began >= since and item.answer.status in (200, 201)
                       and path_test(item.path) for item in list(sent))

        recovery_seconds = wait_for(lambda: errors or succeeded_since("submit", back_at), 90,
                                    "a new submission to succeed after the restart")
        ready_seconds = wait_for(lambda: suite.get("/readyz").status == 200, 90, "/readyz to answer 200 again")
        wait_for(lambda: errors or (
            all(step.done for step in one_time_steps)
            and succeeded_since("submit", back_at, lambda path: path == "/consult/ask")
            and succeeded_since("read", back_at, lambda path: path == tracking_path)
            and succeeded_since("staff", back_at, lambda path: path.endswith("/draft"))
        ), 120, "every kind of request to succeed again and every staff action to be done")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=90)
    assert not errors, errors
    assert all(not thread.is_alive() for thread in threads), "a client thread hung"

    # During the outage the suite said so: /readyz 503 naming the database checks.
    assert readiness_during_outage and all(answer.status == 503 for answer in readiness_during_outage[1:])
    assert any("database" in answer.text for answer in readiness_during_outage)

    # Every answer was a success or a readable 503, promptly.
    statuses = Counter(item.answer.status for item in sent)
    others = [(item.path, item.answer.status, item.answer.error or item.answer.text[:300])
              for item in sent if item.answer.status not in (200, 201, 503)]
    assert not others, f"{others[:10]}\n{log_tails(suite)}"
    shapes = [problem for item in sent if item.answer.status == 503
              if (problem := unavailable_shape_problem(item))]
    assert not shapes, shapes[:10]
    slowest = max(item.elapsed for item in sent)
    assert slowest < HANG_LIMIT_SECONDS, f"a request took {slowest:.1f} s"
    assert statuses[503] > 0, "no request met the outage: the test did not test anything"

    # Nothing accepted is lost, nothing is half-written or stored twice, and every event is delivered.
    attachments_expected = {item.title: 1 for item in submitted if item.attachment}
    report = examine_consultations(suite, attachments_expected)
    accepted = {item.title: item.numbers()[0] for item in submitted if item.numbers()}
    failed_titles = {item.title for item in submitted if not item.numbers()}
    lost = [title for title, number in accepted.items()
            if [row.tracking_number for row in report.by_title.get(title, [])] != [number]]
    assert not lost, lost[:10]
    assert not report.problems, report.problems
    assert not report.orphans, report.orphans
    assert report.duplicates == 0
    # A 503 means the submission was not stored (it failed before its one commit).
    stored_after_503 = [title for title in failed_titles if title in report.by_title]
    assert not stored_after_503, stored_after_503
    wait_until_delivered(suite, report)

    # The staff actions took effect once, and each draft holds the last text saved (or one sent after it).
    with get_database("consult", suite.app).transaction() as session:
        for step in one_time_steps:
            consultation = session.get(Consultation, step.case_id)
            assert consultation is not None and consultation.state == step.target_state, step
        for case_id, attempts in drafts.items():
            consultation = session.get(Consultation, case_id)
            assert consultation is not None
            last_ok = max(index for index, (_, status) in enumerate(attempts) if status == 200)
            possible = {text for text, _ in attempts[last_ok:]}
            assert consultation.reply_draft in possible, (consultation.reply_draft, attempts[last_ok:])

    # The workers and beat resumed: the published answers reached the index.
    engine = suite.search_engine()
    try:
        wait_for(lambda: engine.count(suite.settings.search_alias, "answer") == report.published, 90,
                 "the published answers to be indexed")
    finally:
        engine.close()
    assert report.published == 2

    # ... and no process was restarted to get there.
    assert {name: suite.pid(name) for name in ("web", "worker", "beat")} == processes_before
    assert all(suite.processes[name].poll() is None for name in processes_before)
    assert child_pids(suite.pid("web")) == web_workers_before, "a gunicorn worker was replaced"

    submissions_stored = sum(len(report.by_title.get(item.title, [])) for item in submitted)
    print_counts(
        "database restart",
        requests=len(sent), ok=statuses[200] + statuses[201], unavailable=statuses[503], other=len(others),
        accepted=len(accepted), stored=submissions_stored, lost=len(lost), duplicates=report.duplicates,
        recovery_seconds=round(recovery_seconds, 1), ready_seconds=round(ready_seconds, 1),
    )


# --------------------------------------------------------------------------- test 5

MIN_SUBMISSIONS = 100
MAX_SUBMISSIONS = 600
CLIENTS = 6
WEB_WORKERS = 3
SINGLE_KILLS = 3
RETRIES = 5


def workers_holding_requests(master: int, port: int) -> list[int]:
    """gunicorn's workers that hold an open client connection on ``port``: a request they have not answered.

    The clients send ``Connection: close``, so an accepted connection lives as long as its request; one still in
    the listen queue belongs to no worker yet (the master holds the socket) and survives any kill.
    """
    open_sockets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                columns = line.split()
                local_port = int(columns[1].rsplit(":", 1)[1], 16)
                if columns[3] == "01" and local_port == port:  # 01: ESTABLISHED
                    open_sockets.add(f"socket:[{columns[9]}]")
    holders = []
    for pid in child_pids(master):
        with contextlib.suppress(OSError):
            descriptors = os.listdir(f"/proc/{pid}/fd")
            if any(_link(f"/proc/{pid}/fd/{fd}") in open_sockets for fd in descriptors):
                holders.append(pid)
    return holders


def _link(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


@pytest.fixture
def three_worker_suite(tmp_path: Path) -> Iterator[RunningSuite]:
    # A PostgreSQL of its own: each killed worker leaves its sessions behind until the server notices, and
    # the shared server's connection limit belongs to the other tests running beside this one.
    with (
        StoppablePostgres() as database,
        RedisProcess() as broker,
        running_suite(tmp_path, database_url=database.url, redis_url=broker.url, web_workers=WEB_WORKERS,
                      CONSULT_INTAKE_DEPARTMENT=INTAKE) as suite,
    ):
        yield suite


def test_killed_gunicorn_workers_never_leave_a_half_created_consultation(
    three_worker_suite: RunningSuite,
) -> None:
    suite = three_worker_suite

    # The product's answer to an identical resubmission: the first one's number, not a second case.
    first_try = new_submission("重复提交", 0)
    first = suite.post("/api/consult/consultations", first_try)
    again = suite.post("/api/consult/consultations", first_try)
    assert first.status == 201 and again.status == 200, (first.text, again.text)
    assert again.json()["tracking_number"] == first.json()["tracking_number"] and again.json()["duplicate"]
    forms = [FormClient(suite.base_url) for _ in range(CLIENTS)]
    for form in forms:
        form.open_form()
    first_form = new_submission("重复提交表单", 0)
    first_page, again_page = forms[0].submit(first_form, PNG), forms[0].submit(first_form, PNG)
    assert not is_duplicate_answer(first_page) and is_duplicate_answer(again_page), again_page.text[:500]
    assert tracking_number_of(first_page) == tracking_number_of(again_page)
    numbers = iter(range(MAX_SUBMISSIONS))
    numbers_lock = threading.Lock()
    killing_done = threading.Event()
    submitted: list[Submitted] = []
    done = threading.Event()
    errors: list[BaseException] = []

    def client(index: int) -> None:
        form = forms[index]
        try:
            while True:
                with numbers_lock:
                    number = next(numbers, None)
                # Keep the load on until every kill has happened, and send at least MIN_SUBMISSIONS.
                if number is None or (killing_done.is_set() and number >= MIN_SUBMISSIONS):
                    return
                fields = new_submission(f"进程被杀{index}-", number)
                via_form = number % 4 == 3
                item = Submitted(fields["title"], via_form, via_form, began=time.monotonic())
                submitted.append(item)
                for attempt in range(RETRIES + 1):
                    answer = (form.submit(fields, PNG) if via_form
                              else suite.post("/api/consult/consultations", fields, timeout=90))
                    item.attempts.append(answer)
                    if answer.status != 0 or attempt == RETRIES:
                        break
                    time.sleep(0.5 * (attempt + 1))  # what a patient client does after a dropped connection
        except BaseException as error:
            errors.append(error)

    kills = 0

    def killer() -> None:
        nonlocal kills
        master = suite.pid("web")
        seen_serving: set[int] = set()
        try:
            for round_number in range(SINGLE_KILLS + 1):
                last_round = round_number == SINGLE_KILLS
                time.sleep(random.uniform(0.2, 1.0))
                # A worker in the middle of a request (gunicorn restarts the killed ones meanwhile) and, before
                # the last round, another one serving, so that a single kill never leaves none booted.
                deadline = time.monotonic() + 180
                while True:
                    holders = workers_holding_requests(master, suite.port)
                    alive = set(child_pids(master))
                    seen_serving = (seen_serving | set(holders)) & alive
                    if holders and (last_round or len(seen_serving) >= 2):
                        break
                    if done.is_set():
                        return
                    assert time.monotonic() < deadline, "no gunicorn worker took a request for 180 s"
                    time.sleep(0.02)
                # The last round kills every worker at once, the others one worker serving a request.
                for pid in sorted(alive) if last_round else [random.choice(holders)]:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                        kills += 1
        except BaseException as error:
            errors.append(error)
        finally:
            killing_done.set()

    clients = [threading.Thread(target=client, args=(index,), daemon=True) for index in range(CLIENTS)]
    killing = threading.Thread(target=killer, daemon=True)
    for thread in clients:
        thread.start()
    killing.start()
    for thread in clients:
        thread.join(timeout=600)
    done.set()
    killing.join(timeout=180)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in [*clients, killing]), "a client hung"
    assert suite.processes["web"].poll() is None, "the gunicorn master died"

    # What the clients saw: a success, or an error / a dropped connection; never a refusal of a valid form.
    wrong = [(item.title, answer.status, answer.text[:300]) for item in submitted for answer in item.attempts
             if answer.status in range(400, 500) or (answer.status in (200, 201) and not tracking_number_of(answer))]
    assert not wrong, wrong[:10]
    succeeded = [item for item in submitted if tracking_number_of(item.first)]
    failed = [item for item in submitted if not tracking_number_of(item.first)]
    assert not [item.title for item in succeeded if is_duplicate_answer(item.first)], "unique submissions were joined"
    cut_off = [item for item in failed if item.first.status == 0]
    assert cut_off, f"no request was cut off by {kills} kills: the test did not test anything"

    attachments_expected = {item.title: 1 for item in submitted if item.attachment}
    attachments_expected.update({first_try["title"]: 0, first_form["title"]: 1})  # one file, not one per attempt
    report = examine_consultations(suite, attachments_expected)
    lost = []
    for item in submitted:
        stored_numbers = [row.tracking_number for row in report.by_title.get(item.title, [])]
        answered = set(item.numbers())
        # Every number a client was given is the one stored consultation of its text: a retry after a dropped
        # connection got the first attempt's number back when that attempt had been stored.
        if answered and [*answered] != stored_numbers:
            lost.append((item.title, sorted(answered), stored_numbers))
    assert not lost, lost[:10]
    assert not report.problems, report.problems
    assert not report.orphans, report.orphans
    assert report.duplicates == 0, {title: len(rows) for title, rows in report.by_title.items() if len(rows) > 1}
    found_by_retry = [item for item in failed if any(map(is_duplicate_answer, item.attempts[1:]))]
    created_by_retry = [item for item in failed if item.numbers() and item not in found_by_retry]
    given_up = [item for item in submitted if not item.numbers()]
    # Stored: every success, plus any whose every answer was lost in transit (each whole, checked above).
    ours = {item.title for item in submitted}
    stored = sum(len(rows) for title, rows in report.by_title.items() if title in ours)
    assert stored == len(submitted) - len(given_up) + sum(1 for item in given_up if item.title in report.by_title)
    half = sum(1 for title in ours for row in report.by_title.get(title, []) if row.tracking_number in report.problems)
    wait_until_delivered(suite, report)

    print_counts(
        "gunicorn worker killed",
        sent=len(submitted), succeeded=len(succeeded), failed=len(failed), stored=stored,
        whole=stored - half, half=half, duplicates=report.duplicates, lost=len(lost),
        cut_off=len(cut_off), found_by_retry=len(found_by_retry), created_by_retry=len(created_by_retry),
        given_up=len(given_up), kills=kills,
    )
