"""MUST-SHOW 2: a synthetic burst in a stable background stream fires one alert, in time, through the
real pipeline.

Real parts only: PostgreSQL (a schema per service), a Redis broker of its own, a `gongkai worker`
process (consult's outbox -> press.ingest_consultation -> press.update_topics -> alert rules ->
press.deliver_alert), a local SMTP server and a local HTTP server as the webhook. The background:
three steady topics with two weeks of history (imported, six messages a day each) plus steady
submissions through the public consult API. The burst: eight messages on a new topic through the
same API, carrying phone and ID numbers. Exactly one alert (one e-mail, one webhook call) for the
burst topic, within the configured delay; none for the steady topics; no phone or ID number in
the e-mail or the webhook body.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from werkzeug.test import Client

from services.db import ServiceDatabase, get_database
from services.migrations import migrate_all
from services.press import engine, ingest
from services.press.models import Alert, AlertRule, PressMessage
from services.press.topics import Message
from services.settings import Settings, load_settings
from services.suite import PathDispatcher, create_suite

from support.env import base_env, drop_schemas, subprocess_env, unique_prefix
from support.servers import RedisProcess, free_port
from support.smtp import SmtpSink, running_smtp_sink

pytestmark = pytest.mark.slow

ALERT_DELAY_SECONDS = 20.0
"""The configured delay: PRESS_UPDATE_DELAY_SECONDS (1 s) + relay and worker latency, generously."""
STEADY = {
    "parking": ("阳光花园小区停车位收费过高",
                "阳光花园小区地下停车位每月收费过高，物业擅自涨价，请相关部门核查停车收费标准。"),
    "bus": ("高新区公交线路调整不便", "高新区公交线路调整后站点变远，上下班换乘不便，建议恢复原公交线路站点。"),
    "school": ("幼儿园入学报名材料咨询",
               "今年幼儿园入学报名需要准备哪些材料，户籍和居住证明如何提交，报名时间是什么时候。"),
}
BURST = ("滨江壹号小区自来水发黄", "滨江壹号小区自来水发黄有异味已经三天，居民无法正常用水，请水务部门尽快处理。")
ID_NUMBER = "110101199003071234"


class Webhook:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.port = free_port()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                hook.bodies.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Webhook:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Live:
    settings: Settings
    client: Client
    press: ServiceDatabase
    sink: SmtpSink
    webhook: Webhook
    worker_log: Path


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _history(now: datetime) -> list[Message]:
    """Two weeks of six messages a day for each steady topic (wording varied a little)."""
    messages = []
    suffixes = ("", "，希望尽快答复", "，多次反映未解决", "，谢谢", "，请予关注", "，盼复")
    for key, (title, text) in STEADY.items():
        for day in range(14):
            for slot in range(6):
                moment = now - timedelta(days=day, hours=1 + slot * 3, minutes=random.randrange(30))
                messages.append(Message(id=f"{key}-{day}-{slot}", title=title, text=text + suffixes[slot],
                                        asker=f"{key}-asker-{day}-{slot}", time=moment))
    return messages


@pytest.fixture
def live(postgres_url: str, tmp_path: Path) -> Iterator[Live]:
    prefix = unique_prefix("pb")
    redis = RedisProcess().start()
    worker: subprocess.Popen[bytes] | None = None
    with running_smtp_sink() as sink, Webhook() as webhook:
        overrides = {
            "DATABASE_URL": postgres_url, "DATABASE_SCHEMA_PREFIX": prefix, "REDIS_URL": redis.url,
            "OUTBOX_RELAY_INTERVAL": "0.5", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(sink.port),
            "CONSULT_SUBMIT_RATE_LIMIT": "1000 per minute", "PRESS_UPDATE_DELAY_SECONDS": "1",
        }
        settings = load_settings(base_env(tmp_path, **overrides))
        migrate_all(settings)
        worker_log = tmp_path / "worker.log"
        try:
            apps = create_suite(settings).apps
            press = get_database("press", apps["press"])
            now = datetime.now(UTC)
            ingest.import_messages(press.transaction, settings, _history(now))
            engine.recompute(press)
            with press.transaction() as session:
                session.add(AlertRule(name="增长", kind="growth", min_messages=5, within_hours=24, min_burst=3.0,
                                      terms=[], response_hours=48, email_to=["press@example.gov.cn"],
                                      webhook_url=f"http://127.0.0.1:{webhook.port}/hook", enabled=True))
            worker = subprocess.Popen([sys.executable, "-m", "services.cli", "worker"],
                                      env=subprocess_env(tmp_path, **overrides), stdout=worker_log.open("wb"),
                                      stderr=subprocess.STDOUT)
            yield Live(settings, Client(PathDispatcher(apps), use_cookies=False), press, sink, webhook, worker_log)
        finally:
            if worker is not None:
                worker.terminate()
                try:
                    worker.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    worker.kill()
            redis.stop()
            drop_schemas(postgres_url, prefix)


def _submit(live: Live, title: str, question: str) -> None:
    token = uuid.uuid4().hex[:6]
    answer = live.client.post("/api/consult/consultations", json={
        "title": title, "question": f"{question}（{token}）", "name": "张三",
        "phone": f"139{random.randrange(10**8):08d}", "consent_to_publish": False,
    })
    assert answer.status_code == 201, answer.get_data(as_text=True)


def _assigned_from_consult(live: Live) -> int:
    with live.press.transaction() as session:
        return len(session.scalars(select(PressMessage.id).where(
            PressMessage.source == "consult", PressMessage.topic_id.is_not(None))).all())


def test_a_burst_fires_one_alert_in_time_and_steady_topics_none(live: Live) -> None:
    with live.press.transaction() as session:
        steady_topics = {key: session.scalar(select(PressMessage.topic_id).where(
            PressMessage.source_id == f"{key}-0-0")) for key in STEADY}
    assert len(set(steady_topics.values())) == 3, steady_topics

    # The steady stream goes on: two submissions per steady topic.
    for _round in range(2):
        for title, text in STEADY.values():
            _submit(live, title, text)
    wait_for(lambda: _assigned_from_consult(live) >= 6, 60, "the steady submissions to join their topics")
    with live.press.transaction() as session:
        joined = set(session.scalars(select(PressMessage.topic_id).where(PressMessage.source == "consult")))
    assert joined == set(steady_topics.values()), "steady submissions joined their own topics"

    # The burst: eight messages on a new topic, each with a phone and an ID number typed in.
    crossed_at = 0.0
    for number in range(8):
        phone = f"138{random.randrange(10**8):08d}"
        _submit(live, BURST[0], f"{BURST[1]}联系电话{phone}，身份证{ID_NUMBER}")
        if number == 4:  # the fifth message reaches the rule's min_messages
            crossed_at = time.monotonic()
        time.sleep(0.3)
    wait_for(lambda: live.sink.messages, ALERT_DELAY_SECONDS + 10, "the alert e-mail")
    delay = time.monotonic() - crossed_at
    print(f"alert e-mailed {delay:.1f} s after the burst reached the rule's threshold")
    assert delay <= ALERT_DELAY_SECONDS
    wait_for(lambda: live.webhook.bodies, ALERT_DELAY_SECONDS, "the webhook call")
    wait_for(lambda: _assigned_from_consult(live) >= 14, 30, "every burst message to be assigned")
    time.sleep(4)  # later updates (the remaining burst messages) must not fire again

    assert len(live.sink.messages) == 1 and len(live.webhook.bodies) == 1
    with live.press.transaction() as session:
        alerts = session.scalars(select(Alert)).all()
        burst_topics = set(session.scalars(select(PressMessage.topic_id).where(
            PressMessage.source == "consult", PressMessage.title == BURST[0])))
    assert len(alerts) == 1 and len(burst_topics) == 1
    alert = alerts[0]
    assert alert.topic_id in burst_topics and alert.topic_id not in steady_topics.values()
    assert alert.emailed_at is not None and alert.webhook_sent_at is not None
    assert alert.response_due - alert.fired_at == timedelta(hours=48)

    recipients, message = live.sink.messages[0]
    assert recipients == ["press@example.gov.cn"]
    body = message.get_content()
    hook = json.loads(live.webhook.bodies[0])
    assert hook["topic_id"] == alert.topic_id and hook["samples"]
    for shown in (body, str(message["Subject"]), live.webhook.bodies[0].decode()):
        assert ID_NUMBER not in shown and not re.search(r"1[3-9]\d{9}", shown)
        assert "滨江" in shown or "\\u" in shown
