"""A consultation from the public form's API to a published answer, with a real Celery worker.

Real parts only: PostgreSQL (a schema per service), a Redis broker of its own, a `gongkai worker`
process that consumes the outbox events (search index, e-mail, audit), a local SMTP server, and
the embedded search index on disk. The asker's tracking view shows every step; the answer reaches
the public board and search with the personal data removed; and the submitter's name, phone and
e-mail are nowhere the public can see: not in a public page or API answer, not in the index, not
in an event sent out of the service, not in a log line.
"""

from __future__ import annotations

import json
import logging
import random
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from werkzeug.test import Client, TestResponse

from services.db import get_database
from services.migrations import migrate_all
from services.settings import Settings, load_settings
from services.suite import PathDispatcher, create_suite

from support.env import base_env, drop_schemas, subprocess_env, unique_prefix
from support.servers import RedisProcess
from support.smtp import SmtpSink, running_smtp_sink

pytestmark = pytest.mark.slow

PASSWORD = "Correct-Horse-42!"
ROLES = ("dispatcher", "editor", "reviewer", "disclosure_office")


@dataclass
class LiveSuite:
    settings: Settings
    client: Client
    apps: dict[str, Any]
    sink: SmtpSink
    worker_log: Path
    tokens: dict[str, str]

    def staff(self, method: str, user: str, path: str, **kwargs: Any) -> TestResponse:
        return self.client.open(path, method=method, headers={"Authorization": f"Bearer {self.tokens[user]}"},
                                **kwargs)


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _create_org(apps: dict[str, Any], settings: Settings) -> None:
    from services.identity.accounts import assign_role, create_department, create_user
    from services.permissions import Role

    with get_database("identity", apps["identity"]).transaction() as session:
        bureau = create_department(session, "KJT", "科学技术厅", "bureau", None)
        division = create_department(session, "KJTA", "政策法规处", "division", bureau)
        for role in ROLES:
            user = create_user(session, settings, username=f"{role}_a", display_name=f"{role}_a", password=PASSWORD,
                               email=f"{role}_a@kjt.example.gov.cn")
            user.must_change_password = False
            assign_role(session, user, Role(role), division)


@pytest.fixture
def live(postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> Iterator[LiveSuite]:
    prefix = unique_prefix("c")
    redis = RedisProcess().start()
    worker: subprocess.Popen[bytes] | None = None
    with running_smtp_sink() as sink:
        overrides = {
            "DATABASE_URL": postgres_url, "DATABASE_SCHEMA_PREFIX": prefix, "REDIS_URL": redis.url,
            "OUTBOX_RELAY_INTERVAL": "0.5", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(sink.port),
            "CONSULT_INTAKE_DEPARTMENT": "KJTA", "LOG_LEVEL": "DEBUG",
        }
        settings = load_settings(base_env(tmp_path, **overrides))
        migrate_all(settings)
        worker_log = tmp_path / "worker.log"
        try:
            worker = subprocess.Popen([sys.executable, "-m", "services.cli", "worker"],
                                      env=subprocess_env(tmp_path, **overrides), stdout=worker_log.open("wb"),
                                      stderr=subprocess.STDOUT)
            dispatcher = create_suite(settings)
            apps = dispatcher.apps
            _create_org(apps, settings)
            client = Client(PathDispatcher(apps), use_cookies=False)
            tokens = {}
            for role in ROLES:
                answer = client.post("/api/auth/token", json={"username": f"{role}_a", "password": PASSWORD})
                assert answer.status_code == 200, answer.get_data(as_text=True)
                tokens[f"{role}_a"] = answer.get_json()["token"]
            caplog.set_level(logging.DEBUG)
            yield LiveSuite(settings, client, apps, sink, worker_log, tokens)
        finally:
            if worker is not None:
                worker.terminate()
                try:
                    worker.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    worker.kill()
            redis.stop()
            drop_schemas(postgres_url, prefix)


def _unique_asker() -> dict[str, str]:
    token = uuid.uuid4().hex[:8]
    given = "".join(random.choice("甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉") for _ in range(3))
    return {"name": f"欧阳{given}", "phone": f"139{random.randrange(10**8):08d}",
            "email": f"asker-{token}@example.com"}


def _step_labels(view: dict[str, Any]) -> list[str]:
    return [step["action"] for step in view["steps"]]


def test_from_submission_to_published_answer_with_a_real_worker(live: LiveSuite, caplog: pytest.LogCaptureFixture
                                                                ) -> None:
    asker = _unique_asker()
    title = f"高新技术企业认定材料咨询{uuid.uuid4().hex[:4]}"
    # The asker also writes a (different) number into the question: the published text must not show it.
    typed_phone = f"137{random.randrange(10**8):08d}"
    question = f"请问高新技术企业认定需要提交哪些材料？白天请打 {typed_phone} 联系我。"
    submitted = live.client.post("/api/consult/consultations", json={
        "title": title, "question": question, **asker, "consent_to_publish": True,
    })
    assert submitted.status_code == 201, submitted.get_data(as_text=True)
    receipt = submitted.get_json()
    number, code = receipt["tracking_number"], receipt["query_code"]
    assert number.startswith("ZX") and len(code) == 8 and receipt["deadline"]

    def track() -> dict[str, Any]:
        answer = live.client.get(f"/api/consult/consultations/{number}", query_string={"code": code})
        assert answer.status_code == 200, answer.get_data(as_text=True)
        view: dict[str, Any] = answer.get_json()
        return view

    assert track()["state"] == "submitted" and _step_labels(track()) == ["submit"]
    inbox = live.staff("GET", "dispatcher_a", "/api/consult/manage/consultations").get_json()
    case_id = next(item["id"] for item in inbox["items"] if item["tracking_number"] == number)
    base = f"/api/consult/manage/consultations/{case_id}"

    def act(user: str, action: str, body: dict[str, Any] | None = None, method: str = "POST") -> dict[str, Any]:
        answer = live.staff(method, user, f"{base}/{action}", json=body or {})
        assert answer.status_code == 200, f"{action}: {answer.get_data(as_text=True)}"
        result: dict[str, Any] = answer.get_json()
        return result

    act("dispatcher_a", "accept")
    assert track()["state"] == "accepted" and track()["deadline"]
    act("editor_a", "assign")  # the editor takes the case
    reply = ("您好，高新技术企业认定需提交企业注册登记证件、知识产权证明等材料，详见认定管理办法。"
             "咨询电话 0551-62655012。")
    act("editor_a", "draft", {"reply": reply}, method="PUT")
    assert track()["state"] == "drafting"
    act("editor_a", "submit-review")
    act("reviewer_a", "approve")
    act("editor_a", "reply")
    view = track()
    assert view["state"] == "replied" and view["reply"] == reply

    # The worker e-mails the asker that the reply is ready: a link and the number, never the reply itself.
    wait_for(lambda: live.sink.messages, 30, "the reply notice to reach the SMTP server")
    recipients, message = live.sink.messages[0]
    assert recipients == [asker["email"]]
    assert number in str(message["Subject"]) and "/consult/track" in message.get_content()

    review = live.staff("GET", "reviewer_a", f"{base}/personal-data").get_json()
    assert "phone" in {finding["kind"] for finding in review["question_findings"]}
    assert typed_phone not in review["proposed_question"] and "［已隐去：电话号码］" in review["proposed_question"]
    act("reviewer_a", "confirm-redaction", {"published_question": review["proposed_question"],
                                            "published_reply": review["proposed_reply"]})
    act("disclosure_office_a", "publish")

    # The worker indexes the answer: the public board and search show it, redacted.
    answer = wait_for(lambda: _json_if_ok(live.client.get(f"/api/consult/answers/{case_id}")), 30,
                      "the published answer to be indexed")
    assert answer["title"] == title and "［已隐去：电话号码］" in answer["question"]
    found = live.client.get("/api/search", query_string={"q": "高新技术企业认定"}).get_json()
    assert any(hit.get("id") == f"answer-{case_id}" or hit.get("url", "").endswith(f"/{case_id}")
               for hit in found["hits"])

    view = track()
    assert view["state"] == "published"
    assert _step_labels(view) == ["submit", "accept", "assign", "submit_review", "reply", "publish"]
    assert all(step["note"] for step in view["steps"])
    rated = live.client.post(f"/api/consult/consultations/{number}/rating",
                             json={"code": code, "rating": "satisfied", "comment": "答复清楚"})
    assert rated.status_code == 200 and rated.get_json()["rating"] == "satisfied"

    # Every state change was audited: the worker appended consult's entries to identity's chain.
    from services.identity.models import AuditEntry

    def consult_audit_count() -> int:
        with get_database("identity", live.apps["identity"]).transaction() as session:
            return session.scalar(select(func.count()).select_from(AuditEntry).where(
                AuditEntry.service == "consult")) or 0

    wait_for(lambda: consult_audit_count() >= 10, 30, "consult's audit entries")

    _assert_no_contact_detail_public(live, asker, typed_phone, number, code, case_id, title, caplog)


def _json_if_ok(answer: TestResponse) -> dict[str, Any] | None:
    return answer.get_json() if answer.status_code == 200 else None


def _assert_no_contact_detail_public(live: LiveSuite, asker: dict[str, str], typed_phone: str, number: str, code: str,
                                     case_id: int, title: str, caplog: pytest.LogCaptureFixture) -> None:
    """The contact details given in the form's fields appear nowhere outside the staff console, not even
    in the asker's own tracking view; the number typed into the question appears only there (the asker
    sees their original text) and never in anything published."""
    secrets = [asker["name"], asker["phone"], asker["email"]]
    published = ["/consult/answers", f"/consult/answers/{case_id}", "/api/consult/answers",
                 f"/api/consult/answers/{case_id}", f"/api/search?q={title}", f"/search/?q={title}"]
    for path in published:
        assert typed_phone not in live.client.get(path).get_data(as_text=True), f"the typed number on {path}"
    public_paths = [
        "/consult/answers", f"/consult/answers/{case_id}", "/consult/statistics",
        "/api/consult/answers", f"/api/consult/answers/{case_id}", "/api/consult/statistics",
        f"/api/consult/consultations/{number}?code={code}",
        f"/api/search?q={title}", f"/search/?q={title}", "/",
    ]
    for path in public_paths:
        page = live.client.get(path)
        assert page.status_code == 200, path
        body = page.get_data(as_text=True)
        for secret in secrets:
            assert secret not in body, f"{secret!r} on {path}"
    browser = Client(PathDispatcher(live.apps))
    form = browser.get("/consult/track").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token, "the tracking form carries a CSRF token"
    tracking_page = browser.post("/consult/track", data={"tracking_number": number, "code": code,
                                                         "csrf_token": token.group(1)})
    assert tracking_page.status_code == 200 and number in tracking_page.get_data(as_text=True)
    for secret in secrets:
        assert secret not in tracking_page.get_data(as_text=True)

    # The index, read back and as the bytes on disk.
    from services.web import content_alias

    engine, alias = content_alias(live.apps["search"])
    document = json.dumps(engine.get_document(alias, f"answer-{case_id}"), ensure_ascii=False)
    index_bytes = b"".join(path.read_bytes() for path in (live.settings.data_dir).rglob("*.sqlite3*")
                           if "search" in str(path) or "index" in path.name)
    assert index_bytes, "the embedded index is on disk"
    for secret in [*secrets, typed_phone]:
        assert secret not in document
        assert secret.encode() not in index_bytes

    # Every event that left the consult service, and every log line of the worker and of this process.
    from consult.models import OutboxEvent

    with get_database("consult", live.apps["consult"]).transaction() as session:
        payloads = [json.dumps(event.payload, ensure_ascii=False) for event in session.scalars(select(OutboxEvent))]
    worker_log = live.worker_log.read_text(encoding="utf-8", errors="replace")
    assert "consult.notify_asker" in worker_log  # the worker's log is the one that saw the e-mail go out
    # (aiosmtpd's own "mail.log" lines are the receiving SMTP server's, the outside world: not ours.)
    logs = [record.getMessage() for record in caplog.records if not record.name.startswith("mail.log")]
    for secret in secrets:
        assert not [p for p in payloads if secret in p], f"{secret!r} in an outbox event"
        assert secret not in worker_log, f"{secret!r} in the worker's log"
        assert not [line for line in logs if secret in line], f"{secret!r} in a log line"
