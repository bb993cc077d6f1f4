"""`gongkai backup` and `gongkai restore`: the suite comes back from one archive, page for page and row for row.

The round trips (PostgreSQL: schema prefix A -> prefix B; SQLite: data directory A -> data directory B) use
real parts only. Suite A is migrated and seeded with the demo data (101 policies, 2,816 answered messages,
the press office's copy of them), then worked through the staff APIs: an organisation of staff with roles,
a TOTP second factor with recovery codes, a consultation with the asker's name, phone and e-mail that is
accepted, answered, redacted and published, an internal note, a policy with a PDF attachment (a file in the
data directory) and an interpretation of it, a press response linked to a topic and a policy, and a
trained router model. The outbox events are delivered in-process as the worker would deliver them (the
demo's 2,917 publications reach A's index through one rebuild instead of one event at a time), so A's audit
chain, index and press copies are those of a running suite. Then `backup` writes A into one archive and
`restore` loads it into an empty B with a fresh data directory and a fresh search index.

What must hold afterwards:

* every row of every table of every service is equal in A and B (staff users, roles, departments, recovery
  codes, the audit log, consultations with the submitter's details, steps, replies, notes, the press
  office's data, ...). Two differences are expected and checked as such: B's search database records the
  rebuild that restore ran, and the outbox events sent in the hour before the backup are pending again in
  B (a consumer may not have applied them when the snapshot was taken; consumers apply each event once);
* every public page and public API answer is byte-identical in A and B: the home page, the policy list
  and every policy, every interpretation, the answers board and every answer, both statistics pages, the
  press responses, the policy attachment's download, search pages and the search API for several queries,
  and the router's classification. They are requested without a session (no cookies), from A and then
  from B. Two things vary per request and are held still: the CSRF tokens of the asking and tracking forms
  (a new one for every session) are masked, and the clock the search ranking reads for its recency factor
  is fixed for both suites (otherwise the API's scores differ in their last digits by the milliseconds
  between the two requests). Everything else must match byte for byte;
* B's index was rebuilt (search finds the published consultation there), B signs staff in with the same
  password and recovery code and accepts a token A issued (the same SECRET_KEY), and `gongkai audit
  verify` passes on B: the audit chain survived.

The bad-input test runs the command as a subprocess: a missing archive, a damaged one, a truncated one and
a target that already holds data each give one readable line and a non-zero exit, and leave the target as
it was.
"""

from __future__ import annotations

import io
import json
import re
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyotp
import pytest
from flask import Flask
from sqlalchemy import MetaData, select, update
from werkzeug.test import Client, TestResponse

from services.backup import REQUEUE_WINDOW, backup, rebuild_index, restore
from services.celery_app import INDEX_TASKS, make_celery
from services.db import EXTENSION_KEY, get_database, open_service_database, utcnow
from services.events import subscribers
from services.migrations import migrate_all
from services.searchengine.analysis import now_ms
from services.settings import SERVICES, Settings, load_settings
from services.suite import PathDispatcher, create_suite, create_worker_app

from support.env import base_env, drop_schemas, subprocess_env, unique_prefix
from support.org import STAFF_PASSWORD, create_org

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PHOTO = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # every byte value, as bytea must keep them
ASKER = {"name": "欧阳明轩", "phone": "13912345678", "email": "ouyang.mx@example.com"}
QUESTION_TITLE = "高新技术企业认定材料备份测试"
SEARCHES = ("高新技术企业认定", "住房公积金", "国务院 通知", "科技计划项目申报", "公积金提取")
CLASSIFY_TEXT = "我家附近的公交站台太远，希望增设公交线路"
CSRF = re.compile(rb'(name="csrf_token" value=")[^"]*(")')


def settings_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    env: dict[str, str] = base_env(data_dir, CONSULT_INTAKE_DEPARTMENT="KJTA", LOGIN_RATE_LIMIT="1000 per minute",
                                   LOG_LEVEL="WARNING", **overrides)
    return env


# -- suite A: the demo data, then the staff's work ----------------------------------------------


class Staff:
    """Bearer-token calls through the path dispatcher, one token per user."""

    def __init__(self, apps: dict[str, Flask]) -> None:
        self.client = Client(PathDispatcher(apps), use_cookies=False)
        self.tokens: dict[str, str] = {}

    def call(self, username: str, method: str, path: str, **kwargs: Any) -> TestResponse:
        if username not in self.tokens:
            answer = self.client.post("/api/auth/token", json={"username": username, "password": STAFF_PASSWORD})
            assert answer.status_code == 200, answer.get_json()
            self.tokens[username] = answer.get_json()["token"]
        return self.client.open(path, method=method, headers={"Authorization": f"Bearer {self.tokens[username]}"},
                                **kwargs)

    def ok(self, username: str, method: str, path: str, status: int = 200, **kwargs: Any) -> dict[str, Any]:
        answer = self.call(username, method, path, **kwargs)
        assert answer.status_code == status, (method, path, answer.status_code, answer.get_json())
        body: dict[str, Any] = answer.get_json()
        return body


def quiet_outboxes(apps: dict[str, Flask]) -> None:
    """Events stay in the outboxes (no broker here); ``deliver_events`` hands them to the tasks."""
    for app in apps.values():
        for database in app.extensions.get(EXTENSION_KEY, {}).values():
            database.publisher = None


def deliver_events(worker: Flask, celery: Any, delivered: set[str], skip: tuple[str, ...] = ()) -> int:
    """Every outbox event not delivered yet, oldest first, to each subscribed task but those in ``skip``, as
    the worker does (inside the worker app's context); then marked sent, as the relay marks them."""
    messages: list[dict[str, Any]] = []
    for service in SERVICES:
        database = get_database(service, worker)
        model: Any = database.outbox_model
        with database.transaction() as session:
            events: list[Any] = list(session.scalars(select(model).order_by(model.created_at)))
            messages += [event.as_message() for event in events if event.id not in delivered]
    messages.sort(key=lambda message: str(message["created_at"]))
    deliveries = [(message, task_name) for message in messages for task_name in subscribers(message["topic"])
                  if task_name not in skip]
    for _attempt in range(3):  # a task that finds its event early (a state change before the intake) retries
        retry = []
        for message, task_name in deliveries:
            try:
                celery.tasks[task_name](message)
            except Exception:
                retry.append((message, task_name))
        deliveries = retry
    for message, task_name in deliveries:
        celery.tasks[task_name](message)  # raises what still fails
    delivered.update(message["id"] for message in messages)
    for service in SERVICES:
        database = get_database(service, worker)
        model = database.outbox_model
        with database.transaction() as session:
            session.execute(update(model).where(model.sent_at.is_(None)).values(sent_at=utcnow(), attempts=1))
    return len(messages)


@dataclass
class Work:
    consultation_id: int
    tracking_number: str
    policy_id: int
    attachment_url: str
    interpretation_id: int
    response_id: int
    recovery_codes: list[str]
    admin_token: str


def do_the_work(apps: dict[str, Flask], settings: Settings) -> Work:
    from services.identity.accounts import confirm_totp_enrolment, start_totp_enrolment
    from services.identity.models import User
    from services.press.models import Topic

    with get_database("identity", apps["identity"]).transaction() as session:
        create_org(session, settings)
    staff = Staff(apps)

    # A consultation with the asker's details, answered, redacted and published, with an internal note.
    submitted = staff.client.post("/api/consult/consultations", json={
        "title": QUESTION_TITLE, "question": "请问高新技术企业认定需要提交哪些材料？白天请打 13712345678 联系我。",
        **ASKER, "consent_to_publish": True,
    })
    assert submitted.status_code == 201, submitted.get_json()
    number = submitted.get_json()["tracking_number"]
    inbox = staff.ok("dispatcher_a", "GET", "/api/consult/manage/consultations")
    case_id = next(item["id"] for item in inbox["items"] if item["tracking_number"] == number)
    case = f"/api/consult/manage/consultations/{case_id}"
    staff.ok("dispatcher_a", "POST", f"{case}/accept", json={})
    staff.ok("editor_a", "POST", f"{case}/assign", json={})
    staff.ok("editor_a", "PUT", f"{case}/draft", json={"reply": "您好，需提交企业注册登记证件、知识产权证明等材料。"})
    staff.ok("editor_a", "POST", f"{case}/notes", json={"text": "已电话联系申请人，材料清单另行寄送。"})
    staff.ok("editor_a", "POST", f"{case}/submit-review", json={})
    staff.ok("reviewer_a", "POST", f"{case}/approve", json={})
    staff.ok("editor_a", "POST", f"{case}/reply", json={})
    review = staff.ok("reviewer_a", "GET", f"{case}/personal-data")
    staff.ok("reviewer_a", "POST", f"{case}/confirm-redaction", json={
        "published_question": review["proposed_question"], "published_reply": review["proposed_reply"]})
    staff.ok("disclosure_office_a", "POST", f"{case}/publish", json={})

    # A policy with an attachment (stored in the data directory) and an interpretation of it.
    manage = "/api/interpret/manage"
    policy = staff.ok("editor_a", "POST", f"{manage}/policies", 201, json={
        "title": "关于开展科技计划项目申报工作的通知", "issuer": "安徽省科学技术厅", "level": "本级",
        "body": "<p>各有关单位：现将科技计划项目申报有关事项通知如下。</p>"})
    upload = staff.call("editor_a", "POST", f"{manage}/policies/{policy['id']}/attachments",
                        data={"file": (io.BytesIO(PDF), "申报指南.pdf", "application/pdf")})
    assert upload.status_code == 201, upload.get_json()
    for user, action in (("editor_a", "submit"), ("reviewer_a", "approve"), ("disclosure_office_a", "publish")):
        staff.ok(user, "POST", f"{manage}/policies/{policy['id']}/{action}", json={})
    interpretation = staff.ok("editor_a", "POST", f"{manage}/interpretations", 201, json={
        "title": "科技计划项目申报政策解读", "form": "文字解读", "interpreter_kind": "处室",
        "body": "<p>一、申报条件。二、申报程序。</p>"})
    staff.ok("editor_a", "POST", f"{manage}/interpretations/{interpretation['id']}/policies",
             json={"policy_id": policy["id"]})
    for user, action in (("editor_a", "submit"), ("reviewer_a", "approve"), ("disclosure_office_a", "publish")):
        staff.ok(user, "POST", f"{manage}/interpretations/{interpretation['id']}/{action}", json={})

    # A press response linked to a hot topic and a (demo) policy.
    with get_database("press", apps["press"]).transaction() as session:
        topic_id = session.scalar(select(Topic.id).order_by(Topic.id).limit(1))
    responses = "/api/press/manage/responses"
    response = staff.ok("press_officer_a", "POST", responses, 201, json={
        "kind": "response", "title": "关于公积金提取办理时限的回应",
        "summary": "市住房公积金中心对群众关切的提取时限问题作出回应。",
        "body": "<p>群众反映的公积金提取问题，我们高度重视，办理时限已压缩至三个工作日。</p>",
        "topic_ids": [topic_id], "policy_ids": ["policy-1"]})
    staff.ok("press_officer_a", "POST", f"{responses}/{response['id']}/submit", json={})
    staff.ok("reviewer_a", "POST", f"{responses}/{response['id']}/approve", json={"comment": "同意"})
    staff.ok("press_officer_a", "POST", f"{responses}/{response['id']}/publish", json={})

    # The administrator's token, then a second factor with recovery codes.
    assert staff.ok("admin1", "GET", "/api/auth/me")["username"] == "admin1"
    admin_token = staff.tokens["admin1"]
    with get_database("identity", apps["identity"]).transaction() as session:
        admin = session.scalar(select(User).where(User.username == "admin1"))
        assert admin is not None
        secret = start_totp_enrolment(admin)
        recovery_codes = confirm_totp_enrolment(session, settings, admin, pyotp.TOTP(secret).now())
    return Work(case_id, number, policy["id"], upload.get_json()["public_url"], interpretation["id"], response["id"],
                recovery_codes, admin_token)


def ask_with_a_photo(apps: dict[str, Flask]) -> None:
    """A question through the public form with an image attached (kept in the database as bytes)."""
    browser = Client(PathDispatcher(apps))
    form = browser.get("/consult/ask").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token, "the form carries a CSRF token"
    answer = browser.post("/consult/ask", data={
        "csrf_token": token.group(1), "title": "学校招生的学位怎么安排",
        "question": "孩子明年上小学，学位和学校招生怎么安排？",
        "name": "李华", "phone": "13800138000", "consent_to_publish": "on",
        "attachments": (io.BytesIO(PHOTO), "通知照片.png", "image/png"),
    })
    assert answer.status_code == 200 and "ZX" in answer.get_data(as_text=True), answer.get_data(as_text=True)


def install_router(data_dir: Path) -> None:
    from consult.routing import Router, _document, install_router, make_pipeline

    texts = [f"{place}的公交线路和站台{n}" for n, place in enumerate(["A2区", "A5区", "A7县", "B9市"] * 3)]
    texts += [f"{place}的学校招生和学位{n}" for n, place in enumerate(["A2区", "A5区", "A7县", "B9市"] * 3)]
    labels = ["交通运输"] * 12 + ["教育文体"] * 12
    pipeline = make_pipeline("logreg").fit([_document(text) for text in texts], labels)
    install_router(Router(pipeline, sorted(set(labels))), data_dir)


def build_suite_a(env: dict[str, str], lap: Any) -> tuple[Settings, dict[str, Flask], Work, int]:
    from services.demo.seed import seed_demo

    settings = load_settings(env)
    migrate_all(settings)
    worker = create_worker_app(settings)
    quiet_outboxes({"worker": worker})
    celery = make_celery(settings, worker)
    celery.loader.import_default_modules()
    seed_demo(worker, progress=False)
    lap("demo seeded")
    apps = create_suite(settings).apps
    quiet_outboxes(apps)
    # The demo's 2,917 publications reach the index in one rebuild (what a worker would do one event at a
    # time, and what restore does for B); its other events (audit entries, the press office's copy of the
    # policies) are delivered as the worker delivers them.
    rebuild_index(settings)
    delivered: set[str] = set()
    events = deliver_events(worker, celery, delivered, skip=INDEX_TASKS)
    lap("demo indexed, its events delivered")
    work = do_the_work(apps, settings)
    install_router(settings.data_dir)
    ask_with_a_photo(apps)  # routed by the model: a category confidence (a float) is stored
    events += deliver_events(worker, celery, delivered)
    lap("staff work done")
    return settings, apps, work, events


# -- comparing A and B ---------------------------------------------------------------------------


def service_rows(settings: Settings, service: str) -> dict[str, dict[tuple[Any, ...], dict[str, Any]]]:
    """Every row of every table of a service, keyed by table and primary key."""
    database = open_service_database(settings, service)
    try:
        metadata = MetaData()
        metadata.reflect(database.engine)
        rows: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}
        with database.engine.connect() as connection:
            for table in metadata.sorted_tables:
                key_columns = list(table.primary_key.columns) or list(table.columns)
                rows[table.name] = {
                    tuple(row[column.name] for column in key_columns): dict(row)
                    for row in connection.execute(select(table)).mappings()
                }
        return rows
    finally:
        database.dispose()


def compare_records(settings_a: Settings, settings_b: Settings, backup_at: datetime) -> tuple[int, int]:
    """Every row equal (see the module's docstring for the two expected differences); (rows, requeued)."""
    compared = requeued = 0
    since = backup_at - REQUEUE_WINDOW
    for service in SERVICES:
        rows_a, rows_b = service_rows(settings_a, service), service_rows(settings_b, service)
        assert sorted(rows_a) == sorted(rows_b), service
        for table, table_a in rows_a.items():
            table_b = rows_b[table]
            if (service, table) == ("search", "reindex_run"):
                extra = [row for key, row in table_b.items() if key not in table_a]
                assert [row["state"] for row in extra] == ["finished"], extra  # the rebuild restore ran
                table_b = {key: row for key, row in table_b.items() if key in table_a}
            assert table_a.keys() == table_b.keys(), f"{service}.{table}: rows differ"
            for key, row_a in table_a.items():
                row_b = dict(table_b[key])
                if table == "outbox_event":
                    sent_a = row_a["sent_at"]
                    if sent_a is not None and sent_a.replace(tzinfo=sent_a.tzinfo or UTC) >= since:
                        assert row_b["sent_at"] is None, f"{service}.{table} {key}: not queued again"
                        requeued += 1
                        row_b["sent_at"] = sent_a
                assert row_a == row_b, f"{service}.{table} {key}:\n{row_a}\n{row_b}"
                compared += 1
    return compared, requeued


def ids(settings: Settings, service: str, model: Any) -> list[int]:
    database = open_service_database(settings, service)
    try:
        with database.transaction() as session:
            return list(session.scalars(select(model.id).order_by(model.id)))
    finally:
        database.dispose()


def attachment_bytes(settings: Settings) -> list[bytes]:
    from consult.models import SubmissionAttachment

    database = open_service_database(settings, "consult")
    try:
        with database.transaction() as session:
            return list(session.scalars(select(SubmissionAttachment.content)))
    finally:
        database.dispose()


def public_paths(settings: Settings, work: Work) -> list[str]:
    from consult.models import Consultation
    from interpret.models import Interpretation, Policy
    from services.press.models import Response

    policies = ids(settings, "interpret", Policy)
    interpretations = ids(settings, "interpret", Interpretation)
    consultations = ids(settings, "consult", Consultation)
    responses = ids(settings, "press", Response)
    answer_pages = len(consultations) // 20 + 1
    paths = ["/", "/interpret/policies", "/interpret/policies?page=2", "/interpret/policies?level=本级",
             "/interpret/interpretations", "/consult/answers", "/consult/answers?page=2",
             f"/consult/answers?page={answer_pages}", "/consult/answers?department=KJTA", "/consult/statistics",
             "/interpret/statistics", "/press/responses", "/consult/ask", "/consult/track", work.attachment_url,
             "/api/interpret/policies", "/api/consult/answers", "/api/consult/statistics", "/api/consult/categories"]
    for query in SEARCHES:
        paths += [f"/search/?q={query}", f"/api/search?q={query}", f"/api/search?q={query}&type=answer&page=2"]
    paths += [f"/api/search/related/policy-{work.policy_id}", f"/api/search/related/answer-{work.consultation_id}"]
    for number in [*policies, policies[-1] + 1]:
        paths += [f"/interpret/policies/{number}", f"/api/interpret/policies/{number}"]
    for number in [*interpretations, interpretations[-1] + 1]:
        paths.append(f"/interpret/interpretations/{number}")
    for number in [*consultations, consultations[-1] + 1]:
        paths += [f"/consult/answers/{number}", f"/api/consult/answers/{number}"]
    for number in [*responses, responses[-1] + 1]:
        paths.append(f"/press/responses/{number}")
    return paths


def compare_pages(apps_a: dict[str, Flask], apps_b: dict[str, Flask], paths: list[str]) -> tuple[int, int]:
    """Each path from A then from B, without a session; (pages, bytes) when all are identical."""
    client_a = Client(PathDispatcher(apps_a), use_cookies=False)
    client_b = Client(PathDispatcher(apps_b), use_cookies=False)
    differences = []
    statuses: dict[int, int] = {}
    size = 0
    for path in paths:
        page_a, page_b = client_a.get(path), client_b.get(path)
        body_a, body_b = CSRF.sub(rb"\1-\2", page_a.data), CSRF.sub(rb"\1-\2", page_b.data)
        if (page_a.status_code, page_a.content_type, body_a) != (page_b.status_code, page_b.content_type, body_b):
            differences.append((path, page_a.status_code, page_b.status_code, first_difference(body_a, body_b)))
        statuses[page_a.status_code] = statuses.get(page_a.status_code, 0) + 1
        size += len(page_a.data)
    assert not differences, f"{len(differences)} pages differ, e.g. {differences[:3]}"
    assert statuses.get(500, 0) == 0, statuses
    return len(paths), size


def first_difference(a: bytes, b: bytes) -> str:
    at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return f"at byte {at}: {a[max(0, at - 80):at + 80]!r} != {b[max(0, at - 80):at + 80]!r}"


def post_json(apps: dict[str, Flask], path: str, body: dict[str, Any]) -> tuple[int, bytes]:
    answer = Client(PathDispatcher(apps), use_cookies=False).post(path, json=body)
    return answer.status_code, answer.data


def gongkai(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


# -- the round trips -----------------------------------------------------------------------------


class Laps:
    """How long each phase took, printed as it ends (the test's numbers)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.mark = time.monotonic()
        self.times: dict[str, float] = {}

    def __call__(self, phase: str) -> None:
        now = time.monotonic()
        self.times[phase] = now - self.mark
        self.mark = now
        print(f"[{self.label}] {phase}: {self.times[phase]:.1f} s", flush=True)

    def __str__(self) -> str:
        return ", ".join(f"{phase} {seconds:.0f} s" for phase, seconds in self.times.items())


def round_trip(env_a: dict[str, str], env_b: dict[str, str], archive: Path, label: str,
               monkeypatch: pytest.MonkeyPatch) -> None:
    lap = Laps(label)
    settings_a, apps_a, work, events = build_suite_a(env_a, lap)

    report = backup(settings_a, archive, environ=env_a)
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600  # personal data and the secret key
    restored = restore(load_settings(env_b), archive, environ=env_b)
    assert restored.index_error is None
    settings_b = load_settings(env_b)
    assert settings_b.secret_key == settings_a.secret_key
    settings_file = settings_b.data_dir / "restored-settings.env"
    assert stat.S_IMODE(settings_file.stat().st_mode) == 0o600
    assert f"SECRET_KEY={settings_a.secret_key}" in settings_file.read_text(encoding="utf-8")
    assert restored.rows == report.rows and restored.files == report.files >= 3  # attachment, router files
    lap("backup and restore")

    rows, requeued = compare_records(settings_a, settings_b, datetime.fromisoformat(restored.created_at))
    assert requeued == restored.requeued > 0
    assert attachment_bytes(settings_b) == [PHOTO]
    lap("records compared")

    apps_b = create_suite(settings_b).apps
    # Ranking weighs recency at query time: both suites answer at the same instant, so that the scores in
    # the search API do not differ by the milliseconds between the two requests.
    frozen = now_ms()
    for adapter in ("fts", "elastic"):
        monkeypatch.setattr(f"services.searchengine.{adapter}.now_ms", lambda: frozen)
    paths = public_paths(settings_a, work)
    pages, size = compare_pages(apps_a, apps_b, paths)
    lap("pages compared")
    classified_a = post_json(apps_a, "/api/consult/classify", {"text": CLASSIFY_TEXT})
    classified_b = post_json(apps_b, "/api/consult/classify", {"text": CLASSIFY_TEXT})
    assert classified_a[0] == 200 and classified_a == classified_b  # the router model came back

    public_b = Client(PathDispatcher(apps_b), use_cookies=False)
    found = public_b.get("/api/search", query_string={"q": QUESTION_TITLE}).get_json()
    assert f"/consult/answers/{work.consultation_id}" in [hit["url"] for hit in found["hits"]]
    answer_page = public_b.get(f"/consult/answers/{work.consultation_id}").get_data(as_text=True)
    assert QUESTION_TITLE in answer_page and ASKER["name"] not in answer_page and "13712345678" not in answer_page
    assert public_b.get(work.attachment_url).data == PDF
    assert public_b.get("/api/auth/me", headers={"Authorization": f"Bearer {work.admin_token}"}).status_code == 200
    signed_in = public_b.post("/api/auth/token", json={"username": "admin1", "password": STAFF_PASSWORD,
                                                       "otp": work.recovery_codes[0]})
    assert signed_in.status_code == 200, signed_in.get_json()

    verified = gongkai(subprocess_env(settings_b.data_dir, **{k: v for k, v in env_b.items()
                                                              if k != "GONGKAI_DATA_DIR"}), "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "audit log intact" in verified.stdout
    print(f"\n{label} round trip: {report.rows:,} rows in {report.tables} tables, {report.files} files, "
          f"{report.size:,} bytes archive (backup {report.seconds:.1f} s, restore {restored.seconds:.1f} s incl. "
          f"reindex of {sum(restored.index_counts.values())} documents); {events} outbox events handled in A; "
          f"{rows:,} rows equal, {requeued} events queued again; {pages} public pages and API answers identical "
          f"({size:,} bytes); {verified.stdout.strip()}; {lap}")


@pytest.fixture
def pg_prefixes(postgres_url: str) -> Iterator[tuple[str, str]]:
    prefixes = unique_prefix("bka"), unique_prefix("bkb")
    try:
        yield prefixes
    finally:
        for prefix in prefixes:
            drop_schemas(postgres_url, prefix)


def test_a_postgresql_suite_comes_back_under_another_schema_prefix(
    postgres_url: str, pg_prefixes: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix_a, prefix_b = pg_prefixes
    env_a = settings_env(tmp_path / "a", DATABASE_URL=postgres_url, DATABASE_SCHEMA_PREFIX=prefix_a)
    env_b = settings_env(tmp_path / "b", DATABASE_URL=postgres_url, DATABASE_SCHEMA_PREFIX=prefix_b)
    round_trip(env_a, env_b, tmp_path / "suite.tar.gz", "PostgreSQL", monkeypatch)


def test_a_single_machine_suite_comes_back_in_another_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_a = settings_env(tmp_path / "a")
    # B runs without SECRET_KEY in its environment, as one machine does: the backup's key becomes its key file.
    env_b = {name: value for name, value in settings_env(tmp_path / "b").items() if name != "SECRET_KEY"}
    round_trip(env_a, env_b, tmp_path / "suite.tar.gz", "SQLite", monkeypatch)


# -- bad input -----------------------------------------------------------------------------------


def target_state(data_dir: Path) -> dict[str, Any]:
    """The target's databases (rows per table) and files, to show it unchanged."""
    settings = load_settings(base_env(data_dir))
    state: dict[str, Any] = {}
    for service in SERVICES:
        path = settings.data_dir / "db" / f"{service}.sqlite3"
        state[service] = ({table: len(rows) for table, rows in service_rows(settings, service).items()}
                          if path.is_file() else None)
    state["files"] = sorted(str(path.relative_to(data_dir)) for path in data_dir.rglob("*")
                            if path.is_file() and "db" not in path.parts)
    return state


def with_manifest_changed(archive: Path, target: Path, change: Any) -> None:
    """A copy of the archive whose manifest ``change`` edited (the members and their checksums intact)."""
    with tarfile.open(archive, "r:gz") as source, tarfile.open(target, "w:gz") as copy:
        for member in source.getmembers():
            data = source.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "manifest.json":
                manifest = json.loads(data)
                change(manifest)
                data = json.dumps(manifest).encode()
                member.size = len(data)
            copy.addfile(member, io.BytesIO(data))


def test_bad_archives_and_a_full_target_are_refused_with_one_line_and_the_target_unchanged(tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    env_source, env_target = subprocess_env(source), subprocess_env(target)
    created = gongkai(env_source, "create-admin", "--username", "root1", "--password", "Initial-Pass-2024!")
    assert created.returncode == 0, created.stderr
    archive = tmp_path / "small.tar.gz"
    written = gongkai(env_source, "backup", "--out", str(archive))
    assert written.returncode == 0, written.stderr
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600

    data = archive.read_bytes()
    truncated, damaged = tmp_path / "truncated.tar.gz", tmp_path / "damaged.tar.gz"
    truncated.write_bytes(data[: len(data) // 2])
    middle = len(data) // 2
    damaged.write_bytes(data[:middle] + bytes(byte ^ 0xFF for byte in data[middle:middle + 64]) + data[middle + 64:])
    not_gzip = tmp_path / "notes.tar.gz"
    not_gzip.write_text("这不是备份文件\n", encoding="utf-8")

    empty_before = target_state(target)
    cases = [
        (tmp_path / "missing.tar.gz", "no such file"),
        (truncated, "damaged or truncated"),
        (damaged, "damaged"),
        (not_gzip, "not a readable Gongkai backup"),
    ]
    for path, expected in cases:
        result = gongkai(env_target, "restore", str(path))
        lines = result.stderr.strip().splitlines()
        assert result.returncode != 0 and len(lines) == 1 and lines[0].startswith("Error: "), (path, result.stderr)
        assert expected in lines[0], (path, lines[0])
        assert "Traceback" not in result.stderr
        assert target_state(target) == empty_before, path

    # A target that holds data (here: the source itself) is refused without --force, and left as it was.
    before = target_state(source)
    refused = gongkai(env_source, "restore", str(archive))
    assert refused.returncode != 0, refused.stdout
    assert refused.stderr.strip().startswith("Error: the target already holds data (identity: ")
    assert "--force" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert target_state(source) == before

    # A failure while loading leaves the target empty again, though four databases were in place by then:
    # here every checksum is right but the press database does not hold the rows its manifest lists.
    tampered = tmp_path / "tampered.tar.gz"
    with_manifest_changed(archive, tampered, lambda manifest: manifest["services"]["press"]["tables"].update(
        press_topic={"rows": manifest["services"]["press"]["tables"]["press_topic"]["rows"] + 1}))
    broken = gongkai(env_target, "restore", str(tampered))
    assert broken.returncode != 0, broken.stdout
    assert broken.stderr.strip() == "Error: press: the database in the archive does not hold the rows the " \
                                    "manifest lists"
    assert target_state(target) == empty_before

    # Onto an empty target it works; then a second restore there needs --force, which replaces the data.
    first = gongkai(env_target, "restore", str(archive))
    assert first.returncode == 0, first.stderr
    assert "search index rebuilt" in first.stdout
    again = gongkai(env_target, "restore", str(archive))
    assert again.returncode != 0 and "--force" in again.stderr
    forced = gongkai(env_target, "restore", str(archive), "--force")
    assert forced.returncode == 0, forced.stderr
    assert target_state(target)["identity"] == before["identity"]
    signed_in = gongkai(env_target, "audit", "verify")
    assert signed_in.returncode == 0 and "audit log intact" in signed_in.stdout, signed_in.stderr


def test_a_backup_to_a_missing_directory_says_so(tmp_path: Path) -> None:
    env = subprocess_env(tmp_path / "var")
    assert gongkai(env, "migrate").returncode == 0
    result = gongkai(env, "backup", "--out", str(tmp_path / "nowhere" / "x.tar.gz"))
    assert result.returncode != 0
    assert result.stderr.strip() == f"Error: --out {tmp_path / 'nowhere' / 'x.tar.gz'}: no such directory " \
                                    f"{tmp_path / 'nowhere'}"
    assert not list(tmp_path.glob("*.partial")) and not (tmp_path / "nowhere").exists()

